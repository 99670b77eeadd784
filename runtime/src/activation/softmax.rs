//! Softmax as one differentiable op that keeps only its output.
//!
//! Burn 0.22.1 differentiates softmax through its decomposition
//! (`exp(x − max) / Σ`), whose graph keeps the exponentials and the sums for
//! backward — and the product that consumes the probabilities keeps its own
//! copy of them. This op keeps its output `y`, as PyTorch's softmax does, and
//! backward computes `dx = y·(g − Σ g·y)` over the softmax dimension; a
//! product that reuses `y` ([`crate::precision::matmul_reusing_lhs`]) then
//! keeps nothing more. On the CPU both directions are single passes over
//! each row with a vectorised `exp`.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::Shape;
use burn::tensor::Tensor;

/// The operation, per backend.
#[backend_extension(Autodiff, Flex, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait SoftmaxOps: Backend {
    /// Softmax of `x` over dimension `dim`: the backend's own.
    fn softmax_keeping_output(x: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        Self::softmax(x, dim)
    }

    /// The input gradient `scale·y·(g − Σ g·y)` (the sum over `dim`) from
    /// the output `y` and the output gradient `g` of a softmax whose input
    /// was multiplied by `scale` (1 for a plain softmax).
    fn softmax_backward(
        y: FloatTensor<Self>,
        g: FloatTensor<Self>,
        dim: usize,
        scale: f32,
    ) -> FloatTensor<Self> {
        composed_backward::<Self>(y, g, dim, scale)
    }

    /// Softmax over the last dimension of `scale·x + bias`, `x [B, H, Lq,
    /// Lk]` and `bias [B, Lk]` broadcast over `H` and `Lq`: the backend's
    /// own ops.
    fn attention_softmax(
        x: FloatTensor<Self>,
        scale: f32,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        composed_attention::<Self>(x, scale, bias)
    }
}

/// [`SoftmaxOps::softmax_backward`] composed of the backend's float ops.
fn composed_backward<B: Backend>(
    y: FloatTensor<B>,
    g: FloatTensor<B>,
    dim: usize,
    scale: f32,
) -> FloatTensor<B> {
    let dot = B::float_sum_dim(B::float_mul(g.clone(), y.clone()), dim);
    let dx = B::float_mul(y, B::float_sub(g, dot));
    if scale == 1.0 {
        dx
    } else {
        B::float_mul_scalar(dx, scale.into())
    }
}

/// [`SoftmaxOps::attention_softmax`] composed of the backend's float ops
/// (`scale·x + bias`) and its softmax.
fn composed_attention<B: SoftmaxOps>(
    x: FloatTensor<B>,
    scale: f32,
    bias: FloatTensor<B>,
) -> FloatTensor<B> {
    let shape = x.shape();
    let [b, _, _, keys] = shape.dims();
    let z = if scale == 1.0 {
        x
    } else {
        B::float_mul_scalar(x, scale.into())
    };
    let bias = B::float_expand(B::float_reshape(bias, Shape::from([b, 1, 1, keys])), shape);
    B::softmax_keeping_output(B::float_add(z, bias), 3)
}

/// On the CPU backend with the `simd` feature, softmax over the last
/// dimension of a contiguous f32 tensor, and its backward, run as one pass
/// per row with a vectorised `exp`, split over the thread pool by rows, in
/// place where the buffer is free (the scores' sum with the mask forward,
/// the incoming gradient backward); other cases use the backend's kernels.
impl SoftmaxOps for burn::backend::Flex {
    fn softmax_keeping_output(x: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        #[cfg(feature = "simd")]
        let x = match last_dim_len(&x, dim) {
            Some(n) => match crate::kernel::apply(&crate::kernel::Softmax(n), x, None) {
                Ok(y) => return y,
                Err(x) => x,
            },
            None => x,
        };
        <Self as burn::backend::ops::ActivationOps<Self>>::softmax(x, dim)
    }

    fn softmax_backward(
        y: FloatTensor<Self>,
        g: FloatTensor<Self>,
        dim: usize,
        scale: f32,
    ) -> FloatTensor<Self> {
        #[cfg(feature = "simd")]
        let g = match last_dim_len(&y, dim) {
            Some(row) => match crate::kernel::apply(
                &crate::kernel::SoftmaxBackward { row, scale },
                g,
                Some(&y),
            ) {
                Ok(dx) => return dx,
                Err(g) => g,
            },
            None => g,
        };
        composed_backward::<Self>(y, g, dim, scale)
    }

