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
//!   rollbacks the run stops with [`Error::Diverged`].
//! * **Gradient monitoring.** Every step's total gradient norm goes through a
//!   [`GradMonitor`]; large norms are reported as [`Event::Warning`].
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
//!   [`Recomputed`] trains a [`Segmented`] model with segment recomputation.
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
//! let device = Device::flex().autodiff();
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

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor};

use crate::Error;
use crate::clip::{GlobalNormClip, NormType, combine_norms, grad_norms, tensor_is_finite};
use crate::diagnostics::{GradMonitor, GradWarning};
use crate::params::{materialize, parameters};
use crate::precision::{self, LossScalerConfig, Precision};
use crate::recompute::{Segmented, Strategy};
use crate::schedule::Schedule;

/// Everything besides model and optimizer that a resumed run needs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TrainState {
    /// Optimizer steps taken (skipped steps included).
    pub step: u64,
    /// Completed epochs.
    pub epoch: u64,
    /// Position of the data loader in the current epoch (micro-batches consumed).
    pub data_position: u64,
    /// Steps taken by the learning-rate scheduler.
    pub scheduler_steps: u64,
    /// Base seed of the run's randomness.
    pub rng_seed: u64,
    /// The loss scaler's scale (0 when no scaler has run yet).
    pub loss_scale: f64,
    /// The loss scaler's count of good steps since its last change.
    pub scale_growth_tracker: u64,
}

/// Random-access training or evaluation data, assembled into batches on
/// demand.
pub trait Dataset {
    /// What the forward function receives.
    type Batch;
    /// Number of examples.
    fn len(&self) -> usize;
    /// Whether there are no examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The batch of the examples at `indices`, with its tensors on `device`
    /// (an autodiff device while training, a plain one while evaluating).
    fn batch(&self, indices: &[usize], device: &Device) -> Result<Self::Batch, Error>;
}

/// What the forward function returns for one batch.
#[derive(Debug, Clone)]
pub struct Output {
    /// The mean loss over the batch (a one-element tensor).
    pub loss: Tensor<1>,
    /// Number of examples in the batch (weights the mean when averaging).
    pub count: usize,
    /// Number of correct predictions, for tasks that have an accuracy.
    pub correct: Option<usize>,
}

impl Output {
    /// A loss over `count` examples.
    pub fn new(loss: Tensor<1>, count: usize) -> Self {
        Self {
            loss,
            count,
            correct: None,
        }
    }

    /// Adds the number of correct predictions.
    pub fn with_correct(mut self, correct: usize) -> Self {
        self.correct = Some(correct);
        self
    }

    /// Cross-entropy of `logits` (`[batch, classes]`) against class indices,
    /// with the number of arg-max predictions equal to the target.
    pub fn classification(logits: Tensor<2>, targets: Tensor<1, Int>) -> Self {
        let count = targets.dims()[0];
        let correct = logits
            .clone()
            .detach()
            .argmax(1)
            .squeeze_dim::<1>(1)
            .equal(targets.clone())
            .int()
            .sum()
            .into_scalar::<i64>();
        Self {
            loss: crate::loss::cross_entropy(logits, targets),
            count,
            correct: Some(correct.max(0) as usize),
        }
    }
}

/// How a model computes a batch's loss, and its gradients.
///
/// Any `Fn(&M, &Batch) -> Output` is an objective whose gradients come from
/// one backward pass of the loss; [`Recomputed`] is one whose gradients come
/// from segment recomputation.
pub trait Objective<M, B> {
    /// The output of `model` on `batch` (also used for evaluation).
    fn forward(&self, model: &M, batch: &B) -> Output;
    /// The output (its loss detached) and the gradients of the loss times
    /// `loss_scale`.
    fn forward_backward(&self, model: &M, batch: &B, loss_scale: f64) -> (Output, GradientsParams);
}

