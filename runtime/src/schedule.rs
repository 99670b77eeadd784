//! Learning-rate schedules that work without `std`.
//!
//! Burn's `lr_scheduler` module needs `std`; a board that fine-tunes needs a
//! schedule too. Every schedule here is a closed-form function of the step
//! number, so it costs nothing to store, is trivially resumable from a
//! checkpoint (the step is all the state there is) and matches PyTorch's
//! `torch.optim.lr_scheduler` exactly:
//!
//! | Ember | PyTorch |
//! |---|---|
//! | [`Constant`] | `ConstantLR(factor=1.0)` |
//! | [`StepDecay`] | `StepLR(step_size, gamma)` |
//! | [`LinearWarmup`] | `LinearLR(start_factor, end_factor, total_iters)` |
//! | [`Cosine`] | `CosineAnnealingLR(T_max, eta_min)` (its closed form) |
//! | [`WarmupCosine`] | `SequentialLR([LinearLR, CosineAnnealingLR], milestones=[warmup])` |
//!
//! "Step" counts calls of the PyTorch scheduler's `step()`: `lr(0)` is the rate
//! before the first `step()`, i.e. `get_last_lr()` right after construction.
//!
//! ```
//! use ember_runtime::schedule::{Cosine, Schedule};
//!
//! let cosine = Cosine::new(3e-4, 10).with_eta_min(1e-5);
//! assert_eq!(cosine.lr(0), 3e-4);
//! assert!((cosine.lr(10) - 1e-5).abs() < 1e-15);
//! ```

use core::f64::consts::PI;

/// A learning rate as a pure function of the step number.
pub trait Schedule {
    /// Learning rate after `step` calls of the scheduler's `step()`.
    fn lr(&self, step: usize) -> f64;

    /// Wraps the schedule in a [`Scheduler`] that counts steps itself.
    fn into_scheduler(self) -> Scheduler<Self>
    where
        Self: Sized,
    {
        Scheduler::new(self)
    }
}

/// The same learning rate at every step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Constant {
    /// The learning rate.
    pub lr: f64,
}

impl Constant {
    /// A constant learning rate.
    pub fn new(lr: f64) -> Self {
        Self { lr }
    }
}

impl Schedule for Constant {
    fn lr(&self, _step: usize) -> f64 {
        self.lr
    }
}

/// Multiplies the rate by `gamma` every `step_size` steps (`StepLR`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepDecay {
    /// Initial learning rate.
    pub base_lr: f64,
    /// Steps between two decays (must be ≥ 1).
    pub step_size: usize,
    /// Multiplicative factor at each decay.
    pub gamma: f64,
}

impl StepDecay {
    /// `StepLR(step_size, gamma)` starting from `base_lr`.
    pub fn new(base_lr: f64, step_size: usize, gamma: f64) -> Self {
        Self {
            base_lr,
            step_size: step_size.max(1),
            gamma,
        }
    }
}

impl Schedule for StepDecay {
    fn lr(&self, step: usize) -> f64 {
        let decays = (step / self.step_size) as i32;
        self.base_lr * libm::pow(self.gamma, f64::from(decays))
    }
}

/// Linear interpolation of a factor from `start_factor` to `end_factor` over
/// `total_iters` steps, then constant (`LinearLR`). With the default factors
/// (`0.0 → 1.0`... or any start) this is the usual linear warm-up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearWarmup {
    /// Learning rate reached at the end of the warm-up.
    pub base_lr: f64,
    /// Factor applied at step 0.
    pub start_factor: f64,
    /// Factor applied from `total_iters` on.
    pub end_factor: f64,
    /// Length of the ramp, in steps.
    pub total_iters: usize,
}

impl LinearWarmup {
    /// A ramp from `start_factor · base_lr` to `base_lr` over `total_iters` steps.
    pub fn new(base_lr: f64, start_factor: f64, total_iters: usize) -> Self {
        Self {
            base_lr,
            start_factor,
            end_factor: 1.0,
            total_iters,
        }
    }

    /// Sets the factor reached at the end of the ramp (default 1.0).
    pub fn with_end_factor(mut self, end_factor: f64) -> Self {
        self.end_factor = end_factor;
        self
    }
}

impl Schedule for LinearWarmup {
    fn lr(&self, step: usize) -> f64 {
        if self.total_iters == 0 {
            return self.base_lr * self.end_factor;
        }
        let t = step.min(self.total_iters) as f64 / self.total_iters as f64;
        self.base_lr * (self.start_factor + (self.end_factor - self.start_factor) * t)
    }
}

/// Cosine annealing from `base_lr` to `eta_min` over `t_max` steps
/// (`CosineAnnealingLR`, closed form
/// `eta_min + (base_lr − eta_min)·(1 + cos(π·step/T_max))/2`).
///
/// Past `t_max` the curve continues periodically, as PyTorch's does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cosine {
    /// Learning rate at step 0.
    pub base_lr: f64,
    /// Half period, in steps (`T_max`, must be ≥ 1).
    pub t_max: usize,
    /// Minimum learning rate (`eta_min`, default 0).
    pub eta_min: f64,
}

