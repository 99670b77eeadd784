//! Activations whose gradients are exact on every backend.
//!
//! Burn 0.22.1's CPU backend (burn-flex) differentiates GELU exactly, but
//! the backend-generic `gelu_backward` that the CubeCL backends (wgpu, CUDA)
//! inherit is the derivative of GELU's *tanh approximation*, while their
//! forward pass is the exact, erf-based GELU. Gradients through GELU then
//! differ from PyTorch's by up to ~1e-3 of their scale — enough to move
//! every LoRA gradient of a BERT encoder by ~0.1 %. [`gelu()`] is one
//! differentiable op whose backward is erf's exact derivative on every
//! backend, keeping only its input; on the CPU it is vectorised.
//!
//! [`softmax()`] is one differentiable op that keeps only its output for
//! backward (Burn's decomposition keeps the exponentials and the sums);
//! [`attention_softmax`] is the same op with attention's score scaling and
//! key mask folded in.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use ember_runtime::activation::gelu;
//!
//! let x = Tensor::<1>::from_floats([-1.0, 0.0, 1.0], &Device::flex());
//! let y: Vec<f32> = gelu(x).into_data().to_vec().unwrap();
//! assert!((y[2] - 0.841_344_7).abs() < 1e-6 && y[1] == 0.0);
//! ```

mod gelu;
mod softmax;
pub use gelu::gelu;
pub use softmax::{attention_softmax, softmax};
