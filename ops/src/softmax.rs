//! Softmax as one differentiable op that keeps only its output.
//!
//! Burn 0.22.1 differentiates softmax through its decomposition
//! (`exp(x − max) / Σ`), whose graph keeps the exponentials and the sums for
//! backward — and the product that consumes the probabilities keeps its own
//! copy of them. This op keeps its output `y`, as PyTorch's softmax does, and
//! backward computes `dx = y·(g − Σ g·y)` over the softmax dimension; a
//! product that reuses `y` ([`crate::linear::matmul_keeping_lhs`]) then
//! keeps nothing more. On the CPU both directions are single passes over
//! each row with a vectorised `exp`.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::Shape;
use burn::tensor::Tensor;

use crate::cpu::{self, Kernel, exp_nonpositive, row_dot, row_max};

/// The operation, per backend.
#[backend_extension(Autodiff, Flex, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait SoftmaxOps: Backend {
    /// Softmax of `x` over dimension `dim`: the backend's own.
    fn softmax_keeping_output(x: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        Self::softmax(x, dim)
    }

    /// The input gradient `scale·y·(g − Σ g·y)` (the sum over `dim`) from
    /// the output `y` and the output gradient `g` of a softmax whose input
    /// was multiplied by `scale` (1 for a plain softmax).
    fn softmax_backward(
        y: FloatTensor<Self>,
        g: FloatTensor<Self>,
        dim: usize,
        scale: f32,
    ) -> FloatTensor<Self> {
        composed_backward::<Self>(y, g, dim, scale)
    }

    /// Softmax over the last dimension of `scale·x + bias`, `x [B, H, Lq,
    /// Lk]` and `bias [B, Lk]` broadcast over `H` and `Lq`: the backend's
    /// own ops.
    fn attention_softmax(
        x: FloatTensor<Self>,
        scale: f32,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        composed_attention::<Self>(x, scale, bias)
    }
}

/// [`SoftmaxOps::softmax_backward`] composed of the backend's float ops.
fn composed_backward<B: Backend>(
    y: FloatTensor<B>,
    g: FloatTensor<B>,
    dim: usize,
    scale: f32,
) -> FloatTensor<B> {
    let dot = B::float_sum_dim(B::float_mul(g.clone(), y.clone()), dim);
    let dx = B::float_mul(y, B::float_sub(g, dot));
    if scale == 1.0 {
        dx
    } else {
        B::float_mul_scalar(dx, scale.into())
    }
}

/// [`SoftmaxOps::attention_softmax`] composed of the backend's float ops
/// (`scale·x + bias`) and its softmax.
fn composed_attention<B: SoftmaxOps>(
    x: FloatTensor<B>,
    scale: f32,
    bias: FloatTensor<B>,
) -> FloatTensor<B> {
    let shape = x.shape();
    let [b, _, _, keys] = shape.dims();
    let z = if scale == 1.0 {
        x
    } else {
        B::float_mul_scalar(x, scale.into())
    };
    let bias = B::float_expand(B::float_reshape(bias, Shape::from([b, 1, 1, keys])), shape);
    B::softmax_keeping_output(B::float_add(z, bias), 3)
}

/// On the CPU backend, softmax over the last dimension of a contiguous f32
/// tensor, and its backward, run as one pass per row with a vectorised
/// `exp`, split over the thread pool by rows, in place where the buffer is
/// free (the scores' sum with the mask forward, the incoming gradient
/// backward); other cases use the backend's kernels.
impl SoftmaxOps for burn::backend::Flex {
    fn softmax_keeping_output(x: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        let softmax = |x| <Self as burn::backend::ops::ActivationOps<Self>>::softmax(x, dim);
        match cpu::last_dim_len(&x, dim) {
            Some(n) => cpu::dispatch(&SoftmaxKernel(n), x, None, softmax),
            None => softmax(x),
        }
    }

