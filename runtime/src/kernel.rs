//! The CPU backend's f32 loops behind [`crate::activation::gelu`],
//! [`crate::activation::softmax`], [`crate::norm::layer_norm`]'s backward,
//! [`crate::precision::linear`]'s bias and [`crate::optim::Adam`]: a rational `erf`, `exp` of non-positive
//! numbers, and the loops that apply them. Each loop is compiled for the
//! widest vector instructions the CPU has (AVX-512, AVX2 + FMA, NEON, …
//! chosen at run time through `pulp`), written as plain arithmetic without
//! integer conversions or early exits so that the compiler vectorises it,
//! and split by whole rows over the rayon pool for large buffers. Results
//! are written over a buffer nothing else holds (an input gradient, a fresh
//! product, an optimizer's moments) instead of a new one when possible.

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, TensorData};
use pulp::{Simd, WithSimd};

/// `1/√(2π)`.
pub(crate) const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

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

/// `eˣ` for `x ≤ 0` (Cephes' single-precision `expf`: `x = n·ln 2 + r`, a
/// degree-5 polynomial in `r`, scaled by `2ⁿ` built in the exponent bits;
/// about 1 ulp); 0 below −87, where `eˣ` leaves f32's normal range; NaN
/// for NaN.
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    let clamped = if x < -87.0 { -87.0 } else { x };
    // Round to nearest without `f32::round` (not in `core`): adding and
    // subtracting 1.5·2²³ leaves the integer part.
    const SHIFT: f32 = 12_582_912.0;
    let n = (clamped * core::f32::consts::LOG2_E + SHIFT) - SHIFT;
    let r = clamped - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        5e-1,
    ] {
        p = p * r + c;
    }
    let e = p * r * r + r + 1.0;
    // 2ⁿ for n ∈ [−126, 0]: n + 127 + 2²³ holds n + 127 in its low mantissa
    // bits, and a shift by 23 moves them into the exponent field (the
    // float's own exponent bits shift out) — a bit cast and a shift instead
    // of a float-to-int conversion, which would not vectorise.
    let two_n = f32::from_bits((n + 8_388_735.0).to_bits() << 23);
    if x < -87.0 { 0.0 } else { e * two_n }
}

/// `x·Φ(x)`.
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * core::f32::consts::FRAC_1_SQRT_2))
}

/// `Φ(x) + x·φ(x)`.
#[inline(always)]
pub(crate) fn gelu_derivative(x: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf(x * core::f32::consts::FRAC_1_SQRT_2));
    let pdf = FRAC_1_SQRT_2PI * exp_nonpositive(-0.5 * x * x);
    cdf + x * pdf
}

/// Correctly rounded square root (the instruction with `std`).
#[inline(always)]
fn sqrt(x: f32) -> f32 {
    #[cfg(feature = "std")]
    return x.sqrt();
    #[cfg(not(feature = "std"))]
    return libm::sqrtf(x);
}

/// Lanes of the partial sums and maxima of a row: wide enough for AVX-512,
/// so the reductions vectorise as well.
const LANES: usize = 16;

/// The largest element of `row` (−∞ for an empty row; NaNs are skipped here
/// and surface through the exponentials).
#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for &v in lanes.iter().chain(chunks.remainder()) {
        max = if v > max { v } else { max };
    }
    max
}

