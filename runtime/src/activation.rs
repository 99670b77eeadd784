//! Activations whose gradients are exact on every backend.
//!
//! Burn 0.22.1's CPU backend (burn-flex) differentiates GELU exactly, but
//! the backend-generic `gelu_backward` that the CubeCL backends (wgpu, CUDA)
//! inherit is the derivative of GELU's *tanh approximation*, while their
//! forward pass is the exact, erf-based GELU. Gradients through GELU then
//! differ from PyTorch's by up to ~1e-3 of their scale — enough to move
//! every LoRA gradient of a BERT encoder by ~0.1 %. [`gelu`] keeps Burn's
//! fused kernel on the CPU backend and composes `x·½·(1 + erf(x/√2))` from
//! differentiable ops elsewhere, so the gradient is erf's exact one.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use ember_runtime::activation::gelu;
//!
//! let x = Tensor::<1>::from_floats([-1.0, 0.0, 1.0], &Device::flex());
//! let y: Vec<f32> = gelu(x).into_data().to_vec().unwrap();
//! assert!((y[2] - 0.841_344_7).abs() < 1e-6 && y[1] == 0.0);
//! ```

use burn::tensor::{Device, Tensor, activation};

/// GELU, `x·Φ(x)` with the exact normal CDF (PyTorch's default
/// `approximate="none"`), with the exact gradient on every backend.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.device() == Device::flex() {
        activation::gelu(x)
    } else {
        let cdf = x.clone().div_scalar(core::f64::consts::SQRT_2).erf().add_scalar(1.0).mul_scalar(0.5);
        x * cdf
    }
}
