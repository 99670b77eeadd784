//! # ember-capi
//!
//! The C ABI of Ember: create, load, run, fine-tune and save multi-layer
//! perceptrons from C (or any language with a C FFI). The header is
//! `include/ember.h`, generated from this crate by `cbindgen`; the library is
//! built as `libember_capi.a` and `libember_capi.so` (`.dylib`, `.dll`).
//! `docs/capi.md` has the overview: building, linking, error handling,
//! ownership and threads.
//!
//! The Rust side is split into safe modules, which do the work, and
//! [`ffi`], the one module with `unsafe` code, which checks every pointer,
//! turns C arguments into Rust values, catches panics and reports errors:
//!
//! * [`mlp`]: the network behind an `EmberMlp*` ([`EmberMlp`]): inference,
//!   accuracy, safetensors with PyTorch names.
//! * [`train`]: the trainer behind an `EmberTrainer*` ([`EmberTrainer`]):
//!   AdamW steps and whole epochs with the runtime's `Trainer`.
//! * [`config`]: the structures C fills in and their checked forms.
//! * [`status`]: [`EmberStatus`] and the error type behind it.
//! * [`last_error`]: the per-thread message behind `ember_last_error`.
//!
//! The sentence encoder is not exposed: it would bring the `tokenizers`
//! crate into the library.

pub mod config;
pub mod ffi;
pub mod last_error;
pub mod mlp;
pub mod status;
pub mod train;

pub use config::{EmberFitReport, EmberMlpConfig, EmberSchedule, EmberTrainConfig, EmberTrainable};
pub use mlp::EmberMlp;
pub use status::{EmberStatus, Failure};
pub use train::EmberTrainer;
