//! The trainer behind an `EmberTrainer*` handle: AdamW state and the
//! settings of [`EmberTrainConfig`](crate::EmberTrainConfig), single steps
//! and whole epochs with the runtime's [`Trainer`]. Safe Rust.

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor};
use ember_models::mlp::Mlp;
use ember_runtime::Error;
use ember_runtime::clip::GlobalNormClip;
use ember_runtime::freeze::{TrainMode, set_trainable};
use ember_runtime::optim;
use ember_runtime::schedule::{Constant, Schedule, WarmupCosine};
use ember_runtime::train::{Dataset, Output, Trainer, TrainerConfig};

use crate::config::{EmberFitReport, EmberSchedule, EmberTrainable, TrainSpec};
use crate::mlp::{EmberMlp, RNG};
use crate::status::Failure;

/// AdamW state and training settings for one model (opaque in the header).
///
/// Created by `ember_trainer_new` for a model, freed by `ember_trainer_free`.
/// Every training call takes the model it was created for.
pub struct EmberTrainer {
    spec: TrainSpec,
    model_id: u64,
    optimizer: ModuleOptimizer,
    steps: u64,
    /// Set when an internal error interrupted a training call.
    pub(crate) poisoned: bool,
}

impl std::fmt::Debug for EmberTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmberTrainer")
            .field("spec", &self.spec)
            .field("model_id", &self.model_id)
            .field("steps", &self.steps)
            .finish()
    }
}

/// Examples borrowed from the caller: `x` is `len × input`, row-major.
struct Examples<'a> {
    input: usize,
    x: &'a [f32],
    y: &'a [i32],
}

impl Dataset for Examples<'_> {
    type Batch = (Tensor<2>, Tensor<1, Int>);
    fn len(&self) -> usize {
        self.y.len()
    }
    fn batch(&self, indices: &[usize], device: &Device) -> Result<Self::Batch, Error> {
        let d = self.input;
        let mut x = Vec::with_capacity(indices.len() * d);
        let mut y = Vec::with_capacity(indices.len());
        for &i in indices {
            x.extend_from_slice(&self.x[i * d..(i + 1) * d]);
            y.push(self.y[i]);
        }
        let n = indices.len();
        Ok((
            Tensor::from_data(burn::tensor::TensorData::new(x, [n, d]), device),
            EmberMlp::targets(&y, device),
        ))
    }
}

/// The schedules of [`EmberSchedule`] as one type.
enum Lr {
    Constant(Constant),
    WarmupCosine(WarmupCosine),
}

impl Schedule for Lr {
    fn lr(&self, step: usize) -> f64 {
        match self {
            Lr::Constant(s) => s.lr(step),
            Lr::WarmupCosine(s) => s.lr(step),
        }
    }
}

fn classification(m: &Mlp, (x, y): &(Tensor<2>, Tensor<1, Int>)) -> Output {
    Output::classification(m.forward(x.clone()), y.clone())
}

impl EmberTrainer {
    /// A trainer for `model`; marks the parameters that train according to
    /// `spec.trainable` (the others are frozen from now on).
    pub fn new(model: &mut EmberMlp, spec: TrainSpec) -> Self {
        let head = format!("layers.{}", model.sizes().len() - 2);
        let mode = match spec.trainable {
            EmberTrainable::All => TrainMode::Full,
            EmberTrainable::Head => TrainMode::HeadOnly { prefix: head },
            EmberTrainable::BiasAndHead => TrainMode::BiasOnly { also: vec![head] },
        };
        model.set_model(set_trainable(model.model().clone(), |p| mode.trains(p)));
        Self {
            spec,
            model_id: model.id(),
            optimizer: optim::adamw(spec.weight_decay).init(),
            steps: 0,
            poisoned: false,
        }
    }

