//! Seed §03: Adam (weight decay as an L2 penalty in the gradient) against
//! AdamW (decoupled weight decay) on a 16 → 64 → 64 → 1 regression, 300 steps,
//! lr 1e-3, weight decay 0.01.
//!
//! Run: `cargo run --release --example optimizer_compare`
//!
//! Expected: `Adam  val loss: …` and `AdamW val loss: …`; both runs lower
//! their training loss (asserted in `tests/examples.rs`). On random targets
//! the two validation losses are close; the ML Core notes say the gap grows with
//! depth and training length.

use ember::burn::module::Module;
use ember::burn::optim::GradientsParams;
use ember::burn::tensor::{Distribution, Tensor};
use ember::models::mlp::MlpConfig;
use ember::runtime::{loss::mse, optim};

/// Result of one training run.
pub struct RunResult {
    /// Training loss at the first step.
    pub first_train_loss: f32,
    /// Training loss at the last step.
    pub last_train_loss: f32,
    /// Validation loss after training.
    pub val_loss: f32,
}

fn train(opt: optim::Adam, steps: usize) -> RunResult {
    let device = ember::runtime::device::cpu().autodiff();
    device.seed(42);
    let mut model = MlpConfig::new(vec![16, 64, 64, 1]).init(&device);
    let mut optimizer = opt.init();
    let normal = Distribution::Normal(0.0, 1.0);
    let x = Tensor::<2>::random([512, 16], normal, &device);
    let y = Tensor::<2>::random([512, 1], normal, &device);
    let x_val = Tensor::<2>::random([128, 16], normal, &device);
    let y_val = Tensor::<2>::random([128, 1], normal, &device);
    let (mut first, mut last) = (0.0, 0.0);
    for step in 0..steps {
        let loss = mse(model.forward(x.clone()), y.clone());
        last = loss.clone().into_scalar::<f32>();
        if step == 0 {
            first = last;
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(1e-3, model, grads);
    }
    let val_loss = mse(model.valid().forward(x_val.inner()), y_val.inner()).into_scalar::<f32>();
    RunResult {
        first_train_loss: first,
        last_train_loss: last,
        val_loss,
    }
}

/// Trains with Adam-L2 and with AdamW; returns both results.
pub fn run(verbose: bool) -> (RunResult, RunResult) {
    let adam = train(optim::adam(0.01), 300);
    let adamw = train(optim::adamw(0.01), 300);
    if verbose {
        println!("Adam  val loss: {:.4}", adam.val_loss);
        println!("AdamW val loss: {:.4}", adamw.val_loss);
    }
    (adam, adamw)
}

#[allow(dead_code)]
fn main() {
    run(true);
}
