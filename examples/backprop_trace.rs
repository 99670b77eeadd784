//! Seed §02: backpropagation traced step by step on a 4 → 8 → 1 network with
//! BCE-with-logits: the loss, each parameter's gradient and weight norm, one
//! hand-written SGD step (lr 0.01) and the loss after it.
//!
//! Run: `cargo run --release --example backprop_trace`
//!
//! Expected: `Loss: …`, four `name: grad_norm=…, param_norm=…` lines, then
//! `Loss after one step: …` lower than the first (asserted in
//! `tests/examples.rs`; the exact PyTorch numbers for the same weights are
//! checked in `tests/parity.rs`).

use ember::burn::optim::GradientsParams;
use ember::burn::tensor::{Distribution, Tensor};
use ember::models::mlp::MlpConfig;
use ember::runtime::diagnostics::GradReport;
use ember::runtime::loss::bce_with_logits;
use ember::runtime::optim;

/// Returns the loss before and after the SGD step.
pub fn run(verbose: bool) -> (f32, f32) {
    let device = ember::runtime::device::cpu().autodiff();
    device.seed(0);
    let model = MlpConfig::new(vec![4, 8, 1]).init(&device);
    let x = Tensor::<2>::random([3, 4], Distribution::Normal(0.0, 1.0), &device);
    let y = Tensor::<2>::from_floats([[1.0], [0.0], [1.0]], &device);

    // Forward pass: Burn records the graph on the autodiff device.
    let loss = bce_with_logits(model.forward(x.clone()), y.clone());
    let before = loss.clone().into_scalar::<f32>();
    // Backward pass: reverse-mode autodiff through the graph.
    let grads = GradientsParams::from_grads(loss.backward(), &model);

    let report = GradReport::new(&model, &grads);
    if verbose {
        println!("Loss: {before:.4}");
        for p in &report.params {
            // PyTorch names: nn.Sequential(Linear, ReLU, Linear) → 0.*, 2.*
            let name = model.torch_key(&p.path).unwrap_or_else(|| p.path.clone());
            println!(
                "{name}: grad_norm={:.4}, param_norm={:.4}",
                p.grad_norm.unwrap_or(0.0),
                p.param_norm
            );
        }
    }

    // The gradient update an optimizer performs: p ← p − 0.01·∇p (plain SGD).
    let model = optim::sgd(0.0).init().step(0.01, model, grads);

    let after = bce_with_logits(model.forward(x), y).into_scalar::<f32>();
    if verbose {
        println!("Loss after one step: {after:.4}");
    }
    (before, after)
}

#[allow(dead_code)]
fn main() {
    run(true);
}