    /// Optimizer steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Checks that `model` is this trainer's and that `x` and `labels` are
    /// whole, finite examples with valid labels.
    fn check(&self, model: &EmberMlp, x: &[f32], labels: &[i32]) -> Result<(), Failure> {
        if model.id() != self.model_id {
            return Err(Failure::invalid(
                "this model is not the one the trainer was created for",
            ));
        }
        let d = model.input_size();
        if labels.is_empty() || x.len() != labels.len() * d {
            return Err(Failure::shape(format!(
                "{} features and {} labels: expected {d} features per label",
                x.len(),
                labels.len()
            )));
        }
        model.check_features(x)?;
        model.check_labels(labels)
    }

    /// One AdamW step on the batch `x`, `labels` at `learning_rate` (the
    /// schedule applies to [`fit`](Self::fit) only), with clipping and
    /// dropout as configured. Returns the batch's mean cross-entropy
    /// before the step.
    ///
    /// # Errors
    /// [`EmberStatus::Shape`](crate::EmberStatus::Shape) and
    /// [`EmberStatus::InvalidArgument`](crate::EmberStatus::InvalidArgument)
    /// for bad inputs or the wrong model;
    /// [`EmberStatus::NonFinite`](crate::EmberStatus::NonFinite) for a
    /// non-finite loss or gradient norm, in which case no step is taken.
    pub fn step(
        &mut self,
        model: &mut EmberMlp,
        x: &[f32],
        labels: &[i32],
    ) -> Result<f32, Failure> {
        self.check(model, x, labels)?;
        let device = model.device().clone();
        let batch = (
            model.features(x, &device),
            EmberMlp::targets(labels, &device),
        );
        let m = model.model().clone();
        let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(self.spec.seed.wrapping_add(self.steps));
        let out = classification(&m, &batch);
        let loss = out.loss.clone().into_scalar::<f32>();
        if !loss.is_finite() {
            return Err(Failure::non_finite(format!(
                "the loss is {loss}; no step was taken"
            )));
        }
        let mut grads = GradientsParams::from_grads(out.loss.backward(), &m);
        if let Some(max_norm) = self.spec.clip_norm {
            GlobalNormClip::new(max_norm)
                .with_error_if_nonfinite(true)
                .clip(&m, &mut grads)?;
        }
        let m = self.optimizer.step(self.spec.learning_rate, m, grads);
        model.set_model(m);
        self.steps += 1;
        Ok(loss)
    }

