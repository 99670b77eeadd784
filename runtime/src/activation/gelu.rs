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
pub trait GeluOps: Backend {
    /// `x·Φ(x)`: the backend's own (erf-based) kernel.
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(x)
    }

    /// `grad·(Φ(x) + x·φ(x))`, composed of the backend's float ops.
    fn gelu_erf_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let cdf = Self::float_mul_scalar(
            Self::float_add_scalar(Self::float_erf(Self::float_div_scalar(x.clone(), core::f64::consts::SQRT_2.into())), 1.0.into()),
            0.5.into(),
        );
        let square = Self::float_mul(x.clone(), x.clone());
        let pdf = Self::float_mul_scalar(Self::float_exp(Self::float_mul_scalar(square, (-0.5).into())), FRAC_1_SQRT_2PI.into());
        Self::float_mul(Self::float_add(cdf, Self::float_mul(x, pdf)), grad)
    }
}

/// `1/√(2π)`.
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

impl GeluOps for burn::backend::Flex {
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[cfg(feature = "simd")]
        let x = match fast::map(x) {
            Ok(y) => return y,
            Err(x) => x,
        };
        <Self as burn::backend::ops::ActivationOps<Self>>::gelu(x)
    }

    fn gelu_erf_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        #[cfg(feature = "simd")]
        let (x, grad) = match fast::zip(x, grad) {
            Ok(dx) => return dx,
            Err(both) => both,
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

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node] = ops.parents;
        let g = grads.consume::<B>(&ops.node);
        if let Some(node) = node {
            grads.register::<B>(node.id, B::gelu_erf_backward(ops.state, g));
        }
    }
}

impl<B: GeluOps, C: CheckpointStrategy> GeluOps for Autodiff<B, C> {
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let prepared = GeluBackward.prepare::<C>([x.node()]).compute_bound().stateful();
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

#[cfg(feature = "simd")]
mod fast {
    use alloc::vec::Vec;
    use burn::backend::flex::FlexTensor;
    use burn::tensor::{DType, TensorData};

    /// `erf` as a ratio of an odd and an even polynomial in `x ∈ [−4, 4]`
    /// (beyond, erf is ±1 in f32); the coefficients of Eigen's and XLA's
    /// single-precision `erf` (max. error 4.2e-7).
    #[inline(always)]
    fn erf(x: f32) -> f32 {
        let x = x.clamp(-4.0, 4.0);
        let x2 = x * x;
        let mut p = -2.726_142_3e-10_f32;
        for c in [2.770_681_4e-8, -2.101_024e-6, -5.692_506_4e-5, -7.349_906_3e-4, -2.954_600_2e-3, -1.609_603_3e-2] {
            p = p * x2 + c;
        }
        let mut q = -1.456_607_2e-5_f32;
        for c in [-2.133_740_6e-4, -1.682_827e-3, -7.373_329e-3, -1.426_474e-2] {
            q = q * x2 + c;
        }
        x * p / q
    }

    /// `eˣ` for `x ≤ 0` (Cephes' single-precision `expf`: `x = n·ln 2 + r`,
    /// a degree-5 polynomial in `r`, scaled by `2ⁿ` through the exponent
    /// bits; about 1 ulp). Below −87 (where `eˣ` leaves f32's normal range)
    /// it returns `e⁻⁸⁷`, which every caller here multiplies away.
    #[inline(always)]
    fn exp_nonpositive(x: f32) -> f32 {
        let x = x.max(-87.0);
        // Round to nearest without `f32::round` (not in `core`): adding and
        // subtracting 1.5·2²³ leaves the integer part.
        const SHIFT: f32 = 12_582_912.0;
        let n = (x * core::f32::consts::LOG2_E + SHIFT) - SHIFT;
        let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
        let mut p = 1.987_569_1e-4_f32;
        for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5.000_000_1e-1] {
            p = p * r + c;
        }
        let e = p * r * r + r + 1.0;
        e * f32::from_bits(((n as i32 + 127) as u32) << 23)
    }

