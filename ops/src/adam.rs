//! The Adam/AdamW update of one parameter, `torch.optim.Adam`/`AdamW`'s
//! single-tensor arithmetic:
//!
//! ```text
//! p ← p·(1 − lr·wd)             AdamW (decoupled decay), or
//! g ← g + wd·p                  Adam (L2 penalty)
//! m ← β₁·m + (1 − β₁)·g
//! v ← β₂·v + (1 − β₂)·g²
//! p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
//! ```
//!
//! The scalars are computed in f64 (PyTorch's Python floats) and rounded to
//! the element type once ([`AdamStep`]); `Rule::apply` is the update of a
//! buffer, the one rule that the CPU runs — in place on the moments and, when
//! nothing else holds it, the parameter, split over the thread pool for f32,
//! or on copies for f64 and for strided tensors — and that the composed
//! implementation (the other backends) writes as tensor ops in the same
//! order.

use alloc::vec::Vec;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::cpu::{self, Real};

/// The hyper-parameters of one step of one parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// The learning rate.
    pub lr: f64,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε added to `√v̂`.
    pub eps: f64,
    /// Weight decay (0 for none).
    pub weight_decay: f64,
    /// `true`: AdamW's decoupled decay; `false`: Adam's L2 penalty.
    pub decoupled: bool,
    /// The step number `t`, from 1.
    pub time: usize,
}

/// A parameter's two moments.
#[derive(Debug, Clone)]
pub struct Moments<const D: usize> {
    /// The first moment `m`.
    pub m: Tensor<D>,
    /// The second moment `v`.
    pub v: Tensor<D>,
}

/// The scalars of one step rounded to the element type, in the order the
/// composed update rounds them.
#[derive(Clone, Copy)]
pub(crate) struct Rule<E> {
    /// `1 − lr·wd`.
    decay: E,
    /// `wd`.
    wd: E,
    /// β₁ and `1 − β₁`.
    beta1: (E, E),
    /// β₂ and `1 − β₂`.
    beta2: (E, E),
    /// `√(1 − β₂ᵗ)`.
    bias_correction2_sqrt: E,
    /// ε.
    eps: E,
    /// `lr / (1 − β₁ᵗ)`.
    step_size: E,
    /// Whether there is weight decay, and whether it is decoupled.
    decays: bool,
    decoupled: bool,
}

impl AdamStep {
    /// `1 − β₁ᵗ` and `√(1 − β₂ᵗ)` in f64.
    fn bias_corrections(&self) -> (f64, f64) {
        let t = f64::from(i32::try_from(self.time).unwrap_or(i32::MAX));
        (
            1.0 - libm::pow(self.beta1, t),
            libm::sqrt(1.0 - libm::pow(self.beta2, t)),
        )
    }

    pub(crate) fn rule<E: Real>(&self) -> Rule<E> {
        let (bias_correction1, bias_correction2_sqrt) = self.bias_corrections();
        Rule {
            decay: E::of(1.0 - self.lr * self.weight_decay),
            wd: E::of(self.weight_decay),
            beta1: (E::of(self.beta1), E::of(1.0 - self.beta1)),
            beta2: (E::of(self.beta2), E::of(1.0 - self.beta2)),
            bias_correction2_sqrt: E::of(bias_correction2_sqrt),
            eps: E::of(self.eps),
            step_size: E::of(self.lr / bias_correction1),
            decays: self.weight_decay != 0.0,
            decoupled: self.decoupled,
        }
    }
}

impl<E: Real> Rule<E> {
    /// The update of `p` with gradient `g` and moments `m`, `v` (one
    /// length). A first step passes zero moments: `0·β + x = x` exactly (up
    /// to the sign of a zero), so no branch per element keeps the loop from
    /// vectorising; the weight-decay branches are loop-invariant.
    #[inline(always)]
    pub(crate) fn apply(&self, p: &mut [E], g: &[E], m: &mut [E], v: &mut [E]) {
        let (b1, one_b1) = self.beta1;
        let (b2, one_b2) = self.beta2;
        for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            let mut g = g;
            if self.decays {
                if self.decoupled {
                    *p = *p * self.decay;
                } else {
                    g = g + *p * self.wd;
                }
            }
            *m = *m * b1 + g * one_b1;
            *v = *v * b2 + (g * g) * one_b2;
            let denom = v.sqrt() / self.bias_correction2_sqrt + self.eps;
            *p = *p - (*m / denom) * self.step_size;
        }
    }
}

