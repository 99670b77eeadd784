//! Linear layers: `x·w + b` in the types given, or in a reduced type as a
//! matrix product whose backward pass keeps the fp32 weight instead of its
//! low-precision copy.
//!
//! Composed from Burn's ops, `cast(x) @ cast(w)` keeps both casts for
//! backward: two bytes per weight on top of the fp32 master weight, which for
//! a network whose weights outweigh its activations cancels what the low
//! type saves (PyTorch's autocast keeps the same copies). This op keeps
//! what the gradients need and nothing more:
//!
//! * for `dw = xᵀ·g`: the input in the compute type (half the bytes of an
//!   fp32 activation), only when the weight is trainable — or the input as
//!   given, cast again in backward, when something else keeps it anyway
//!   (attention's softmax output, [`matmul_keeping_lhs`]);
//! * for `dx = g·wᵀ`: a reference to the weight as it is (the fp32 master,
//!   which exists anyway), only when the input needs a gradient; backward
//!   casts it again.
//!
//! The arithmetic is that of the composition: the same casts, the same
//! products in the compute type, gradients cast back to the types of `x` and
//! `w` (as the cast's own backward does).

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{FloatDType, Tensor};

use crate::bias::add_bias;

/// The operation, per backend.
#[backend_extension(Autodiff, Flex, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait CastMatmulOps: Backend {
    /// `cast(x, dtype) @ cast(w, dtype)` for `x` `[.., n, k]` and `w`
    /// `[.., k, m]` (the same leading dimensions); the result is in
    /// `dtype`. For backward, `x` is kept in `dtype`, or as given when
    /// `keep_x_as_given` (an input that something else keeps anyway).
    fn cast_matmul(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        dtype: FloatDType,
        keep_x_as_given: bool,
    ) -> FloatTensor<Self> {
        let _ = keep_x_as_given;
        Self::float_matmul(Self::float_cast(x, dtype), Self::float_cast(w, dtype))
    }
}

impl CastMatmulOps for burn::backend::Flex {}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl CastMatmulOps for burn::backend::Cube {}

/// What backward needs: the input in the compute type or as given (for the
/// weight's gradient), the weight as given (for the input's gradient), and
/// the types the gradients go back to.
type State<B> = (
    Option<FloatTensor<B>>,
    Option<FloatTensor<B>>,
    FloatDType,
    FloatDType,
    FloatDType,
);

#[derive(Debug)]
struct CastMatmulBackward;

impl<B: Backend> Backward<B, 2> for CastMatmulBackward {
    type State = State<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w] = ops.parents;
        let (x_kept, w, x_dtype, w_dtype, dtype) = ops.state;
        let grad = B::float_cast(grads.consume::<B>(&ops.node), dtype);
        if let (Some(node), Some(x_kept)) = (node_w, x_kept) {
            let x_low = B::float_cast(x_kept, dtype);
            let dw = B::float_matmul(B::float_transpose(x_low), grad.clone());
            grads.register::<B>(node.id, B::float_cast(dw, w_dtype));
        }
        if let (Some(node), Some(w)) = (node_x, w) {
            let w_low = B::float_cast(w, dtype);
            let dx = B::float_matmul(grad, B::float_transpose(w_low));
            grads.register::<B>(node.id, B::float_cast(dx, x_dtype));
        }
    }
}

impl<B: CastMatmulOps, C: CheckpointStrategy> CastMatmulOps for Autodiff<B, C> {
    fn cast_matmul(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        dtype: FloatDType,
        keep_x_as_given: bool,
    ) -> FloatTensor<Self> {
        let (x_tracked, w_tracked) = (x.is_tracked(), w.is_tracked());
        let x_dtype: FloatDType = x.primitive().dtype().into();
        let w_dtype: FloatDType = w.primitive().dtype().into();
        let prepared = CastMatmulBackward
            .prepare::<C>([x.node(), w.node()])
            .compute_bound()
            .stateful();
        let (x, w) = (x.into_primitive(), w.into_primitive());
        match prepared {
            OpsKind::Tracked(prep) => {
                let x_given = keep_x_as_given.then(|| x.clone());
                let x_low = B::float_cast(x, dtype);
                let out = B::float_matmul(x_low.clone(), B::float_cast(w.clone(), dtype));
                let x_kept = w_tracked.then(|| x_given.unwrap_or(x_low));
                let state = (x_kept, x_tracked.then_some(w), x_dtype, w_dtype, dtype);
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cast_matmul(x, w, dtype, keep_x_as_given)),
        }
    }
}

/// A linear layer `x·w + b` for `x [.., k]`, `w [k, m]` (Burn's layout)
/// and `b [m]`, with the leading dimensions of `x` folded into one matrix
/// product (split over the thread pool by rows on the CPU, and with the
/// same values as a product per batch item); its gradients are the same
/// one-matrix products.
///
/// * `compute = None`: in the types given (fp32 training and inference);
///   the bias is added by [`add_bias`] (in place on the CPU).
/// * `compute = Some(dtype)`: autocast's product: `x`, `w` and `b` cast to
///   `dtype` inside the graph, backward keeping the input in `dtype` and
///   the weight as given (see the module documentation).
pub fn linear<const D: usize>(
    x: Tensor<D>,
    w: Tensor<2>,
    b: Option<Tensor<1>>,
    compute: Option<FloatDType>,
) -> Tensor<D> {
    fold_rows(x, |x| match compute {
        None => {
            let y = x.matmul(w);
            match b {
                Some(b) => add_bias(y, b),
                None => y,
            }
        }
        Some(dtype) => {
            let y: Tensor<2> = Tensor::from_dispatch(Dispatch::cast_matmul(
                x.into_dispatch(),
                w.into_dispatch(),
                dtype,
                false,
            ));
            match b {
                Some(b) => y + b.cast(dtype).unsqueeze(),
                None => y,
            }
        }
    })
}

/// `f` applied to `x [.., d]` viewed as one matrix `[rows, d]` (the leading
/// dimensions folded into the rows), its output `[rows, e]` given back the
/// leading dimensions.
fn fold_rows<const D: usize>(x: Tensor<D>, f: impl FnOnce(Tensor<2>) -> Tensor<2>) -> Tensor<D> {
    let dims = x.dims();
    let rows: usize = dims[..D - 1].iter().product();
    let y = f(x.reshape([rows, dims[D - 1]]));
    let mut out = dims;
    out[D - 1] = y.dims()[1];
    y.reshape(out)
}

/// `cast(a, dtype) @ cast(b, dtype)` for `a` `[.., n, k]` and `b` `[.., k,
/// m]` with the same leading dimensions, keeping `a` as given for backward
/// (and casting it again there): for an `a` that backward keeps anyway, such
/// as a softmax output, no low-precision copy is kept beside it.
pub fn matmul_keeping_lhs<const D: usize>(
    a: Tensor<D>,
    b: Tensor<D>,
    dtype: FloatDType,
) -> Tensor<D> {
    Tensor::from_dispatch(Dispatch::cast_matmul(
        a.into_dispatch(),
        b.into_dispatch(),
        dtype,
        true,
    ))
}
