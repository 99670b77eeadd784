//! Global-norm gradient clipping, as `torch.nn.utils.clip_grad_norm_`.
//!
//! Burn clips each tensor on its own (`GradientClipping::Norm`); training
//! recipes written for PyTorch clip the norm of *all* gradients taken together.
//! [`GlobalNormClip`] does exactly what PyTorch does:
//!
//! 1. `total = ‖(‖g₁‖ₚ, …, ‖gₙ‖ₚ)‖ₚ` over every parameter that has a gradient;
//! 2. `coef = min(max_norm / (total + 1e-6), 1)` (computed in f32, like PyTorch);
//! 3. every gradient is multiplied by `coef`;
//! 4. `total` is returned — the norm *before* clipping.
//!
//! A NaN or infinite total is returned as is (never hidden): with
//! `error_if_nonfinite` the call fails instead and names the first parameter
//! whose gradient is not finite, leaving the gradients untouched.
//!
//! ```
//! use burn::module::Module;
//! use burn::nn::LinearConfig;
//! use burn::optim::GradientsParams;
//! use burn::tensor::{Device, Tensor};
//! use ember_runtime::clip::GlobalNormClip;
//!
//! let device = ember_runtime::device::cpu().autodiff();
//! let model = LinearConfig::new(4, 1).init(&device);
//! let x = Tensor::<2>::ones([8, 4], &device).mul_scalar(100.0);
//! let loss = model.forward(x).sum();
//! let mut grads = GradientsParams::from_grads(loss.backward(), &model);
//!
//! let total = GlobalNormClip::new(1.0).clip(&model, &mut grads).unwrap();
//! assert!(total > 1.0); // the norm before clipping
//! let after = GlobalNormClip::new(f64::INFINITY).clip(&model, &mut grads).unwrap();
//! assert!((after - 1.0).abs() < 1e-4); // clipped to max_norm
//! ```

use alloc::vec::Vec;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use crate::Error;
pub use crate::params::tensor_is_finite;
use crate::params::{first_non_finite_grad, scale_grads};

/// Which p-norm to take of the gradients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NormType {
    /// Euclidean norm (`norm_type=2`, PyTorch's default).
    L2,
    /// Largest absolute value (`norm_type=inf`).
    Inf,
    /// Any other `p ≥ 1` (`norm_type=p`); `P(1.0)` is the L1 norm.
    P(f64),
}

impl NormType {
    /// The PyTorch `norm_type` value.
    pub fn as_f64(self) -> f64 {
        match self {
            NormType::L2 => 2.0,
            NormType::Inf => f64::INFINITY,
            NormType::P(p) => p,
        }
    }

    /// From a PyTorch `norm_type` value.
    pub fn from_f64(p: f64) -> Self {
        if p == 2.0 {
            NormType::L2
        } else if p.is_infinite() && p > 0.0 {
            NormType::Inf
        } else {
            NormType::P(p)
        }
    }

    /// The norm of a flattened tensor, as a one-element tensor (stays on device).
    pub fn norm(self, tensor: Tensor<1>) -> Tensor<1> {
        self.norm_nd(tensor)
    }

    /// The norm of a tensor of any rank, as a one-element tensor (no
    /// reshaping, so no copy of a non-contiguous tensor).
    pub fn norm_nd<const D: usize>(self, tensor: Tensor<D>) -> Tensor<1> {
        match self {
            NormType::L2 => tensor.clone().mul(tensor).sum().sqrt(),
            NormType::Inf => tensor.abs().max(),
            NormType::P(1.0) => tensor.abs().sum(),
            NormType::P(p) => tensor.abs().powf_scalar(p).sum().powf_scalar(1.0 / p),
        }
    }
}

/// Clipping of the global gradient norm (`clip_grad_norm_`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GlobalNormClip {
    /// Largest allowed total norm.
    pub max_norm: f64,
    /// The norm to use (default L2).
    pub norm_type: NormType,
    /// Fail (and leave the gradients untouched) when the total norm is NaN or
    /// infinite, instead of returning it (default false, like PyTorch).
    pub error_if_nonfinite: bool,
}

impl GlobalNormClip {
    /// Clip the L2 norm of all gradients to `max_norm`.
    pub fn new(max_norm: f64) -> Self {
        Self {
            max_norm,
            norm_type: NormType::L2,
            error_if_nonfinite: false,
        }
    }

