//! The CPU backend's f32 kernels: the machinery every op's kernel shares.
//!
//! A kernel ([`Kernel`]) is a loop over a piece of an f32 buffer, written as
//! plain arithmetic without integer conversions or early exits so that the
//! compiler vectorises it. [`dispatch`] is the one way an op runs one: on
//! the buffer of a CPU tensor that holds plain f32 values, written over in
//! place when nothing else holds it (an input gradient, a fresh product, an
//! optimizer's moments), otherwise on a fresh copy; any other tensor goes to
//! the op's composed implementation. With the `simd` feature each piece is
//! compiled for the widest vector instructions the CPU has (AVX-512, AVX2 +
//! FMA, NEON, SIMD128, chosen at run time through `pulp`); with `parallel`,
//! large buffers are split by whole rows over the rayon pool.
//!
//! The scalar functions the kernels share (`exp` of non-positive numbers, a
//! square root, row maxima and sums) are here too; each op's own kernel
//! lives in the op's file beside its composed default and its backward.

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, TensorData};
#[cfg(feature = "simd")]
use pulp::{Simd, WithSimd};

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

/// The element types of the kernels that run in f32 and f64 (the Adam
/// update): their arithmetic and a correctly rounded square root.
pub(crate) trait Real:
    Copy
    + burn::tensor::Element
    + core::ops::Add<Output = Self>
    + core::ops::Sub<Output = Self>
    + core::ops::Mul<Output = Self>
    + core::ops::Div<Output = Self>
{
    /// `x` rounded to this type.
    fn of(x: f64) -> Self;
    /// The correctly rounded square root: the instruction with `std` (it
    /// vectorises), libm's without.
    fn sqrt(self) -> Self;
}

impl Real for f32 {
    #[inline(always)]
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        #[cfg(feature = "std")]
        return f32::sqrt(self);
        #[cfg(not(feature = "std"))]
        return libm::sqrtf(self);
    }
}

impl Real for f64 {
    #[inline(always)]
    fn of(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        #[cfg(feature = "std")]
        return f64::sqrt(self);
        #[cfg(not(feature = "std"))]
        return libm::sqrt(self);
    }
}

/// Lanes of the partial sums and maxima of a row: wide enough for AVX-512,
/// so the reductions vectorise as well.
pub(crate) const LANES: usize = 16;

/// The largest element of `row` (−∞ for an empty row; NaNs are skipped here
/// and surface through the exponentials).
#[inline(always)]
pub(crate) fn row_max(row: &[f32]) -> f32 {
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
pub(crate) fn row_dot(a: &[f32], b: Option<&[f32]>) -> f32 {
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
    #[cfg_attr(
        not(feature = "parallel"),
        allow(dead_code, reason = "only the split over the pool reads it")
    )]
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

/// Runs `kernel` compiled for this CPU's widest vector instructions.
#[cfg(feature = "simd")]
struct Dispatched<'a, K> {
    kernel: &'a K,
    start: usize,
    out: &'a mut [f32],
    b: &'a [f32],
}

#[cfg(feature = "simd")]
impl<K: Kernel> WithSimd for Dispatched<'_, K> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        self.kernel.run_at(self.start, self.out, self.b);
    }
}

/// Elements per piece of work when a buffer is split over the thread pool.
#[cfg(feature = "parallel")]
pub(crate) const CHUNK: usize = 1 << 14;

/// `kernel` over `out` (and `b`, empty or as long as `out`): on the rayon pool
/// in pieces of whole rows — the pool the caller runs in, so under
/// [`crate::threads::serial_below`] it stays on one thread — or in one piece
/// when the buffer is small or without the `parallel` feature.
pub(crate) fn run<K: Kernel>(kernel: &K, out: &mut [f32], b: &[f32]) {
    let one = |start: usize, out: &mut [f32], b: &[f32]| {
        #[cfg(feature = "simd")]
        pulp::Arch::new().dispatch(Dispatched {
            kernel,
            start,
            out,
            b,
        });
        #[cfg(not(feature = "simd"))]
        kernel.run_at(start, out, b);
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

/// `kernel` applied by [`apply`], or `composed(out)` when it does not apply:
/// the one dispatch of every op's CPU kernel.
pub(crate) fn dispatch<K: Kernel>(
    kernel: &K,
    out: FlexTensor,
    b: Option<&FlexTensor>,
    composed: impl FnOnce(FlexTensor) -> FlexTensor,
) -> FlexTensor {
    match apply(kernel, out, b) {
        Ok(y) => y,
        Err(out) => composed(out),
    }
}

/// The length of `t`'s last dimension when `dim` is it and it is not empty:
/// the row of a kernel over that dimension.
pub(crate) fn last_dim_len(t: &FlexTensor, dim: usize) -> Option<usize> {
    let dims = t.layout().shape();
    (dims.num_dims() == dim + 1 && dims[dim] > 0).then(|| dims[dim])
}

#[cfg(test)]
mod tests {
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
}
