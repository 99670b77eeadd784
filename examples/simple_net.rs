//! Seed §01: `SimpleNet` (10 → 64 → dropout 0.2 → 1) trained with Adam
//! (lr 1e-3, L2 weight decay 1e-4) on MSE for 10 epochs.
//!
//! Run: `cargo run --release --example simple_net`
//!
//! Expected: `Epoch 0: loss=…` and `Epoch 5: loss=…`, the second lower
//! (`tests/examples.rs` asserts that the loss decreases).

use ember::burn::optim::GradientsParams;
use ember::burn::tensor::{Distribution, Tensor};
use ember::models::simple_net::SimpleNetConfig;
use ember::runtime::{loss::mse, optim};

/// Trains the network and returns the loss of every epoch.
pub fn run(verbose: bool) -> Vec<f32> {
    let device = ember::runtime::device::cpu().autodiff();
    device.seed(0);
    let mut model = SimpleNetConfig::new().init(&device);
    let mut optimizer = optim::adam(1e-4).init();
    let x = Tensor::<2>::random([32, 10], Distribution::Normal(0.0, 1.0), &device);
    let y = Tensor::<2>::random([32, 1], Distribution::Normal(0.0, 1.0), &device);
    let mut losses = Vec::new();
    for epoch in 0..10 {
        let loss = mse(model.forward(x.clone()), y.clone());
        let value = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(1e-3, model, grads);
        if verbose && epoch % 5 == 0 {
            println!("Epoch {epoch}: loss={value:.4}");
        }
        losses.push(value);
    }
    losses
}

#[allow(dead_code)]
fn main() {
    run(true);
}
