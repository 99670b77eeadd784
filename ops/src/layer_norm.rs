//! Layer normalization that keeps only its input for backward.
//!
//! Burn 0.22.1 differentiates layer norm through its decomposition (mean,
//! subtraction, variance, division, scale, shift), and the autodiff graph
//! keeps two tensors the size of the input for backward: the centred input
//! and the normalised one. [`layer_norm`] is one operation whose forward pass
//! is the backend's fused kernel and whose backward pass recomputes the
//! row statistics from the input, as PyTorch's `native_layer_norm` does (it
//! keeps the input, the means and the reciprocal standard deviations): one
//! tensor the size of the input instead of two. In a transformer, where
//! every layer has two norms, that is a large share of the activations —
//! and the share that mixed precision cannot halve, as norms run in fp32.
//!
//! With `x̂ = (x − μ)·σ⁻¹` per row of `d` elements and the output gradient
//! `g`: `dβ = Σ g`, `dγ = Σ g·x̂` over rows, and
//! `dx = σ⁻¹·(g·γ − mean(g·γ) − x̂·mean(g·γ·x̂))`.
//!
//! ```
//! use burn::nn::LayerNormConfig;
//! use burn::tensor::{Device, Distribution, Tensor};
//! use ember_ops::layer_norm::layer_norm;
//!
//! let device = Device::flex().autodiff();
//! let norm = LayerNormConfig::new(8).init(&device);
//! let x = Tensor::<2>::random([4, 8], Distribution::Normal(0.0, 1.0), &device).require_grad();
//! let ours = layer_norm(&norm, 1e-5, x.clone());
//! let burns = norm.forward(x.clone());
//! assert!(ours.clone().sub(burns.clone()).abs().max().into_scalar::<f32>() < 1e-6);
//! let (g1, g2) = (ours.powi_scalar(2).sum().backward(), burns.powi_scalar(2).sum().backward());
//! let (a, b) = (x.grad(&g1).unwrap(), x.grad(&g2).unwrap());
//! assert!(a.sub(b).abs().max().into_scalar::<f32>() < 1e-5);
//! ```

use alloc::vec::Vec;

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::nn::LayerNorm;
use burn::tensor::{DType, Shape, Tensor};

use crate::cpu::{self, Kernel, LANES, Real, row_dot};

/// The operation, per backend.
#[backend_extension(Autodiff, Flex, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait LayerNormOps: Backend {
    /// Layer norm over the last dimension of `x` with scale `gamma` and
    /// shift `beta` (both `[d]`).
    fn layer_norm_lean(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::layer_norm(x, gamma, Some(beta), epsilon)
    }

    /// The input gradient `σ⁻¹·(g·γ − mean(g·γ) − x̂·mean(g·γ·x̂))` from the
    /// input `x`, the output gradient `g` and `γ`, the row statistics
    /// recomputed from `x`.
    fn layer_norm_input_grad(
        x: FloatTensor<Self>,
        g: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        input_grad::<Self>(x, g, gamma, epsilon)
    }
}

/// [`LayerNormOps::layer_norm_input_grad`] composed of the backend's float
/// ops.
fn input_grad<B: Backend>(
    x: FloatTensor<B>,
    g: FloatTensor<B>,
    gamma: FloatTensor<B>,
    epsilon: f64,
) -> FloatTensor<B> {
    let shape = x.shape();
    let last = shape.num_dims() - 1;
    let (xhat, rstd) = normalized::<B>(x, epsilon);
    let gx = B::float_mul(g, B::float_reshape(gamma, row_shape(&shape)));
    let m1 = B::float_mean_dim(gx.clone(), last);
    let m2 = B::float_mean_dim(B::float_mul(gx.clone(), xhat.clone()), last);
    B::float_mul(
        B::float_sub(B::float_sub(gx, m1), B::float_mul(xhat, m2)),
        rstd,
    )
}

/// `(x̂, σ⁻¹)` of `x` over its last dimension, as the forward pass computed
/// them.
fn normalized<B: Backend>(x: FloatTensor<B>, epsilon: f64) -> (FloatTensor<B>, FloatTensor<B>) {
    let last = x.shape().num_dims() - 1;
    let mean = B::float_mean_dim(x.clone(), last);
    let centered = B::float_sub(x, mean);
    let var = B::float_mean_dim(B::float_mul(centered.clone(), centered.clone()), last);
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(var, epsilon.into())));
    (B::float_mul(centered, rstd.clone()), rstd)
}

/// On the CPU backend, the input gradient of a contiguous f32 input is one
/// pass per row (statistics, `x̂` and the two means on the fly), split over
/// the thread pool by rows and written over the output gradient when
/// nothing else holds it.
impl LayerNormOps for burn::backend::Flex {
    fn layer_norm_input_grad(
        x: FloatTensor<Self>,
        g: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let d = x.layout().shape()[x.layout().shape().num_dims() - 1];
        match cpu::values(&gamma) {
            Some(gammas) if gammas.len() == d && d > 0 => {
                let kernel = LayerNormInputGradKernel {
                    gamma: gammas,
                    epsilon: epsilon as f32,
                };
                cpu::dispatch(&kernel, g, Some(&x), |g| {
                    input_grad::<Self>(x.clone(), g, gamma.clone(), epsilon)
                })
            }
            _ => input_grad::<Self>(x, g, gamma, epsilon),
        }
    }
}

/// Layer norm's input gradient `g = σ⁻¹·(g·γ − mean(g·γ) − x̂·mean(g·γ·x̂))`
/// for each row of `γ.len()` elements, `x` the norm's input (the row's
/// mean and variance recomputed from it, as the forward pass did).
struct LayerNormInputGradKernel<'a> {
    /// The scale `γ`, one row long.
    gamma: &'a [f32],
    /// ε added to the variance.
    epsilon: f32,
}

