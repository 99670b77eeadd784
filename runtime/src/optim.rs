//! Burn's optimizers with PyTorch's defaults.
//!
//! Ember uses Burn's optimizers as they are: their update rules were checked
//! against PyTorch step by step (300 steps of the ML Core notes' regression problem,
//! `tests/parity.rs`) and agree to f32 rounding:
//!
//! * **SGD** — `p ← p − lr·d`, with `d = g + wd·p` (L2 weight decay folded into
//!   the gradient) and, with momentum, `buf ← μ·buf + (1 − dampening)·d`
//!   (`buf = d` on the first step) and `d = buf`, or `d + μ·buf` for Nesterov.
//!   Same as `torch.optim.SGD`.
//! * **Adam** — weight decay is an *L2 penalty added to the gradient* before the
//!   moments (PyTorch's `Adam(weight_decay=…)`), bias-corrected moments,
//!   `ε` added to `√v̂` (Burn computes the same quantity as
//!   `m·√(1−β₂ᵗ)/(1−β₁ᵗ) / (√v + ε·√(1−β₂ᵗ))`).
//! * **AdamW** — *decoupled* decay `p ← p·(1 − lr·wd)` before the Adam update,
//!   as `torch.optim.AdamW`.
//!
//! Two things differ.
//!
//! **Adam's scalars.** Burn computes the bias corrections `1 − β₁ᵗ`, `1 − β₂ᵗ` in
//! f32 (`beta.powi(t)`), where PyTorch uses Python floats (f64). In the first
//! steps `1 − β₂ᵗ` is a difference of nearly equal numbers, and the f32 result
//! is off by up to ~1e-4 relative: Burn's first Adam updates differ from
//! PyTorch's by that much, and the f64 parity test shows it (2.5% on a small
//! weight by step 10). Ember's [`Adam`] (behind [`adam`] and [`adamw`])
//! keeps every scalar in f64 and follows `torch.optim.Adam`/`AdamW`'s
//! single-tensor code path step for step. It plugs into Burn's
//! `ModuleOptimizer` like any Burn optimizer, and its state is Burn's
//! `AdamState`, so records are interchangeable.
//!
//! **The defaults**, and a PyTorch recipe ported with Burn's defaults silently
//! trains differently:
//!
//! | | PyTorch | Burn 0.22 | Ember's constructors |
//! |---|---|---|---|
//! | Adam/AdamW `eps` | 1e-8 | 1e-5 | 1e-8 |
//! | AdamW `weight_decay` | 1e-2 | 1e-4 | as given |
//! | SGD momentum `dampening` | 0 | 0.1 | as given |
//!
//! Burn's SGD keeps `momentum` and `weight_decay` in f32; in f32 training this
//! is exactly what PyTorch does (a Python float meets an f32 tensor), and the
//! parity fixtures give PyTorch the same f32-rounded values for the f64 runs.
//!
//! The learning rate is passed at each step, as everywhere in Burn.
//!
//! ```
//! use ember_runtime::optim;
//!
//! let mut adamw = optim::adamw(0.01).init();
//! let mut sgd = optim::sgd_momentum(0.9, 0.0, false).init();
//! # let _ = (&mut adamw, &mut sgd);
//! ```

use alloc::vec::Vec;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer, SgdConfig,
};

use burn::tensor::{DType, Device, Tensor, TensorData};

/// PyTorch's Adam/AdamW epsilon.
pub const TORCH_ADAM_EPS: f32 = 1e-8;

/// `torch.optim.SGD(weight_decay=weight_decay)` without momentum.
pub fn sgd(weight_decay: f32) -> SgdConfig {
    let config = SgdConfig::new();
    if weight_decay != 0.0 {
        config.with_weight_decay(Some(WeightDecayConfig::new(weight_decay)))
    } else {
        config
    }
}

/// `torch.optim.SGD(momentum=…, dampening=…, nesterov=…)`.
pub fn sgd_momentum(momentum: f64, dampening: f64, nesterov: bool) -> SgdConfig {
    SgdConfig::new().with_momentum(Some(
        MomentumConfig::new()
            .with_momentum(momentum)
            .with_dampening(dampening)
            .with_nesterov(nesterov),
    ))
}