    fn attention_softmax(
        x: FloatTensor<Self>,
        scale: f32,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        #[cfg(feature = "simd")]
        let x = match last_dim_len(&x, 3) {
            Some(keys) => {
                let dims = x.layout().shape();
                let (batch, rows_per_bias) = (dims[0], dims[1] * dims[2]);
                match crate::kernel::values(&bias).filter(|v| v.len() == batch * keys) {
                    Some(bias) => {
                        let kernel = crate::kernel::AttentionSoftmax {
                            keys,
                            scale,
                            bias,
                            rows_per_bias,
                        };
                        match crate::kernel::apply(&kernel, x, None) {
                            Ok(y) => return y,
                            Err(x) => x,
                        }
                    }
                    None => x,
                }
            }
            None => x,
        };
        composed_attention::<Self>(x, scale, bias)
    }
}

/// The length of `t`'s last dimension when `dim` is it and it is not empty.
#[cfg(feature = "simd")]
fn last_dim_len(t: &burn::backend::flex::FlexTensor, dim: usize) -> Option<usize> {
    let dims = t.layout().shape();
    (dims.num_dims() == dim + 1 && dims[dim] > 0).then(|| dims[dim])
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl SoftmaxOps for burn::backend::Cube {}

#[derive(Debug)]
struct SoftmaxBackward;

impl<B: SoftmaxOps> Backward<B, 1> for SoftmaxBackward {
    /// The output, the softmax's dimension and the factor on its input.
    type State = (FloatTensor<B>, usize, f32);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node] = ops.parents;
        let (y, dim, scale) = ops.state;
        let g = grads.consume::<B>(&ops.node);
        if let Some(node) = node {
            grads.register::<B>(node.id, B::softmax_backward(y, g, dim, scale));
        }
    }
}

impl<B: SoftmaxOps, C: CheckpointStrategy> SoftmaxOps for Autodiff<B, C> {
    fn softmax_keeping_output(x: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        let prepared = SoftmaxBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        let x = x.into_primitive();
        match prepared {
            OpsKind::Tracked(prep) => {
                let y = B::softmax_keeping_output(x, dim);
                prep.finish((y.clone(), dim, 1.0), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::softmax_keeping_output(x, dim)),
        }
    }

    fn attention_softmax(
        x: FloatTensor<Self>,
        scale: f32,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // A bias that wants a gradient goes through the composition, which
        // Burn differentiates; a constant one (a mask) is the op's input.
        if bias.is_tracked() {
            return composed_attention::<Self>(x, scale, bias);
        }
        let prepared = SoftmaxBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        let y = B::attention_softmax(x.into_primitive(), scale, bias.into_primitive());
        match prepared {
            OpsKind::Tracked(prep) => prep.finish((y.clone(), 3, scale), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

/// Softmax over `dim`, keeping only its output for backward (see the
/// module documentation).
pub fn softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    Tensor::from_dispatch(Dispatch::softmax_keeping_output(x.into_dispatch(), dim))
}

/// Attention's probabilities: softmax over the last dimension of
/// `scale·scores + key_bias`, `scores [B, H, Lq, Lk]`, `key_bias [B, Lk]`
/// added to every head and query (0 to attend, a large negative number to
/// ignore a key). One op that keeps only its output, like [`softmax`]; on
/// the CPU the scaling, the bias and the softmax are one pass per row, and
/// so is backward (`scale·y·(g − Σ g·y)`). A `key_bias` that is tracked
/// gets its gradient (through Burn's ops).
///
/// ```
/// use ember_runtime::activation::attention_softmax;
/// use burn::tensor::{Device, Tensor};
///
/// let device = Device::flex();
/// let scores = Tensor::<4>::from_floats([[[[1.0, 2.0, 3.0]]]], &device);
/// let mask = Tensor::<2>::from_floats([[0.0, 0.0, f32::MIN]], &device);
/// let p = attention_softmax(scores, 0.5, Some(mask)).into_data().to_vec::<f32>().unwrap();
/// // softmax([0.5, 1.0]) on the two attended keys, 0 on the masked one.
/// assert!((p[0] - 0.377_540_7).abs() < 1e-6 && (p[1] - 0.622_459_3).abs() < 1e-6 && p[2] == 0.0);
/// ```
///
/// # Panics
///
/// If `key_bias` is not `[B, Lk]`.
pub fn attention_softmax(scores: Tensor<4>, scale: f32, key_bias: Option<Tensor<2>>) -> Tensor<4> {
    let [b, _, _, keys] = scores.dims();
    let bias = match key_bias {
        Some(bias) => {
            assert_eq!(
                bias.dims(),
                [b, keys],
                "attention_softmax: key_bias must be [batch, keys] = [{b}, {keys}]"
            );
            bias
        }
        None => Tensor::<2>::zeros([b, keys], &scores.device()).cast(scores.dtype()),
    };
    Tensor::from_dispatch(Dispatch::attention_softmax(
        scores.into_dispatch(),
        scale,
        bias.into_dispatch(),
    ))
}
