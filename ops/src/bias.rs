//! A linear layer's bias addition `y + b` (`y [rows, d]`, `b [d]`) as one
//! differentiable op. Backward gives `y` the output gradient and `b` its sum
//! over the rows, as Burn's broadcasting addition does. On the CPU backend,
//! an f32 product that nothing else holds (a fresh matrix product) gets the
//! bias added in place, split over the thread pool by rows, instead of
//! through a broadcasting addition into a new buffer on the calling thread.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{Shape, Tensor};

use crate::cpu::{self, Kernel};

/// The operation, per backend.
#[backend_extension(Autodiff, Flex, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait BiasOps: Backend {
    /// `y + b` for `y [rows, d]` and `b [d]`: the backend's broadcasting
    /// addition.
    fn add_bias(y: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::<Self>(y, bias)
    }
}

/// [`BiasOps::add_bias`] as the backend's broadcasting addition.
fn composed<B: Backend>(y: FloatTensor<B>, bias: FloatTensor<B>) -> FloatTensor<B> {
    let d = bias.shape().num_elements();
    B::float_add(y, B::float_reshape(bias, Shape::from([1, d])))
}

impl BiasOps for burn::backend::Flex {
    fn add_bias(y: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        let dims = y.layout().shape();
        let fits = |b: &[f32]| !b.is_empty() && dims.num_dims() == 2 && dims[1] == b.len();
        match cpu::values(&bias).filter(|b| fits(b)) {
            Some(b) => cpu::dispatch(&AddRowKernel(b), y, None, |y| {
                composed::<Self>(y, bias.clone())
            }),
            None => composed::<Self>(y, bias),
        }
    }
}

/// The CPU kernel: `y = y + b` for each row of `b.len()` elements (a linear layer's bias).
struct AddRowKernel<'a>(&'a [f32]);

impl Kernel for AddRowKernel<'_> {
    fn row(&self) -> usize {
        self.0.len()
    }
    #[inline(always)]
    fn run(&self, out: &mut [f32], _: &[f32]) {
        for row in out.chunks_exact_mut(self.0.len()) {
            for (y, &b) in row.iter_mut().zip(self.0) {
                *y += b;
            }
        }
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
pub fn add_bias(y: Tensor<2>, bias: Tensor<1>) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::add_bias(y.into_dispatch(), bias.into_dispatch()))
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::{BiasOps, composed};
    use crate::check::{Case, assert_close, cases, primitive, tensor};

    /// Property: on random shapes and values, contiguous or not, the CPU
    /// kernel adds the bias exactly as Burn's broadcasting addition does.
    #[test]
    fn kernel_matches_the_broadcast_addition() {
        for Case {
            x, layout, name, ..
        } in cases(30, 0xb1a5)
        {
            let [a, b, d] = x.dims();
            let y = x.reshape([a * b, d]);
            let bias = tensor([1, 1, d], layout, 5, 2.0, -1.0).reshape([d]);
            let (y, bias) = (primitive(y), primitive(bias));
            let out = Flex::add_bias(y.clone(), bias.clone());
            assert_close(out, composed::<Flex>(y, bias), 0.0, &name);
        }
    }
}
