//! Matrix products with few rows against a column-major right-hand side.
//!
//! `x [m, k] · w [k, n]` where each column of `w` is contiguous (`w` is the
//! transposed view of an `[n, k]` row-major buffer, as a PyTorch `Linear`
//! weight is stored) and `m` is small: one short sequence through a linear
//! layer at inference. gemm does not pack for such shapes and walks `w`
//! with a stride; here every output is a dot product of two contiguous rows,
//! so `w` is read once, sequentially, while the few rows of `x` stay in L1.
//! The caller may split the columns of `w` over threads.

use macerator::{Scalar, Simd, Vector, vload_unaligned};

/// Largest `m` the kernel is used for; above it gemm's packed kernels win.
pub const MAX_ROWS: usize = 16;

/// `out[t * n + j] = Σ_p x[t * x_row + p] · w[j * w_col + p]` for `t < m`,
/// `j < n`, `p < k`. `x` and `w` must hold every element addressed.
#[macerator::with_simd]
#[allow(clippy::too_many_arguments)]
pub fn matmul_f32<S: Simd>(
    x: &[f32],
    x_row: usize,
    w: &[f32],
    w_col: usize,
    m: usize,
    k: usize,
    n: usize,
    out: &mut [f32],
) {
    let rows = Rows { x, x_row, w, w_col, k, n };
    let mut j = 0;
    while j + 2 <= n {
        rows.columns::<S, 2>(m, j, out);
        j += 2;
    }
    if j < n {
        rows.columns::<S, 1>(m, j, out);
    }
}

struct Rows<'a> {
    x: &'a [f32],
    x_row: usize,
    w: &'a [f32],
    w_col: usize,
    k: usize,
    n: usize,
}

impl Rows<'_> {
    /// Outputs of columns `j..j + J` for every row, four rows at a time.
    #[inline(always)]
    fn columns<S: Simd, const J: usize>(&self, m: usize, j: usize, out: &mut [f32]) {
        let mut t = 0;
        while t + 4 <= m {
            self.block::<S, 4, J>(t, j, out);
            t += 4;
        }
        match m - t {
            3 => self.block::<S, 3, J>(t, j, out),
            2 => self.block::<S, 2, J>(t, j, out),
            1 => self.block::<S, 1, J>(t, j, out),
            _ => {}
        }
    }

    /// Outputs `[t..t + R] × [j..j + J]`: `R × J` vector accumulators.
    #[inline(always)]
    fn block<S: Simd, const R: usize, const J: usize>(&self, t: usize, j: usize, out: &mut [f32]) {
        let (k, lanes) = (self.k, f32::lanes::<S>());
        let xs: [&[f32]; R] = core::array::from_fn(|r| &self.x[(t + r) * self.x_row..][..k]);
        let ws: [&[f32]; J] = core::array::from_fn(|c| &self.w[(j + c) * self.w_col..][..k]);
        let zero: Vector<S, f32> = 0.0f32.splat::<S>();
        let mut acc = [[zero; J]; R];
        let mut p = 0;
        while p + lanes <= k {
            // SAFETY: `p + lanes <= k` and every row slice holds `k` elements.
            let wv: [Vector<S, f32>; J] = core::array::from_fn(|c| unsafe { vload_unaligned(ws[c].as_ptr().add(p)) });
            for r in 0..R {
                let xv: Vector<S, f32> = unsafe { vload_unaligned(xs[r].as_ptr().add(p)) };
                for c in 0..J {
                    acc[r][c] = xv.mul_add(wv[c], acc[r][c]);
                }
            }
            p += lanes;
        }
        for r in 0..R {
            for c in 0..J {
                let tail: f32 = (p..k).map(|q| xs[r][q] * ws[c][q]).sum();
                out[(t + r) * self.n + j + c] = acc[r][c].reduce_add() + tail;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn matches_a_naive_product() {
        for (m, k, n) in [(1, 5, 3), (3, 17, 4), (9, 40, 7), (16, 64, 5)] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 5) % 13) as f32 * 0.5 - 3.0).collect();
            let mut out = vec![f32::NAN; m * n];
            matmul_f32(&x, k, &w, k, m, k, n, &mut out);
            for t in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|p| x[t * k + p] * w[j * k + p]).sum();
                    assert_eq!(out[t * n + j], want, "({t}, {j}) of {m}x{k}x{n}");
                }
            }
        }
    }
}