impl<M, B, O: Objective<M, B> + ?Sized> Objective<M, B> for &O {
    fn forward(&self, model: &M, batch: &B) -> Output {
        (**self).forward(model, batch)
    }
    fn forward_backward(&self, model: &M, batch: &B, loss_scale: f64) -> (Output, GradientsParams) {
        (**self).forward_backward(model, batch, loss_scale)
    }
}

/// A forward function as an [`Objective`].
pub struct ForwardFn<F>(pub F);

impl<M: Module, B, F: Fn(&M, &B) -> Output> Objective<M, B> for ForwardFn<F> {
    fn forward(&self, model: &M, batch: &B) -> Output {
        (self.0)(model, batch)
    }
    fn forward_backward(&self, model: &M, batch: &B, loss_scale: f64) -> (Output, GradientsParams) {
        let mut out = (self.0)(model, batch);
        let loss = crate::recompute::scaled(out.loss.clone(), loss_scale);
        let grads = GradientsParams::from_grads(loss.backward(), model);
        out.loss = out.loss.detach();
        (out, grads)
    }
}

/// A [`Segmented`] model trained with a recomputation [`Strategy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recomputed<const D: usize>(pub Strategy);

impl<const D: usize, M: Segmented<D>> Objective<M, M::Batch> for Recomputed<D> {
    fn forward(&self, model: &M, batch: &M::Batch) -> Output {
        crate::recompute::forward(model, batch)
    }
    fn forward_backward(
        &self,
        model: &M,
        batch: &M::Batch,
        loss_scale: f64,
    ) -> (Output, GradientsParams) {
        crate::recompute::forward_backward(model, batch, self.0, loss_scale)
    }
}

/// Stop when the validation loss has not improved for a while.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EarlyStopping {
    /// Evaluations without improvement before stopping.
    pub patience: usize,
    /// The least decrease of the validation loss that counts as improvement.
    pub min_delta: f64,
    /// Return the model of the best evaluation instead of the last one.
    pub restore_best: bool,
}

impl EarlyStopping {
    /// Stop after `patience` evaluations without improvement, keep the best model.
    pub fn new(patience: usize) -> Self {
        Self {
            patience,
            min_delta: 0.0,
            restore_best: true,
        }
    }
}

/// How a [`Trainer`] runs.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerConfig {
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Epochs to run (ignored when `max_steps` is set).
    pub epochs: usize,
    /// Optimizer steps to run instead of whole epochs.
    pub max_steps: Option<u64>,
    /// Micro-batches whose gradients are summed (each loss divided by this
    /// number, as in PyTorch) before one optimizer step.
    pub grad_accumulation: usize,
    /// Evaluate every this many steps; in any case at the end of each epoch.
    pub eval_every: Option<u64>,
    /// Early stopping on the validation loss.
    pub early_stopping: Option<EarlyStopping>,
    /// Global-norm clipping before each step.
    pub clip: Option<GlobalNormClip>,
    /// Total gradient norm above which a warning is reported.
    pub grad_warning_threshold: f64,
    /// Consecutive bad (skipped) steps that trigger a rollback.
    pub max_bad_steps: usize,
    /// Rollbacks after which the run fails with [`Error::Diverged`].
    pub max_rollbacks: usize,
    /// Write a checkpoint every this many steps (besides each epoch's end).
    pub checkpoint_every: Option<u64>,
    /// Shuffle the training data each epoch.
    pub shuffle: bool,
    /// Base seed of the data order and of the per-step device RNG.
    pub seed: u64,
    /// Compute precision (forward and backward run under
    /// [`autocast`](crate::precision::autocast); weights stay fp32).
    pub precision: Precision,
    /// Dynamic loss scaling (on by default for f16, off otherwise).
    pub loss_scaler: LossScalerConfig,
}

