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

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, Dispatch};
use burn::tensor::Tensor;

/// The operation, per backend.
#[backend_extension(Autodiff, Flex, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait SoftmaxOps: Backend {
    /// Softmax of `x` over dimension `dim`: the backend's own.
    fn softmax_keeping_output(x: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        Self::softmax(x, dim)
    }

    /// The input gradient `y·(g − Σ g·y)` (the sum over `dim`) from the
    /// output `y` and the output gradient `g`.
    fn softmax_backward(y: FloatTensor<Self>, g: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        composed_backward::<Self>(y, g, dim)
    }
}

/// [`SoftmaxOps::softmax_backward`] composed of the backend's float ops.
fn composed_backward<B: Backend>(y: FloatTensor<B>, g: FloatTensor<B>, dim: usize) -> FloatTensor<B> {
    let dot = B::float_sum_dim(B::float_mul(g.clone(), y.clone()), dim);
    B::float_mul(y, B::float_sub(g, dot))
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

    fn softmax_backward(y: FloatTensor<Self>, g: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        #[cfg(feature = "simd")]
        let g = match last_dim_len(&y, dim) {
            Some(n) => match crate::kernel::apply(&crate::kernel::SoftmaxBackward(n), g, Some(&y)) {
                Ok(dx) => return dx,
                Err(g) => g,
            },
            None => g,
        };
        composed_backward::<Self>(y, g, dim)
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
    type State = (FloatTensor<B>, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node] = ops.parents;
        let (y, dim) = ops.state;
        let g = grads.consume::<B>(&ops.node);
        if let Some(node) = node {
            grads.register::<B>(node.id, B::softmax_backward(y, g, dim));
        }
    }
}

impl<B: SoftmaxOps, C: CheckpointStrategy> SoftmaxOps for Autodiff<B, C> {
    fn softmax_keeping_output(x: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        let prepared = SoftmaxBackward.prepare::<C>([x.node()]).compute_bound().stateful();
        let x = x.into_primitive();
        match prepared {
            OpsKind::Tracked(prep) => {
                let y = B::softmax_keeping_output(x, dim);
                prep.finish((y.clone(), dim), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::softmax_keeping_output(x, dim)),
        }
    }
}

/// Softmax over `dim`, keeping only its output for backward (see the
/// module documentation).
pub fn softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    Tensor::from_dispatch(Dispatch::softmax_keeping_output(x.into_dispatch(), dim))
}
