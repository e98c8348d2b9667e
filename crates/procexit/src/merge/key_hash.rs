//! The hasher of the merge maps' integer keys.

use std::hash::{BuildHasher, Hasher};

/// Hashes the trackers' integer keys (pids, kernel addresses, times) with
/// one folded multiply per word, seeded per map from the standard library's
/// random keys so a crafted trace cannot aim at collisions it cannot see.
/// SipHash, the default, cost more than the rest of a lookup. The ETW maps
/// are bounded, so even colliding keys cannot make work grow without limit;
/// Linux pids are the kernel's choice, not a process's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyHash {
    seed: u64,
}

impl KeyHash {
    pub(crate) fn new() -> KeyHash {
        KeyHash {
            seed: std::hash::RandomState::new().hash_one(0x243f_6a88_85a3_08d3u64),
        }
    }
}

/// The default seeds every map of a thread alike (the thread's own random
/// seed): the per-process thread sets are made once per fork, and drawing a
/// new seed for each cost a SipHash every time.
impl Default for KeyHash {
    fn default() -> KeyHash {
        thread_local! {
            static THREAD_SEED: KeyHash = KeyHash::new();
        }
        THREAD_SEED.with(|seed| *seed)
    }
}

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher { state: self.seed }
    }
}

/// The hasher of [`KeyHash`].
pub(crate) struct KeyHasher {
    state: u64,
}

impl KeyHasher {
    fn mix(&mut self, word: u64) {
        // Folded multiply (the high and low halves of the 128-bit product
        // xored): every input bit reaches every output bit.
        let product = u128::from(self.state ^ word).wrapping_mul(0x5851_f42d_4c95_7f2d);
        self.state = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            if let Some(head) = word.get_mut(..chunk.len()) {
                head.copy_from_slice(chunk);
            }
            self.mix(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn finish(&self) -> u64 {
        self.state
    }
}
