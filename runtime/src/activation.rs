//! Activations whose gradients are exact on every backend.
//!
//! Burn 0.22.1's CPU backend (burn-flex) differentiates GELU exactly, but
//! the backend-generic `gelu_backward` that the CubeCL backends (wgpu, CUDA)
//! inherit is the derivative of GELU's *tanh approximation*, while their
//! forward pass is the exact, erf-based GELU. Gradients through GELU then
//! differ from PyTorch's by up to ~1e-3 of their scale — enough to move
//! every LoRA gradient of a BERT encoder by ~0.1 %. [`gelu`] keeps Burn's
//! fused kernel on the CPU backend and composes `x·½·(1 + erf(x/√2))` from
//! differentiable ops elsewhere, so the gradient is erf's exact one.
//!
//! [`softmax`] is one differentiable op that keeps only its output for
//! backward (Burn's decomposition keeps the exponentials and the sums).
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use ember_runtime::activation::gelu;
//!
//! let x = Tensor::<1>::from_floats([-1.0, 0.0, 1.0], &Device::flex());
//! let y: Vec<f32> = gelu(x).into_data().to_vec().unwrap();
//! assert!((y[2] - 0.841_344_7).abs() < 1e-6 && y[1] == 0.0);
//! ```

use burn::tensor::{Device, Tensor, activation};

mod softmax;
pub use softmax::softmax;

/// GELU, `x·Φ(x)` with the exact normal CDF (PyTorch's default
/// `approximate="none"`), with the exact gradient on every backend.
///
/// For inference on the CPU backend (an f32 tensor that autodiff does not
/// track), the CPU backend's kernel evaluates `erf` one element at a time
/// (libm's `erff`: a sixth of a MiniLM forward pass). With the `simd`
/// feature this function instead evaluates a rational approximation of
/// `erf` (the one of Eigen and XLA, max. error 4.2e-7 on erf, 7.6e-7 on
/// GELU) over the whole buffer, vectorised for the CPU it runs on.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.device() == Device::flex() {
        #[cfg(feature = "simd")]
        if x.dtype() == burn::tensor::DType::F32 && !x.is_tracked() {
            return fast::gelu(x);
        }
        activation::gelu(x)
    } else {
        let cdf = x.clone().div_scalar(core::f64::consts::SQRT_2).erf().add_scalar(1.0).mul_scalar(0.5);
        x * cdf
    }
}

#[cfg(feature = "simd")]
mod fast {
    use alloc::vec::Vec;
    use burn::tensor::{Tensor, TensorData};

    /// `erf` as a ratio of an odd and an even polynomial in `x ∈ [−4, 4]`
    /// (beyond, erf is ±1 in f32); the coefficients of Eigen's and XLA's
    /// single-precision `erf`.
    #[inline(always)]
    fn erf(x: f32) -> f32 {
        let x = x.max(-4.0).min(4.0);
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

    #[inline(always)]
    fn gelu_one(x: f32) -> f32 {
        0.5 * x * (1.0 + erf(x * core::f32::consts::FRAC_1_SQRT_2))
    }

    /// GELU over a buffer; the loop is compiled for the widest vector
    /// instructions the CPU has (chosen at run time).
    pub(super) fn gelu_slice(values: &mut [f32]) {
        pulp::Arch::new().dispatch(|| {
            for v in values.iter_mut() {
                *v = gelu_one(*v);
            }
        });
    }

    pub(super) fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
        let (shape, device) = (x.shape(), x.device());
        let mut values: Vec<f32> = x.into_data().try_into_vec().expect("an f32 tensor");
        gelu_slice(&mut values);
        Tensor::from_data(TensorData::new(values, shape), &device)
    }

    #[cfg(test)]
    mod tests {
        /// Against the f64 erf-based GELU over [−8, 8]: an error of erf of
        /// up to 4.2e-7 moves `½·x·(1 + erf)` by up to 2.1e-7·|x|, and f32
        /// rounds the result; 4e-7·max(|x|, 1) bounds both (the tanh
        /// approximation of GELU is off by up to 1e-3 there).
        #[test]
        fn matches_the_exact_gelu() {
            let xs: alloc::vec::Vec<f32> = (-80_000..=80_000).map(|i| i as f32 * 1e-4).collect();
            let mut ys = xs.clone();
            super::gelu_slice(&mut ys);
            for (&x, &y) in xs.iter().zip(&ys) {
                let exact = 0.5 * x as f64 * (1.0 + libm::erf(x as f64 / core::f64::consts::SQRT_2));
                let bound = 4e-7 * (x.abs() as f64).max(1.0);
                assert!((y as f64 - exact).abs() <= bound, "gelu({x}) = {y}, exact {exact}");
            }
        }
    }
}
