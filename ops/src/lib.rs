//! # ember-ops
//!
//! The layer beneath Ember's training runtime: every differentiable op that
//! Burn lacks or that Ember needs leaner, and the CPU kernels behind them.
//! Each op is one file holding its composed default (Burn's float ops: the
//! implementation on the GPU backends and the reference), its CPU kernel
//! and its autodiff backward, registered per backend through Burn's
//! `backend_extension`:
//!
//! * [`gelu`](mod@gelu): GELU with the exact normal CDF and its exact gradient on
//!   every backend.
//! * [`softmax`](mod@softmax): softmax, and attention's scaled, masked softmax, keeping
//!   only the output for backward.
//! * [`layer_norm`](mod@layer_norm): layer norm keeping only its input for backward.
//! * [`bias`](mod@bias) and [`linear`](mod@linear): a linear layer's bias added in place, and
//!   linear layers in a reduced type whose backward keeps the fp32 weight.
//! * [`attention`](mod@attention): scaled dot-product attention (Burn's fused kernel for
//!   inference on the CPU, the lean composition otherwise).
//! * [`adam`](mod@adam): the Adam/AdamW update rule, run over the CPU buffers in
//!   place.
//! * [`layout`](mod@layout): weights stored column-major for few-row products on the
//!   CPU.
//! * [`threads`](mod@threads) (std): keeping small work off the CPU backend's pool.
//! * [`rng`](mod@rng): the one generator for Ember's own random decisions.
//!
//! The kernels share one dispatch (`cpu`): a kernel runs on a CPU tensor's
//! f32 buffer, in place when nothing else holds it, compiled for the
//! widest vector instructions the CPU has (the `simd` feature) and split
//! over the thread pool (`parallel`); any other tensor takes the composed
//! path. This crate is the only one that names the CPU backend's tensor type
//! or asks whether a tensor lives on the CPU; the runtime and the models
//! call these ops and never probe the device.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod adam;
pub mod attention;
pub mod bias;
#[cfg(test)]
mod check;
mod cpu;
pub mod gelu;
pub mod layer_norm;
pub mod layout;
pub mod linear;
pub mod rng;
pub mod softmax;
#[cfg(feature = "std")]
pub mod threads;

pub use adam::{AdamStep, Moments, adam_step};

/// `x` in fp32 when it is in a reduced type (f16, bf16); f32 and f64 stay as
/// they are. For norms, softmax, losses and reductions under autocast.
pub fn to_f32<const D: usize>(x: burn::tensor::Tensor<D>) -> burn::tensor::Tensor<D> {
    use burn::tensor::{DType, FloatDType};
    match x.dtype() {
        DType::F16 | DType::BF16 => x.cast(FloatDType::F32),
        _ => x,
    }
}

/// The CPU device: Burn's CPU backend (burn-flex), without autodiff.
pub fn cpu_device() -> burn::tensor::Device {
    burn::tensor::Device::flex()
}
pub use attention::attention;
pub use bias::add_bias;
pub use gelu::gelu;
pub use layer_norm::layer_norm;
pub use linear::{linear, matmul_keeping_lhs};
pub use softmax::{attention_softmax, softmax};