/// One Adam/AdamW step of `param` with gradient `grad` and its moments
/// (`None` before the first step): the new parameter and moments. On the
/// CPU backend it runs the one update rule (`Rule::apply`) over the buffers; elsewhere the
/// composed tensor ops.
pub fn adam_step<const D: usize>(
    step: &AdamStep,
    param: Tensor<D>,
    grad: Tensor<D>,
    moments: Option<Moments<D>>,
) -> (Tensor<D>, Moments<D>) {
    let dtype = param.dtype();
    let fits = |t: &Tensor<D>| t.dtype() == dtype && t.shape() == param.shape();
    let same = fits(&grad) && moments.as_ref().is_none_or(|s| fits(&s.m) && fits(&s.v));
    if same && param.device() == Device::flex() {
        match dtype {
            DType::F32 => return in_place(step, param, grad, moments),
            DType::F64 => return on_copies::<D, f64>(step, param, grad, moments),
            _ => {}
        }
    }
    composed(step, param, grad, moments)
}

/// The rule over f32 CPU buffers: the moments, and the parameter when
/// nothing else holds it, are written in place (shared buffers are copied
/// first); split over the thread pool for large parameters. Tensors whose
/// elements are not their whole buffer (strided views) go through copies.
fn in_place<const D: usize>(
    step: &AdamStep,
    param: Tensor<D>,
    grad: Tensor<D>,
    moments: Option<Moments<D>>,
) -> (Tensor<D>, Moments<D>) {
    // A first step starts from zero moments, which become the moments'
    // buffers.
    let moments = moments.unwrap_or_else(|| {
        let zeros = || Tensor::<D>::zeros(param.shape(), (&param.device(), DType::F32));
        Moments {
            m: zeros(),
            v: zeros(),
        }
    });
    let buffer = |t: &Tensor<D>| -> Option<FlexTensor> {
        t.clone()
            .try_into_primitive::<Flex>()
            .ok()
            .filter(|f| cpu::values(f).is_some())
    };
    let (Some(p), Some(g), Some(m), Some(v)) = (
        buffer(&param),
        buffer(&grad),
        buffer(&moments.m),
        buffer(&moments.v),
    ) else {
        return on_copies::<D, f32>(step, param, grad, Some(moments));
    };
    // Dropping the tensors leaves each primitive its buffer's only holder
    // when nothing else holds it.
    drop((param, grad, moments));
    let (Ok(mut p), Ok(mut m), Ok(mut v)) = (cpu::writable(p), cpu::writable(m), cpu::writable(v))
    else {
        unreachable!("writable: every buffer here has its values");
    };
    match (
        cpu::values_mut(&mut p),
        cpu::values(&g),
        cpu::values_mut(&mut m),
        cpu::values_mut(&mut v),
    ) {
        (Some(ps), Some(gs), Some(ms), Some(vs)) => run(&step.rule::<f32>(), ps, gs, ms, vs),
        _ => unreachable!("writable buffers have their values"),
    }
    let tensor = Tensor::<D>::from_primitive::<Flex>;
    (
        tensor(p),
        Moments {
            m: tensor(m),
            v: tensor(v),
        },
    )
}

/// [`Rule::apply`] over `p` (and `g`, `m`, `v` of its length), each piece
/// compiled for the CPU's widest vector instructions, split over the rayon
/// pool for large buffers.
fn run(rule: &Rule<f32>, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let one = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
        #[cfg(feature = "simd")]
        {
            struct Piece<'a> {
                rule: &'a Rule<f32>,
                p: &'a mut [f32],
                g: &'a [f32],
                m: &'a mut [f32],
                v: &'a mut [f32],
            }
            impl pulp::WithSimd for Piece<'_> {
                type Output = ();
                #[inline(always)]
                fn with_simd<S: pulp::Simd>(self, _simd: S) {
                    self.rule.apply(self.p, self.g, self.m, self.v);
                }
            }
            pulp::Arch::new().dispatch(Piece { rule, p, g, m, v });
        }
        #[cfg(not(feature = "simd"))]
        rule.apply(p, g, m, v);
    };
    // A few memory-bound operations per element: below a quarter of a
    // million elements, waking the pool costs more than it saves.
    #[cfg(feature = "parallel")]
    if p.len() >= 1 << 18 {
        use rayon::prelude::*;
        let chunk = cpu::CHUNK;
        p.par_chunks_mut(chunk)
            .zip(g.par_chunks(chunk))
            .zip(m.par_chunks_mut(chunk))
            .zip(v.par_chunks_mut(chunk))
            .for_each(|(((p, g), m), v)| one(p, g, m, v));
        return;
    }
    one(p, g, m, v);
}

