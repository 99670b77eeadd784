//! # ember-models
//!
//! Model definitions for Ember whose parameter paths match their PyTorch
//! originals, so that a `state_dict` exported from PyTorch loads by name.
//!
//! * [`mlp`]: multi-layer perceptrons (the networks of the ML-Core seed), with
//!   `nn.Sequential`-compatible naming.
//! * [`simple_net`]: the seed's `SimpleNet` (`fc1`, `dropout`, `fc2`).
//! * [`batchnorm`]: `BatchNorm1d` with PyTorch's running statistics (unbiased
//!   running variance — Burn's own `BatchNorm` keeps the biased one).
//! * [`residual`]: residual MLP blocks (batch norm + skip connections).
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

pub mod batchnorm;
pub mod mlp;
pub mod residual;
pub mod simple_net;
