//! GELU with the exact normal CDF as one differentiable op.
//!
//! Forward `x·Φ(x)`, backward `g·(Φ(x) + x·φ(x))` on every backend, keeping
//! only the input for backward. On the CPU backend with the `simd` feature,
//! f32 tensors are evaluated with a vectorised rational `erf` (the one of
//! Eigen and XLA) and a vectorised `exp`, compiled for the widest vector
//! instructions the CPU has (chosen at run time), instead of libm's scalar
//! `erff` and `expf` one element at a time; other dtypes keep the backend's
//! own kernels. The CubeCL backends' own `gelu_backward` is the derivative of
//! the tanh approximation, so their backward here is composed from exact
//! float ops instead.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::Tensor;

/// The operation, per backend.
#[backend_extension(Autodiff, Flex, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait GeluOps: Backend {
    /// `x·Φ(x)`: the backend's own (erf-based) kernel.
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(x)
    }

    /// `grad·(Φ(x) + x·φ(x))`, composed of the backend's float ops.
    fn gelu_erf_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let cdf = Self::float_mul_scalar(
            Self::float_add_scalar(
                Self::float_erf(Self::float_div_scalar(
                    x.clone(),
                    core::f64::consts::SQRT_2.into(),
                )),
                1.0.into(),
            ),
            0.5.into(),
        );
        let square = Self::float_mul(x.clone(), x.clone());
        let pdf = Self::float_mul_scalar(
            Self::float_exp(Self::float_mul_scalar(square, (-0.5).into())),
            FRAC_1_SQRT_2PI.into(),
        );
        Self::float_mul(Self::float_add(cdf, Self::float_mul(x, pdf)), grad)
    }
}

/// `1/√(2π)`.
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

impl GeluOps for burn::backend::Flex {
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[cfg(feature = "simd")]
        let x = match crate::kernel::apply(&crate::kernel::Gelu, x, None) {
            Ok(y) => return y,
            Err(x) => x,
        };
        <Self as burn::backend::ops::ActivationOps<Self>>::gelu(x)
    }

    fn gelu_erf_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        #[cfg(feature = "simd")]
        let grad = match crate::kernel::apply(&crate::kernel::GeluBackward, grad, Some(&x)) {
            Ok(dx) => return dx,
            Err(grad) => grad,
        };
        <Self as burn::backend::ops::ActivationOps<Self>>::gelu_backward(x, grad)
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl GeluOps for burn::backend::Cube {}

#[derive(Debug)]
struct GeluBackward;

impl<B: GeluOps> Backward<B, 1> for GeluBackward {
    type State = FloatTensor<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node] = ops.parents;
        let g = grads.consume::<B>(&ops.node);
        if let Some(node) = node {
            grads.register::<B>(node.id, B::gelu_erf_backward(ops.state, g));
        }
    }
}

impl<B: GeluOps, C: CheckpointStrategy> GeluOps for Autodiff<B, C> {
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let prepared = GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        let x = x.into_primitive();
        match prepared {
            OpsKind::Tracked(prep) => {
                let y = B::gelu_erf(x.clone());
                prep.finish(x, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gelu_erf(x)),
        }
    }
}

/// GELU, `x·Φ(x)` with the exact normal CDF (PyTorch's default
/// `approximate="none"`), as one differentiable op whose gradient is the
/// exact `Φ(x) + x·φ(x)` on every backend and which keeps only its input
/// for backward. On the CPU backend with the `simd` feature, f32 tensors are
/// evaluated with a vectorised rational `erf` (max. error 4.2e-7 on erf) and
/// `exp`, chosen for the CPU at run time.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(Dispatch::gelu_erf(x.into_dispatch()))
}
