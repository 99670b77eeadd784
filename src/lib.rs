//! # Ember
//!
//! An embeddable Rust runtime that runs *and fine-tunes* small neural networks
//! on edge devices, with PyTorch's numbers.
//!
//! This facade re-exports the two library crates:
//!
//! * [`runtime`] (`ember-runtime`): training machinery on top of Burn —
//!   global-norm clipping, gradient diagnostics, no_std schedules, PyTorch
//!   losses, optimizer defaults.
//! * [`models`] (`ember-models`): model definitions with PyTorch parameter names.
//!
//! and [`burn`] itself, so one dependency is enough:
//!
//! ```
//! use ember::burn::tensor::{Device, Tensor};
//! use ember::models::mlp::MlpConfig;
//!
//! let device = ember::runtime::device::cpu().autodiff();
//! let model = MlpConfig::new(vec![4, 8, 1]).init(&device);
//! let y = model.forward(Tensor::<2>::ones([2, 4], &device));
//! assert_eq!(y.dims(), [2, 1]);
//! ```
#![deny(unsafe_code)]

pub use burn;
pub use ember_models as models;
pub use ember_runtime as runtime;
