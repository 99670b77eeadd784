//! The dynamic loss scaler: `torch.amp.GradScaler`'s rule for f16.

use alloc::vec::Vec;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use super::{Precision, to_f32};
use crate::params::scale_grads;

/// `torch.amp.GradScaler`'s settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossScalerConfig {
    /// The first scale (PyTorch: 2^16).
    pub init_scale: f64,
    /// Factor applied after `growth_interval` good steps in a row (2.0).
    pub growth_factor: f64,
    /// Factor applied after a step with non-finite gradients (0.5).
    pub backoff_factor: f64,
    /// Good steps in a row before growing (2000).
    pub growth_interval: u64,
    /// Whether scaling is on (a disabled scaler is the identity and never
    /// skips a step on its own).
    pub enabled: bool,
}

impl Default for LossScalerConfig {
    fn default() -> Self {
        Self {
            init_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            enabled: true,
        }
    }
}

impl LossScalerConfig {
    /// Sets the initial scale.
    pub fn with_init_scale(mut self, scale: f64) -> Self {
        self.init_scale = scale;
        self
    }
    /// Sets the growth interval.
    pub fn with_growth_interval(mut self, steps: u64) -> Self {
        self.growth_interval = steps;
        self
    }
    /// The scaler.
    pub fn init(&self) -> LossScaler {
        LossScaler {
            config: *self,
            scale: self.init_scale,
            growth_tracker: 0,
        }
    }
}

/// What [`LossScaler::unscale`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Unscaled {
    /// Some gradient was NaN or infinite: the step must be skipped.
    pub found_inf: bool,
    /// The first parameter (declaration order) whose gradient is not finite.
    pub path: Option<alloc::string::String>,
}

/// A dynamic loss scaler with `torch.amp.GradScaler` semantics. See the
/// [module documentation](super).
///
/// ```
/// use ember_runtime::precision::LossScalerConfig;
///
/// let mut scaler = LossScalerConfig::default().with_growth_interval(2).init();
/// assert_eq!(scaler.scale(), 65536.0);
/// scaler.update(true); // overflow: halve, the step was skipped
/// assert_eq!(scaler.scale(), 32768.0);
/// scaler.update(false);
/// scaler.update(false); // two good steps: double
/// assert_eq!(scaler.scale(), 65536.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossScaler {
    config: LossScalerConfig,
    scale: f64,
    growth_tracker: u64,
}

impl LossScaler {
    /// A scaler suited to `precision`: GradScaler's defaults for f16, a
    /// disabled one for fp32 and bf16.
    pub fn for_precision(precision: Precision) -> Self {
        LossScalerConfig {
            enabled: precision == Precision::F16,
            ..Default::default()
        }
        .init()
    }

    /// Whether scaling is on.
    pub fn is_enabled(&self) -> bool {
        self.config.enabled
    }

    /// The current scale (1 when disabled).
    pub fn scale(&self) -> f64 {
        if self.config.enabled { self.scale } else { 1.0 }
    }

    /// Good steps since the last growth or back-off.
    pub fn growth_tracker(&self) -> u64 {
        self.growth_tracker
    }

    /// The loss multiplied by the scale (computed in fp32).
    pub fn scale_loss(&self, loss: Tensor<1>) -> Tensor<1> {
        if self.config.enabled {
            to_f32(loss).mul_scalar(self.scale)
        } else {
            loss
        }
    }

    /// Divides every gradient of `model` in `grads` by the scale (in place)
    /// and checks them: call it once per optimizer step, after accumulation
    /// and before clipping, so clipping sees the true gradients.
    pub fn unscale<M: Module>(&self, model: &M, grads: &mut GradientsParams) -> Unscaled {
        if self.config.enabled {
            // PyTorch multiplies by the fp32 reciprocal of the scale.
            scale_grads(model, grads, f64::from((1.0 / self.scale) as f32));
        }
        // One read-back: (g − g) sums to 0 exactly when every element is
        // finite. Computed on the gradients in place (no flattened copies).
        struct Check<'a> {
            grads: &'a GradientsParams,
            sums: Vec<Tensor<1>>,
        }
        impl ModuleVisitor for Check<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if let Some(g) = self.grads.get::<D>(param.id) {
                    self.sums.push((g.clone() - g).sum());
                }
            }
        }
        let mut check = Check {
            grads,
            sums: Vec::new(),
        };
        model.visit(&mut check);
        if check.sums.is_empty() {
            return Unscaled {
                found_inf: false,
                path: None,
            };
        }
        let sums = Tensor::cat(check.sums, 0)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        if sums.iter().all(|s| *s == 0.0) {
            return Unscaled {
                found_inf: false,
                path: None,
            };
        }
        Unscaled {
            found_inf: true,
            path: crate::params::first_non_finite_grad(model, grads),
        }
    }

    /// Updates the scale after a step: back off after non-finite gradients,
    /// grow after `growth_interval` good steps in a row.
    pub fn update(&mut self, found_inf: bool) {
        if !self.config.enabled {
            return;
        }
        if found_inf {
            self.scale *= self.config.backoff_factor;
            self.growth_tracker = 0;
        } else {
            self.growth_tracker += 1;
            if self.growth_tracker >= self.config.growth_interval {
                self.scale *= self.config.growth_factor;
                self.growth_tracker = 0;
            }
        }
    }

    /// The state to checkpoint: `(scale, growth_tracker)`.
    pub fn state(&self) -> (f64, u64) {
        (self.scale, self.growth_tracker)
    }

    /// Restores a checkpointed state.
    pub fn load_state(&mut self, (scale, growth_tracker): (f64, u64)) {
        self.scale = scale;
        self.growth_tracker = growth_tracker;
    }
}
