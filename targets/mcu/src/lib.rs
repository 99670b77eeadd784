//! # ember-mcu
//!
//! An online learner for sensor streams on microcontrollers, built on
//! `ember-runtime` and Burn's flex backend with autodiff, without `std`.
//!
//! * [`sensor`]: the [`Sensor`] trait and [`I2cSensor`], which reads a
//!   16-bit register of an I²C device through `embedded_hal::i2c::I2c`.
//! * [`Learner`]: a tiny model (two linear layers on a window of recent
//!   samples) that predicts the next sample and learns from each new one with
//!   SGD or Adam ([`ember_runtime::optim`]), one sample or a mini-batch at a
//!   time, paced by `embedded_hal::delay::DelayNs`.
//! * A fixed heap budget is part of the API: [`LearnerConfig::heap_budget`]
//!   states it, [`LearnerConfig::heap_estimate`] says what the learner needs
//!   (parameters, gradients, optimizer state, activations, autodiff and
//!   persistence overhead, calibrated by measurement) and [`Learner::new`]
//!   returns [`Error::HeapBudget`] rather than allocate past it.
//! * [`storage`]: weights persisted and restored as safetensors bytes with
//!   PyTorch's `nn.Sequential` names (`0.weight`, `0.bias`, `2.weight`,
//!   `2.bias`) through the [`Storage`] trait.
//!
//! ```
//! use ember_mcu::{Learner, LearnerConfig, Optimizer};
//!
//! let config = LearnerConfig::new(8, 8).with_optimizer(Optimizer::Adam).with_lr(0.01);
//! let mut learner = Learner::new(config)?;
//! for t in 0..200 {
//!     let x = libm::sinf(t as f32 * 0.4);
//!     learner.observe(x); // predicts x from the previous 8 samples, then learns from it
//! }
//! let prediction = learner.predict().expect("the window is full");
//! assert!(prediction.is_finite());
//! # Ok::<(), ember_mcu::Error>(())
//! ```
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

mod error;
mod learner;
pub mod sensor;
pub mod storage;

pub use error::Error;
pub use learner::{HeapEstimate, Learner, LearnerConfig, Optimizer, RunStats};
pub use sensor::{I2cSensor, Sensor};
pub use storage::{RamStorage, Storage, StorageError};
