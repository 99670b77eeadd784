//! Mixed precision: an autocast policy with fp32 master weights, and a
//! dynamic loss scaler with `torch.amp.GradScaler` semantics.
//!
//! # The policy
//!
//! [`autocast`] runs a closure with a compute [`Precision`] (fp32, f16 or
//! bf16), like PyTorch's `with torch.autocast(...)`. Parameters, their
//! gradients and the optimizer state stay fp32 (the *master weights*): the
//! op helpers of this module cast weights to the compute type inside the
//! autodiff graph, so the gradient of a weight flows back through the cast and
//! arrives in fp32. Which ops run in which type follows PyTorch's autocast op
//! lists:
//!
//! | runs in the compute type | runs in fp32 |
//! |---|---|
//! | [`linear`], [`matmul`], [`conv1d`], [`conv2d`] (and attention built from them) | [`layer_norm`], [`softmax`], [`log_softmax`], batch norm (through [`to_f32`]), reductions, every loss in [`crate::loss`] |
//!
//! Elementwise ops (ReLU, GELU, additions) run in the type of their inputs, as
//! in PyTorch; [`add`] adds tensors of different types in the wider one.
//! Activations between two low-precision ops stay in the low type, which is
//! where the memory saving comes from.
//!
//! What backward keeps differs from PyTorch in one place: [`linear`] keeps
//! its input in the compute type and the fp32 weight itself, and casts the
//! weight again during backward, where PyTorch's autocast (and a composition
//! of Burn's `cast` and `matmul`) keeps a low-precision copy of every weight
//! until backward — two bytes per weight, more than the activations of a
//! network whose weights outweigh them. The values are the same: the same
//! casts and products. A frozen weight (LoRA's base layers) keeps no input
//! either, as its gradient is not computed.
//!
//! The policy is per thread with `std` (PyTorch's autocast state is per
//! thread too) and process-wide without it. Outside [`autocast`] every helper
//! is exactly the fp32 op.
//!
//! ```
//! use burn::nn::LinearConfig;
//! use burn::tensor::{Device, FloatDType, Tensor};
//! use ember_runtime::precision::{self, Precision};
//!
//! let device = ember_runtime::device::cpu().autodiff();
//! let layer = LinearConfig::new(8, 4).init(&device);
//! let x = Tensor::<2>::ones([2, 8], &device);
//! let y = precision::autocast(Precision::Bf16, || precision::linear(&layer, x.clone()));
//! assert_eq!(y.dtype(), FloatDType::BF16.into());
//! // The loss is computed in fp32, and the weight's gradient is fp32.
//! let loss = precision::to_f32(y).sum();
//! let grads = loss.backward();
//! assert_eq!(layer.weight.val().grad(&grads).unwrap().dtype(), FloatDType::F32.into());
//! ```
//!
//! # The loss scaler
//!
//! f16 has a small range: gradients below about 6e-8 flush to zero. A
//! [`LossScaler`] multiplies the loss by a large factor before backward and
//! divides the gradients by it before clipping and the optimizer step
//! ([`LossScaler::unscale`]); when a gradient overflows, the step is skipped
//! and the scale halved, and after `growth_interval` good steps in a row it
//! doubles — `torch.amp.GradScaler`'s rule, with its defaults (initial scale
//! 2^16, growth ×2 every 2000 steps, back-off ×0.5). bf16 has fp32's range
//! and does not need one; [`LossScaler::for_precision`] gives a disabled
//! scaler for it.

use burn::tensor::{DType, FloatDType, Tensor};

use crate::Error;

mod compute;
mod scaler;

pub use compute::{
    add, attention, attention_softmax, cast_module, conv1d, conv2d, layer_norm, linear,
    log_softmax, matmul, matmul_reusing_lhs, softmax,
};
pub use scaler::{LossScaler, LossScalerConfig, Unscaled};

/// The floating-point type compute runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Precision {
    /// Everything in fp32 (the default).
    #[default]
    Fp32,
    /// IEEE half precision (5 exponent bits: needs loss scaling).
    F16,
    /// bfloat16 (fp32's exponent range, 8 bits of mantissa).
    Bf16,
}

impl Precision {
    /// The Burn dtype of the compute type.
    pub fn dtype(self) -> FloatDType {
        match self {
            Precision::Fp32 => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
            Precision::Bf16 => FloatDType::BF16,
        }
    }

    /// Whether compute runs below fp32.
    pub fn is_reduced(self) -> bool {
        self != Precision::Fp32
    }

    /// Bytes per element of the compute type.
    pub fn bytes(self) -> usize {
        if self.is_reduced() { 2 } else { 4 }
    }

    /// The name used on command lines and in configs: `fp32`, `f16`, `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }

    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => Precision::F16,
            2 => Precision::Bf16,
            _ => Precision::Fp32,
        }
    }
}

impl core::fmt::Display for Precision {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "f32" | "float32" => Ok(Precision::Fp32),
            "f16" | "fp16" | "float16" | "half" => Ok(Precision::F16),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            _ => Err(Error::InvalidArgument {
                message: alloc::format!("unknown precision `{s}` (expected fp32, f16 or bf16)"),
            }),
        }
    }
}

#[cfg(feature = "std")]
std::thread_local! {
    static CURRENT: core::cell::Cell<u8> = const { core::cell::Cell::new(0) };
}

#[cfg(not(feature = "std"))]
static CURRENT: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

#[cfg(feature = "std")]
fn set_current(p: Precision) -> Precision {
    CURRENT.with(|c| Precision::from_code(c.replace(p.code())))
}

#[cfg(not(feature = "std"))]
fn set_current(p: Precision) -> Precision {
    Precision::from_code(CURRENT.swap(p.code(), core::sync::atomic::Ordering::Relaxed))
}

/// The compute precision in force (fp32 outside [`autocast`]).
pub fn current() -> Precision {
    #[cfg(feature = "std")]
    {
        CURRENT.with(|c| Precision::from_code(c.get()))
    }
    #[cfg(not(feature = "std"))]
    {
        Precision::from_code(CURRENT.load(core::sync::atomic::Ordering::Relaxed))
    }
}

/// Restores the previous precision when dropped (also on unwinding).
struct Restore(Precision);

impl Drop for Restore {
    fn drop(&mut self) {
        set_current(self.0);
    }
}

/// Runs `f` with compute precision `precision` (nested calls override and
/// restore, like PyTorch's autocast contexts).
pub fn autocast<R>(precision: Precision, f: impl FnOnce() -> R) -> R {
    let _restore = Restore(set_current(precision));
    f()
}

fn is(x: &DType, dtype: FloatDType) -> bool {
    *x == DType::from(dtype)
}

pub use crate::ops::to_f32;

/// `x` in the compute type in force (no-op outside autocast).
pub fn to_compute<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let p = current();
    if !p.is_reduced() || is(&x.dtype(), p.dtype()) {
        x
    } else {
        x.cast(p.dtype())
    }
}
