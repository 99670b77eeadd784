//! The fit loop: [`Trainer`], its phases, and what a run returns.

use alloc::boxed::Box;
#[cfg(feature = "std")]
use alloc::format;
#[cfg(feature = "std")]
use alloc::string::ToString;
use alloc::vec::Vec;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::Device;

use super::config::TrainerConfig;
use super::events::{Anomaly, AnomalyKind, Callback, Event, History, StepRecord, StopReason, emit};
use super::objective::{Dataset, ForwardFn, Objective, Output, evaluate};
use super::state::{TrainState, epoch_order};
use crate::Error;
use crate::clip::{NormType, combine_norms, grad_norms};
use crate::diagnostics::GradMonitor;
use crate::params::{first_non_finite_grad, materialize};
use crate::precision::{self, LossScaler};
use crate::schedule::Schedule;

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

/// Runs training loops. See the [module documentation](super).
pub struct Trainer<'a, M> {
    config: TrainerConfig,
    schedule: Box<dyn Schedule + 'a>,
    device: Device,
    callbacks: Vec<Box<dyn Callback<M> + 'a>>,
    #[cfg(feature = "std")]
    checkpointer: Option<super::checkpoint::Checkpointer>,
    #[cfg(feature = "std")]
    resume: bool,
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
    pub fn with_checkpointer(mut self, checkpointer: super::checkpoint::Checkpointer) -> Self {
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

    /// [`fit`](Self::fit) with any [`Objective`], e.g.
    /// [`Recomputed`](crate::recompute::Recomputed) for segment
    /// recomputation.
    ///
    /// Each optimizer step runs the same phases, in order: **accumulate**
    /// (forward and backward over the step's micro-batches), **unscale and
    /// check** (the loss scaler, the callbacks' gradient hook, clipping and
    /// the finiteness of the norm), **apply or skip** (the optimizer step,
    /// or an anomaly and perhaps a rollback), **advance** the state,
    /// **evaluate** when due (and stop early), **checkpoint** when due.
    ///
    /// # Errors
    /// As [`fit`](Self::fit).
    pub fn fit_with<D: Dataset>(
        &mut self,
        model: M,
        optimizer: ModuleOptimizer,
        train: &D,
        valid: Option<&D>,
        objective: impl Objective<M, D::Batch>,
    ) -> Result<Fit<M>, Error> {
        let c = self.config.clone();
        c.validate(train.len())?;
        let plan = Plan::new(&c, train.len());
        let (mut model, mut optimizer, mut run) = self.start(model, optimizer)?;
        emit(
            &mut self.callbacks,
            Event::Start {
                step: run.state.step,
                total_steps: plan.total_steps,
            },
        );

        let stop = 'run: loop {
            if run.state.step >= plan.total_steps {
                break StopReason::Completed;
            }
            let epoch = run.state.step / plan.steps_per_epoch;
            let order = epoch_order(train.len(), c.seed, epoch, c.shuffle);
            let micro: Vec<&[usize]> = order.chunks(c.batch_size).collect();
            let first_group = (run.state.step % plan.steps_per_epoch) as usize;
            for (g, group) in micro
                .chunks(c.grad_accumulation)
                .enumerate()
                .skip(first_group)
            {
                let step = run.state.step;
                self.device.seed(c.seed.wrapping_add(step));
                let lr = self.schedule.lr(run.state.scheduler_steps as usize);

                let batch = self.accumulate(&model, &run.scaler, &objective, train, group, step)?;
                let verdict =
                    self.unscale_and_check(&model, &mut run, batch.grads, batch.anomaly, step)?;
                let taken = Taken {
                    step,
                    epoch,
                    lr,
                    loss: batch.loss_sum / group.len() as f64,
                    examples: batch.examples,
                    correct: batch.correct,
                };
                model = self.apply_or_skip(model, &mut optimizer, &mut run, verdict, taken)?;
                let at = run.advance(&plan, (g + 1) * c.grad_accumulation);

                if at.eval_due(&c, run.state.step)
                    && let Some(valid) = valid
                    && let Some(stop) = self
                        .evaluate_and_check_early_stop(&model, &mut run, valid, &objective, epoch)?
                {
                    break 'run stop;
                }
                if at.checkpoint_due(&c, run.state.step) {
                    self.checkpoint(&model, &optimizer, &mut run)?;
                }
                if at.done {
                    break 'run StopReason::Completed;
                }
                if at.end_of_epoch {
                    continue 'run;
                }
            }
        };
        if let (
            StopReason::EarlyStopped { .. },
            Some(Best {
                model: Some(best), ..
            }),
        ) = (stop, run.best)
        {
            model = best;
        }
        Ok(Fit {
            model,
            optimizer,
            state: run.state,
            history: run.history,
            stop,
        })
    }

    /// The model with its lazily initialised parameters given values (here,
    /// not at the first step, whose RNG seed depends on the step it starts
    /// from), and the run's state: fresh, or from the newest checkpoint.
    fn start(
        &mut self,
        model: M,
        optimizer: ModuleOptimizer,
    ) -> Result<(M, ModuleOptimizer, Run<M>), Error> {
        let c = &self.config;
        #[allow(unused_mut, reason = "changed by a resume, which needs std")]
        let (mut model, mut optimizer) = (materialize(model), optimizer);
        #[allow(unused_mut, reason = "changed by a resume, which needs std")]
        let mut state = TrainState {
            rng_seed: c.seed,
            ..Default::default()
        };
        let mut scaler = c.loss_scaler.init();

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
                }
                None => emit(
                    &mut self.callbacks,
                    Event::Message("no checkpoint found; starting from the beginning"),
                ),
            }
        }
        if state.loss_scale > 0.0 {
            scaler.load_state((state.loss_scale, state.scale_growth_tracker));
        }
        let run = Run {
            state,
            scaler,
            history: History::default(),
            monitor: GradMonitor::new(c.grad_warning_threshold),
            last_good: (model.clone(), optimizer.clone(), state),
            best: None,
            evals_without_improvement: 0,
            bad_in_row: 0,
        };
        Ok((model, optimizer, run))
    }

    /// Phase 1: forward and backward over the step's micro-batches under
    /// autocast, the loss scaled by the scaler's scale over the number of
    /// micro-batches, the gradients summed. A non-finite loss ends the step
    /// as an anomaly naming the first parameter its gradient reaches.
    fn accumulate<D: Dataset>(
        &self,
        model: &M,
        scaler: &LossScaler,
        objective: &impl Objective<M, D::Batch>,
        train: &D,
        group: &[&[usize]],
        step: u64,
    ) -> Result<Accumulated, Error> {
        let c = &self.config;
        let mut accumulator = GradientsAccumulator::<M>::new();
        let (mut loss_sum, mut examples, mut correct) = (0.0f64, 0usize, None::<usize>);
        let mut anomaly = None;
        let loss_scale = scaler.scale() / c.grad_accumulation as f64;
        for indices in group {
            let batch = train.batch(indices, &self.device)?;
            let (out, grads) = precision::autocast(c.precision, || {
                objective.forward_backward(model, &batch, loss_scale)
            });
            let loss = out.loss.into_scalar::<f32>();
            if !loss.is_finite() {
                anomaly = Some(Anomaly {
                    step,
                    kind: AnomalyKind::Loss,
                    path: first_non_finite_grad(model, &grads),
                    value: f64::from(loss),
                });
                break;
            }
            loss_sum += f64::from(loss);
            examples += out.count;
            if let Some(n) = out.correct {
                correct = Some(correct.unwrap_or(0) + n);
            }
            accumulator.accumulate(model, grads);
        }
        Ok(Accumulated {
            grads: accumulator.grads(),
            loss_sum,
            examples,
            correct,
            anomaly,
        })
    }

    /// Phase 2: the loss scaler unscales the gradients (before the callbacks
    /// and clipping, so that both see the true gradients, as after
    /// `GradScaler.unscale_`) and skips the step on an overflow; then the
    /// callbacks' gradient hook, clipping (or the plain L2 norm), and a
    /// non-finite norm as an anomaly.
    fn unscale_and_check(
        &mut self,
        model: &M,
        run: &mut Run<M>,
        mut grads: GradientsParams,
        anomaly: Option<Anomaly>,
        step: u64,
    ) -> Result<Verdict, Error> {
        if let Some(anomaly) = anomaly {
            return Ok(Verdict::Anomaly(anomaly));
        }
        if run.scaler.is_enabled() {
            let scale = run.scaler.scale();
            let overflow = run.scaler.unscale(model, &mut grads).found_inf;
            run.scaler.update(overflow);
            if overflow {
                let new_scale = run.scaler.scale();
                emit(
                    &mut self.callbacks,
                    Event::Overflow {
                        step,
                        scale,
                        new_scale,
                    },
                );
                run.history.overflows.push((step, scale));
                return Ok(Verdict::Overflow);
            }
        }
        for cb in self.callbacks.iter_mut() {
            cb.on_gradients(step, model, &mut grads);
        }
        let grad_norm = match &self.config.clip {
            Some(clip) => (*clip)
                .with_error_if_nonfinite(false)
                .clip(model, &mut grads)?,
            None => f64::from(combine_norms(
                grad_norms(model, &grads, NormType::L2),
                NormType::L2,
            )),
        };
        if !grad_norm.is_finite() {
            return Ok(Verdict::Anomaly(Anomaly {
                step,
                kind: AnomalyKind::Gradient,
                path: first_non_finite_grad(model, &grads),
                value: grad_norm,
            }));
        }
        Ok(Verdict::Apply { grads, grad_norm })
    }

    /// Phase 3: the optimizer step, or a skipped step. Skipped steps in a
    /// row are counted (an overflow only once the scale is below 1, when
    /// overflow is not the cause); after `max_bad_steps` of them the model
    /// and optimizer roll back to the last good checkpoint, and after
    /// `max_rollbacks` rollbacks the run fails with [`Error::Diverged`].
    fn apply_or_skip(
        &mut self,
        model: M,
        optimizer: &mut ModuleOptimizer,
        run: &mut Run<M>,
        verdict: Verdict,
        taken: Taken,
    ) -> Result<M, Error> {
        let c = &self.config;
        let step = taken.step;
        match verdict {
            Verdict::Overflow => {
                if run.scaler.scale() < 1.0 {
                    run.bad_in_row += 1;
                }
                Ok(model)
            }
            Verdict::Anomaly(a) => {
                emit(&mut self.callbacks, Event::Anomaly(&a));
                run.history.anomalies.push(a);
                run.bad_in_row += 1;
                if run.bad_in_row < c.max_bad_steps {
                    return Ok(model);
                }
                if run.history.rollbacks.len() >= c.max_rollbacks {
                    return Err(Error::Diverged {
                        step,
                        rollbacks: run.history.rollbacks.len(),
                    });
                }
                let (good_model, good_optimizer, good_state) = &run.last_good;
                *optimizer = good_optimizer.clone();
                run.history.rollbacks.push(step);
                emit(
                    &mut self.callbacks,
                    Event::Rollback {
                        step,
                        to_step: good_state.step,
                    },
                );
                run.bad_in_row = 0;
                Ok(good_model.clone())
            }
            Verdict::Apply { grads, grad_norm } => {
                run.bad_in_row = 0;
                if let Some(warning) = run.monitor.check(grad_norm) {
                    emit(&mut self.callbacks, Event::Warning { step, warning });
                }
                let model = optimizer.step(taken.lr, model, grads);
                let record = StepRecord {
                    step,
                    epoch: taken.epoch,
                    loss: taken.loss,
                    lr: taken.lr,
                    grad_norm,
                    examples: taken.examples,
                    accuracy: taken
                        .correct
                        .map(|n| n as f64 / taken.examples.max(1) as f64),
                };
                emit(&mut self.callbacks, Event::Step(&record));
                run.history.steps.push(record);
                Ok(model)
            }
        }
    }

    /// Phase 5: the validation loss (under autocast, without gradients) and
    /// early stopping's bookkeeping; `Some` when the run stops here.
    fn evaluate_and_check_early_stop<D: Dataset>(
        &mut self,
        model: &M,
        run: &mut Run<M>,
        valid: &D,
        objective: &impl Objective<M, D::Batch>,
        epoch: u64,
    ) -> Result<Option<StopReason>, Error> {
        let c = &self.config;
        let eval_device = self.device.clone().without_autodiff();
        let forward =
            |m: &M, b: &D::Batch| precision::autocast(c.precision, || objective.forward(m, b));
        let mut record = evaluate(&model.valid(), valid, c.batch_size, &eval_device, forward)?;
        let step = run.state.step;
        record.step = step;
        record.epoch = epoch;
        emit(&mut self.callbacks, Event::Eval(&record));
        let early = c.early_stopping;
        if let Some(early) = early {
            let improved = run
                .best
                .as_ref()
                .is_none_or(|b| record.loss < b.loss - early.min_delta);
            if improved {
                run.best = Some(Best {
                    loss: record.loss,
                    step,
                    model: early.restore_best.then(|| model.clone()),
                });
                run.evals_without_improvement = 0;
            } else {
                run.evals_without_improvement += 1;
            }
        }
        run.history.evals.push(record);
        if let (Some(early), Some(best)) = (early, &run.best)
            && run.evals_without_improvement >= early.patience
        {
            emit(
                &mut self.callbacks,
                Event::EarlyStop {
                    step,
                    best_step: best.step,
                    best_loss: best.loss,
                },
            );
            return Ok(Some(StopReason::EarlyStopped {
                best_step: best.step,
            }));
        }
        Ok(None)
    }

    /// Phase 6: a checkpoint on disk (with a checkpointer) and, when no bad
    /// step is pending, the point a rollback returns to.
    fn checkpoint(
        &mut self,
        model: &M,
        optimizer: &ModuleOptimizer,
        run: &mut Run<M>,
    ) -> Result<(), Error> {
        #[cfg(feature = "std")]
        if let Some(ckpt) = &self.checkpointer {
            let path = ckpt.save(model, optimizer, &run.state)?;
            let path = path.display().to_string();
            emit(
                &mut self.callbacks,
                Event::Checkpoint {
                    step: run.state.step,
                    path: &path,
                },
            );
        }
        if run.bad_in_row == 0 {
            run.last_good = (model.clone(), optimizer.clone(), run.state);
        }
        Ok(())
    }
}