/// `Σ a·b` over a row (`b = None`: `Σ a`), in [`LANES`] partial sums.
#[inline(always)]
fn row_dot(a: &[f32], b: Option<&[f32]>) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let mut tail = 0.0f32;
    match b {
        Some(b) => {
            let (mut ca, mut cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
            for (x, y) in (&mut ca).zip(&mut cb) {
                for ((s, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
                    *s += x * y;
                }
            }
            for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
                tail += x * y;
            }
        }
        None => {
            let mut ca = a.chunks_exact(LANES);
            for x in &mut ca {
                for (s, &x) in lanes.iter_mut().zip(x) {
                    *s += x;
                }
            }
            for &x in ca.remainder() {
                tail += x;
            }
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// A loop over a piece of an output buffer and, for two-operand kernels, the
/// matching piece of a second input.
pub(crate) trait Kernel: Sync {
    /// Elements of one row: pieces are whole rows.
    fn row(&self) -> usize {
        1
    }
    /// The loop; `b` is empty for one-operand kernels.
    fn run(&self, out: &mut [f32], b: &[f32]);
    /// [`Kernel::run`] over the piece of the buffer that starts at element
    /// `start`, for kernels whose operands depend on the position.
    #[inline(always)]
    fn run_at(&self, start: usize, out: &mut [f32], b: &[f32]) {
        let _ = start;
        self.run(out, b);
    }
}

/// `y = gelu(y)`.
pub(crate) struct Gelu;

impl Kernel for Gelu {
    #[inline(always)]
    fn run(&self, out: &mut [f32], _: &[f32]) {
        for y in out {
            *y = gelu(*y);
        }
    }
}

/// `g = g·gelu'(x)`.
pub(crate) struct GeluBackward;

impl Kernel for GeluBackward {
    #[inline(always)]
    fn run(&self, out: &mut [f32], x: &[f32]) {
        for (g, &x) in out.iter_mut().zip(x) {
            *g *= gelu_derivative(x);
        }
    }
}

/// `y = y + b` for each row of `b.len()` elements (a linear layer's bias).
pub(crate) struct AddRow<'a>(pub(crate) &'a [f32]);

impl Kernel for AddRow<'_> {
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

/// Softmax of each row of `row` elements, in place.
pub(crate) struct Softmax(pub(crate) usize);

impl Kernel for Softmax {
    fn row(&self) -> usize {
        self.0
    }
    #[inline(always)]
    fn run(&self, out: &mut [f32], _: &[f32]) {
        for row in out.chunks_exact_mut(self.0) {
            softmax_row(row);
        }
    }
}

/// Softmax of each row of `z = scale·x + bias` in place, `x [B, H, Lq, Lk]`
/// in rows of `Lk`, `bias [B, Lk]` shared by the `H·Lq` rows of each of the
/// `B` leading indices — attention's scaled scores plus the key mask. The
/// caller checks that `bias` holds `B·Lk` elements.
pub(crate) struct AttentionSoftmax<'a> {
    /// `Lk`.
    pub(crate) keys: usize,
    /// The factor on the scores.
    pub(crate) scale: f32,
    /// `[B, Lk]`.
    pub(crate) bias: &'a [f32],
    /// `H·Lq`: the rows that share one row of `bias`.
    pub(crate) rows_per_bias: usize,
}

impl Kernel for AttentionSoftmax<'_> {
    fn row(&self) -> usize {
        self.keys
    }
    #[inline(always)]
    fn run(&self, out: &mut [f32], b: &[f32]) {
        self.run_at(0, out, b);
    }
    #[inline(always)]
    fn run_at(&self, start: usize, out: &mut [f32], _: &[f32]) {
        let first = start / self.keys;
        for (i, row) in out.chunks_exact_mut(self.keys).enumerate() {
            let at = (first + i) / self.rows_per_bias * self.keys;
            for (z, &b) in row.iter_mut().zip(&self.bias[at..at + self.keys]) {
                *z = *z * self.scale + b;
            }
            softmax_row(row);
        }
    }
}

/// Softmax of one row, in place.
#[inline(always)]
fn softmax_row(row: &mut [f32]) {
    let max = row_max(row);
    for v in row.iter_mut() {
        *v = exp_nonpositive(*v - max);
    }
    let inv = 1.0 / row_dot(row, None);
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// Softmax's input gradient `g = scale·y·(g − Σ g·y)` for each row of
/// `row` elements, `y` the softmax's output and `scale` the factor its
/// input was multiplied by (1 for a plain softmax).
pub(crate) struct SoftmaxBackward {
    /// Elements of a row.
    pub(crate) row: usize,
    /// The factor on the softmax's input.
    pub(crate) scale: f32,
}

impl Kernel for SoftmaxBackward {
    fn row(&self) -> usize {
        self.row
    }
    #[inline(always)]
    fn run(&self, out: &mut [f32], y: &[f32]) {
        for (g, y) in out.chunks_exact_mut(self.row).zip(y.chunks_exact(self.row)) {
            let dot = row_dot(g, Some(y));
            for (g, &y) in g.iter_mut().zip(y) {
                *g = self.scale * (y * (*g - dot));
            }
        }
    }
}

/// Layer norm's input gradient `g = σ⁻¹·(g·γ − mean(g·γ) − x̂·mean(g·γ·x̂))`
/// for each row of `γ.len()` elements, `x` the norm's input (the row's
/// mean and variance recomputed from it, as the forward pass did).
pub(crate) struct LayerNormInputGrad<'a> {
    /// The scale `γ`, one row long.
    pub(crate) gamma: &'a [f32],
    /// ε added to the variance.
    pub(crate) epsilon: f32,
}

