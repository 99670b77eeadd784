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

use crate::cpu::{self, Kernel, exp_nonpositive};

/// The operation, per backend.
#[backend_extension(Autodiff, Flex, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait GeluOps: Backend {
    /// `x·Φ(x)`: the backend's own (erf-based) kernel.
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(x)
    }

    /// `grad·(Φ(x) + x·φ(x))`, composed of the backend's float ops.
    fn gelu_erf_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        composed_backward::<Self>(x, grad)
    }
}

/// [`GeluOps::gelu_erf_backward`] composed of the backend's float ops: the
/// reference of the CPU kernel, and the implementation on every other
/// backend.
fn composed_backward<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    let cdf = B::float_mul_scalar(
        B::float_add_scalar(
            B::float_erf(B::float_div_scalar(
                x.clone(),
                core::f64::consts::SQRT_2.into(),
            )),
            1.0.into(),
        ),
        0.5.into(),
    );
    let square = B::float_mul(x.clone(), x.clone());
    let pdf = B::float_mul_scalar(
        B::float_exp(B::float_mul_scalar(square, (-0.5).into())),
        FRAC_1_SQRT_2PI_F64.into(),
    );
    B::float_mul(B::float_add(cdf, B::float_mul(x, pdf)), grad)
}

/// `1/√(2π)`.
const FRAC_1_SQRT_2PI_F64: f64 = 0.398_942_280_401_432_7;
/// `1/√(2π)` in f32, for the kernel.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

impl GeluOps for burn::backend::Flex {
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        cpu::dispatch(&GeluKernel, x, None, |x| {
            <Self as burn::backend::ops::ActivationOps<Self>>::gelu(x)
        })
    }

    fn gelu_erf_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        cpu::dispatch(&GeluBackwardKernel, grad, Some(&x), |grad| {
            <Self as burn::backend::ops::ActivationOps<Self>>::gelu_backward(x.clone(), grad)
        })
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl GeluOps for burn::backend::Cube {}

/// `erf` as a ratio of an odd and an even polynomial in `x ∈ [−4, 4]`
/// (beyond, erf is ±1 in f32); the coefficients of Eigen's and XLA's
/// single-precision `erf` (max. error 4.2e-7).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    for c in [
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_600_2e-3,
        -1.609_603_3e-2,
    ] {
        p = p * x2 + c;
    }
    let mut q = -1.456_607_2e-5_f32;
    for c in [-2.133_740_6e-4, -1.682_827e-3, -7.373_329e-3, -1.426_474e-2] {
        q = q * x2 + c;
    }
    x * p / q
}

/// `x·Φ(x)`.
#[inline(always)]
fn gelu_scalar(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * core::f32::consts::FRAC_1_SQRT_2))
}

/// `Φ(x) + x·φ(x)`.
#[inline(always)]
fn gelu_derivative(x: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf(x * core::f32::consts::FRAC_1_SQRT_2));
    let pdf = FRAC_1_SQRT_2PI * exp_nonpositive(-0.5 * x * x);
    cdf + x * pdf
}

/// The CPU kernel: `y = gelu(y)`.
struct GeluKernel;

impl Kernel for GeluKernel {
    #[inline(always)]
    fn run(&self, out: &mut [f32], _: &[f32]) {
        for y in out {
            *y = gelu_scalar(*y);
        }
    }
}

/// The CPU kernel of the backward pass: `g = g·gelu'(x)`.
struct GeluBackwardKernel;

impl Kernel for GeluBackwardKernel {
    #[inline(always)]
    fn run(&self, out: &mut [f32], x: &[f32]) {
        for (g, &x) in out.iter_mut().zip(x) {
            *g *= gelu_derivative(x);
        }
    }
}

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

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;
    use burn::backend::Flex;

    use super::{GeluOps, composed_backward};
    use crate::check::{Case, assert_close, cases, primitive};

    fn inputs() -> Vec<f32> {
        (-100_000..=100_000).map(|i| i as f32 * 1e-4).collect()
    }

    /// Against the f64 erf-based GELU over [−10, 10]: an error of erf of
    /// up to 4.2e-7 moves `½·x·(1 + erf)` by up to 2.1e-7·|x|, and f32
    /// rounds the result; 4e-7·max(|x|, 1) bounds both (the tanh
    /// approximation of GELU is off by up to 1e-3 there).
    #[test]
    fn matches_the_exact_gelu() {
        for x in inputs() {
            let y = super::gelu_scalar(x);
            let exact = 0.5 * x as f64 * (1.0 + libm::erf(x as f64 / core::f64::consts::SQRT_2));
            let bound = 4e-7 * (x.abs() as f64).max(1.0);
            assert!(
                (y as f64 - exact).abs() <= bound,
                "gelu({x}) = {y}, exact {exact}"
            );
        }
    }

    /// The derivative against f64's: erf's error moves Φ by up to 2.1e-7,
    /// the exponential's (about 1 ulp) and f32's rounding move x·φ(x)
    /// (at most 0.25) by far less; 4e-7 bounds the sum.
    #[test]
    fn matches_the_exact_derivative() {
        for x in inputs() {
            let d = super::gelu_derivative(x);
            let xf = x as f64;
            let exact = 0.5 * (1.0 + libm::erf(xf / core::f64::consts::SQRT_2))
                + xf * libm::exp(-0.5 * xf * xf) * f64::from(super::FRAC_1_SQRT_2PI);
            assert!(
                (d as f64 - exact).abs() <= 4e-7,
                "gelu'({x}) = {d}, exact {exact}"
            );
        }
    }

    /// Property: on random shapes and values, contiguous or not, the CPU
    /// kernels agree with Burn's GELU and the composed backward (the
    /// kernel's erf is within 4.2e-7 of libm's, the derivative within 4e-7).
    #[test]
    fn kernels_match_the_composed_op() {
        for Case { x, other, .. } in cases(40, 0x6e1) {
            let (x, g) = (primitive(x), primitive(other));
            let y = Flex::gelu_erf(x.clone());
            let reference = <Flex as burn::backend::ops::ActivationOps<Flex>>::gelu(x.clone());
            assert_close(y, reference, 1e-6, "gelu");
            let dx = Flex::gelu_erf_backward(x.clone(), g.clone());
            assert_close(dx, composed_backward::<Flex>(x, g), 1e-6, "gelu backward");
        }
    }
}
