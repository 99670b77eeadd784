//! Random cases for the property tests that hold every CPU kernel to its
//! reference: shapes, strides and values drawn from [`SplitMix64`], so a
//! failure names a case that reruns the same everywhere.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use burn::backend::Flex;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{Device, Tensor, TensorData};

use crate::rng::SplitMix64;

/// Row lengths that straddle the kernels' 16 partial-sum lanes.
const ROWS: [usize; 8] = [1, 3, 7, 16, 17, 33, 64, 100];

/// One case: two tensors of one shape `[a, b, row]` (an input and, for
/// backward passes, an output gradient) and how they are laid out.
pub(crate) struct Case {
    /// Values in `[−4, 4)`.
    pub x: Tensor<3>,
    /// Values in `[−1, 1)`.
    pub other: Tensor<3>,
    /// `contiguous`, `transposed` (strided) or `offset` (a slice that
    /// starts inside its buffer).
    pub layout: &'static str,
    /// The shape and seed, for failure messages.
    pub name: String,
}

/// `n` cases from `seed`: every layout in turn, shapes up to about 40,000
/// elements (beyond one piece of the pool's split).
pub(crate) fn cases(n: usize, seed: u64) -> impl Iterator<Item = Case> {
    let mut rng = SplitMix64::new(seed);
    (0..n).map(move |i| {
        let mut below = |k: usize| (rng.next_u64() % k as u64) as usize;
        let row = ROWS[below(ROWS.len())];
        let a = 1 + below(4);
        let b = 1 + below(if i % 5 == 4 { 400 } else { 24 });
        let layout = ["contiguous", "transposed", "offset"][i % 3];
        let case_seed = crate::rng::stream_seed(seed, i as u64);
        let x = tensor([a, b, row], layout, case_seed, 8.0, -4.0);
        let other = tensor([a, b, row], layout, case_seed ^ 1, 2.0, -1.0);
        Case {
            x,
            other,
            layout,
            name: format!("[{a}, {b}, {row}] {layout}, seed {seed:#x} case {i}"),
        }
    })
}

/// Uniform values `scale·u + shift` of `shape`, laid out as `layout` says.
pub(crate) fn tensor(
    [a, b, c]: [usize; 3],
    layout: &str,
    seed: u64,
    scale: f32,
    shift: f32,
) -> Tensor<3> {
    let mut rng = SplitMix64::new(seed);
    let mut draw = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| rng.next_unit_f32() * scale + shift)
            .collect()
    };
    let device = Device::flex();
    match layout {
        "transposed" => {
            Tensor::<3>::from_data(TensorData::new(draw(a * b * c), [a, c, b]), &device)
                .swap_dims(1, 2)
        }
        "offset" => Tensor::<3>::from_data(
            TensorData::new(draw((a + 1) * b * c), [a + 1, b, c]),
            &device,
        )
        .slice([1..a + 1]),
        _ => Tensor::<3>::from_data(TensorData::new(draw(a * b * c), [a, b, c]), &device),
    }
}

/// The CPU primitive of a tensor.
pub(crate) fn primitive<const D: usize>(t: Tensor<D>) -> FloatTensor<Flex> {
    t.try_into_primitive::<Flex>()
        .unwrap_or_else(|_| panic!("a CPU tensor"))
}

/// Asserts that two CPU tensors have one shape and values within `tol` of
/// the reference's scale, `max(max |reference|, 1)`: kernels and their
/// compositions sum in different orders, and a row's rounding error scales
/// with the row's largest terms, not with each element.
pub(crate) fn assert_close(
    got: FloatTensor<Flex>,
    reference: FloatTensor<Flex>,
    tol: f64,
    what: &str,
) {
    let (got, reference) = (
        Tensor::<3>::from_primitive::<Flex>(got).into_data(),
        Tensor::<3>::from_primitive::<Flex>(reference).into_data(),
    );
    assert_eq!(got.shape(), reference.shape(), "{what}: shapes");
    let (g, r) = (
        got.try_to_vec::<f32>().expect("f32"),
        reference.try_to_vec::<f32>().expect("f32"),
    );
    let scale = r.iter().fold(1.0f64, |m, &v| m.max(f64::from(v.abs())));
    let bound = tol * scale;
    for (i, (&g, &r)) in g.iter().zip(&r).enumerate() {
        assert!(
            (f64::from(g) - f64::from(r)).abs() <= bound || (g.is_nan() && r.is_nan()),
            "{what}: element {i} is {g}, the reference {r}"
        );
    }
}
