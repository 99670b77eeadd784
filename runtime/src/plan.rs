//! Memory planning: given a budget, choose batch size, precision and
//! recomputation for a training run, from measurements.
//!
//! A [`Planner`] asks the caller to *measure* the peak memory of a training
//! step (with [`crate::memory::Counting`], for instance) for each candidate
//! setting at two small batch sizes, fits `peak(b) = fixed + b · per_example`,
//! and picks the first candidate, in order of expected speed, whose predicted
//! peak at the wanted batch size fits the budget. If none fits, it takes the
//! candidate that fits the largest micro-batch and makes up the wanted batch
//! with gradient accumulation. [`Plan::explain`] says what it chose and why.
//!
//! ```
//! use ember_runtime::plan::Planner;
//! use ember_runtime::precision::Precision;
//! use ember_runtime::recompute::Strategy;
//!
//! // A made-up model: 100 MB of weights, 4 MB of activations per example in
//! // fp32, half in bf16, a quarter with recomputation.
//! let measure = |b: usize, p: Precision, s: Strategy| {
//!     let mut act = 4_000_000 * b;
//!     if p.is_reduced() { act /= 2 }
//!     if s != Strategy::None { act /= 4 }
//!     Ok(100_000_000 + act)
//! };
//! let plan = Planner::new(160_000_000, 32).plan(measure).unwrap();
//! assert_eq!((plan.choice.batch_size, plan.choice.precision, plan.choice.recompute), (32, Precision::Fp32, Strategy::Auto));
//! ```

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::Error;
use crate::precision::Precision;
use crate::recompute::Strategy;

/// A training setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accumulation: usize,
    /// Compute precision.
    pub precision: Precision,
    /// Recomputation strategy.
    pub recompute: Strategy,
}

/// The fitted memory model of one candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fitted {
    /// Precision of the candidate.
    pub precision: Precision,
    /// Recomputation of the candidate.
    pub recompute: Strategy,
    /// Bytes independent of the batch (weights, optimizer state, buffers).
    pub fixed_bytes: f64,
    /// Bytes per example.
    pub per_example_bytes: f64,
}

impl Fitted {
    /// Predicted peak bytes at `batch` examples per micro-batch.
    pub fn predict(&self, batch: usize) -> f64 {
        self.fixed_bytes + self.per_example_bytes * batch as f64
    }

    /// The largest batch (≤ `max`) predicted to fit `budget`, if any.
    pub fn largest_batch(&self, budget: usize, max: usize) -> Option<usize> {
        (1..=max).rev().find(|&b| self.predict(b) <= budget as f64)
    }
}

/// What the planner chose.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The setting.
    pub choice: Choice,
    /// Its predicted peak bytes.
    pub predicted_peak_bytes: f64,
    /// The budget.
    pub budget_bytes: usize,
    /// Every candidate measured, in order of preference.
    pub candidates: Vec<Fitted>,
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

impl Plan {
    /// A few lines on what was measured and chosen.
    pub fn explain(&self) -> String {
        let c = &self.choice;
        let mut s = format!(
            "memory plan for a budget of {:.0} MiB: batch {} × {} accumulated, precision {}, recompute {} (predicted peak {:.0} MiB)",
            mib(self.budget_bytes as f64),
            c.batch_size,
            c.grad_accumulation,
            c.precision,
            c.recompute,
            mib(self.predicted_peak_bytes)
        );
        for f in &self.candidates {
            s.push_str(&format!(
                "\n  {:>4} + recompute {:<8}: {:.0} MiB fixed + {:.2} MiB per example",
                f.precision.name(),
                f.recompute.name(),
                mib(f.fixed_bytes),
                mib(f.per_example_bytes)
            ));
        }
        s
    }
}

/// Chooses a setting for a memory budget. See the [module documentation](self).
#[derive(Debug, Clone, PartialEq)]
pub struct Planner {
    budget: usize,
    batch_size: usize,
    candidates: Vec<(Precision, Strategy)>,
}

