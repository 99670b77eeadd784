//! Sentence vectors from token states: the pooling modes of
//! sentence-transformers' `Pooling` module, with its arithmetic.
//!
//! A `Pooling` module may switch on several modes; their vectors are then
//! concatenated in sentence-transformers' order (CLS, max, mean,
//! mean-sqrt-len, weighted mean, last token), so the output is
//! `modes × hidden` wide. Every mode reads the attention mask; padded
//! positions never contribute.

use alloc::vec::Vec;

use burn::tensor::{Int, Tensor};
use ember_runtime::precision::to_f32;

/// One way of reducing a sentence's token states to one vector: the
/// `pooling_mode_*` flags of sentence-transformers' `1_Pooling/config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum PoolingMode {
    /// The first token's state (`[CLS]`; `pooling_mode_cls_token`).
    Cls,
    /// The element-wise maximum over the unpadded tokens
    /// (`pooling_mode_max_tokens`; padded positions count as −1e9).
    Max,
    /// The mean over the unpadded tokens (`pooling_mode_mean_tokens`).
    Mean,
    /// The sum over the unpadded tokens divided by the square root of their
    /// count (`pooling_mode_mean_sqrt_len_tokens`).
    MeanSqrtLen,
    /// The mean weighted by position, 1 for the first token up to L for the
    /// last (`pooling_mode_weightedmean_tokens`).
    WeightedMean,
    /// The last unpadded token's state (`pooling_mode_lasttoken`).
    LastToken,
}

impl PoolingMode {
    /// Every mode, in the order sentence-transformers concatenates them.
    pub const ALL: [PoolingMode; 6] = [
        PoolingMode::Cls,
        PoolingMode::Max,
        PoolingMode::Mean,
        PoolingMode::MeanSqrtLen,
        PoolingMode::WeightedMean,
        PoolingMode::LastToken,
    ];

    /// The mode's key in a sentence-transformers pooling configuration.
    pub fn config_key(self) -> &'static str {
        match self {
            PoolingMode::Cls => "pooling_mode_cls_token",
            PoolingMode::Max => "pooling_mode_max_tokens",
            PoolingMode::Mean => "pooling_mode_mean_tokens",
            PoolingMode::MeanSqrtLen => "pooling_mode_mean_sqrt_len_tokens",
            PoolingMode::WeightedMean => "pooling_mode_weightedmean_tokens",
            PoolingMode::LastToken => "pooling_mode_lasttoken",
        }
    }

    /// `[B, H]` from token states `[B, L, H]` and an attention mask `[B, L]`
    /// of ones and zeros.
    pub fn forward(self, hidden: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        let [b, l, h] = hidden.dims();
        let hidden = to_f32(hidden);
        let mask3 = mask.clone().reshape([b, l, 1]);
        match self {
            PoolingMode::Cls => hidden.slice([0..b, 0..1, 0..h]).reshape([b, h]),
            PoolingMode::Max => {
                let padded = mask3.expand([b, l, h]).equal_elem(0.0);
                hidden.mask_fill(padded, -1e9).max_dim(1).reshape([b, h])
            }
            PoolingMode::Mean => {
                let (sum, count) = masked_sum(hidden, mask3);
                sum / count.clamp_min(1e-9)
            }
            PoolingMode::MeanSqrtLen => {
                let (sum, count) = masked_sum(hidden, mask3);
                sum / count.clamp_min(1e-9).sqrt()
            }
            PoolingMode::WeightedMean => {
                let device = hidden.device();
                let positions = Tensor::<1, Int>::arange(1..l as i64 + 1, &device)
                    .float()
                    .reshape([1, l, 1]);
                let (sum, weight) = masked_sum(hidden, mask3 * positions);
                sum / weight.clamp_min(1e-9)
            }
            PoolingMode::LastToken => {
                // The last position whose mask is 1 (0 when none is, whose
                // state the mask then zeroes, as sentence-transformers does).
                let device = hidden.device();
                let positions = Tensor::<1, Int>::arange(0..l as i64, &device)
                    .float()
                    .reshape([1, l]);
                let last = (mask * positions)
                    .max_dim(1)
                    .int()
                    .reshape([b, 1, 1])
                    .expand([b, 1, h]);
                (hidden * mask3).gather(1, last).reshape([b, h])
            }
        }
    }
}