/// The rule over copies of the values (f64, and f32 views that are not
/// their whole buffer).
fn on_copies<const D: usize, E: Real>(
    step: &AdamStep,
    param: Tensor<D>,
    grad: Tensor<D>,
    moments: Option<Moments<D>>,
) -> (Tensor<D>, Moments<D>) {
    let (device, dtype, shape) = (param.device(), param.dtype(), param.shape());
    let values = |t: Tensor<D>| -> Vec<E> {
        t.into_data().try_into_vec::<E>().unwrap_or_else(|e| {
            panic!(
                "adam_step: a tensor is not {}: {e:?}",
                core::any::type_name::<E>()
            )
        })
    };
    let (mut p, g) = (values(param), values(grad));
    let (mut m, mut v) = match moments {
        Some(s) => (values(s.m), values(s.v)),
        None => (
            alloc::vec![E::of(0.0); p.len()],
            alloc::vec![E::of(0.0); p.len()],
        ),
    };
    step.rule::<E>().apply(&mut p, &g, &mut m, &mut v);
    let tensor = |data: Vec<E>| {
        Tensor::<D>::from_data(TensorData::new(data, shape.clone()), (&device, dtype))
    };
    (
        tensor(p),
        Moments {
            m: tensor(m),
            v: tensor(v),
        },
    )
}

/// The rule composed of tensor ops, in the same order (the other backends,
/// and mixed element types).
fn composed<const D: usize>(
    step: &AdamStep,
    mut param: Tensor<D>,
    mut grad: Tensor<D>,
    moments: Option<Moments<D>>,
) -> (Tensor<D>, Moments<D>) {
    if step.weight_decay != 0.0 {
        if step.decoupled {
            param = param.mul_scalar(1.0 - step.lr * step.weight_decay);
        } else {
            grad = grad.add(param.clone().mul_scalar(step.weight_decay));
        }
    }
    let (m, v) = match moments {
        Some(Moments { m, v }) => (
            m.mul_scalar(step.beta1)
                .add(grad.clone().mul_scalar(1.0 - step.beta1)),
            v.mul_scalar(step.beta2)
                .add(grad.clone().mul(grad).mul_scalar(1.0 - step.beta2)),
        ),
        None => (
            grad.clone().mul_scalar(1.0 - step.beta1),
            grad.clone().mul(grad).mul_scalar(1.0 - step.beta2),
        ),
    };
    let (bias_correction1, bias_correction2_sqrt) = step.bias_corrections();
    let denom = v
        .clone()
        .sqrt()
        .div_scalar(bias_correction2_sqrt)
        .add_scalar(step.eps);
    let param = param.sub(m.clone().div(denom).mul_scalar(step.lr / bias_correction1));
    (param, Moments { m, v })
}

#[cfg(test)]
mod tests {
    use super::{AdamStep, Moments, adam_step, composed};
    use crate::check::{Case, assert_close, cases, primitive};

    /// Property: on random shapes and values, contiguous or not, for Adam
    /// and AdamW, first and later steps, the CPU rule gives the composed
    /// update's parameter and moments (the same operations in the same
    /// order: within f32 rounding of the square root and division).
    #[test]
    fn cpu_rule_matches_the_composed_update() {
        for (i, Case { x, other, name, .. }) in cases(36, 0xada).enumerate() {
            let step = AdamStep {
                lr: 1e-2,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: [0.0, 0.01, 0.1][i % 3],
                decoupled: i % 2 == 0,
                time: 1 + i % 4,
            };
            let moments = (step.time > 1).then(|| Moments {
                m: other.clone().mul_scalar(0.1),
                v: other.clone().powi_scalar(2).mul_scalar(0.01),
            });
            let (p, s) = adam_step(&step, x.clone(), other.clone(), moments.clone());
            let (p_ref, s_ref) = composed(&step, x, other, moments);
            for (got, reference, what) in [
                (p, p_ref, "param"),
                (s.m, s_ref.m, "m"),
                (s.v, s_ref.v, "v"),
            ] {
                assert_close(
                    primitive(got),
                    primitive(reference),
                    1e-6,
                    &alloc::format!("{what} {name}"),
                );
            }
        }
    }
}