/// The loop's shape, from the configuration and the size of the data.
struct Plan {
    steps_per_epoch: u64,
    total_steps: u64,
}

impl Plan {
    fn new(c: &TrainerConfig, examples: usize) -> Self {
        let micro_per_epoch = examples.div_ceil(c.batch_size);
        let steps_per_epoch = micro_per_epoch.div_ceil(c.grad_accumulation) as u64;
        Self {
            steps_per_epoch,
            total_steps: c.max_steps.unwrap_or(steps_per_epoch * c.epochs as u64),
        }
    }
}

/// What the loop carries from step to step, besides the model and the
/// optimizer.
struct Run<M> {
    state: TrainState,
    scaler: LossScaler,
    history: History,
    monitor: GradMonitor,
    /// Model, optimizer and state at the last checkpoint taken with no bad
    /// step pending (or at the start): where a rollback returns to.
    last_good: (M, ModuleOptimizer, TrainState),
    best: Option<Best<M>>,
    evals_without_improvement: usize,
    bad_in_row: usize,
}

impl<M> Run<M> {
    /// Phase 4: one step further (taken or skipped): the scaler's state,
    /// the step and scheduler counters, the epoch and the position in its
    /// data (`consumed` micro-batches when the epoch goes on).
    fn advance(&mut self, plan: &Plan, consumed: usize) -> StepEnd {
        let state = &mut self.state;
        (state.loss_scale, state.scale_growth_tracker) = self.scaler.state();
        state.step += 1;
        state.scheduler_steps += 1;
        let end_of_epoch = state.step.is_multiple_of(plan.steps_per_epoch);
        state.epoch = state.step / plan.steps_per_epoch;
        state.data_position = if end_of_epoch { 0 } else { consumed as u64 };
        StepEnd {
            end_of_epoch,
            done: state.step >= plan.total_steps,
        }
    }
}