    /// Sets the norm type.
    pub fn with_norm_type(mut self, norm_type: NormType) -> Self {
        self.norm_type = norm_type;
        self
    }

    /// Sets `error_if_nonfinite`.
    pub fn with_error_if_nonfinite(mut self, error: bool) -> Self {
        self.error_if_nonfinite = error;
        self
    }

    /// Clips the gradients of `module` held in `grads` in place and returns the
    /// total norm before clipping.
    ///
    /// # Errors
    /// [`Error::NonFiniteGradNorm`] when `error_if_nonfinite` is set and the total
    /// norm is NaN or infinite; [`Error::InvalidArgument`] for a negative or
    /// NaN `max_norm` or a `p < 1`.
    pub fn clip<M: Module>(&self, module: &M, grads: &mut GradientsParams) -> Result<f64, Error> {
        if self.max_norm.is_nan() || self.max_norm < 0.0 {
            return Err(Error::InvalidArgument {
                message: alloc::format!("max_norm must be ≥ 0, got {}", self.max_norm),
            });
        }
        if let NormType::P(p) = self.norm_type
            && !(p >= 1.0)
        {
            return Err(Error::InvalidArgument {
                message: alloc::format!("norm_type must be ≥ 1, got {p}"),
            });
        }
        let total = combine_norms(grad_norms(module, grads, self.norm_type), self.norm_type);
        if !total.is_finite() && self.error_if_nonfinite {
            let path = first_non_finite_grad(module, grads);
            return Err(Error::NonFiniteGradNorm {
                total_norm: total as f64,
                path,
            });
        }
        let coef = (self.max_norm as f32) / (total + 1e-6);
        if !(coef >= 1.0) {
            // `!(>=)` so that a NaN coefficient propagates as in PyTorch.
            scale_grads(module, grads, f64::from(coef));
        }
        Ok(f64::from(total))
    }
}

/// The `norm_type` norm of the per-tensor norms of `tensors` (f32, like the
/// gradients), with a single read-back from the device. Empty input gives 0.
pub fn global_norm_of(tensors: impl IntoIterator<Item = Tensor<1>>, norm_type: NormType) -> f32 {
    let norms: Vec<Tensor<1>> = tensors.into_iter().map(|t| norm_type.norm(t)).collect();
    if norms.is_empty() {
        return 0.0;
    }
    norm_type.norm(Tensor::cat(norms, 0)).into_scalar::<f32>()
}

/// The `norm_type` norm of every gradient of `module` found in `grads`, in
/// declaration order, each a one-element tensor. The gradients are read in
/// place (no flattened copies).
pub fn grad_norms<M: Module>(
    module: &M,
    grads: &GradientsParams,
    norm_type: NormType,
) -> Vec<Tensor<1>> {
    struct Norms<'a> {
        grads: &'a GradientsParams,
        norm_type: NormType,
        out: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for Norms<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                self.out.push(self.norm_type.norm_nd(g));
            }
        }
    }
    let mut v = Norms {
        grads,
        norm_type,
        out: Vec::new(),
    };
    module.visit(&mut v);
    v.out
}

/// The `norm_type` norm of per-tensor norms (one read-back); 0 for none.
pub fn combine_norms(norms: Vec<Tensor<1>>, norm_type: NormType) -> f32 {
    if norms.is_empty() {
        return 0.0;
    }
    norm_type.norm(Tensor::cat(norms, 0)).into_scalar::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;

    #[test]
    fn no_gradients_give_a_zero_norm() {
        let model = LinearConfig::new(2, 2).init(&crate::device::cpu().autodiff());
        let mut grads = GradientsParams::new();
        assert_eq!(GlobalNormClip::new(1.0).clip(&model, &mut grads), Ok(0.0));
    }

    #[test]
    fn invalid_arguments_are_errors() {
        let model = LinearConfig::new(2, 2).init(&crate::device::cpu().autodiff());
        let mut grads = GradientsParams::new();
        assert!(matches!(
            GlobalNormClip::new(-1.0).clip(&model, &mut grads),
            Err(Error::InvalidArgument { .. })
        ));
        let p_half = GlobalNormClip::new(1.0).with_norm_type(NormType::P(0.5));
        assert!(matches!(
            p_half.clip(&model, &mut grads),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn norm_type_round_trips_torch_values() {
        for p in [1.0, 2.0, 3.0, f64::INFINITY] {
            assert_eq!(NormType::from_f64(p).as_f64(), p);
        }
    }
}