impl Planner {
    /// A planner for `budget` bytes and a wanted batch of `batch_size`, trying
    /// fp32, fp32 + automatic recomputation, bf16, bf16 + recomputation.
    pub fn new(budget: usize, batch_size: usize) -> Self {
        Self {
            budget,
            batch_size: batch_size.max(1),
            candidates: vec![
                (Precision::Fp32, Strategy::None),
                (Precision::Fp32, Strategy::Auto),
                (Precision::Bf16, Strategy::None),
                (Precision::Bf16, Strategy::Auto),
            ],
        }
    }

    /// Replaces the candidates (tried in this order).
    pub fn with_candidates(mut self, candidates: Vec<(Precision, Strategy)>) -> Self {
        self.candidates = candidates;
        self
    }

    /// Measures every candidate with `measure(batch, precision, recompute)`
    /// (the peak bytes of a training step) at two batch sizes and chooses.
    ///
    /// # Errors
    /// The measurement's errors, and [`Error::InvalidArgument`] when not even
    /// a batch of one fits the budget.
    pub fn plan(
        &self,
        mut measure: impl FnMut(usize, Precision, Strategy) -> Result<usize, Error>,
    ) -> Result<Plan, Error> {
        let (b1, b2) = (1usize, 2usize.min(self.batch_size).max(1));
        let mut fitted = Vec::new();
        for &(precision, recompute) in &self.candidates {
            let p1 = measure(b1, precision, recompute)? as f64;
            let (fixed, per) = if b2 > b1 {
                let p2 = measure(b2, precision, recompute)? as f64;
                let per = ((p2 - p1) / (b2 - b1) as f64).max(0.0);
                (p1 - per * b1 as f64, per)
            } else {
                (p1, 0.0)
            };
            let f = Fitted {
                precision,
                recompute,
                fixed_bytes: fixed,
                per_example_bytes: per,
            };
            fitted.push(f);
            if f.predict(self.batch_size) <= self.budget as f64 {
                let choice = Choice {
                    batch_size: self.batch_size,
                    grad_accumulation: 1,
                    precision,
                    recompute,
                };
                return Ok(Plan {
                    choice,
                    predicted_peak_bytes: f.predict(self.batch_size),
                    budget_bytes: self.budget,
                    candidates: fitted,
                });
            }
        }
        // Nothing fits the whole batch: the largest micro-batch, accumulated.
        let best = fitted
            .iter()
            .filter_map(|f| {
                f.largest_batch(self.budget, self.batch_size)
                    .map(|b| (b, f))
            })
            .max_by_key(|(b, _)| *b);
        match best {
            Some((b, f)) => {
                let choice = Choice {
                    batch_size: b,
                    grad_accumulation: self.batch_size.div_ceil(b),
                    precision: f.precision,
                    recompute: f.recompute,
                };
                let predicted = f.predict(b);
                Ok(Plan {
                    choice,
                    predicted_peak_bytes: predicted,
                    budget_bytes: self.budget,
                    candidates: fitted,
                })
            }
            None => {
                let least = fitted
                    .iter()
                    .map(|f| f.predict(1))
                    .fold(f64::INFINITY, f64::min);
                Err(Error::InvalidArgument {
                    message: format!(
                        "a memory budget of {:.0} MiB is too small: even one example needs about {:.0} MiB",
                        mib(self.budget as f64),
                        mib(least)
                    ),
                })
            }
        }
    }
}

/// Parses a size such as `512MiB`, `1.5GiB`, `300MB`, `65536` (bytes).
pub fn parse_bytes(text: &str) -> Result<usize, Error> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || Error::InvalidArgument {
        message: format!("`{text}` is not a size (examples: 512MiB, 1GiB, 300MB, 65536)"),
    };
    let value: f64 = num.parse().map_err(|_| bad())?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "kb" => 1e3,
        "m" | "mib" => 1024.0 * 1024.0,
        "mb" => 1e6,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "gb" => 1e9,
        _ => return Err(bad()),
    };
    Ok((value * factor) as usize)
}
