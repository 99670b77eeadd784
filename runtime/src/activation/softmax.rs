//! Softmax as one differentiable op that keeps only its output.
//!
//! Burn 0.22.1 differentiates softmax through its decomposition
//! (`exp(x − max) / Σ`), whose graph keeps the exponentials and the sums for
//! backward — and the product that consumes the probabilities keeps its own
//! copy of them. This op keeps its output `y`, as PyTorch's softmax does, and
//! backward computes `dx = y·(g − Σ g·y)` over the softmax dimension; a
//! product that reuses `y` ([`crate::precision::matmul_reusing_lhs`]) then
//! keeps nothing more.

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
}

impl SoftmaxOps for burn::backend::Flex {}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl SoftmaxOps for burn::backend::Cube {}

#[derive(Debug)]
struct SoftmaxBackward;

impl<B: Backend> Backward<B, 1> for SoftmaxBackward {
    type State = (FloatTensor<B>, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node] = ops.parents;
        let (y, dim) = ops.state;
        let g = grads.consume::<B>(&ops.node);
        if let Some(node) = node {
            let dot = B::float_sum_dim(B::float_mul(g.clone(), y.clone()), dim);
            grads.register::<B>(node.id, B::float_mul(y, B::float_sub(g, dot)));
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
