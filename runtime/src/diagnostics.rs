//! Gradient diagnostics: per-parameter gradient and weight norms, the global
//! norm, and a large-gradient warning.
//!
//! "Monitor gradient norms — exploding or vanishing gradients diagnose most
//! training failures early." [`GradReport`] is what the ML Core notes' backprop trace
//! prints for each parameter (`grad_norm`, `param_norm`), plus the global norm
//! and the first parameter whose gradient is not finite.
//!
//! ```
//! use burn::nn::LinearConfig;
//! use burn::optim::GradientsParams;
//! use burn::tensor::{Device, Tensor};
//! use ember_runtime::diagnostics::{GradMonitor, GradReport};
//!
//! let device = ember_runtime::device::cpu().autodiff();
//! let model = LinearConfig::new(4, 2).init(&device);
//! let loss = model.forward(Tensor::<2>::ones([3, 4], &device)).sum();
//! let grads = GradientsParams::from_grads(loss.backward(), &model);
//!
//! let report = GradReport::new(&model, &grads);
//! assert_eq!(report.params[0].path, "weight");
//! assert!(report.global_norm > 0.0);
//! let mut monitor = GradMonitor::new(1e-3);
//! assert!(monitor.check(report.global_norm).is_some());
//! ```

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use crate::clip::NormType;
use crate::params::parameters;

/// Norms of one parameter and of its gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamStats {
    /// Dotted parameter path.
    pub path: String,
    /// Number of scalars.
    pub numel: usize,
    /// L2 norm of the gradient (`None` when the parameter got no gradient).
    pub grad_norm: Option<f32>,
    /// L2 norm of the parameter value.
    pub param_norm: f32,
}

/// Gradient statistics of a whole module after a backward pass.
#[derive(Debug, Clone, PartialEq)]
pub struct GradReport {
    /// One entry per float parameter, in declaration order.
    pub params: Vec<ParamStats>,
    /// L2 norm of all gradients together (what `clip_grad_norm_` returns).
    pub global_norm: f32,
}

impl GradReport {
    /// Computes the report (one read-back of all norms from the device).
    pub fn new<M: Module>(module: &M, grads: &GradientsParams) -> Self {
        let entries = parameters(module, Some(grads));
        // Stack every norm into one tensor so the device is read once.
        let mut norms = Vec::with_capacity(entries.len() * 2);
        for entry in &entries {
            norms.push(NormType::L2.norm(entry.value.clone()));
            if let Some(grad) = &entry.grad {
                norms.push(NormType::L2.norm(grad.clone()));
            }
        }
        let values: Vec<f32> = if norms.is_empty() {
            Vec::new()
        } else {
            Tensor::cat(norms, 0)
                .into_data()
                .try_into_vec::<f32>()
                .unwrap_or_default()
        };
        let mut it = values.into_iter();
        let mut params = Vec::with_capacity(entries.len());
        let mut sum_sq = 0.0f64;
        for entry in entries {
            let param_norm = it.next().unwrap_or(f32::NAN);
            let grad_norm = entry.grad.as_ref().map(|_| it.next().unwrap_or(f32::NAN));
            if let Some(g) = grad_norm {
                sum_sq += f64::from(g) * f64::from(g);
            }
            params.push(ParamStats {
                numel: entry.numel(),
                path: entry.path,
                grad_norm,
                param_norm,
            });
        }
        Self {
            params,
            global_norm: libm::sqrt(sum_sq) as f32,
        }
    }

    /// The first parameter whose gradient norm is NaN or infinite.
    pub fn first_non_finite(&self) -> Option<&ParamStats> {
        self.params
            .iter()
            .find(|p| p.grad_norm.is_some_and(|g| !g.is_finite()))
    }

    /// Parameters that received no gradient (frozen or unused).
    pub fn without_grad(&self) -> impl Iterator<Item = &ParamStats> {
        self.params.iter().filter(|p| p.grad_norm.is_none())
    }
}

impl fmt::Display for GradReport {
    /// One line per parameter, as the ML Core notes' trace prints them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.params {
            match p.grad_norm {
                Some(g) => writeln!(
                    f,
                    "{}: grad_norm={g:.4}, param_norm={:.4}",
                    p.path, p.param_norm
                )?,
                None => writeln!(f, "{}: no grad, param_norm={:.4}", p.path, p.param_norm)?,
            }
        }
        write!(f, "global grad_norm={:.4}", self.global_norm)
    }
}

/// Why a gradient norm deserves attention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GradWarning {
    /// The norm is above the configured threshold.
    Large {
        /// The norm seen.
        norm: f64,
        /// The configured threshold.
        threshold: f64,
    },
    /// The norm is NaN or infinite.
    NonFinite {
        /// The norm seen.
        norm: f64,
    },
}

impl fmt::Display for GradWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GradWarning::Large { norm, .. } => write!(f, "large grad norm {norm:.2}"),
            GradWarning::NonFinite { norm } => write!(f, "non-finite grad norm {norm}"),
        }
    }
}

/// Flags gradient norms above a threshold (the ML Core notes use 5.0) or not finite,
/// and counts them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradMonitor {
    /// Norms strictly above this are reported as large.
    pub threshold: f64,
    /// Number of large norms seen so far.
    pub large: u64,
    /// Number of non-finite norms seen so far.
    pub non_finite: u64,
}

impl Default for GradMonitor {
    fn default() -> Self {
        Self::new(5.0)
    }
}

impl GradMonitor {
    /// A monitor warning above `threshold`.
    pub fn new(threshold: f64) -> Self {
        Self {
            threshold,
            large: 0,
            non_finite: 0,
        }
    }

    /// Records one norm; returns a warning when it is large or not finite.
    pub fn check(&mut self, norm: impl Into<f64>) -> Option<GradWarning> {
        let norm = norm.into();
        if !norm.is_finite() {
            self.non_finite += 1;
            Some(GradWarning::NonFinite { norm })
        } else if norm > self.threshold {
            self.large += 1;
            Some(GradWarning::Large {
                norm,
                threshold: self.threshold,
            })
        } else {
            None
        }
    }
}
