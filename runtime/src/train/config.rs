//! How a run is configured: [`TrainerConfig`] and its parts.

use alloc::format;
use alloc::string::String;

use crate::Error;
use crate::clip::GlobalNormClip;
use crate::precision::{LossScalerConfig, Precision};

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

/// How a [`Trainer`](super::Trainer) runs.
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

    pub(super) fn validate(&self, examples: usize) -> Result<(), Error> {
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
