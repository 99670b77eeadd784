//! Scaled dot-product attention, `softmax(q·kᵀ/√d + key_bias)·v`, with the
//! key mask given as an additive `[batch, keys]` bias (0 to attend, a large
//! negative number to ignore a key).
//!
//! Training, reduced precision and other backends use the composition that
//! Burn differentiates: the scores in the compute type, the scaling, mask
//! and softmax as one fp32 op that keeps only its output
//! ([`attention_softmax`]), and the product with `v` reusing that output for
//! backward ([`matmul_keeping_lhs`]). Inference in f32 on the CPU runs
//! Burn's fused kernel instead (one pass per head: scores, bias, softmax and
//! the product with `v`), which materialises neither the scores nor the
//! probabilities.

use burn::tensor::module::attention as fused;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Device, FloatDType, Tensor};

use crate::cpu::Real;
use crate::linear::matmul_keeping_lhs;
use crate::softmax::attention_softmax;
use crate::to_f32;

/// Attention over `q [B, H, Lq, d]`, `k [B, H, Lk, d]`, `v [B, H, Lk, e]`
/// with scale `1/√d` and an optional additive `key_bias [B, Lk]`, to
/// `[B, H, Lq, e]`. `compute`: the type of the two products under autocast
/// (`None`: the inputs' own type); the softmax runs in fp32 either way.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use ember_ops::attention::attention;
///
/// let device = Device::flex();
/// let q = Tensor::<4>::from_floats([[[[1.0, 0.0]]]], &device);
/// let k = Tensor::<4>::from_floats([[[[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]]]], &device);
/// let v = Tensor::<4>::from_floats([[[[1.0], [2.0], [100.0]]]], &device);
/// let mask = Tensor::<2>::from_floats([[0.0, 0.0, f32::MIN]], &device);
/// let out: Vec<f32> = attention(q, k, v, Some(mask), None).into_data().to_vec().unwrap();
/// // softmax([1/√2, 0]) over the two attended keys.
/// let p = 1.0 / (1.0 + (-1.0f32 / 2f32.sqrt()).exp());
/// assert!((out[0] - (p + 2.0 * (1.0 - p))).abs() < 1e-5);
/// ```
///
/// # Panics
///
/// If `key_bias` is not `[B, Lk]`.
pub fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    key_bias: Option<Tensor<2>>,
    compute: Option<FloatDType>,
) -> Tensor<4> {
    let [b, _, lq, d] = q.dims();
    let keys = k.dims()[2];
    let inference = !(q.is_tracked() || k.is_tracked() || v.is_tracked())
        && key_bias.as_ref().is_none_or(|m| !m.is_tracked());
    let f32_in_place = compute.is_none() && q.dtype() == DType::F32;
    if inference && f32_in_place && q.device().inner() == Device::flex() {
        let bias = key_bias.map(|m| m.reshape([b, 1, 1, keys]).expand([b, 1, lq, keys]));
        return fused(q, k, v, None, bias, AttentionModuleOptions::default());
    }
    let (q, k) = match compute {
        Some(dtype) => (q.cast(dtype), k.cast(dtype)),
        None => (q, k),
    };
    let scores = q.matmul(k.swap_dims(2, 3));
    let probs = attention_softmax(
        to_f32(scores),
        1.0 / Real::sqrt(d as f32),
        key_bias.map(to_f32),
    );
    match compute {
        Some(dtype) => matmul_keeping_lhs(probs, v, dtype),
        None => probs.matmul(to_f32(v)),
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::attention;

    /// The fused CPU kernel (inference) against the composition (the same
    /// inputs tracked for backward), with a mask.
    #[test]
    fn fused_inference_matches_the_composition() {
        let device = Device::flex();
        device.seed(11);
        for (b, h, l, d) in [(1, 1, 1, 4), (2, 3, 9, 8), (3, 2, 17, 32)] {
            let t = |dims: [usize; 4]| {
                Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device)
            };
            let (q, k, v) = (t([b, h, l, d]), t([b, h, l, d]), t([b, h, l, d]));
            let mask = Tensor::<2>::from_data(
                burn::tensor::TensorData::new(
                    (0..b * l)
                        .map(|i| {
                            if i % l == l - 1 && l > 1 {
                                f32::MIN
                            } else {
                                0.0
                            }
                        })
                        .collect::<alloc::vec::Vec<f32>>(),
                    [b, l],
                ),
                &device,
            );
            let fused = attention(q.clone(), k.clone(), v.clone(), Some(mask.clone()), None);
            let ad = device.clone().autodiff();
            let tracked = |x: Tensor<4>| Tensor::<4>::from_data(x.into_data(), &ad).require_grad();
            let composed = attention(
                tracked(q),
                tracked(k),
                tracked(v),
                Some(Tensor::from_data(mask.into_data(), &ad)),
                None,
            );
            let diff = (fused - Tensor::from_data(composed.into_data(), &device))
                .abs()
                .max()
                .into_scalar::<f32>();
            assert!(diff < 1e-5, "[{b}, {h}, {l}, {d}]: {diff}");
        }
    }
}