/// `torch.optim.Adam(weight_decay=weight_decay)`: L2 penalty in the gradient.
pub fn adam(weight_decay: f64) -> Adam {
    Adam {
        weight_decay,
        decoupled: false,
        ..Adam::default()
    }
}

/// `torch.optim.AdamW(weight_decay=weight_decay)`: decoupled decay.
pub fn adamw(weight_decay: f64) -> Adam {
    Adam {
        weight_decay,
        decoupled: true,
        ..Adam::default()
    }
}

/// Adam and AdamW with PyTorch's arithmetic (f64 scalars, `torch.optim.Adam`'s
/// single-tensor update order). Defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    /// β₁ (default 0.9).
    pub beta1: f64,
    /// β₂ (default 0.999).
    pub beta2: f64,
    /// ε added to `√v̂` (default 1e-8).
    pub eps: f64,
    /// Weight decay (default 0).
    pub weight_decay: f64,
    /// `true`: AdamW's decoupled decay `p ← p·(1 − lr·wd)`; `false`: Adam's L2
    /// penalty `g ← g + wd·p`.
    pub decoupled: bool,
}

impl Default for Adam {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }
}

impl Adam {
    /// Sets β₁ and β₂.
    pub fn with_betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }

    /// Sets ε.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// A Burn `ModuleOptimizer` running this update on every parameter.
    pub fn init(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }
}

/// Element types the fused CPU step runs on.
trait FusedElem:
    Copy
    + burn::tensor::Element
    + core::ops::Add<Output = Self>
    + core::ops::Sub<Output = Self>
    + core::ops::Mul<Output = Self>
    + core::ops::Div<Output = Self>
{
    fn of(x: f64) -> Self;
    fn sqrt(self) -> Self;
}

// Both square roots are correctly rounded; std's compiles to the
// instruction (and vectorises), libm's is the no_std fallback.
impl FusedElem for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        #[cfg(feature = "std")]
        return f32::sqrt(self);
        #[cfg(not(feature = "std"))]
        return libm::sqrtf(self);
    }
}

impl FusedElem for f64 {
    fn of(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        #[cfg(feature = "std")]
        return f64::sqrt(self);
        #[cfg(not(feature = "std"))]
        return libm::sqrt(self);
    }
}

fn to_vec<const D: usize, E: FusedElem>(t: Tensor<D>) -> Vec<E> {
    t.into_data().try_into_vec::<E>().unwrap_or_else(|e| {
        panic!(
            "optimizer state is not {}: {e:?}",
            core::any::type_name::<E>()
        )
    })
}