impl Kernel for LayerNormInputGradKernel<'_> {
    fn row(&self) -> usize {
        self.gamma.len()
    }
    #[inline(always)]
    fn run(&self, out: &mut [f32], x: &[f32]) {
        let d = self.gamma.len();
        let inv_d = 1.0 / d as f32;
        for (g, x) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
            let mean = row_dot(x, None) * inv_d;
            let mut lanes = [0.0f32; LANES];
            let mut chunks = x.chunks_exact(LANES);
            for c in &mut chunks {
                for (s, &v) in lanes.iter_mut().zip(c) {
                    *s += (v - mean) * (v - mean);
                }
            }
            let tail: f32 = chunks
                .remainder()
                .iter()
                .map(|&v| (v - mean) * (v - mean))
                .sum();
            let var = (lanes.iter().sum::<f32>() + tail) * inv_d;
            let rstd = 1.0 / Real::sqrt(var + self.epsilon);
            // g ← g·γ, then the two means.
            for (g, &w) in g.iter_mut().zip(self.gamma) {
                *g *= w;
            }
            let sum = row_dot(g, None);
            let m1 = sum * inv_d;
            let m2 = (row_dot(g, Some(x)) - mean * sum) * rstd * inv_d;
            for (g, &v) in g.iter_mut().zip(x) {
                *g = rstd * (*g - m1 - (v - mean) * rstd * m2);
            }
        }
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl LayerNormOps for burn::backend::Cube {}

/// The input (for the statistics and `x̂`) when any gradient is needed, and
/// `γ` when the input's is.
type State<B> = (FloatTensor<B>, Option<FloatTensor<B>>, f64);

#[derive(Debug)]
struct LayerNormBackward;

fn row_shape(shape: &Shape) -> Shape {
    let dims: Vec<usize> = (0..shape.num_dims())
        .map(|i| {
            if i + 1 == shape.num_dims() {
                shape[i]
            } else {
                1
            }
        })
        .collect();
    Shape::from(dims)
}

impl<B: LayerNormOps> Backward<B, 3> for LayerNormBackward {
    type State = State<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let (x, gamma, epsilon) = ops.state;
        let g = grads.consume::<B>(&ops.node);
        let shape = x.shape();
        let last = shape.num_dims() - 1;
        let d = shape[last];
        let rows = shape.num_elements() / d.max(1);
        let flat = |t: FloatTensor<B>| B::float_reshape(t, Shape::from([rows, d]));
        let to_param =
            |t: FloatTensor<B>| B::float_reshape(B::float_sum_dim(flat(t), 0), Shape::from([d]));

        if let Some(node) = node_beta {
            grads.register::<B>(node.id, to_param(g.clone()));
        }
        if let Some(node) = node_gamma {
            let (xhat, _) = normalized::<B>(x.clone(), epsilon);
            grads.register::<B>(node.id, to_param(B::float_mul(g.clone(), xhat)));
        }
        if let (Some(node), Some(gamma)) = (node_x, gamma) {
            grads.register::<B>(node.id, B::layer_norm_input_grad(x, g, gamma, epsilon));
        }
    }
}

impl<B: LayerNormOps, C: CheckpointStrategy> LayerNormOps for Autodiff<B, C> {
    fn layer_norm_lean(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let x_tracked = x.is_tracked();
        let prepared = LayerNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let (x, gamma, beta) = (
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
        );
        match prepared {
            OpsKind::Tracked(prep) => {
                let out = B::layer_norm_lean(x.clone(), gamma.clone(), beta, epsilon);
                prep.finish((x, x_tracked.then_some(gamma), epsilon), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::layer_norm_lean(x, gamma, beta, epsilon)),
        }
    }
}

/// `layer(x)` for a [`LayerNorm`] with a shift (`β`) and the `epsilon` it
/// was configured with (Burn keeps `LayerNorm`'s own private), keeping only
/// `x` for backward (see the module documentation). Inputs in f16/bf16, and
/// layers without `β`, go through Burn's `LayerNorm::forward`.
pub fn layer_norm<const D: usize>(layer: &LayerNorm, epsilon: f64, x: Tensor<D>) -> Tensor<D> {
    let wide = matches!(x.dtype(), DType::F32 | DType::F64);
    match &layer.beta {
        Some(beta) if wide && x.dtype() == layer.gamma.val().dtype() => {
            let out = Dispatch::layer_norm_lean(
                x.into_dispatch(),
                layer.gamma.val().into_dispatch(),
                beta.val().into_dispatch(),
                epsilon,
            );
            Tensor::from_dispatch(out)
        }
        _ => layer.forward(x),
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::{LayerNormOps, input_grad};
    use crate::check::{Case, assert_close, cases, primitive, tensor};

    /// Property: on random shapes and values, contiguous or not, the CPU
    /// kernel of the input gradient agrees with the composed one (f32 sums
    /// in 16 lanes against Burn's order: within 1e-5 relative).
    #[test]
    fn kernel_matches_the_composed_input_grad() {
        for Case {
            x,
            other,
            layout,
            name,
        } in cases(45, 0x1a7e)
        {
            let d = x.dims()[2];
            let gamma = tensor([1, 1, d], layout, 3, 2.0, 0.0).reshape([d]);
            let (x, g, gamma) = (primitive(x), primitive(other), primitive(gamma));
            let dx = Flex::layer_norm_input_grad(x.clone(), g.clone(), gamma.clone(), 1e-5);
            let reference = input_grad::<Flex>(x, g, gamma, 1e-5);
            assert_close(dx, reference, 1e-5, &name);
        }
    }
}
