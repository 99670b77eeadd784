//! # ember-runtime
//!
//! The training half of an on-device ML runtime, on top of [Burn](burn): what
//! Burn does not provide for PyTorch-faithful fine-tuning on small machines.
//!
//! * [`ops`]: the ops layer beneath (the crate `ember-ops`): GELU,
//!   softmax, layer norm, linear layers, attention and the Adam update as
//!   differentiable ops with their CPU kernels; weight layouts, the thread
//!   pool, the random generator.
//! * [`checkpoint`] (std): atomic, verified checkpoints (model, optimizer,
//!   training state), keep-last-N, resume from the newest valid one.
//! * [`clip`]: global-norm gradient clipping with `torch.nn.utils.clip_grad_norm_`
//!   semantics (L2, L∞ and any p-norm; the total norm is returned, non-finite
//!   norms are reported).
//! * [`device`]: choosing the compute device (CPU, wgpu, Vulkan, Metal,
//!   CUDA) by name, checked against what the build has, with errors instead
//!   of Burn's default-device guess.
//! * [`diagnostics`]: per-parameter gradient and weight norms by parameter path,
//!   the global norm, and a configurable large-gradient warning.
//! * [`schedule`]: learning-rate schedules that need no `std` (constant, step,
//!   linear warm-up, cosine annealing, warm-up + cosine), equal to PyTorch's.
//! * [`optim`]: Burn's optimizers configured with PyTorch's defaults, and the
//!   documented differences.
//! * [`loss`]: MSE, BCE-with-logits with float targets, cross-entropy.
//! * [`io`] (std): safetensors in and out with PyTorch names and layouts,
//!   strict loading that lists every problem, atomic writes.
//! * [`peft`]: LoRA as `x·A·B` (never the dense ΔW in training), merge/unmerge,
//!   peft-compatible names.
//! * [`precision`]: mixed precision: an autocast policy (f16/bf16 compute,
//!   fp32 master weights, PyTorch's op lists, no low-precision weight copies
//!   kept for backward) and a dynamic loss scaler with `GradScaler`
//!   semantics.
//! * [`recompute`]: segment recomputation like `torch.utils.checkpoint`
//!   (every k blocks, automatic √L, or Burn's balanced checkpointing), with
//!   dropout replayed.
//! * [`data`]: checks of training data before training (non-finite
//!   features, empty inputs, label range, class balance).
//! * [`freeze`]: freezing by parameter path; LoRA-only, bias-only and
//!   head-only training.
//! * [`lr_find`]: the learning-rate range test.
//! * [`memory`]: a counting global allocator (live bytes, peak, allocation
//!   count) with an optional heap budget.
//! * [`plan`]: choosing batch size, precision and recomputation for a
//!   memory budget, from measured peaks.
//! * [`params`]: walking a module's parameters by path.
//! * [`train`]: the training loop as a library ([`train::Trainer`]): gradient
//!   accumulation, evaluation, early stopping, callbacks, anomaly detection
//!   with rollback, checkpoints and resumption.
//!
//! The crate is `#![no_std]` with `alloc`; the `std` feature (on by default)
//! only adds conveniences (Burn's `LrScheduler` adapter, `std::error::Error`
//! comes for free from `core::error::Error`).
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod clip;
pub mod data;
pub mod device;
pub mod diagnostics;
mod error;
pub mod freeze;
#[cfg(feature = "std")]
pub mod io;
pub mod loss;
pub mod lr_find;
pub mod memory;
pub mod optim;
pub mod params;
pub mod peft;
pub mod plan;
pub mod precision;
pub mod recompute;
pub mod schedule;
pub mod train;

/// The ops layer: differentiable ops and CPU kernels (the crate `ember-ops`).
pub use ember_ops as ops;
/// The one generator for Ember's own random decisions.
pub use ember_ops::rng;
pub use error::Error;
/// Crash-safe training checkpoints (std), part of [`train`].
#[cfg(feature = "std")]
pub use train::checkpoint;

/// Re-export of the Burn version Ember is built on.
pub use burn;
