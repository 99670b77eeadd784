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
//! single-tensor code path step for step; the update itself is the ops
//! layer's ([`crate::ops::adam`]: one rule, run in place over the CPU
//! buffers and as tensor ops elsewhere). It plugs into Burn's
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

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer, SgdConfig,
};

use burn::tensor::{Device, Tensor};

use crate::ops::adam::{AdamStep, Moments, adam_step};

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

impl Optimizer for Adam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let (time, moments) = match state {
            Some(AdamState { momentum: s }) => (
                s.time + 1,
                Some(Moments {
                    m: s.moment_1,
                    v: s.moment_2,
                }),
            ),
            None => (1, None),
        };
        let step = AdamStep {
            lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            decoupled: self.decoupled,
            time,
        };
        let (param, Moments { m, v }) = adam_step(&step, param, grad, moments);
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
