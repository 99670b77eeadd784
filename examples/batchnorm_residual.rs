//! Seed §05: batch normalisation and skip connections. A deep stack (16
//! blocks) is trained twice on the same regression: as a residual MLP whose
//! blocks compute `x + fc2(relu(bn(fc1(x))))`, and as a plain deep MLP of
//! the same depth with sigmoid activations (no normalisation, no skips). The
//! first layer's gradient norm at step 0 shows vanishing gradients in the
//! plain stack; the loss after training shows what they cost.
//!
//! Run: `cargo run --release --example batchnorm_residual`
//!
//! Expected: `residual+bn: first-layer grad_norm=… loss … → …` and
//! `plain: first-layer grad_norm=… loss … → …`; the residual network's loss
//! falls and its first-layer gradient is orders of magnitude larger
//! (asserted in `tests/examples.rs`).

use ember::burn::module::Module;
use ember::burn::nn::activation::ActivationConfig;
use ember::burn::optim::GradientsParams;
use ember::burn::tensor::{Device, Distribution, Tensor};
use ember::models::mlp::MlpConfig;
use ember::models::residual::ResidualMlpConfig;
use ember::runtime::diagnostics::GradReport;
use ember::runtime::{loss::mse, optim};

/// Outcome of one network.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// L2 norm of the first layer's weight gradient at step 0.
    pub first_layer_grad: f32,
    /// Loss at step 0.
    pub first_loss: f32,
    /// Loss after training.
    pub last_loss: f32,
}

const DEPTH: usize = 16;
const STEPS: usize = 150;

fn data(device: &Device) -> (Tensor<2>, Tensor<2>) {
    let x = Tensor::<2>::random([256, 16], Distribution::Normal(0.0, 1.0), device);
    let w = Tensor::<2>::random([16, 1], Distribution::Normal(0.0, 1.0), device);
    let y = x.clone().matmul(w).sin();
    (x, y)
}

fn train<M: Module>(
    model: M,
    forward: impl Fn(&M, Tensor<2>) -> Tensor<2>,
    device: &Device,
) -> Run {
    let (x, y) = data(device);
    let mut model = model;
    let mut optimizer = optim::adam(0.0).init();
    let (mut first_layer_grad, mut first_loss, mut last_loss) = (0.0, 0.0, 0.0);
    for step in 0..STEPS {
        let loss = mse(forward(&model, x.clone()), y.clone());
        last_loss = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        if step == 0 {
            first_loss = last_loss;
            first_layer_grad = GradReport::new(&model, &grads).params[0]
                .grad_norm
                .unwrap_or(0.0);
        }
        model = optimizer.step(1e-3, model, grads);
    }
    Run {
        first_layer_grad,
        first_loss,
        last_loss,
    }
}

/// Trains both networks; returns (residual, plain).
pub fn run(verbose: bool) -> (Run, Run) {
    let device = ember::runtime::device::cpu().autodiff();
    device.seed(5);
    let residual = ResidualMlpConfig::new(16, 64, 1, DEPTH).init(&device);
    let residual = train(residual, |m, x| m.forward(x), &device);
    device.seed(5);
    let mut sizes = vec![16];
    sizes.extend(std::iter::repeat_n(64, 2 * DEPTH));
    sizes.push(1);
    let plain = MlpConfig::new(sizes)
        .with_activation(ActivationConfig::Sigmoid)
        .init(&device);
    let plain = train(plain, |m, x| m.forward(x), &device);
    if verbose {
        for (name, r) in [("residual+bn", residual), ("plain", plain)] {
            println!(
                "{name}: first-layer grad_norm={:.2e} loss {:.4} → {:.4}",
                r.first_layer_grad, r.first_loss, r.last_loss
            );
        }
    }
    (residual, plain)
}

#[allow(dead_code)]
fn main() {
    run(true);
}
