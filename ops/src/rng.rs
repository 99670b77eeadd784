//! The one generator for Ember's own random decisions — the data order of
//! an epoch, the seed of each recomputed block, a learner's initial weights
//! — so that they are the same on every platform and in every build. Tensor
//! randomness (dropout, initialisers) comes from the device's generator.

/// The golden-ratio increment of SplitMix64 (2⁶⁴ / φ).
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64 (Steele, Lea and Flood, 2014): a small, well-mixed 64-bit
/// generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose first output is the mix of `seed + γ`.
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, on a grid of 2⁻²⁴ (every value exact in f32).
    pub fn next_unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// The seed of stream `index` derived from `base` (an epoch's data order, a
/// block's dropout): distinct streams for distinct indices of one base.
pub const fn stream_seed(base: u64, index: u64) -> u64 {
    base ^ index.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first outputs for seed 1234567, as in the reference C
    /// implementation's published test vector (splitmix64.c by Vigna).
    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        let mut rng = SplitMix64::new(1_234_567);
        let expected = [
            6_457_827_717_110_365_317,
            3_203_168_211_198_807_973,
            9_817_491_932_198_370_423,
            4_593_380_528_125_082_431,
            16_408_922_859_458_223_821,
        ];
        for e in expected {
            assert_eq!(rng.next_u64(), e);
        }
    }

    #[test]
    fn unit_floats_stay_below_one() {
        let mut rng = SplitMix64::new(0);
        assert!(
            (0..10_000)
                .map(|_| rng.next_unit_f32())
                .all(|u| (0.0..1.0).contains(&u))
        );
    }
}
