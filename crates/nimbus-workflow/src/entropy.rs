//! Injectable randomness.
//!
//! `States.UUID`, `States.MathRandom` without a seed, FULL retry jitter and
//! callback task tokens need random numbers. They come through this trait so
//! that tests are reproducible and so that the interpreter stays a pure
//! function of (snapshot, outcome, now, entropy): whatever was drawn is
//! recorded in the next snapshot or history event, so a crash never makes a
//! resumed execution draw differently for a step that was already persisted.

/// A source of random bits.
pub trait Entropy {
    /// 64 uniformly distributed random bits.
    fn next_u64(&mut self) -> u64;

    /// A uniformly distributed number in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        // 53 random mantissa bits, the usual construction.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A random (version 4) UUID in its hyphenated lower-case form.
    fn uuid(&mut self) -> String {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .to_string()
    }
}

/// Operating-system randomness (through the `uuid` crate's v4 generator).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn next_u64(&mut self) -> u64 {
        // A v4 UUID carries 122 random bits; the low 64 bits are all random.
        uuid::Uuid::new_v4().as_u128() as u64
    }
}

/// Deterministic SplitMix64 stream, for tests and for seeded `MathRandom`.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct SeededEntropy {
    state: u64,
}

impl SeededEntropy {
    /// A stream that always yields the same numbers for the same seed.
    pub fn new(seed: u64) -> SeededEntropy {
        SeededEntropy { state: seed }
    }
}

impl Entropy for SeededEntropy {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_streams_repeat_and_uuids_are_v4() {
        let mut a = SeededEntropy::new(7);
        let mut b = SeededEntropy::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
        let id = a.uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        let f = b.next_f64();
        assert!((0.0..1.0).contains(&f));
        assert_ne!(OsEntropy.uuid(), OsEntropy.uuid());
    }
}
