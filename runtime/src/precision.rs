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
//! let device = Device::flex().autodiff();
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

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::conv::{Conv1d, Conv2d};
use burn::nn::{LayerNorm, Linear};
use burn::optim::GradientsParams;
use burn::tensor::{DType, FloatDType, Tensor};

use crate::Error;
use alloc::vec::Vec;

use crate::params::scale_grads;

mod bias;
mod cast_matmul;

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

/// `x` in fp32 when it is in a reduced type (f16, bf16); f32 and f64 stay as
/// they are. For norms, softmax, losses and reductions under autocast.
pub fn to_f32<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let dtype = x.dtype();
    if is(&dtype, FloatDType::F16) || is(&dtype, FloatDType::BF16) {
        x.cast(FloatDType::F32)
    } else {
        x
    }
}

/// `x` in the compute type in force (no-op outside autocast).
pub fn to_compute<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let p = current();
    if !p.is_reduced() || is(&x.dtype(), p.dtype()) {
        x
    } else {
        x.cast(p.dtype())
    }
}

/// `a + b`; when their types differ, in fp32 (PyTorch's type promotion for
/// the mixes autocast produces).
pub fn add<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    if a.dtype() == b.dtype() {
        a + b
    } else {
        to_f32(a) + to_f32(b)
    }
}

/// `Linear` in the compute type: input, weight and bias cast inside the graph.
/// For backward it keeps the input in the compute type and the fp32 weight
/// itself, not a low-precision copy of the weight: the product's backward
/// casts the weight again (PyTorch's autocast keeps the copy, two bytes per
/// weight).
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    let p = current();
    if !p.is_reduced() {
        let x = to_f32(x);
        // `x·W + b` as Burn's `Linear` computes it, with the bias added by
        // one op (in place and split over the threads on the CPU).
        let forward = |x: Tensor<2>| {
            let y = x.matmul(layer.weight.val());
            match &layer.bias {
                Some(b) => bias::add_bias(y, b.val()),
                None => y,
            }
        };
        return if D >= 2 {
            fold_rows(x, forward)
        } else {
            layer.forward(x)
        };
    }
    let dt = p.dtype();
    cast_matmul::linear(
        x,
        layer.weight.val(),
        layer.bias.as_ref().map(|b| b.val()),
        dt,
    )
}

/// `f` applied to `x [.., d]` viewed as one matrix `[rows, d]` (the leading
/// dimensions folded into the rows), its output `[rows, e]` given back the
/// leading dimensions. For a linear layer on a `[batch, tokens, d]` input,
/// the product then runs as one matrix product over all tokens (split over
/// the thread pool by rows), with the same values, instead of a product per
/// batch item; its gradients are the same one-matrix products.
fn fold_rows<const D: usize>(x: Tensor<D>, f: impl FnOnce(Tensor<2>) -> Tensor<2>) -> Tensor<D> {
    let dims = x.dims();
    let rows: usize = dims[..D - 1].iter().product();
    let y = f(x.reshape([rows, dims[D - 1]]));
    let mut out = dims;
    out[D - 1] = y.dims()[1];
    y.reshape(out)
}

/// Matrix product in the compute type.
pub fn matmul<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    let p = current();
    if !p.is_reduced() {
        return to_f32(a).matmul(to_f32(b));
    }
    a.cast(p.dtype()).matmul(b.cast(p.dtype()))
}

/// [`matmul`] of two tensors with the same leading dimensions (no
/// broadcasting), for an `a` that backward keeps anyway in its own type —
/// the fp32 output of [`softmax`] before the product with the values in
/// attention: backward casts `a` again instead of keeping a low-precision
/// copy of it beside the original. Same values as [`matmul`].
pub fn matmul_reusing_lhs<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    let p = current();
    if !p.is_reduced() {
        return to_f32(a).matmul(to_f32(b));
    }
    cast_matmul::matmul_keeping_lhs(a, b, p.dtype())
}

/// Casts every float parameter of a module copy to `dtype` inside the graph
/// (gradients still reach the fp32 originals).
struct CastParams(FloatDType);

impl ModuleMapper for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dt = self.0;
        param.map(|t| t.cast(dt))
    }
}

/// A copy of `module` whose float parameters are cast to the compute type
/// inside the autodiff graph (the originals stay fp32 and receive the
/// gradients). For layers without a helper here.
pub fn cast_module<M: Module>(module: &M) -> M {
    let p = current();
    if !p.is_reduced() {
        return module.clone();
    }
    module.clone().map(&mut CastParams(p.dtype()))
}

/// 1-D convolution in the compute type.
pub fn conv1d(layer: &Conv1d, x: Tensor<3>) -> Tensor<3> {
    let p = current();
    if !p.is_reduced() {
        return layer.forward(to_f32(x));
    }
    cast_module(layer).forward(x.cast(p.dtype()))
}

/// 2-D convolution in the compute type.
pub fn conv2d(layer: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let p = current();
    if !p.is_reduced() {
        return layer.forward(to_f32(x));
    }
    cast_module(layer).forward(x.cast(p.dtype()))
}

/// Layer norm in fp32 (its input is cast up; the output is fp32).
pub fn layer_norm<const D: usize>(layer: &LayerNorm, x: Tensor<D>) -> Tensor<D> {
    layer.forward(to_f32(x))
}

/// Softmax in fp32 ([`crate::activation::softmax`]: backward keeps only the
/// output).
pub fn softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    crate::activation::softmax(to_f32(x), dim)
}

/// [`crate::activation::attention_softmax`] in fp32 (autocast's softmax
/// list): attention's probabilities from its scores, a factor and a
/// `[batch, keys]` additive key mask.
pub fn attention_softmax(scores: Tensor<4>, scale: f32, key_bias: Option<Tensor<2>>) -> Tensor<4> {
    crate::activation::attention_softmax(to_f32(scores), scale, key_bias.map(to_f32))
}

/// Log-softmax in fp32.
pub fn log_softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    burn::tensor::activation::log_softmax(to_f32(x), dim)
}

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
/// [module documentation](self).
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
            path: crate::train::first_non_finite_grad(model, grads),
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
