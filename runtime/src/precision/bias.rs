//! A linear layer's bias addition `y + b` (`y [rows, d]`, `b [d]`) as one
//! differentiable op. Backward gives `y` the output gradient and `b` its sum
//! over the rows, as Burn's broadcasting addition does. On the CPU backend
//! with the `simd` feature, an f32 product that nothing else holds (a fresh
//! matrix product) gets the bias added in place, split over the thread
//! pool by rows, instead of through a broadcasting addition into a new
//! buffer on the calling thread.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{Shape, Tensor};

/// The operation, per backend.
#[backend_extension(Autodiff, Flex, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait BiasOps: Backend {
    /// `y + b` for `y [rows, d]` and `b [d]`: the backend's broadcasting
    /// addition.
    fn add_bias(y: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        let d = bias.shape().num_elements();
        Self::float_add(y, Self::float_reshape(bias, Shape::from([1, d])))
    }
}

impl BiasOps for burn::backend::Flex {
    fn add_bias(y: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        #[cfg(feature = "simd")]
        let y = match crate::kernel::values(&bias) {
            Some(b)
                if !b.is_empty()
                    && y.layout().shape().num_dims() == 2
                    && y.layout().shape()[1] == b.len() =>
            {
                match crate::kernel::apply(&crate::kernel::AddRow(b), y, None) {
                    Ok(out) => return out,
                    Err(y) => y,
                }
            }
            _ => y,
        };
        let d = bias.shape().num_elements();
        Self::float_add(y, Self::float_reshape(bias, Shape::from([1, d])))
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl BiasOps for burn::backend::Cube {}

#[derive(Debug)]
struct AddBiasBackward;

impl<B: Backend> Backward<B, 2> for AddBiasBackward {
    /// The bias's shape.
    type State = Shape;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_y, node_bias] = ops.parents;
        let g = grads.consume::<B>(&ops.node);
        if let Some(node) = node_bias {
            let summed = B::float_sum_dim(g.clone(), 0);
            grads.register::<B>(node.id, B::float_reshape(summed, ops.state));
        }
        if let Some(node) = node_y {
            grads.register::<B>(node.id, g);
        }
    }
}

impl<B: BiasOps, C: CheckpointStrategy> BiasOps for Autodiff<B, C> {
    fn add_bias(y: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        let shape = bias.shape();
        let prepared = AddBiasBackward
            .prepare::<C>([y.node(), bias.node()])
            .compute_bound()
            .stateful();
        let out = B::add_bias(y.into_primitive(), bias.into_primitive());
        match prepared {
            OpsKind::Tracked(prep) => prep.finish(shape, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

/// `y + b` for `y [rows, d]` and `b [d]` (see the module documentation).
pub(super) fn add_bias(y: Tensor<2>, bias: Tensor<1>) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::add_bias(y.into_dispatch(), bias.into_dispatch()))
}