impl TrainerConfig {
    /// One epoch of micro-batches of `batch_size`, no accumulation, no clipping,
    /// rollback after 3 bad steps in a row, at most 3 rollbacks, seed 0.
    pub fn new(batch_size: usize) -> Self {
        Self {
            batch_size,
            epochs: 1,
            max_steps: None,
            grad_accumulation: 1,
            eval_every: None,
            early_stopping: None,
            clip: None,
            grad_warning_threshold: 5.0,
            max_bad_steps: 3,
            max_rollbacks: 3,
            checkpoint_every: None,
            shuffle: true,
            seed: 0,
            precision: Precision::Fp32,
            loss_scaler: LossScalerConfig {
                enabled: false,
                ..LossScalerConfig::default()
            },
        }
    }
    /// Computes in `precision` with fp32 master weights; turns on
    /// `GradScaler`-style loss scaling for f16 (off for fp32 and bf16).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self.loss_scaler.enabled = precision == Precision::F16;
        self
    }
    /// Sets the loss scaler (e.g. to force it on for bf16 or change its interval).
    pub fn with_loss_scaler(mut self, scaler: LossScalerConfig) -> Self {
        self.loss_scaler = scaler;
        self
    }
    /// Sets the number of epochs.
    pub fn with_epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }
    /// Runs this many optimizer steps instead of whole epochs.
    pub fn with_max_steps(mut self, steps: u64) -> Self {
        self.max_steps = Some(steps);
        self
    }
    /// Sums the gradients of `micro_batches` micro-batches per step.
    pub fn with_grad_accumulation(mut self, micro_batches: usize) -> Self {
        self.grad_accumulation = micro_batches;
        self
    }
    /// Evaluates every `steps` steps.
    pub fn with_eval_every(mut self, steps: u64) -> Self {
        self.eval_every = Some(steps);
        self
    }
    /// Stops early on the validation loss.
    pub fn with_early_stopping(mut self, early: EarlyStopping) -> Self {
        self.early_stopping = Some(early);
        self
    }
    /// Clips the global gradient norm before each step.
    pub fn with_clip(mut self, clip: GlobalNormClip) -> Self {
        self.clip = Some(clip);
        self
    }
    /// Warns about total gradient norms above `threshold`.
    pub fn with_grad_warning_threshold(mut self, threshold: f64) -> Self {
        self.grad_warning_threshold = threshold;
        self
    }
    /// Rolls back after `bad_steps` bad steps in a row, fails after `rollbacks` rollbacks.
    pub fn with_anomaly_policy(mut self, bad_steps: usize, rollbacks: usize) -> Self {
        self.max_bad_steps = bad_steps;
        self.max_rollbacks = rollbacks;
        self
    }
    /// Writes a checkpoint every `steps` steps.
    pub fn with_checkpoint_every(mut self, steps: u64) -> Self {
        self.checkpoint_every = Some(steps);
        self
    }
    /// Shuffles (or not) the training data each epoch.
    pub fn with_shuffle(mut self, shuffle: bool) -> Self {
        self.shuffle = shuffle;
        self
    }
    /// Sets the base seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    fn validate(&self, examples: usize) -> Result<(), Error> {
        let bad = |message: String| Err(Error::InvalidArgument { message });
        if self.batch_size == 0 || self.grad_accumulation == 0 {
            return bad(format!(
                "batch size and gradient accumulation must be at least 1 (got {} and {})",
                self.batch_size, self.grad_accumulation
            ));
        }
        if self.max_steps.is_none() && self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if examples == 0 {
            return bad("the training data is empty".into());
        }
        if self.max_bad_steps == 0 {
            return bad("max_bad_steps must be at least 1".into());
        }
        Ok(())
    }
}

/// What happened in one optimizer step that was taken.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// Step index (0-based).
    pub step: u64,
    /// Epoch the step belongs to.
    pub epoch: u64,
    /// Mean loss over the step's micro-batches.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Total gradient norm before clipping.
    pub grad_norm: f64,
    /// Training examples in the step.
    pub examples: usize,
    /// Training accuracy of the step, when the forward function reports one.
    pub accuracy: Option<f64>,
}