/// Where a step left the run.
struct StepEnd {
    end_of_epoch: bool,
    done: bool,
}

impl StepEnd {
    /// At the end of an epoch, of the run, or every `eval_every` steps.
    fn eval_due(&self, c: &TrainerConfig, step: u64) -> bool {
        self.end_of_epoch
            || self.done
            || c.eval_every
                .is_some_and(|n| n > 0 && step.is_multiple_of(n))
    }

    /// At the end of an epoch, of the run, or every `checkpoint_every` steps.
    fn checkpoint_due(&self, c: &TrainerConfig, step: u64) -> bool {
        self.end_of_epoch
            || self.done
            || c.checkpoint_every
                .is_some_and(|n| n > 0 && step.is_multiple_of(n))
    }
}

/// The best evaluation so far under early stopping, with the model when it
/// is to be restored.
struct Best<M> {
    loss: f64,
    step: u64,
    model: Option<M>,
}

/// One step's micro-batches after forward and backward.
struct Accumulated {
    grads: GradientsParams,
    loss_sum: f64,
    examples: usize,
    correct: Option<usize>,
    anomaly: Option<Anomaly>,
}

/// What the checks decided about a step's gradients.
enum Verdict {
    /// Take the step with these (unscaled, clipped) gradients.
    Apply {
        grads: GradientsParams,
        grad_norm: f64,
    },
    /// The loss scaler found an overflow: skip the step.
    Overflow,
    /// Skip the step and report it.
    Anomaly(Anomaly),
}

/// What a taken step records.
struct Taken {
    step: u64,
    epoch: u64,
    lr: f64,
    loss: f64,
    examples: usize,
    correct: Option<usize>,
}
