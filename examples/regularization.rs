//! Seed §04: dropout and weight decay against overfitting. The same wide
//! network (1 → 256 → 256 → 1) is fitted to 32 noisy samples of `sin(2x)`
//! twice (AdamW, lr 3e-3, 1500 steps): plain, and with dropout 0.2 + weight
//! decay 0.1. The train/validation gap
//! (validation MSE − training MSE, both in evaluation mode) measures
//! overfitting.
//!
//! Run: `cargo run --release --example regularization`
//!
//! Expected: two lines `plain: train=… val=… gap=…` and
//! `dropout+wd: train=… val=… gap=…`, the second gap smaller (asserted in
//! `tests/examples.rs`).

use ember::burn::module::Module;
use ember::burn::optim::GradientsParams;
use ember::burn::tensor::{Distribution, Tensor};
use ember::models::mlp::MlpConfig;
use ember::runtime::{loss::mse, optim};

/// Losses of one run, measured in evaluation mode after training.
#[derive(Debug, Clone, Copy)]
pub struct Gap {
    /// Training-set MSE.
    pub train: f32,
    /// Validation-set MSE.
    pub val: f32,
}

impl Gap {
    /// `val − train`.
    pub fn gap(&self) -> f32 {
        self.val - self.train
    }
}

fn train(dropout: f64, weight_decay: f64) -> Gap {
    let device = ember::runtime::device::cpu().autodiff();
    device.seed(4);
    // y = sin(2x) + noise on 32 points of [-3, 3]: a wide net can thread a
    // curve through every noisy point; the validation set shows the cost.
    let sample = |n: usize| {
        let x = Tensor::<2>::random([n, 1], Distribution::Uniform(-3.0, 3.0), &device);
        let noise = Tensor::<2>::random([n, 1], Distribution::Normal(0.0, 0.3), &device);
        let y = x.clone().mul_scalar(2.0).sin() + noise;
        (x, y)
    };
    let (x, y) = sample(32);
    let (x_val, y_val) = sample(512);

    let mut model = MlpConfig::new(vec![1, 256, 256, 1])
        .with_dropout(dropout)
        .init(&device);
    let mut optimizer = optim::adamw(weight_decay).init();
    for _ in 0..1500 {
        let loss = mse(model.forward(x.clone()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(3e-3, model, grads);
    }
    let eval = model.valid();
    let train = mse(eval.forward(x.inner()), y.inner()).into_scalar::<f32>();
    let val = mse(eval.forward(x_val.inner()), y_val.inner()).into_scalar::<f32>();
    Gap { train, val }
}

/// Trains without and with regularisation; returns both gaps.
pub fn run(verbose: bool) -> (Gap, Gap) {
    let plain = train(0.0, 0.0);
    let regularized = train(0.2, 0.1);
    if verbose {
        for (name, g) in [("plain", plain), ("dropout+wd", regularized)] {
            println!(
                "{name}: train={:.4} val={:.4} gap={:.4}",
                g.train,
                g.val,
                g.gap()
            );
        }
    }
    (plain, regularized)
}

#[allow(dead_code)]
fn main() {
    run(true);
}