/// `Σ mask·hidden` over the tokens `[B, H]`, and `Σ mask` `[B, 1]`.
fn masked_sum(hidden: Tensor<3>, mask: Tensor<3>) -> (Tensor<2>, Tensor<2>) {
    let [b, _, h] = hidden.dims();
    let sum = (hidden * mask.clone()).sum_dim(1).reshape([b, h]);
    (sum, mask.sum_dim(1).reshape([b, 1]))
}

/// A sentence-transformers `Pooling` module: one or more modes, applied in
/// [`PoolingMode::ALL`]'s order and concatenated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pooling {
    modes: Vec<PoolingMode>,
}

impl Pooling {
    /// The given modes in sentence-transformers' order, each once; `None`
    /// when there is none (the module would output nothing).
    pub fn new(modes: &[PoolingMode]) -> Option<Self> {
        let modes: Vec<PoolingMode> = PoolingMode::ALL
            .into_iter()
            .filter(|m| modes.contains(m))
            .collect();
        (!modes.is_empty()).then_some(Self { modes })
    }

    /// Mean pooling alone: what sentence-transformers builds for a model
    /// directory without a `modules.json`.
    pub fn mean() -> Self {
        Self {
            modes: alloc::vec![PoolingMode::Mean],
        }
    }

    /// The modes, in output order.
    pub fn modes(&self) -> &[PoolingMode] {
        &self.modes
    }

    /// Output width for token states `hidden` wide.
    pub fn output_dim(&self, hidden: usize) -> usize {
        self.modes.len() * hidden
    }

    /// `[B, modes·H]` from token states `[B, L, H]` and their attention mask.
    pub fn forward(&self, hidden: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        let mut parts: Vec<Tensor<2>> = self
            .modes
            .iter()
            .map(|m| m.forward(hidden.clone(), mask.clone()))
            .collect();
        if parts.len() == 1 {
            return parts.remove(0);
        }
        Tensor::cat(parts, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn rows(t: Tensor<2>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    /// Two sentences of one feature: [1, 2, 3] and [4, 5, padding 100];
    /// each mode's result follows from its definition.
    #[test]
    fn every_mode_by_hand() {
        let device = ember_runtime::device::cpu();
        let hidden = Tensor::<3>::from_data(
            TensorData::new(alloc::vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 100.0], [2, 3, 1]),
            &device,
        );
        let mask = Tensor::<2>::from_data(
            TensorData::new(alloc::vec![1.0f32, 1.0, 1.0, 1.0, 1.0, 0.0], [2, 3]),
            &device,
        );
        let run = |m: PoolingMode| rows(m.forward(hidden.clone(), mask.clone()));
        assert_eq!(run(PoolingMode::Cls), [1.0, 4.0]);
        assert_eq!(run(PoolingMode::Max), [3.0, 5.0]);
        assert_eq!(run(PoolingMode::Mean), [2.0, 4.5]);
        let sqrt = run(PoolingMode::MeanSqrtLen);
        assert!(
            (sqrt[0] - 6.0 / 3f32.sqrt()).abs() < 1e-6
                && (sqrt[1] - 9.0 / 2f32.sqrt()).abs() < 1e-6,
            "{sqrt:?}"
        );
        let weighted = run(PoolingMode::WeightedMean);
        assert!(
            (weighted[0] - 14.0 / 6.0).abs() < 1e-6 && (weighted[1] - 14.0 / 3.0).abs() < 1e-6,
            "{weighted:?}"
        );
        assert_eq!(run(PoolingMode::LastToken), [3.0, 5.0]);
        let both = Pooling::new(&[PoolingMode::Mean, PoolingMode::Cls]).unwrap();
        assert_eq!(both.modes(), [PoolingMode::Cls, PoolingMode::Mean]);
        assert_eq!(both.output_dim(1), 2);
        assert_eq!(rows(both.forward(hidden, mask)), [1.0, 2.0, 4.0, 4.5]);
        assert_eq!(Pooling::new(&[]), None);
    }
}