impl Kernel for LayerNormInputGrad<'_> {
    fn row(&self) -> usize {
        self.gamma.len()
    }
    #[inline(always)]
    fn run(&self, out: &mut [f32], x: &[f32]) {
        let d = self.gamma.len();
        let inv_d = 1.0 / d as f32;
        for (g, x) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
            let mean = row_dot(x, None) * inv_d;
            let mut lanes = [0.0f32; LANES];
            let mut chunks = x.chunks_exact(LANES);
            for c in &mut chunks {
                for (s, &v) in lanes.iter_mut().zip(c) {
                    *s += (v - mean) * (v - mean);
                }
            }
            let tail: f32 = chunks
                .remainder()
                .iter()
                .map(|&v| (v - mean) * (v - mean))
                .sum();
            let var = (lanes.iter().sum::<f32>() + tail) * inv_d;
            let rstd = 1.0 / sqrt(var + self.epsilon);
            // g ← g·γ, then the two means.
            for (g, &w) in g.iter_mut().zip(self.gamma) {
                *g *= w;
            }
            let sum = row_dot(g, None);
            let m1 = sum * inv_d;
            let m2 = (row_dot(g, Some(x)) - mean * sum) * rstd * inv_d;
            for (g, &v) in g.iter_mut().zip(x) {
                *g = rstd * (*g - m1 - (v - mean) * rstd * m2);
            }
        }
    }
}

/// One Adam/AdamW update with its scalars rounded to f32, in the order of
/// [`crate::optim::Adam`]'s tensor path.
#[derive(Clone, Copy)]
pub(crate) struct AdamUpdate {
    /// `1 − lr·wd` (AdamW's decoupled decay).
    pub(crate) decay: f32,
    /// `wd` (Adam's L2 penalty).
    pub(crate) wd: f32,
    /// β₁ and `1 − β₁`.
    pub(crate) beta1: (f32, f32),
    /// β₂ and `1 − β₂`.
    pub(crate) beta2: (f32, f32),
    /// `√(1 − β₂ᵗ)`.
    pub(crate) bias_correction2_sqrt: f32,
    /// ε.
    pub(crate) eps: f32,
    /// `lr / (1 − β₁ᵗ)`.
    pub(crate) step_size: f32,
    /// Whether there is weight decay, and whether it is decoupled.
    pub(crate) decays: bool,
    pub(crate) decoupled: bool,
}

impl AdamUpdate {
    #[inline(always)]
    fn run(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let (b1, one_b1) = self.beta1;
        let (b2, one_b2) = self.beta2;
        for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            let mut g = g;
            if self.decays {
                if self.decoupled {
                    *p *= self.decay;
                } else {
                    g += *p * self.wd;
                }
            }
            *m = *m * b1 + g * one_b1;
            *v = *v * b2 + (g * g) * one_b2;
            let denom = sqrt(*v) / self.bias_correction2_sqrt + self.eps;
            *p -= (*m / denom) * self.step_size;
        }
    }
}

/// Applies `update` to the parameter `p` with gradient `g` and moments `m`,
/// `v` (all of one length), split over the rayon pool for large buffers.
pub(crate) fn adam(update: &AdamUpdate, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    struct Piece<'a> {
        update: &'a AdamUpdate,
        p: &'a mut [f32],
        g: &'a [f32],
        m: &'a mut [f32],
        v: &'a mut [f32],
    }
    impl WithSimd for Piece<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, _simd: S) {
            self.update.run(self.p, self.g, self.m, self.v);
        }
    }
    let one = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
        pulp::Arch::new().dispatch(Piece { update, p, g, m, v })
    };
    // A few memory-bound operations per element: below a quarter of a
    // million elements, waking the pool costs more than it saves.
    #[cfg(feature = "parallel")]
    if p.len() >= 1 << 18 {
        use rayon::prelude::*;
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| one(p, g, m, v));
        return;
    }
    one(p, g, m, v);
}

/// Runs `kernel` compiled for this CPU's widest vector instructions.
struct Dispatched<'a, K> {
    kernel: &'a K,
    start: usize,
    out: &'a mut [f32],
    b: &'a [f32],
}

impl<K: Kernel> WithSimd for Dispatched<'_, K> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        self.kernel.run_at(self.start, self.out, self.b);
    }
}

/// Elements per piece of work when a buffer is split over the thread pool.
#[cfg(feature = "parallel")]
const CHUNK: usize = 1 << 14;