/// One evaluation on the validation data.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRecord {
    /// Steps taken when evaluating.
    pub step: u64,
    /// Epoch during or after which it ran.
    pub epoch: u64,
    /// Mean loss over all examples.
    pub loss: f64,
    /// Accuracy, when the forward function reports correct predictions.
    pub accuracy: Option<f64>,
    /// Examples evaluated.
    pub examples: usize,
}

/// What was not finite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnomalyKind {
    /// The loss of a micro-batch.
    Loss,
    /// A gradient after accumulation (and callbacks).
    Gradient,
}

/// A skipped step.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    /// The step that was skipped.
    pub step: u64,
    /// What was not finite.
    pub kind: AnomalyKind,
    /// The first parameter (declaration order) whose gradient is not finite
    /// (for a non-finite loss: after backpropagating it).
    pub path: Option<String>,
    /// The loss or total gradient norm that was seen.
    pub value: f64,
}

impl core::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match (self.kind, &self.path) {
            (AnomalyKind::Loss, Some(p)) => {
                write!(
                    f,
                    "step {}: the loss is {} (first non-finite gradient: `{p}`); step skipped",
                    self.step, self.value
                )
            }
            (AnomalyKind::Loss, None) => write!(
                f,
                "step {}: the loss is {}; step skipped",
                self.step, self.value
            ),
            (AnomalyKind::Gradient, Some(p)) => {
                write!(
                    f,
                    "step {}: the gradient of `{p}` is not finite (total norm {}); step skipped",
                    self.step, self.value
                )
            }
            (AnomalyKind::Gradient, None) => write!(
                f,
                "step {}: the total gradient norm is {}; step skipped",
                self.step, self.value
            ),
        }
    }
}

