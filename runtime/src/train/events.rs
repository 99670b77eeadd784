//! What a run reports: records of steps and evaluations, anomalies, the
//! [`Event`]s a [`Callback`] hears, and the [`History`] of the whole run.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use burn::optim::GradientsParams;

use crate::diagnostics::GradWarning;

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

/// Hooks into a [`Trainer`](super::Trainer) run.
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

pub(super) fn emit<M>(callbacks: &mut [Box<dyn Callback<M> + '_>], event: Event<'_>) {
    for cb in callbacks.iter_mut() {
        cb.on_event(&event);
    }
}
