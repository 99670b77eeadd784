//! The training loop as a library: epochs or steps, gradient accumulation,
//! schedules, global clipping, evaluation, early stopping, callbacks, and the
//! diagnostics a run on a device needs built in.
//!
//! [`Trainer::fit`] runs what a hand-written PyTorch loop does
//! (`zero_grad → forward → loss / accum → backward → … → clip → step →
//! scheduler.step`) with these additions:
//!
//! * **Anomaly detection.** A non-finite loss, or a non-finite gradient after
//!   accumulation, skips the optimizer step and is reported as an [`Anomaly`]
//!   naming the first parameter path whose gradient is not finite. After
//!   [`TrainerConfig::max_bad_steps`] bad steps in a row the model and
//!   optimizer roll back to the last good checkpoint (the newest one written,
//!   or the state at the start); after [`TrainerConfig::max_rollbacks`]
//!   rollbacks the run stops with [`Error::Diverged`](crate::Error::Diverged).
//! * **Gradient monitoring.** Every step's total gradient norm goes through a
//!   [`GradMonitor`](crate::diagnostics::GradMonitor); large norms are reported as [`Event::Warning`].
//! * **Reproducibility.** The device RNG is seeded with `seed + step` before
//!   each step and the data order of an epoch depends on `(seed, epoch)` only,
//!   so a run resumed from a checkpoint is bit-identical to one that never
//!   stopped.
//! * **Mixed precision.** [`TrainerConfig::with_precision`] runs forward and
//!   backward under [`autocast`](crate::precision::autocast) with fp32 master
//!   weights; for f16 a [`LossScaler`](crate::precision::LossScaler) scales
//!   the loss, unscales the gradients before callbacks and clipping, and skips
//!   steps whose gradients overflow ([`Event::Overflow`]).
//! * **Recomputation.** [`Trainer::fit_with`] takes any [`Objective`];
//!   [`Recomputed`](crate::recompute::Recomputed) trains a [`Segmented`](crate::recompute::Segmented) model with segment recomputation.
//! * **Checkpoints** (std): with [`Trainer::with_checkpointer`] a checkpoint is
//!   written at the end of every epoch and every
//!   [`TrainerConfig::checkpoint_every`] steps, and [`Trainer::resume`]
//!   continues from the newest valid one.
//!
//! ```
//! use burn::nn::{Linear, LinearConfig};
//! use burn::tensor::{Device, Tensor, TensorData};
//! use ember_runtime::loss::mse;
//! use ember_runtime::optim;
//! use ember_runtime::schedule::Constant;
//! use ember_runtime::train::{Dataset, Output, Trainer, TrainerConfig};
//! use ember_runtime::Error;
//!
//! /// y = 2x: one feature, one target per row.
//! struct Line(Vec<f32>);
//! impl Dataset for Line {
//!     type Batch = (Tensor<2>, Tensor<2>);
//!     fn len(&self) -> usize { self.0.len() }
//!     fn batch(&self, indices: &[usize], device: &Device) -> Result<Self::Batch, Error> {
//!         let x: Vec<f32> = indices.iter().map(|&i| self.0[i]).collect();
//!         let y: Vec<f32> = x.iter().map(|v| 2.0 * v).collect();
//!         let n = x.len();
//!         Ok((Tensor::from_data(TensorData::new(x, [n, 1]), device),
//!             Tensor::from_data(TensorData::new(y, [n, 1]), device)))
//!     }
//! }
//!
//! let device = ember_runtime::device::cpu().autodiff();
//! device.seed(0);
//! let model: Linear = LinearConfig::new(1, 1).init(&device);
//! let data = Line((0..32).map(|i| i as f32 / 32.0).collect());
//! let config = TrainerConfig::new(8).with_epochs(40);
//! let mut trainer = Trainer::new(config, Constant::new(0.5), device);
//! let fit = trainer
//!     .fit(model, optim::sgd(0.0).init(), &data, Some(&data), |m: &Linear, (x, y): &(Tensor<2>, Tensor<2>)| {
//!         Output::new(mse(m.forward(x.clone()), y.clone()), x.dims()[0])
//!     })
//!     .unwrap();
//! let last = fit.history.evals.last().unwrap();
//! assert!(last.loss < 1e-3, "{last:?}");
//! ```
//!
//! The loop reads top to bottom in [`Trainer::fit_with`]; the parts it is
//! built from are one module each: its configuration, the objective and
//! data it trains on, the state a checkpoint keeps, the events it reports,
//! and the checkpoints (std).

mod config;
mod events;
mod fit;
mod objective;
mod state;

#[cfg(feature = "std")]
pub mod checkpoint;

pub use config::{EarlyStopping, TrainerConfig};
pub use events::{
    Anomaly, AnomalyKind, Callback, EvalRecord, Event, History, StepRecord, StopReason,
};
pub use fit::{Fit, Trainer};
pub use objective::{Dataset, ForwardFn, Objective, Output, evaluate};
pub use state::{TrainState, epoch_order};