    /// `epochs` epochs over `x`, `labels` in shuffled batches of
    /// `batch_size` with the configured schedule (which starts again at
    /// each call; the optimizer state carries over), clipping, and the
    /// runtime's anomaly handling: steps with a non-finite loss or gradient
    /// are skipped, and repeated ones roll the model back.
    ///
    /// # Errors
    /// As [`step`](Self::step); [`EmberStatus::NonFinite`](crate::EmberStatus::NonFinite)
    /// when training diverged. On error the model and the optimizer state
    /// are unchanged.
    pub fn fit(
        &mut self,
        model: &mut EmberMlp,
        x: &[f32],
        labels: &[i32],
    ) -> Result<EmberFitReport, Failure> {
        self.check(model, x, labels)?;
        let s = self.spec;
        let data = Examples {
            input: model.input_size(),
            x,
            y: labels,
        };
        let total = labels.len().div_ceil(s.batch_size) * s.epochs;
        let schedule = match s.schedule {
            EmberSchedule::Constant => Lr::Constant(Constant::new(s.learning_rate)),
            EmberSchedule::WarmupCosine => {
                let warmup = (total / 10).max(1);
                let rest = total.saturating_sub(warmup).max(1);
                Lr::WarmupCosine(WarmupCosine::new(
                    s.learning_rate,
                    0.1,
                    warmup,
                    rest,
                    s.learning_rate * 0.01,
                ))
            }
        };
        let mut config = TrainerConfig::new(s.batch_size)
            .with_epochs(s.epochs)
            .with_seed(s.seed.wrapping_add(self.steps));
        if let Some(max_norm) = s.clip_norm {
            config = config.with_clip(GlobalNormClip::new(max_norm));
        }
        let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
        let fit = Trainer::new(config, schedule, model.device().clone()).fit(
            model.model().clone(),
            self.optimizer.clone(),
            &data,
            None,
            classification,
        )?;
        let last_epoch = fit.history.steps.last().map_or(0, |r| r.epoch);
        let last: Vec<_> = fit
            .history
            .steps
            .iter()
            .filter(|r| r.epoch == last_epoch)
            .collect();
        let examples = last.iter().map(|r| r.examples).sum::<usize>().max(1) as f64;
        let report = EmberFitReport {
            steps: fit.state.step,
            skipped_steps: fit.history.anomalies.len() as u64,
            final_loss: last.iter().map(|r| r.loss * r.examples as f64).sum::<f64>() / examples,
            final_accuracy: last
                .iter()
                .map(|r| r.accuracy.unwrap_or(0.0) * r.examples as f64)
                .sum::<f64>()
                / examples,
        };
        model.set_model(fit.model);
        self.optimizer = fit.optimizer;
        self.steps += fit.state.step;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmberStatus;
    use crate::config::{EmberTrainConfig, MlpSpec};

    /// Two separable blobs in 2-D.
    fn blobs() -> (Vec<f32>, Vec<i32>) {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..64 {
            let t = i as f32 / 64.0;
            let class = i % 2;
            let centre = if class == 0 { -1.0 } else { 1.0 };
            x.extend([
                centre + 0.3 * (t * 7.0).sin(),
                centre + 0.3 * (t * 11.0).cos(),
            ]);
            y.push(class);
        }
        (x, y)
    }

    #[test]
    fn steps_lower_the_loss_and_fit_separates_the_blobs() {
        let (x, y) = blobs();
        let mut model = EmberMlp::new(&MlpSpec::new(2, &[16], 2, 0.0, 3).unwrap());
        let spec = TrainSpec::from_c(&EmberTrainConfig {
            learning_rate: 0.05,
            epochs: 10,
            batch_size: 16,
            ..Default::default()
        })
        .unwrap();
        let mut trainer = EmberTrainer::new(&mut model, spec);
        let first = trainer.step(&mut model, &x, &y).unwrap();
        for _ in 0..20 {
            trainer.step(&mut model, &x, &y).unwrap();
        }
        let later = trainer.step(&mut model, &x, &y).unwrap();
        assert!(later < first, "{first} → {later}");
        let report = trainer.fit(&mut model, &x, &y).unwrap();
        assert_eq!(report.steps, 40);
        assert_eq!(trainer.steps(), 62);
        assert!(model.accuracy(&x, &y).unwrap() > 0.99);
    }

    #[test]
    fn head_only_training_leaves_the_body_alone() {
        let (x, y) = blobs();
        let mut model = EmberMlp::new(&MlpSpec::new(2, &[8], 2, 0.0, 3).unwrap());
        let before = ember_runtime::params::parameters(model.model(), None);
        let spec = TrainSpec::from_c(&EmberTrainConfig {
            trainable: 1,
            ..Default::default()
        })
        .unwrap();
        let mut trainer = EmberTrainer::new(&mut model, spec);
        trainer.step(&mut model, &x, &y).unwrap();
        let after = ember_runtime::params::parameters(model.model(), None);
        for (b, a) in before.iter().zip(&after) {
            let same = b
                .value
                .clone()
                .equal(a.value.clone())
                .all()
                .into_scalar::<bool>();
            assert_eq!(same, !b.path.starts_with("layers.1"), "{}", b.path);
        }
    }

    #[test]
    fn a_trainer_refuses_another_model() {
        let (x, y) = blobs();
        let spec = MlpSpec::new(2, &[4], 2, 0.0, 0).unwrap();
        let (mut a, mut b) = (EmberMlp::new(&spec), EmberMlp::new(&spec));
        let mut trainer = EmberTrainer::new(
            &mut a,
            TrainSpec::from_c(&EmberTrainConfig::default()).unwrap(),
        );
        assert_eq!(
            trainer.step(&mut b, &x, &y).unwrap_err().status,
            EmberStatus::InvalidArgument
        );
        let mut bad = y.clone();
        bad[3] = 2;
        assert!(
            trainer
                .step(&mut a, &x, &bad)
                .unwrap_err()
                .message
                .contains("labels[3] is 2")
        );
    }
}