impl Cosine {
    /// `CosineAnnealingLR(T_max=t_max, eta_min=0)` from `base_lr`.
    pub fn new(base_lr: f64, t_max: usize) -> Self {
        Self {
            base_lr,
            t_max: t_max.max(1),
            eta_min: 0.0,
        }
    }

    /// Sets the minimum learning rate.
    pub fn with_eta_min(mut self, eta_min: f64) -> Self {
        self.eta_min = eta_min;
        self
    }
}

impl Schedule for Cosine {
    fn lr(&self, step: usize) -> f64 {
        let phase = PI * step as f64 / self.t_max as f64;
        self.eta_min + (self.base_lr - self.eta_min) * (1.0 + libm::cos(phase)) / 2.0
    }
}

/// Linear warm-up for `warmup.total_iters` steps, then cosine annealing
/// (`SequentialLR([LinearLR, CosineAnnealingLR], milestones=[warmup])`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmupCosine {
    /// The warm-up ramp; its `total_iters` is the milestone.
    pub warmup: LinearWarmup,
    /// The annealing that follows, counted from the milestone.
    pub cosine: Cosine,
}

impl WarmupCosine {
    /// Warm up from `start_factor · base_lr` over `warmup_steps`, then anneal to
    /// `eta_min` over `t_max` steps.
    pub fn new(
        base_lr: f64,
        start_factor: f64,
        warmup_steps: usize,
        t_max: usize,
        eta_min: f64,
    ) -> Self {
        Self {
            warmup: LinearWarmup::new(base_lr, start_factor, warmup_steps),
            cosine: Cosine::new(base_lr, t_max).with_eta_min(eta_min),
        }
    }
}

impl Schedule for WarmupCosine {
    fn lr(&self, step: usize) -> f64 {
        let milestone = self.warmup.total_iters;
        if step < milestone {
            self.warmup.lr(step)
        } else {
            self.cosine.lr(step - milestone)
        }
    }
}

/// Any schedule behind a pointer, for configuration chosen at run time.
impl Schedule for alloc::boxed::Box<dyn Schedule + Send + Sync> {
    fn lr(&self, step: usize) -> f64 {
        (**self).lr(step)
    }
}

/// A schedule plus the number of `step()` calls made so far: the stateful
/// object PyTorch users expect (`get_last_lr`, `step`).
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduler<S> {
    schedule: S,
    step: usize,
}

impl<S: Schedule> Scheduler<S> {
    /// Starts `schedule` at step 0.
    pub fn new(schedule: S) -> Self {
        Self { schedule, step: 0 }
    }

    /// The current learning rate (PyTorch's `get_last_lr()[0]`).
    pub fn current_lr(&self) -> f64 {
        self.schedule.lr(self.step)
    }

    /// Advances one step and returns the new learning rate.
    pub fn step(&mut self) -> f64 {
        self.step += 1;
        self.current_lr()
    }

    /// Number of `step()` calls so far: the whole state, for checkpoints.
    pub fn steps_taken(&self) -> usize {
        self.step
    }

    /// Restores the step counter (resuming from a checkpoint).
    pub fn set_steps_taken(&mut self, step: usize) {
        self.step = step;
    }

    /// The wrapped schedule.
    pub fn schedule(&self) -> &S {
        &self.schedule
    }
}

/// Burn's `LrScheduler` (std only): lets Ember's schedules drive Burn's
/// `Learner`. Burn calls `step()` once per optimizer step and uses its return
/// value for that step, so the first call returns `lr(0)`.
#[cfg(feature = "std")]
impl<S: Schedule + Clone + Send + Sync + 'static> burn::optim::lr_scheduler::LrScheduler
    for Scheduler<S>
{
    fn step(&mut self) -> burn::optim::LearningRate {
        let lr = self.current_lr();
        self.step += 1;
        lr
    }

    fn to_record(&self) -> burn::optim::lr_scheduler::LrSchedulerRecord {
        burn::optim::lr_scheduler::LrSchedulerRecord::new().with_scalar("step", self.step as u64)
    }

    fn load_record(&mut self, record: burn::optim::lr_scheduler::LrSchedulerRecord) {
        if let Some(step) = record.scalar::<u64>("step") {
            self.step = step as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_counts_steps_and_resumes() {
        let mut s = Cosine::new(1.0, 4).into_scheduler();
        assert_eq!(s.current_lr(), 1.0);
        s.step();
        s.step();
        assert!((s.current_lr() - 0.5).abs() < 1e-15);
        let mut resumed = Cosine::new(1.0, 4).into_scheduler();
        resumed.set_steps_taken(s.steps_taken());
        assert_eq!(resumed.current_lr(), s.current_lr());
    }

    #[test]
    fn degenerate_arguments_do_not_divide_by_zero() {
        assert_eq!(StepDecay::new(1.0, 0, 0.5).lr(1), 0.5);
        assert!(Cosine::new(1.0, 0).lr(3).is_finite());
        assert_eq!(LinearWarmup::new(2.0, 0.1, 0).lr(0), 2.0);
    }

    #[test]
    fn warmup_cosine_reaches_base_lr_at_the_milestone() {
        let s = WarmupCosine::new(0.01, 0.0, 5, 20, 0.0);
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 0.01).abs() < 1e-15);
        assert!(s.lr(25).abs() < 1e-15);
    }
}
