//! Losses with PyTorch's definitions and reductions (mean).
//!
//! Burn's `BinaryCrossEntropyLoss` takes integer targets; PyTorch's
//! `binary_cross_entropy_with_logits` takes float targets (soft labels,
//! label smoothing, distillation). [`bce_with_logits`] is the latter, in its
//! numerically stable form `(1 − t)·x − log σ(x)`, which stays finite for
//! logits of any size.
//!
//! Under [`autocast`](crate::precision::autocast) every loss casts its
//! inputs to fp32 first (PyTorch's autocast runs losses in fp32 too).
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use ember_runtime::loss::{bce_with_logits, mse};
//!
//! let d = ember_runtime::device::cpu();
//! let x = Tensor::<2>::from_floats([[1000.0, -1000.0]], &d);
//! let t = Tensor::<2>::from_floats([[1.0, 0.0]], &d);
//! assert_eq!(bce_with_logits(x.clone(), t.clone()).into_scalar::<f32>(), 0.0);
//! assert_eq!(mse(t.clone(), t).into_scalar::<f32>(), 0.0);
//! ```

use burn::tensor::Int;
use burn::tensor::Tensor;
use burn::tensor::activation::{log_sigmoid, log_softmax};

use crate::precision::to_f32;

/// Mean squared error, `mean((pred − target)²)` (`F.mse_loss`).
pub fn mse<const D: usize>(pred: Tensor<D>, target: Tensor<D>) -> Tensor<1> {
    let diff = to_f32(pred).sub(to_f32(target));
    diff.clone().mul(diff).mean()
}

/// Binary cross-entropy on logits with float targets in `[0, 1]`
/// (`F.binary_cross_entropy_with_logits`, mean reduction).
pub fn bce_with_logits<const D: usize>(logits: Tensor<D>, targets: Tensor<D>) -> Tensor<1> {
    let (logits, targets) = (to_f32(logits), to_f32(targets));
    let one_minus_t = targets.neg().add_scalar(1.0);
    one_minus_t
        .mul(logits.clone())
        .sub(log_sigmoid(logits))
        .mean()
}

/// Cross-entropy of `[batch, classes]` logits against class indices `[batch]`
/// (`F.cross_entropy`, mean reduction).
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [batch, _] = logits.dims();
    let log_p = log_softmax(to_f32(logits), 1);
    let picked = log_p.gather(1, targets.reshape([batch, 1]));
    picked.neg().mean()
}