    fn softmax_backward(
        y: FloatTensor<Self>,
        g: FloatTensor<Self>,
        dim: usize,
        scale: f32,
    ) -> FloatTensor<Self> {
        match cpu::last_dim_len(&y, dim) {
            Some(row) => cpu::dispatch(&SoftmaxBackwardKernel { row, scale }, g, Some(&y), |g| {
                composed_backward::<Self>(y.clone(), g, dim, scale)
            }),
            None => composed_backward::<Self>(y, g, dim, scale),
        }
    }

    fn attention_softmax(
        x: FloatTensor<Self>,
        scale: f32,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let keys = cpu::last_dim_len(&x, 3);
        let (batch, rows_per_bias) = {
            let dims = x.layout().shape();
            (dims[0], dims[1] * dims[2])
        };
        match (keys, cpu::values(&bias)) {
            (Some(keys), Some(values)) if values.len() == batch * keys => {
                let kernel = AttentionSoftmaxKernel {
                    keys,
                    scale,
                    bias: values,
                    rows_per_bias,
                };
                cpu::dispatch(&kernel, x, None, |x| {
                    composed_attention::<Self>(x, scale, bias.clone())
                })
            }
            _ => composed_attention::<Self>(x, scale, bias),
        }
    }
}

/// Softmax of each row of `row` elements, in place.
struct SoftmaxKernel(usize);

impl Kernel for SoftmaxKernel {
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
struct AttentionSoftmaxKernel<'a> {
    /// `Lk`.
    keys: usize,
    /// The factor on the scores.
    scale: f32,
    /// `[B, Lk]`.
    bias: &'a [f32],
    /// `H·Lq`: the rows that share one row of `bias`.
    rows_per_bias: usize,
}

impl Kernel for AttentionSoftmaxKernel<'_> {
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
struct SoftmaxBackwardKernel {
    /// Elements of a row.
    row: usize,
    /// The factor on the softmax's input.
    scale: f32,
}

impl Kernel for SoftmaxBackwardKernel {
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

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl SoftmaxOps for burn::backend::Cube {}

#[derive(Debug)]
struct SoftmaxBackward;

impl<B: SoftmaxOps> Backward<B, 1> for SoftmaxBackward {
    /// The output, the softmax's dimension and the factor on its input.
    type State = (FloatTensor<B>, usize, f32);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node] = ops.parents;
        let (y, dim, scale) = ops.state;
        let g = grads.consume::<B>(&ops.node);
        if let Some(node) = node {
            grads.register::<B>(node.id, B::softmax_backward(y, g, dim, scale));
        }
    }
}