/// Something a [`Callback`] is told about.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The run starts at this step (0, or the resumed step) of this many.
    Start {
        /// First step to run.
        step: u64,
        /// Step at which the run ends.
        total_steps: u64,
    },
    /// An optimizer step was taken.
    Step(&'a StepRecord),
    /// A step was skipped.
    Anomaly(&'a Anomaly),
    /// The loss scaler found non-finite gradients: the step was skipped and
    /// the scale lowered (normal in f16 training now and then).
    Overflow {
        /// The step.
        step: u64,
        /// The scale that overflowed.
        scale: f64,
        /// The scale from now on.
        new_scale: f64,
    },
    /// A gradient norm deserves attention.
    Warning {
        /// The step.
        step: u64,
        /// Why.
        warning: GradWarning,
    },
    /// Model and optimizer went back to an earlier state.
    Rollback {
        /// The step at which it happened.
        step: u64,
        /// The step of the state restored.
        to_step: u64,
    },
    /// An evaluation finished.
    Eval(&'a EvalRecord),
    /// A checkpoint was written.
    Checkpoint {
        /// Its step.
        step: u64,
        /// Where.
        path: &'a str,
    },
    /// Early stopping ended the run.
    EarlyStop {
        /// The step at which it stopped.
        step: u64,
        /// The step of the best evaluation.
        best_step: u64,
        /// The best validation loss.
        best_loss: f64,
    },
    /// Information worth a line in a log (resumption, skipped checkpoints).
    Message(&'a str),
}

/// Hooks into a [`Trainer`] run.
pub trait Callback<M> {
    /// Called for every event.
    fn on_event(&mut self, _event: &Event<'_>) {}
    /// Called with the accumulated gradients of each step, before the anomaly
    /// check, clipping and the optimizer step; may change them.
    fn on_gradients(&mut self, _step: u64, _model: &M, _grads: &mut GradientsParams) {}
}

impl<M, F: FnMut(&Event<'_>)> Callback<M> for F {
    fn on_event(&mut self, event: &Event<'_>) {
        self(event)
    }
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StopReason {
    /// All epochs or steps ran.
    Completed,
    /// Early stopping.
    EarlyStopped {
        /// The step of the best evaluation (whose model is returned when
        /// `restore_best` is set).
        best_step: u64,
    },
}

/// Everything recorded during a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Every step taken.
    pub steps: Vec<StepRecord>,
    /// Every evaluation.
    pub evals: Vec<EvalRecord>,
    /// Every skipped step.
    pub anomalies: Vec<Anomaly>,
    /// Steps at which a rollback happened.
    pub rollbacks: Vec<u64>,
    /// Steps skipped by the loss scaler (gradients overflowed), with the
    /// scale that overflowed.
    pub overflows: Vec<(u64, f64)>,
}

/// The result of [`Trainer::fit`].
pub struct Fit<M> {
    /// The trained model (the best one under early stopping with `restore_best`).
    pub model: M,
    /// The optimizer with its state.
    pub optimizer: ModuleOptimizer,
    /// The final training state.
    pub state: TrainState,
    /// What happened.
    pub history: History,
    /// Why the run ended.
    pub stop: StopReason,
}

/// Runs training loops. See the [module documentation](self).
pub struct Trainer<'a, M> {
    config: TrainerConfig,
    schedule: Box<dyn Schedule + 'a>,
    device: Device,
    callbacks: Vec<Box<dyn Callback<M> + 'a>>,
    #[cfg(feature = "std")]
    checkpointer: Option<crate::checkpoint::Checkpointer>,
    #[cfg(feature = "std")]
    resume: bool,
}

/// The permutation of `0..n` used in `epoch` (identity without shuffling).
pub fn epoch_order(n: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        // SplitMix64 seeded by (seed, epoch); Fisher–Yates.
        let mut state = seed ^ epoch.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        for i in (1..n).rev() {
            order.swap(i, (next() % (i as u64 + 1)) as usize);
        }
    }
    order
}

/// The first parameter of `model` whose gradient in `grads` is not finite.
pub fn first_non_finite_grad<M: Module>(model: &M, grads: &GradientsParams) -> Option<String> {
    parameters(model, Some(grads))
        .into_iter()
        .find(|e| {
            e.grad
                .as_ref()
                .is_some_and(|g| !tensor_is_finite(g.clone()))
        })
        .map(|e| e.path)
}

/// Mean loss (and accuracy) of `model` over `data`, in batches of
/// `batch_size`, without gradients. `model` should be in evaluation mode
/// (`model.valid()`) and `device` a plain (non-autodiff) device.
pub fn evaluate<M, D: Dataset>(
    model: &M,
    data: &D,
    batch_size: usize,
    device: &Device,
    forward: impl Fn(&M, &D::Batch) -> Output,
) -> Result<EvalRecord, Error> {
    let mut loss = 0.0;
    let mut count = 0usize;
    let mut correct = None::<usize>;
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let out = forward(model, &data.batch(chunk, device)?);
        loss += f64::from(out.loss.into_scalar::<f32>()) * out.count as f64;
        count += out.count;
        if let Some(c) = out.correct {
            correct = Some(correct.unwrap_or(0) + c);
        }
    }
    let n = count.max(1) as f64;
    Ok(EvalRecord {
        step: 0,
        epoch: 0,
        loss: loss / n,
        accuracy: correct.map(|c| c as f64 / n),
        examples: count,
    })
}

fn emit<M>(callbacks: &mut [Box<dyn Callback<M> + '_>], event: Event<'_>) {
    for cb in callbacks.iter_mut() {
        cb.on_event(&event);
    }
}

impl<'a, M: Module> Trainer<'a, M> {
    /// A trainer with `config`, learning rates from `schedule` (indexed by
    /// step) and training on `device` (an autodiff device).
    pub fn new(config: TrainerConfig, schedule: impl Schedule + 'a, device: Device) -> Self {
        Self {
            config,
            schedule: Box::new(schedule),
            device,
            callbacks: Vec::new(),
            #[cfg(feature = "std")]
            checkpointer: None,
            #[cfg(feature = "std")]
            resume: false,
        }
    }

    /// Adds a callback (any `FnMut(&Event)` is one).
    pub fn with_callback(mut self, callback: impl Callback<M> + 'a) -> Self {
        self.callbacks.push(Box::new(callback));
        self
    }

    /// Writes checkpoints with `checkpointer`.
    #[cfg(feature = "std")]
    pub fn with_checkpointer(mut self, checkpointer: crate::checkpoint::Checkpointer) -> Self {
        self.checkpointer = Some(checkpointer);
        self
    }

    /// Continues from the checkpointer's newest valid checkpoint, if any.
    #[cfg(feature = "std")]
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    /// Trains `model` with `optimizer` on `train`, evaluating on `valid`.
    /// `forward` maps a model and a batch to the loss (and optionally the
    /// number of correct predictions); it is called with the training model
    /// while training and with `model.valid()` while evaluating.
    ///
    /// # Errors
    /// Invalid configuration, empty data, errors of the data set or the
    /// checkpointer, and [`Error::Diverged`] after too many rollbacks.
    pub fn fit<D: Dataset>(
        &mut self,
        model: M,
        optimizer: ModuleOptimizer,
        train: &D,
        valid: Option<&D>,
        forward: impl Fn(&M, &D::Batch) -> Output,
    ) -> Result<Fit<M>, Error> {
        self.fit_with(model, optimizer, train, valid, ForwardFn(forward))
    }

    /// [`fit`](Self::fit) with any [`Objective`], e.g. [`Recomputed`] for
    /// segment recomputation.
    ///
    /// # Errors
    /// As [`fit`](Self::fit).
    pub fn fit_with<D: Dataset>(
        &mut self,
        mut model: M,
        mut optimizer: ModuleOptimizer,
        train: &D,
        valid: Option<&D>,
        objective: impl Objective<M, D::Batch>,
    ) -> Result<Fit<M>, Error> {
        let c = self.config.clone();
        let forward =
            |m: &M, b: &D::Batch| precision::autocast(c.precision, || objective.forward(m, b));
        let mut scaler = c.loss_scaler.init();
        c.validate(train.len())?;
        let micro_per_epoch = train.len().div_ceil(c.batch_size);
        let steps_per_epoch = micro_per_epoch.div_ceil(c.grad_accumulation) as u64;
        let total_steps = c.max_steps.unwrap_or(steps_per_epoch * c.epochs as u64);
        let eval_device = self.device.clone().without_autodiff();
        let mut state = TrainState {
            rng_seed: c.seed,
            ..Default::default()
        };
        // Lazily initialised parameters take their values here, not at the
        // first step (whose RNG seed depends on the step it starts from).
        model = materialize(model);

        #[cfg(feature = "std")]
        if self.resume
            && let Some(ckpt) = &self.checkpointer
        {
            match ckpt.resume(model.clone(), optimizer.clone())? {
                Some(r) => {
                    for s in &r.skipped {
                        emit(
                            &mut self.callbacks,
                            Event::Message(&format!("warning: skipped checkpoint {s}")),
                        );
                    }
                    let msg = format!("resuming from {} (step {})", r.path.display(), r.state.step);
                    emit(&mut self.callbacks, Event::Message(&msg));
                    model = r.model;
                    optimizer = r.optimizer;
                    state = r.state;
                    if state.loss_scale > 0.0 {
                        scaler.load_state((state.loss_scale, state.scale_growth_tracker));
                    }
                }
                None => emit(
                    &mut self.callbacks,
                    Event::Message("no checkpoint found; starting from the beginning"),
                ),
            }
        }

        let mut history = History::default();
        let mut monitor = GradMonitor::new(c.grad_warning_threshold);
        let mut last_good = (model.clone(), optimizer.clone(), state);
        let mut best: Option<(f64, u64, Option<M>)> = None;
        let mut evals_without_improvement = 0usize;
        let mut bad_in_row = 0usize;
        let mut stop = StopReason::Completed;
        emit(
            &mut self.callbacks,
            Event::Start {
                step: state.step,
                total_steps,
            },
        );

        'run: while state.step < total_steps {
            let epoch = state.step / steps_per_epoch;
            let order = epoch_order(train.len(), c.seed, epoch, c.shuffle);
            let micro: Vec<&[usize]> = order.chunks(c.batch_size).collect();
            let first_group = (state.step % steps_per_epoch) as usize;
            for (g, group) in micro
                .chunks(c.grad_accumulation)
                .enumerate()
                .skip(first_group)
            {
                let step = state.step;
                self.device.seed(c.seed.wrapping_add(step));
                let lr = self.schedule.lr(state.scheduler_steps as usize);
                let mut accumulator = GradientsAccumulator::<M>::new();
                let (mut loss_sum, mut examples, mut correct) = (0.0f64, 0usize, None::<usize>);
                let mut anomaly = None;
                let loss_scale = scaler.scale() / c.grad_accumulation as f64;
                for indices in group {
                    let batch = train.batch(indices, &self.device)?;
                    let (out, grads) = precision::autocast(c.precision, || {
                        objective.forward_backward(&model, &batch, loss_scale)
                    });
                    let loss = out.loss.into_scalar::<f32>();
                    if !loss.is_finite() {
                        // The gradients name the first parameter the
                        // non-finite value reaches.
                        let path = first_non_finite_grad(&model, &grads);
                        anomaly = Some(Anomaly {
                            step,
                            kind: AnomalyKind::Loss,
                            path,
                            value: f64::from(loss),
                        });
                        break;
                    }
                    loss_sum += f64::from(loss);
                    examples += out.count;
                    if let Some(n) = out.correct {
                        correct = Some(correct.unwrap_or(0) + n);
                    }
                    accumulator.accumulate(&model, grads);
                }
                let mut grad_norm = f64::NAN;
                let mut grads = accumulator.grads();
                let mut overflow = false;
                if anomaly.is_none() && scaler.is_enabled() {
                    // Unscale before the callbacks and clipping, so that both
                    // see the true gradients (GradScaler.unscale_).
                    let scale = scaler.scale();
                    overflow = scaler.unscale(&model, &mut grads).found_inf;
                    scaler.update(overflow);
                    if overflow {
                        let new_scale = scaler.scale();
                        emit(
                            &mut self.callbacks,
                            Event::Overflow {
                                step,
                                scale,
                                new_scale,
                            },
                        );
                        history.overflows.push((step, scale));
                    }
                }
                if anomaly.is_none() && !overflow {
                    for cb in self.callbacks.iter_mut() {
                        cb.on_gradients(step, &model, &mut grads);
                    }
                    grad_norm = match &c.clip {
                        Some(clip) => (*clip)
                            .with_error_if_nonfinite(false)
                            .clip(&model, &mut grads)?,
                        None => f64::from(combine_norms(
                            grad_norms(&model, &grads, NormType::L2),
                            NormType::L2,
                        )),
                    };
                    if !grad_norm.is_finite() {
                        let path = first_non_finite_grad(&model, &grads);
                        anomaly = Some(Anomaly {
                            step,
                            kind: AnomalyKind::Gradient,
                            path,
                            value: grad_norm,
                        });
                    }
                }
                if overflow {
                    // A skipped step of the loss scaler. It only counts as bad
                    // once the scale is below 1: then overflow is not the cause.
                    if scaler.scale() < 1.0 {
                        bad_in_row += 1;
                    }
                } else if let Some(a) = anomaly {
                    emit(&mut self.callbacks, Event::Anomaly(&a));
                    history.anomalies.push(a);
                    bad_in_row += 1;
                    if bad_in_row >= c.max_bad_steps {
                        if history.rollbacks.len() >= c.max_rollbacks {
                            return Err(Error::Diverged {
                                step,
                                rollbacks: history.rollbacks.len(),
                            });
                        }
                        model = last_good.0.clone();
                        optimizer = last_good.1.clone();
                        history.rollbacks.push(step);
                        emit(
                            &mut self.callbacks,
                            Event::Rollback {
                                step,
                                to_step: last_good.2.step,
                            },
                        );
                        bad_in_row = 0;
                    }
                } else {
                    bad_in_row = 0;
                    if let Some(warning) = monitor.check(grad_norm) {
                        emit(&mut self.callbacks, Event::Warning { step, warning });
                    }
                    model = optimizer.step(lr, model, grads);
                    let record = StepRecord {
                        step,
                        epoch,
                        loss: loss_sum / group.len() as f64,
                        lr,
                        grad_norm,
                        examples,
                        accuracy: correct.map(|n| n as f64 / examples.max(1) as f64),
                    };
                    emit(&mut self.callbacks, Event::Step(&record));
                    history.steps.push(record);
                }
                (state.loss_scale, state.scale_growth_tracker) = scaler.state();
                state.step += 1;
                state.scheduler_steps += 1;
                let end_of_epoch = state.step.is_multiple_of(steps_per_epoch);
                state.epoch = state.step / steps_per_epoch;
                state.data_position = if end_of_epoch {
                    0
                } else {
                    ((g + 1) * c.grad_accumulation) as u64
                };
                let done = state.step >= total_steps;

                let eval_now = end_of_epoch
                    || done
                    || c.eval_every
                        .is_some_and(|n| n > 0 && state.step.is_multiple_of(n));
                if eval_now && let Some(valid) = valid {
                    let mut record =
                        evaluate(&model.valid(), valid, c.batch_size, &eval_device, forward)?;
                    record.step = state.step;
                    record.epoch = epoch;
                    emit(&mut self.callbacks, Event::Eval(&record));
                    if let Some(early) = c.early_stopping {
                        let improved = best
                            .as_ref()
                            .is_none_or(|(l, _, _)| record.loss < l - early.min_delta);
                        if improved {
                            best = Some((
                                record.loss,
                                state.step,
                                early.restore_best.then(|| model.clone()),
                            ));
                            evals_without_improvement = 0;
                        } else {
                            evals_without_improvement += 1;
                        }
                    }
                    history.evals.push(record);
                    if let (Some(early), Some((best_loss, best_step, _))) =
                        (c.early_stopping, &best)
                        && evals_without_improvement >= early.patience
                    {
                        emit(
                            &mut self.callbacks,
                            Event::EarlyStop {
                                step: state.step,
                                best_step: *best_step,
                                best_loss: *best_loss,
                            },
                        );
                        stop = StopReason::EarlyStopped {
                            best_step: *best_step,
                        };
                        break 'run;
                    }
                }

                let checkpoint_now = end_of_epoch
                    || done
                    || c.checkpoint_every
                        .is_some_and(|n| n > 0 && state.step.is_multiple_of(n));
                if checkpoint_now {
                    #[cfg(feature = "std")]
                    if let Some(ckpt) = &self.checkpointer {
                        let path = ckpt.save(&model, &optimizer, &state)?;
                        let path = path.display().to_string();
                        emit(
                            &mut self.callbacks,
                            Event::Checkpoint {
                                step: state.step,
                                path: &path,
                            },
                        );
                    }
                    if bad_in_row == 0 {
                        last_good = (model.clone(), optimizer.clone(), state);
                    }
                }
                if done {
                    break 'run;
                }
                if end_of_epoch {
                    continue 'run;
                }
            }
        }
        if let (StopReason::EarlyStopped { .. }, Some((_, _, Some(best_model)))) = (stop, best) {
            model = best_model;
        }
        Ok(Fit {
            model,
            optimizer,
            state,
            history,
            stop,
        })
    }
}

#[cfg(feature = "std")]
use alloc::string::ToString;

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn epoch_order_is_a_permutation_that_depends_on_the_epoch() {
        let a = epoch_order(50, 7, 0, true);
        let b = epoch_order(50, 7, 1, true);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(a, b);
        assert_eq!(a, epoch_order(50, 7, 0, true));
        assert_eq!(epoch_order(5, 7, 3, false), vec![0, 1, 2, 3, 4]);
    }
}
