//! What a run is at a given moment, besides its model and optimizer: the
//! state a checkpoint stores and a resumed run continues from, and the data
//! order, which depends on `(seed, epoch)` only.

use alloc::vec::Vec;

use crate::rng::{SplitMix64, stream_seed};

/// Everything besides model and optimizer that a resumed run needs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TrainState {
    /// Optimizer steps taken (skipped steps included).
    pub step: u64,
    /// Completed epochs.
    pub epoch: u64,
    /// Position of the data loader in the current epoch (micro-batches consumed).
    pub data_position: u64,
    /// Steps taken by the learning-rate scheduler.
    pub scheduler_steps: u64,
    /// Base seed of the run's randomness.
    pub rng_seed: u64,
    /// The loss scaler's scale (0 when no scaler has run yet).
    pub loss_scale: f64,
    /// The loss scaler's count of good steps since its last change.
    pub scale_growth_tracker: u64,
}

/// The permutation of `0..n` used in `epoch` (identity without shuffling).
pub fn epoch_order(n: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        // Fisher–Yates with the epoch's own stream of the run's seed.
        let mut rng = SplitMix64::new(stream_seed(seed, epoch));
        for i in (1..n).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn epoch_order_is_a_permutation_that_depends_on_the_epoch() {
        let a = epoch_order(50, 7, 0, true);
        let b = epoch_order(50, 7, 1, true);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(a, b);
        assert_eq!(a, epoch_order(50, 7, 0, true));
        assert_eq!(epoch_order(5, 7, 3, false), vec![0, 1, 2, 3, 4]);
    }
}
