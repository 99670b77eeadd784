//! Memory layout of weights on the CPU backend.
//!
//! Burn keeps a `Linear` weight as `[d_in, d_out]` in row-major order, so
//! `x · W` walks each column of `W` with a stride of `d_out` elements. For a
//! product with many rows the matrix multiply packs `W` into cache-sized
//! panels first and the stride does not matter; for a product with a handful
//! of rows (one short sentence, one sample) there is no packing and every
//! step along `k` lands on another page. Stored column-major (PyTorch's own
//! `[d_out, d_in]` order, viewed as `[d_in, d_out]`) the same product reads
//! `W` sequentially; products with many rows are unaffected (the measured
//! effect is in BENCHMARKS.md). [`for_inference`] picks the layout for the
//! weight's device.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use ember_ops::layout::column_major;
//!
//! let device = Device::flex();
//! let w = Tensor::<2>::from_floats([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], &device);
//! let x = Tensor::<2>::from_floats([[1.0, -1.0]], &device);
//! let stored = column_major(w.clone());
//! assert_eq!(stored.dims(), [2, 3]);
//! assert_eq!(x.clone().matmul(stored).into_data(), x.matmul(w).into_data());
//! ```

use burn::module::Param;
use burn::tensor::{Device, Tensor};

/// `w` with the same shape, values, dtype and device, stored column-major
/// (its transpose materialised, viewed transposed back). Whether it needs a
/// gradient is kept.
///
/// Only the CPU backend's matrix multiply reads strided operands without a
/// copy; on other devices keep the default layout. An optimizer step that
/// replaces the weight returns it to the default layout.
pub fn column_major(w: Tensor<2>) -> Tensor<2> {
    let (device, require_grad) = (w.device(), w.is_require_grad());
    Tensor::<2>::from_data(w.transpose().into_data(), &device)
        .transpose()
        .set_require_grad(require_grad)
}

/// [`column_major`] applied to a parameter, keeping its id and training
/// state.
pub fn column_major_param(w: Param<Tensor<2>>) -> Param<Tensor<2>> {
    w.map(column_major)
}

/// The layout in which products with few rows read a weight fastest on its
/// device: [`column_major_param`] on the CPU backend, the parameter as it is
/// on every other device.
pub fn for_inference(w: Param<Tensor<2>>) -> Param<Tensor<2>> {
    if w.device().inner() == Device::flex() {
        column_major_param(w)
    } else {
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use burn::tensor::TensorData;

    /// Small integers: every product and sum is exact in f32, whatever the
    /// summation order, so both layouts must give identical results.
    fn ints(rows: usize, cols: usize, seed: usize) -> Tensor<2> {
        ints_on(rows, cols, seed, &Device::flex())
    }

    fn ints_on(rows: usize, cols: usize, seed: usize, device: &Device) -> Tensor<2> {
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7 + seed) % 9) as f32 - 4.0)
            .collect();
        Tensor::from_data(TensorData::new(values, [rows, cols]), device)
    }

    #[test]
    fn column_major_products_equal_row_major_ones() {
        // Few rows (the CPU backend's few-row kernel, split over the pool
        // for the larger weights), odd inner sizes, many rows (gemm, which
        // packs the transposed weight in 8 × 8 blocks), and products large
        // enough for gemm to split that packing over the pool's threads
        // (panels of 64 weight rows with ragged edges; an inner size above
        // gemm's depth block).
        for (m, k, n) in [
            (1, 37, 5),
            (5, 260, 300),
            (16, 384, 1536),
            (17, 64, 33),
            (64, 260, 300),
            (300, 257, 130),
            (200, 1031, 77),
        ] {
            let (x, w) = (ints(m, k, 1), ints(k, n, 2));
            let stored = column_major(w.clone());
            assert_eq!(stored.dims(), [k, n]);
            let want = x.clone().matmul(w.clone()).into_data();
            assert_eq!(
                x.clone().matmul(stored.clone()).into_data(),
                want,
                "{m}x{k}x{n}"
            );
            // A row of x that is a view into a larger tensor.
            let row = x.clone().slice([0..1, 0..k]);
            assert_eq!(
                row.clone().matmul(stored).into_data(),
                row.matmul(w).into_data(),
                "{m}x{k}x{n}, row view"
            );
        }
    }

    #[test]
    fn column_major_keeps_require_grad() {
        let device = Device::flex().autodiff();
        let w = ints_on(3, 4, 0, &device).require_grad();
        assert!(column_major(w).is_require_grad());
        assert!(!column_major(ints_on(3, 4, 0, &device)).is_require_grad());
    }
}