/// `kernel` over `out` (and `b`, empty or as long as `out`): on the rayon pool
/// in pieces of whole rows — the pool the caller runs in, so under
/// [`crate::threads::serial_below`] it stays on one thread — or in one piece
/// when the buffer is small or without the `parallel` feature.
pub(crate) fn run<K: Kernel>(kernel: &K, out: &mut [f32], b: &[f32]) {
    let one = |start: usize, out: &mut [f32], b: &[f32]| {
        pulp::Arch::new().dispatch(Dispatched {
            kernel,
            start,
            out,
            b,
        })
    };
    #[cfg(feature = "parallel")]
    if out.len() > CHUNK {
        use rayon::prelude::*;
        let row = kernel.row().max(1);
        let piece = (CHUNK / row).max(1) * row;
        if b.is_empty() {
            out.par_chunks_mut(piece)
                .enumerate()
                .for_each(|(i, o)| one(i * piece, o, &[]));
        } else {
            out.par_chunks_mut(piece)
                .zip(b.par_chunks(piece))
                .enumerate()
                .for_each(|(i, (o, b))| one(i * piece, o, b));
        }
        return;
    }
    one(0, out, b);
}

/// The f32 values of `t`, if it is f32 and its elements are its whole
/// buffer, in order.
pub(crate) fn values(t: &FlexTensor) -> Option<&[f32]> {
    let n = t.layout().num_elements();
    if t.dtype() != DType::F32 || t.layout().contiguous_offsets() != Some((0, n)) {
        return None;
    }
    t.as_slice::<f32>().filter(|s| s.len() == n)
}

/// [`values`], mutable, if `t` is the only owner of its buffer.
pub(crate) fn values_mut(t: &mut FlexTensor) -> Option<&mut [f32]> {
    values(t)?;
    let n = t.layout().num_elements();
    t.try_storage_mut::<f32>().filter(|s| s.len() == n)
}

/// `t` itself when its buffer can be overwritten, otherwise a fresh copy;
/// `Err(t)` when `t` has no [`values`].
pub(crate) fn writable(mut t: FlexTensor) -> Result<FlexTensor, FlexTensor> {
    if values_mut(&mut t).is_some() {
        return Ok(t);
    }
    match values(&t).map(<[f32]>::to_vec) {
        Some(copy) => Ok(FlexTensor::from_data(TensorData::new(
            copy,
            t.layout().shape().clone(),
        ))),
        None => Err(t),
    }
}