impl<B: SoftmaxOps, C: CheckpointStrategy> SoftmaxOps for Autodiff<B, C> {
    fn softmax_keeping_output(x: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        let prepared = SoftmaxBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        let x = x.into_primitive();
        match prepared {
            OpsKind::Tracked(prep) => {
                let y = B::softmax_keeping_output(x, dim);
                prep.finish((y.clone(), dim, 1.0), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::softmax_keeping_output(x, dim)),
        }
    }

    fn attention_softmax(
        x: FloatTensor<Self>,
        scale: f32,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // A bias that wants a gradient goes through the composition, which
        // Burn differentiates; a constant one (a mask) is the op's input.
        if bias.is_tracked() {
            return composed_attention::<Self>(x, scale, bias);
        }
        let prepared = SoftmaxBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        let y = B::attention_softmax(x.into_primitive(), scale, bias.into_primitive());
        match prepared {
            OpsKind::Tracked(prep) => prep.finish((y.clone(), 3, scale), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

/// Softmax over `dim`, keeping only its output for backward (see the
/// module documentation).
pub fn softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    Tensor::from_dispatch(Dispatch::softmax_keeping_output(x.into_dispatch(), dim))
}

/// Attention's probabilities: softmax over the last dimension of
/// `scale·scores + key_bias`, `scores [B, H, Lq, Lk]`, `key_bias [B, Lk]`
/// added to every head and query (0 to attend, a large negative number to
/// ignore a key). One op that keeps only its output, like [`softmax`]; on
/// the CPU the scaling, the bias and the softmax are one pass per row, and
/// so is backward (`scale·y·(g − Σ g·y)`). A `key_bias` that is tracked
/// gets its gradient (through Burn's ops).
///
/// ```
/// use ember_ops::softmax::attention_softmax;
/// use burn::tensor::{Device, Tensor};
///
/// let device = Device::flex();
/// let scores = Tensor::<4>::from_floats([[[[1.0, 2.0, 3.0]]]], &device);
/// let mask = Tensor::<2>::from_floats([[0.0, 0.0, f32::MIN]], &device);
/// let p = attention_softmax(scores, 0.5, Some(mask)).into_data().to_vec::<f32>().unwrap();
/// // softmax([0.5, 1.0]) on the two attended keys, 0 on the masked one.
/// assert!((p[0] - 0.377_540_7).abs() < 1e-6 && (p[1] - 0.622_459_3).abs() < 1e-6 && p[2] == 0.0);
/// ```
///
/// # Panics
///
/// If `key_bias` is not `[B, Lk]`.
pub fn attention_softmax(scores: Tensor<4>, scale: f32, key_bias: Option<Tensor<2>>) -> Tensor<4> {
    let [b, _, _, keys] = scores.dims();
    let bias = match key_bias {
        Some(bias) => {
            assert_eq!(
                bias.dims(),
                [b, keys],
                "attention_softmax: key_bias must be [batch, keys] = [{b}, {keys}]"
            );
            bias
        }
        None => Tensor::<2>::zeros([b, keys], &scores.device()).cast(scores.dtype()),
    };
    Tensor::from_dispatch(Dispatch::attention_softmax(
        scores.into_dispatch(),
        scale,
        bias.into_dispatch(),
    ))
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;
    use burn::backend::Flex;
    use burn::tensor::Tensor;

    use super::{SoftmaxOps, composed_attention, composed_backward};
    use crate::check::{Case, assert_close, cases, primitive, tensor};

    /// One row of a softmax kernel's output `y` and input gradient `dx`
    /// (from the output gradient `g`) against f64: `y = softmax(z)`, `dx =
    /// scale·y·(g − Σ g·y)`, each within 1e-6. `first`: the row's first
    /// element in the buffer, for the messages.
    fn assert_row_matches(z: &[f64], g: &[f32], y: &[f32], dx: &[f32], scale: f64, first: usize) {
        let max = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let sum: f64 = z.iter().map(|&v| libm::exp(v - max)).sum();
        let ys: Vec<f64> = z.iter().map(|&v| libm::exp(v - max) / sum).collect();
        let dot: f64 = g.iter().zip(&ys).map(|(&g, &y)| f64::from(g) * y).sum();
        for (j, &exact_y) in ys.iter().enumerate() {
            assert!(
                (f64::from(y[j]) - exact_y).abs() <= 1e-6,
                "y[{}] = {}, exact {exact_y}",
                first + j,
                y[j]
            );
            let exact = scale * exact_y * (f64::from(g[j]) - dot);
            assert!(
                (f64::from(dx[j]) - exact).abs() <= 1e-6,
                "dx[{}] = {}, exact {exact}",
                first + j,
                dx[j]
            );
        }
    }

    /// The row kernels against direct f64 sums, on rows longer and shorter
    /// than the partial sums' lanes, through the pool-split path.
    #[test]
    fn softmax_rows() {
        use crate::cpu::Kernel;
        for row in [1usize, 7, 16, 64, 100] {
            let rows = (1 << 15) / row + 3;
            let x: Vec<f32> = (0..rows * row)
                .map(|i| ((i * 7919) % 1000) as f32 * 0.01 - 5.0)
                .collect();
            let g: Vec<f32> = (0..rows * row)
                .map(|i| ((i * 104_729) % 997) as f32 * 0.002 - 1.0)
                .collect();
            let mut y = x.clone();
            crate::cpu::run(&super::SoftmaxKernel(row), &mut y, &[]);
            let mut dx = g.clone();
            crate::cpu::run(
                &super::SoftmaxBackwardKernel { row, scale: 1.0 },
                &mut dx,
                &y,
            );
            for r in 0..rows {
                let at = r * row..(r + 1) * row;
                let z: Vec<f64> = x[at.clone()].iter().map(|&v| f64::from(v)).collect();
                let (gs, ys, dxs) = (&g[at.clone()], &y[at.clone()], &dx[at.clone()]);
                assert_row_matches(&z, gs, ys, dxs, 1.0, at.start);
            }
            assert_eq!(super::SoftmaxKernel(row).row(), row);
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
        let kernel = super::AttentionSoftmaxKernel {
            keys,
            scale,
            bias: &bias,
            rows_per_bias,
        };
        let mut y = x.clone();
        crate::cpu::run(&kernel, &mut y, &[]);
        let mut dx = g.clone();
        crate::cpu::run(
            &super::SoftmaxBackwardKernel { row: keys, scale },
            &mut dx,
            &y,
        );
        for r in 0..batch * rows_per_bias {
            let b = &bias[r / rows_per_bias * keys..][..keys];
            let z: Vec<f64> = (0..keys)
                .map(|j| f64::from(x[r * keys + j] * scale) + f64::from(b[j]))
                .collect();
            let at = r * keys..(r + 1) * keys;
            let (gs, ys, dxs) = (&g[at.clone()], &y[at.clone()], &dx[at.clone()]);
            assert_row_matches(&z, gs, ys, dxs, f64::from(scale), at.start);
            if b.contains(&f32::MIN) {
                assert!((0..keys).any(|j| b[j] == f32::MIN && y[r * keys + j] == 0.0));
            }
        }
        // A zero bias: the scaled softmax alone.
        let zeros = alloc::vec![0.0f32; keys];
        let plain = super::AttentionSoftmaxKernel {
            keys,
            scale,
            bias: &zeros,
            rows_per_bias: 1,
        };
        let mut y = x[..keys].to_vec();
        crate::cpu::run(&plain, &mut y, &[]);
        let mut expect: Vec<f32> = x[..keys].iter().map(|v| v * scale).collect();
        crate::cpu::run(&super::SoftmaxKernel(keys), &mut expect, &[]);
        assert_eq!(y, expect);
    }

    /// Property: on random shapes and values, contiguous or not, the CPU
    /// kernels agree with Burn's softmax, the composed backward and the
    /// composed attention softmax (one pass per row with a polynomial
    /// `exp` against Burn's libm `exp`: within 1e-6 of the largest value).
    #[test]
    fn kernels_match_the_composed_ops() {
        for Case {
            x,
            other,
            layout,
            name,
        } in cases(45, 0x50f7)
        {
            let (x, g) = (primitive(x), primitive(other));
            let y = Flex::softmax_keeping_output(x.clone(), 2);
            let reference =
                <Flex as burn::backend::ops::ActivationOps<Flex>>::softmax(x.clone(), 2);
            assert_close(y.clone(), reference, 1e-6, &name);
            let dx = Flex::softmax_backward(y.clone(), g.clone(), 2, 0.25);
            assert_close(dx, composed_backward::<Flex>(y, g, 2, 0.25), 1e-6, &name);

            // As attention's scores [B, H, Lq, Lk] with a [B, Lk] mask.
            let [a, b, keys] = Tensor::<3>::from_primitive::<Flex>(x.clone()).dims();
            let scores = Tensor::<3>::from_primitive::<Flex>(x).reshape([a, 1, b, keys]);
            let bias = tensor([1, a, keys], layout, 7, 6.0, -3.0).reshape([a, keys]);
            let (scores, bias) = (primitive(scores), primitive(bias));
            let p = Flex::attention_softmax(scores.clone(), 0.3, bias.clone());
            let reference = composed_attention::<Flex>(scores, 0.3, bias);
            assert_close(p, reference, 1e-6, &name);
        }
    }
}