impl Adam {
    /// The same update as the tensor-op path in one pass over the CPU
    /// buffers: each element goes through the same operations, in the same
    /// order and with the scalars rounded to the element type as Burn
    /// rounds them, instead of a chain of about fourteen whole-tensor ops
    /// that each read and write the full parameter.
    fn step_fused<const D: usize, E: FusedElem>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamState<D>>,
    ) -> (Tensor<D>, Option<AdamState<D>>) {
        let (device, dtype, shape) = (param.device(), param.dtype(), param.shape());
        let mut p = to_vec::<D, E>(param);
        let g = to_vec::<D, E>(grad);
        let (time, m, v) = match state {
            Some(AdamState { momentum: s }) => (
                s.time + 1,
                Some(to_vec::<D, E>(s.moment_1)),
                Some(to_vec::<D, E>(s.moment_2)),
            ),
            None => (1, None, None),
        };
        let t = time as i32;
        let bias_correction1 = 1.0 - libm::pow(self.beta1, f64::from(t));
        let bias_correction2_sqrt = libm::sqrt(1.0 - libm::pow(self.beta2, f64::from(t)));
        let (decay, wd) = (
            E::of(1.0 - lr * self.weight_decay),
            E::of(self.weight_decay),
        );
        let (b1, one_b1, b2, one_b2) = (
            E::of(self.beta1),
            E::of(1.0 - self.beta1),
            E::of(self.beta2),
            E::of(1.0 - self.beta2),
        );
        let (bc2, eps, step_size) = (
            E::of(bias_correction2_sqrt),
            E::of(self.eps),
            E::of(lr / bias_correction1),
        );
        let n = p.len();
        // A first step starts from zero moments: 0·β + x = x exactly (up to
        // the sign of a zero), so this is the tensor path's first step
        // without a branch per element, which keeps the loop vectorisable.
        let mut m = m.unwrap_or_else(|| alloc::vec![E::of(0.0); n]);
        let mut v = v.unwrap_or_else(|| alloc::vec![E::of(0.0); n]);
        let (decays, decoupled) = (self.weight_decay != 0.0, self.decoupled);
        // One pass; the weight-decay branches are loop-invariant.
        for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(&g) {
            let mut g = g;
            if decays {
                if decoupled {
                    *p = *p * decay;
                } else {
                    g = g + *p * wd;
                }
            }
            *m = *m * b1 + g * one_b1;
            *v = *v * b2 + (g * g) * one_b2;
            let denom = v.sqrt() / bc2 + eps;
            *p = *p - (*m / denom) * step_size;
        }
        let tensor = |data: Vec<E>| {
            Tensor::<D>::from_data(TensorData::new(data, shape.clone()), (&device, dtype))
        };
        let (m, v) = (tensor(m), tensor(v));
        (
            tensor(p),
            Some(AdamState::new(AdaptiveMomentumState::new(time, m, v))),
        )
    }
}

#[cfg(feature = "simd")]
impl Adam {
    /// [`Adam::step_fused`] for f32 CPU tensors on their own buffers: the
    /// moments (and the parameter, when nothing else holds it) are updated
    /// in place, split over the thread pool, instead of being copied out of
    /// and back into tensors. Same arithmetic, element for element. The
    /// inputs come back unchanged when a tensor is not a plain f32 CPU
    /// buffer.
    #[allow(
        clippy::type_complexity,
        clippy::result_large_err,
        reason = "the error hands the unchanged inputs back for the composed update"
    )]
    fn step_flex<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamState<D>>,
    ) -> Result<(Tensor<D>, Option<AdamState<D>>), (Tensor<D>, Tensor<D>, Option<AdamState<D>>)>
    {
        use crate::kernel;
        use burn::backend::Flex;
        use burn::backend::flex::FlexTensor;

        let fits = |t: &Tensor<D>| t.dtype() == DType::F32 && t.shape() == param.shape();
        if !fits(&grad)
            || !state
                .as_ref()
                .is_none_or(|s| fits(&s.momentum.moment_1) && fits(&s.momentum.moment_2))
        {
            return Err((param, grad, state));
        }
        let (time, m, v) = match state {
            Some(AdamState { momentum: s }) => (s.time + 1, s.moment_1, s.moment_2),
            None => {
                let zeros = || Tensor::<D>::zeros(param.shape(), (&param.device(), DType::F32));
                (1, zeros(), zeros())
            }
        };
        // Each tensor's buffer, or the tensor back; a buffer that is not
        // plain f32 values also sends everything back.
        let own = |t: Tensor<D>| -> Result<FlexTensor, Tensor<D>> {
            match t.clone().try_into_primitive::<Flex>() {
                // Dropping `t` leaves the primitive the buffer's only
                // holder when nothing else holds it.
                Ok(f) if kernel::values(&f).is_some() => Ok(f),
                _ => Err(t),
            }
        };
        let restore = |r: Result<FlexTensor, Tensor<D>>| match r {
            Ok(f) => Tensor::<D>::from_primitive::<Flex>(f),
            Err(t) => t,
        };
        let (p, g, m, v) = match (own(param), own(grad), own(m), own(v)) {
            (Ok(p), Ok(g), Ok(m), Ok(v)) => (p, g, m, v),
            (p, g, m, v) => {
                let (m, v) = (restore(m), restore(v));
                let state =
                    (time > 1).then(|| AdamState::new(AdaptiveMomentumState::new(time - 1, m, v)));
                return Err((restore(p), restore(g), state));
            }
        };
        // Every buffer has its values, so these are the buffers themselves
        // or, when shared, fresh copies.
        let (Ok(mut p), Ok(mut m), Ok(mut v)) = (
            kernel::writable(p),
            kernel::writable(m),
            kernel::writable(v),
        ) else {
            unreachable!("writable: every tensor here has its values");
        };
        let t = time as i32;
        let bias_correction1 = 1.0 - libm::pow(self.beta1, f64::from(t));
        let update = kernel::AdamUpdate {
            decay: (1.0 - lr * self.weight_decay) as f32,
            wd: self.weight_decay as f32,
            beta1: (self.beta1 as f32, (1.0 - self.beta1) as f32),
            beta2: (self.beta2 as f32, (1.0 - self.beta2) as f32),
            bias_correction2_sqrt: libm::sqrt(1.0 - libm::pow(self.beta2, f64::from(t))) as f32,
            eps: self.eps as f32,
            step_size: (lr / bias_correction1) as f32,
            decays: self.weight_decay != 0.0,
            decoupled: self.decoupled,
        };
        match (
            kernel::values_mut(&mut p),
            kernel::values(&g),
            kernel::values_mut(&mut m),
            kernel::values_mut(&mut v),
        ) {
            (Some(ps), Some(gs), Some(ms), Some(vs)) => kernel::adam(&update, ps, gs, ms, vs),
            _ => unreachable!("writable buffers have their values"),
        }
        let tensor = Tensor::<D>::from_primitive::<Flex>;
        Ok((
            tensor(p),
            Some(AdamState::new(AdaptiveMomentumState::new(
                time,
                tensor(m),
                tensor(v),
            ))),
        ))
    }
}