/// `kernel` applied to `out` (written over when nothing else holds it) with
/// `b` as its second operand, or both tensors back when either is not a
/// plain f32 tensor or their shapes differ.
pub(crate) fn apply<K: Kernel>(
    kernel: &K,
    out: FlexTensor,
    b: Option<&FlexTensor>,
) -> Result<FlexTensor, FlexTensor> {
    let fits = match b {
        Some(b) => values(b).is_some() && b.layout().shape() == out.layout().shape(),
        None => true,
    };
    if !fits || values(&out).is_none() {
        return Err(out);
    }
    let mut out = writable(out)?;
    let b = b.and_then(values).unwrap_or(&[]);
    match values_mut(&mut out) {
        Some(o) => run(kernel, o, b),
        None => return Err(out),
    }
    Ok(out)
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
            let y = super::gelu(x);
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

    /// `exp` on [−100, 0] against f64's: within 2 ulp of the f32 result
    /// above −87, 0 below, NaN for NaN.
    #[test]
    fn matches_exp() {
        for i in 0..=1_000_000 {
            let x = -(i as f32) * 1e-4;
            let e = super::exp_nonpositive(x);
            if x < -87.0 {
                assert_eq!(e, 0.0, "exp({x})");
                continue;
            }
            let exact = libm::exp(f64::from(x));
            let ulp = f64::from(f32::EPSILON) * exact;
            assert!(
                (f64::from(e) - exact).abs() <= 2.0 * ulp,
                "exp({x}) = {e}, exact {exact}"
            );
        }
        assert!(super::exp_nonpositive(f32::NAN).is_nan());
    }

    /// The row kernels against direct f64 sums, on rows longer and shorter
    /// than the partial sums' lanes, through the pool-split path.
    #[test]
    fn softmax_rows() {
        use super::Kernel;
        for row in [1usize, 7, 16, 64, 100] {
            let rows = (1 << 15) / row + 3;
            let x: Vec<f32> = (0..rows * row)
                .map(|i| ((i * 7919) % 1000) as f32 * 0.01 - 5.0)
                .collect();
            let g: Vec<f32> = (0..rows * row)
                .map(|i| ((i * 104_729) % 997) as f32 * 0.002 - 1.0)
                .collect();
            let mut y = x.clone();
            super::run(&super::Softmax(row), &mut y, &[]);
            let mut dx = g.clone();
            super::run(&super::SoftmaxBackward { row, scale: 1.0 }, &mut dx, &y);
            for r in 0..rows {
                let xs = &x[r * row..(r + 1) * row];
                let max = xs
                    .iter()
                    .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
                let sum: f64 = xs.iter().map(|&v| libm::exp(f64::from(v) - max)).sum();
                let ys: Vec<f64> = xs
                    .iter()
                    .map(|&v| libm::exp(f64::from(v) - max) / sum)
                    .collect();
                let gs = &g[r * row..(r + 1) * row];
                let dot: f64 = gs.iter().zip(&ys).map(|(&g, &y)| f64::from(g) * y).sum();
                for (j, &exact_y) in ys.iter().enumerate() {
                    let i = r * row + j;
                    assert!(
                        (f64::from(y[i]) - exact_y).abs() <= 1e-6,
                        "row {row}: y[{i}] = {}, exact {}",
                        y[i],
                        exact_y
                    );
                    let exact = exact_y * (f64::from(g[i]) - dot);
                    assert!(
                        (f64::from(dx[i]) - exact).abs() <= 1e-6,
                        "row {row}: dx[{i}] = {}, exact {exact}",
                        dx[i]
                    );
                }
            }
            assert_eq!(super::Softmax(row).row(), row);
        }
    }

    /// Attention's softmax of `scale·x + bias` (a bias row per leading
    /// index, one of its keys masked with `f32::MIN`) and its scaled
    /// backward against f64, through the pool-split path, where a piece
    /// starts in the middle of a leading index's rows.
    #[test]
    fn attention_softmax_rows() {
        let (batch, rows_per_bias, keys, scale) = (3usize, 700usize, 24usize, 0.176_776_7f32);
        let n = batch * rows_per_bias * keys;
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.02 - 10.0)
            .collect();
        let g: Vec<f32> = (0..n)
            .map(|i| ((i * 104_729) % 997) as f32 * 0.002 - 1.0)
            .collect();
        let bias: Vec<f32> = (0..batch * keys)
            .map(|i| {
                if i % keys == (i / keys) * 5 {
                    f32::MIN
                } else {
                    (i % 5) as f32 * 0.3
                }
            })
            .collect();
        let kernel = super::AttentionSoftmax {
            keys,
            scale,
            bias: &bias,
            rows_per_bias,
        };
        let mut y = x.clone();
        super::run(&kernel, &mut y, &[]);
        let mut dx = g.clone();
        super::run(&super::SoftmaxBackward { row: keys, scale }, &mut dx, &y);
        for r in 0..batch * rows_per_bias {
            let b = &bias[r / rows_per_bias * keys..][..keys];
            let z: Vec<f64> = (0..keys)
                .map(|j| f64::from(x[r * keys + j] * scale) + f64::from(b[j]))
                .collect();
            let max = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let sum: f64 = z.iter().map(|&v| libm::exp(v - max)).sum();
            let ys: Vec<f64> = z.iter().map(|&v| libm::exp(v - max) / sum).collect();
            let gs = &g[r * keys..(r + 1) * keys];
            let dot: f64 = gs.iter().zip(&ys).map(|(&g, &y)| f64::from(g) * y).sum();
            for (j, &exact_y) in ys.iter().enumerate() {
                let i = r * keys + j;
                assert!(
                    (f64::from(y[i]) - exact_y).abs() <= 1e-6,
                    "y[{i}] = {}, exact {}",
                    y[i],
                    exact_y
                );
                let exact = f64::from(scale) * exact_y * (f64::from(g[i]) - dot);
                assert!(
                    (f64::from(dx[i]) - exact).abs() <= 1e-6,
                    "dx[{i}] = {}, exact {exact}",
                    dx[i]
                );
            }
            if b.contains(&f32::MIN) {
                assert!((0..keys).any(|j| b[j] == f32::MIN && y[r * keys + j] == 0.0));
            }
        }
        // A zero bias: the scaled softmax alone.
        let zeros = alloc::vec![0.0f32; keys];
        let plain = super::AttentionSoftmax {
            keys,
            scale,
            bias: &zeros,
            rows_per_bias: 1,
        };
        let mut y = x[..keys].to_vec();
        super::run(&plain, &mut y, &[]);
        let mut expect: Vec<f32> = x[..keys].iter().map(|v| v * scale).collect();
        super::run(&super::Softmax(keys), &mut expect, &[]);
        assert_eq!(y, expect);
    }
}