    #[inline(always)]
    pub(super) fn gelu_one(x: f32) -> f32 {
        0.5 * x * (1.0 + erf(x * core::f32::consts::FRAC_1_SQRT_2))
    }

    /// `Φ(x) + x·φ(x)`.
    #[inline(always)]
    pub(super) fn gelu_derivative(x: f32) -> f32 {
        let cdf = 0.5 * (1.0 + erf(x * core::f32::consts::FRAC_1_SQRT_2));
        let pdf = super::FRAC_1_SQRT_2PI as f32 * exp_nonpositive(-0.5 * x * x);
        cdf + x * pdf
    }

    /// Elements per piece of work when a buffer is split over the thread pool.
    #[cfg(feature = "parallel")]
    const CHUNK: usize = 1 << 14;

    /// `f(out, a, b)` over `out`, `a` and `b` (all of one length) in pieces of
    /// [`CHUNK`] elements on the rayon pool — the one `f`'s caller runs in, so
    /// under [`crate::threads::serial_below`] it stays on one thread — or in
    /// one piece when the buffer is small or without the `parallel` feature.
    fn chunked(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(&mut [f32], &[f32], &[f32]) + Sync) {
        #[cfg(feature = "parallel")]
        if out.len() > CHUNK {
            use rayon::prelude::*;
            out.par_chunks_mut(CHUNK)
                .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
                .for_each(|(o, (a, b))| f(o, a, b));
            return;
        }
        f(out, a, b);
    }

    /// The contiguous f32 values of `t`, if it has them.
    fn values(t: &FlexTensor) -> Option<&[f32]> {
        if t.dtype() == DType::F32 { t.as_slice::<f32>() } else { None }
    }

    fn tensor(values: Vec<f32>, like: &FlexTensor) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(values, like.layout().shape().clone()))
    }

    /// GELU of a contiguous f32 tensor, or the tensor back.
    pub(super) fn map(x: FlexTensor) -> Result<FlexTensor, FlexTensor> {
        let y = values(&x).map(|xs| {
            let mut y = alloc::vec![0.0f32; xs.len()];
            chunked(&mut y, xs, xs, |ys, xs, _| {
                pulp::Arch::new().dispatch(|| ys.iter_mut().zip(xs).for_each(|(y, &v)| *y = gelu_one(v)))
            });
            y
        });
        match y {
            Some(y) => Ok(tensor(y, &x)),
            None => Err(x),
        }
    }

    /// `grad·(Φ(x) + x·φ(x))` of two contiguous f32 tensors of one shape, or
    /// both back.
    pub(super) fn zip(x: FlexTensor, grad: FlexTensor) -> Result<FlexTensor, (FlexTensor, FlexTensor)> {
        if x.layout().shape() != grad.layout().shape() {
            return Err((x, grad));
        }
        let dx = values(&x).zip(values(&grad)).map(|(xs, gs)| {
            let mut dx = alloc::vec![0.0f32; xs.len()];
            chunked(&mut dx, xs, gs, |ds, xs, gs| {
                pulp::Arch::new().dispatch(|| ds.iter_mut().zip(xs.iter().zip(gs)).for_each(|(d, (&x, &g))| *d = g * gelu_derivative(x)))
            });
            dx
        });
        match dx {
            Some(dx) => Ok(tensor(dx, &x)),
            None => Err((x, grad)),
        }
    }

    #[cfg(test)]
    mod tests {
        use alloc::vec::Vec;

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
                let y = super::gelu_one(x);
                let exact = 0.5 * x as f64 * (1.0 + libm::erf(x as f64 / core::f64::consts::SQRT_2));
                let bound = 4e-7 * (x.abs() as f64).max(1.0);
                assert!((y as f64 - exact).abs() <= bound, "gelu({x}) = {y}, exact {exact}");
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
                let exact = 0.5 * (1.0 + libm::erf(xf / core::f64::consts::SQRT_2)) + xf * libm::exp(-0.5 * xf * xf) * super::super::FRAC_1_SQRT_2PI;
                assert!((d as f64 - exact).abs() <= 4e-7, "gelu'({x}) = {d}, exact {exact}");
            }
        }
    }
}