impl Optimizer for Adam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        mut param: Tensor<D>,
        mut grad: Tensor<D>,
        #[cfg_attr(not(feature = "simd"), allow(unused_mut))] mut state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        #[cfg(feature = "simd")]
        if param.device() == Device::flex() {
            match self.step_flex(lr, param, grad, state) {
                Ok(done) => return done,
                Err((p, g, s)) => (param, grad, state) = (p, g, s),
            }
        }
        if param.device() == Device::flex() {
            let dtype = param.dtype();
            let same = grad.dtype() == dtype
                && state.as_ref().is_none_or(|s| {
                    s.momentum.moment_1.dtype() == dtype && s.momentum.moment_2.dtype() == dtype
                });
            if same && dtype == DType::F32 {
                return self.step_fused::<D, f32>(lr, param, grad, state);
            }
            if same && dtype == DType::F64 {
                return self.step_fused::<D, f64>(lr, param, grad, state);
            }
        }
        if self.weight_decay != 0.0 {
            if self.decoupled {
                param = param.mul_scalar(1.0 - lr * self.weight_decay);
            } else {
                grad = grad.add(param.clone().mul_scalar(self.weight_decay));
            }
        }
        let (time, m, v) = match state {
            Some(AdamState { momentum: s }) => (
                s.time + 1,
                s.moment_1
                    .mul_scalar(self.beta1)
                    .add(grad.clone().mul_scalar(1.0 - self.beta1)),
                s.moment_2
                    .mul_scalar(self.beta2)
                    .add(grad.clone().mul(grad).mul_scalar(1.0 - self.beta2)),
            ),
            None => (
                1,
                grad.clone().mul_scalar(1.0 - self.beta1),
                grad.clone().mul(grad).mul_scalar(1.0 - self.beta2),
            ),
        };
        let t = time as i32;
        let bias_correction1 = 1.0 - libm::pow(self.beta1, f64::from(t));
        let bias_correction2_sqrt = libm::sqrt(1.0 - libm::pow(self.beta2, f64::from(t)));
        let step_size = lr / bias_correction1;
        let denom = v
            .clone()
            .sqrt()
            .div_scalar(bias_correction2_sqrt)
            .add_scalar(self.eps);
        let param = param.sub(m.clone().div(denom).mul_scalar(step_size));
        (
            param,
            Some(AdamState::new(AdaptiveMomentumState::new(time, m, v))),
        )
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}
