//! The learning-rate range test (Smith 2015; the `lr_find` of fastai and
//! PyTorch Lightning): train for a few steps while the learning rate grows
//! exponentially from `start_lr` to `end_lr`, record the smoothed loss, stop
//! when it diverges, and suggest the rate where the loss falls fastest.
//!
//! The model and optimizer given are not changed (Burn modules are values:
//! the test trains a copy).
//!
//! ```
//! use ember_runtime::lr_find::{LrCurve, LrPoint};
//!
//! // A curve that falls fastest around lr = 1e-2 and then blows up.
//! let points = (0..40)
//!     .map(|i| {
//!         let lr = 10f64.powf(-5.0 + i as f64 * 0.1);
//!         let loss = 1.0 / (1.0 + (lr / 1e-2).powi(2)) + if lr > 0.5 { 10.0 } else { 0.0 };
//!         LrPoint { lr, loss, smoothed: loss }
//!     })
//!     .collect();
//! let curve = LrCurve::from_points(points);
//! let lr = curve.suggested.unwrap();
//! assert!(lr > 2e-3 && lr < 5e-2, "{lr}");
//! ```

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Device;

use crate::Error;
use crate::train::{Dataset, Output, epoch_order};

/// Settings of the range test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrFinder {
    /// First learning rate.
    pub start_lr: f64,
    /// Last learning rate.
    pub end_lr: f64,
    /// Steps between them (the rate is multiplied by the same factor each step).
    pub steps: usize,
    /// Weight of the past in the exponential moving average of the loss.
    pub smoothing: f64,
    /// Stop when the smoothed loss exceeds this multiple of the best one.
    pub divergence: f64,
    /// Examples per batch.
    pub batch_size: usize,
    /// Seed of the data order and the device RNG.
    pub seed: u64,
}

impl LrFinder {
    /// 100 steps from 1e-7 to 10, smoothing 0.98, stop at 4× the best loss.
    pub fn new(batch_size: usize) -> Self {
        Self {
            start_lr: 1e-7,
            end_lr: 10.0,
            steps: 100,
            smoothing: 0.98,
            divergence: 4.0,
            batch_size,
            seed: 0,
        }
    }
    /// Sets the range.
    pub fn with_range(mut self, start_lr: f64, end_lr: f64) -> Self {
        self.start_lr = start_lr;
        self.end_lr = end_lr;
        self
    }
    /// Sets the number of steps.
    pub fn with_steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }
    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The learning rate of step `i`.
    pub fn lr(&self, i: usize) -> f64 {
        let t = if self.steps > 1 {
            i as f64 / (self.steps - 1) as f64
        } else {
            0.0
        };
        self.start_lr * libm::pow(self.end_lr / self.start_lr, t)
    }

    /// Runs the test on a copy of `model` and `optimizer`.
    ///
    /// # Errors
    /// Invalid settings, empty data, errors of the data set.
    pub fn run<M: Module, D: Dataset>(
        &self,
        model: &M,
        optimizer: &ModuleOptimizer,
        data: &D,
        device: &Device,
        forward: impl Fn(&M, &D::Batch) -> Output,
    ) -> Result<LrCurve, Error> {
        if !(self.start_lr > 0.0 && self.end_lr > self.start_lr)
            || self.steps < 2
            || self.batch_size == 0
        {
            return Err(Error::InvalidArgument {
                message: format!(
                    "the range test needs 0 < start_lr < end_lr, at least 2 steps and a batch size ≥ 1 (got {}..{}, {} steps, batch {})",
                    self.start_lr, self.end_lr, self.steps, self.batch_size
                ),
            });
        }
        if data.is_empty() {
            return Err(Error::InvalidArgument {
                message: "the training data is empty".into(),
            });
        }
        let mut model = model.clone();
        let mut optimizer = optimizer.clone();
        let mut points = Vec::with_capacity(self.steps);
        let (mut avg, mut best) = (0.0f64, f64::INFINITY);
        let mut batches: Vec<Vec<usize>> = Vec::new();
        let mut epoch = 0;
        for i in 0..self.steps {
            if batches.is_empty() {
                let order = epoch_order(data.len(), self.seed, epoch, true);
                batches = order
                    .chunks(self.batch_size)
                    .rev()
                    .map(<[usize]>::to_vec)
                    .collect();
                epoch += 1;
            }
            let indices = batches.pop().unwrap_or_default();
            device.seed(self.seed.wrapping_add(i as u64));
            let lr = self.lr(i);
            let out = forward(&model, &data.batch(&indices, device)?);
            let loss = f64::from(out.loss.clone().into_scalar::<f32>());
            if !loss.is_finite() {
                break;
            }
            avg = self.smoothing * avg + (1.0 - self.smoothing) * loss;
            let smoothed = avg / (1.0 - libm::pow(self.smoothing, (i + 1) as f64));
            points.push(LrPoint { lr, loss, smoothed });
            if smoothed > self.divergence * best {
                break;
            }
            best = best.min(smoothed);
            let grads = GradientsParams::from_grads(out.loss.backward(), &model);
            model = optimizer.step(lr, model, grads);
        }
        Ok(LrCurve::from_points(points))
    }
}

/// One step of the range test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrPoint {
    /// Learning rate of the step.
    pub lr: f64,
    /// Loss of the step's batch (before the step).
    pub loss: f64,
    /// Bias-corrected exponential moving average of the loss.
    pub smoothed: f64,
}

/// The outcome of the range test.
#[derive(Debug, Clone, PartialEq)]
pub struct LrCurve {
    /// Every step run.
    pub points: Vec<LrPoint>,
    /// The learning rate at which the smoothed loss falls fastest (per decade
    /// of learning rate) before its minimum; `None` when the curve is too short.
    pub suggested: Option<f64>,
}

impl LrCurve {
    /// A curve and its suggestion.
    pub fn from_points(points: Vec<LrPoint>) -> Self {
        let suggested = Self::steepest(&points);
        Self { points, suggested }
    }

    fn steepest(points: &[LrPoint]) -> Option<f64> {
        if points.len() < 5 {
            return None;
        }
        let min_at = points
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.smoothed.total_cmp(&b.1.smoothed))
            .map(|(i, _)| i)?;
        // Central differences of the smoothed loss against log10(lr), up to
        // the minimum.
        (1..min_at.max(2).min(points.len() - 1))
            .map(|i| {
                let (a, b) = (points[i - 1], points[i + 1]);
                let slope = (b.smoothed - a.smoothed) / (libm::log10(b.lr) - libm::log10(a.lr));
                (slope, points[i].lr)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, lr)| lr)
    }

    /// The curve as CSV (`lr,loss,smoothed`).
    pub fn to_csv(&self) -> String {
        let mut out = String::from("lr,loss,smoothed\n");
        for p in &self.points {
            out.push_str(&format!("{},{},{}\n", p.lr, p.loss, p.smoothed));
        }
        out
    }
}
