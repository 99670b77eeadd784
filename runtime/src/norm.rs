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
//! use ember_runtime::norm::layer_norm;
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

/// On the CPU backend with the `simd` feature, the input gradient of a
/// contiguous f32 input is one pass per row (statistics, `x̂` and the two
/// means on the fly), split over the thread pool by rows and written over
/// the output gradient when nothing else holds it.
impl LayerNormOps for burn::backend::Flex {
    fn layer_norm_input_grad(
        x: FloatTensor<Self>,
        g: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        #[cfg(feature = "simd")]
        let g = {
            let d = x.layout().shape()[x.layout().shape().num_dims() - 1];
            match crate::kernel::values(&gamma) {
                Some(gammas) if gammas.len() == d && d > 0 => {
                    let kernel = crate::kernel::LayerNormInputGrad {
                        gamma: gammas,
                        epsilon: epsilon as f32,
                    };
                    match crate::kernel::apply(&kernel, g, Some(&x)) {
                        Ok(dx) => return dx,
                        Err(g) => g,
                    }
                }
                _ => g,
            }
        };
        input_grad::<Self>(x, g, gamma, epsilon)
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
