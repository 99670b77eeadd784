//! Seed §06: the practical training loop, in fp32 — AdamW (lr 3e-4, weight
//! decay 0.01), cosine annealing over the epochs, global gradient clipping at
//! 1.0, and a warning when the gradient norm exceeds 5.0.
//!
//! Run: `cargo run --release --example training_loop`
//!
//! Expected: early `E0 S…: large grad norm …` warnings (the targets are
//! large, so the first gradients are), then one `Epoch N: loss=…` line per
//! epoch with the loss falling (asserted in `tests/examples.rs`; the same loop
//! is checked number for number against PyTorch in `tests/parity.rs`).

use ember::burn::nn::activation::ActivationConfig;
use ember::burn::optim::GradientsParams;
use ember::burn::tensor::{Distribution, Tensor};
use ember::models::mlp::MlpConfig;
use ember::runtime::clip::GlobalNormClip;
use ember::runtime::diagnostics::GradMonitor;
use ember::runtime::schedule::{Cosine, Schedule};
use ember::runtime::{loss::mse, optim};

/// What the loop reports.
pub struct Outcome {
    /// Last batch loss of each epoch.
    pub epoch_losses: Vec<f32>,
    /// Number of steps whose gradient norm exceeded the warning threshold.
    pub large_grad_steps: u64,
}

/// Runs the loop.
pub fn run(verbose: bool) -> Outcome {
    let device = ember::runtime::device::cpu().autodiff();
    device.seed(7);
    let (num_epochs, batch, n) = (20, 16, 1024);
    let normal = Distribution::Normal(0.0, 1.0);
    let x = Tensor::<2>::random([n, 8], normal, &device);
    let w = Tensor::<2>::random([8, 1], normal, &device);
    let y = x.clone().matmul(w).tanh().mul_scalar(3.0);

    let mut model = MlpConfig::new(vec![8, 64, 64, 1])
        .with_activation(ActivationConfig::Tanh)
        .init(&device);
    let mut optimizer = optim::adamw(0.01).init();
    let mut scheduler = Cosine::new(3e-4, num_epochs).into_scheduler();
    let clip = GlobalNormClip::new(1.0);
    let mut monitor = GradMonitor::new(5.0);
    let mut epoch_losses = Vec::new();

    for epoch in 0..num_epochs {
        let mut loss_value = 0.0;
        for (step, start) in (0..n).step_by(batch).enumerate() {
            let xb = x.clone().slice([start..start + batch]);
            let yb = y.clone().slice([start..start + batch]);
            let loss = mse(model.forward(xb), yb);
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            // Gradient clipping — prevents exploding gradients.
            let grad_norm = clip.clip(&model, &mut grads).expect("max_norm is valid");
            // Diagnose: warn if gradients are unusually large.
            if let Some(warning) = monitor.check(grad_norm)
                && verbose
            {
                println!("E{epoch} S{step}: {warning}");
            }
            model = optimizer.step(scheduler.current_lr(), model, grads);
            loss_value = loss.into_scalar::<f32>();
        }
        scheduler.step();
        if verbose {
            println!("Epoch {epoch}: loss={loss_value:.4}");
        }
        epoch_losses.push(loss_value);
    }
    Outcome {
        epoch_losses,
        large_grad_steps: monitor.large,
    }
}

#[allow(dead_code)]
fn main() {
    run(true);
}
