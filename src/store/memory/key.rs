//! Counter keys: the memory store names a counter by a keyed 128-bit hash of its identity
//! bytes (SipHash-1-3, 128-bit output, keyed with a random per-process secret) instead of the
//! bytes themselves. The key then sits inline in the map entry: no heap block, no length, no
//! allocator header per counter, and a lookup compares 16 bytes instead of the identity.
//!
//! Why a hash can stand for the identity. Two identities sharing a key would share a counter,
//! so a collision must be out of reach for chance and for an attacker alike:
//! - by chance: SipHash is a pseudo-random function, so among `n` live keys the odds of any
//!   collision are about `n² / 2^129`: 2^-84 for 5 million counters, far below the odds of
//!   a memory error flipping the count instead;
//! - on purpose (HashDoS, or forcing one's hits into someone else's counter): the SipHash key
//!   is drawn from the operating system's randomness at start-up and never leaves the process
//!   (the `Debug` output hides it), and without it the outputs cannot be predicted, so an
//!   attacker can neither aim two identities at one key nor pile keys into one bucket.
//!
//! The map's own hash then only has to spread keys that are already uniformly random: it takes
//! the key's low 64 bits as they are ([`KeyIsHash`]) instead of hashing them a second time.

use std::fmt;
use std::hash::{BuildHasher, Hasher};

use siphasher::sip128::{Hasher128, SipHasher13};

/// A counter's name in the memory store: the keyed 128-bit hash of its identity bytes.
pub(super) type CounterKey = u128;

/// Turns identity bytes into [`CounterKey`]s with this process's secret SipHash key.
#[derive(Clone)]
pub(super) struct KeyHasher {
    secret: (u64, u64),
}

impl KeyHasher {
    /// A hasher keyed with fresh randomness from the operating system.
    pub(super) fn random() -> Self {
        // std's `RandomState` is seeded from the OS (getrandom) and is itself keyed SipHash:
        // its outputs for two fixed inputs are as unpredictable as its own secret.
        let seed = std::hash::RandomState::new();
        Self {
            secret: (seed.hash_one(0_u8), seed.hash_one(1_u8)),
        }
    }

    /// The key naming the counter with these identity bytes.
    pub(super) fn key(&self, identity: &[u8]) -> CounterKey {
        let mut hasher = SipHasher13::new_with_keys(self.secret.0, self.secret.1);
        hasher.write(identity);
        hasher.finish128().as_u128()
    }
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret stays out of logs and panic messages.
        formatter.write_str("KeyHasher { .. }")
    }
}

/// The map's hasher for [`CounterKey`]s: keys are already keyed pseudo-random hashes, so their
/// low 64 bits serve as the table hash unchanged (papaya takes the slot from the low bits and
/// its tag byte from the top seven).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct KeyIsHash;

impl BuildHasher for KeyIsHash {
    type Hasher = LowBits;

    fn build_hasher(&self) -> LowBits {
        LowBits(0)
    }
}

/// The [`Hasher`] of [`KeyIsHash`]: keeps the low 64 bits of the `u128` it is given.
#[derive(Debug, Clone, Copy)]
pub(super) struct LowBits(u64);

impl Hasher for LowBits {
    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u128` keys reach this hasher; fold anything else in rather than drop it, so a
        // future key type still gets a usable (if weaker) spread.
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_identities_get_equal_keys_and_distinct_ones_distinct_keys() {
        let hasher = KeyHasher::random();
        assert_eq!(hasher.key(b"identity"), hasher.key(b"identity"));
        assert_ne!(hasher.key(b"identity"), hasher.key(b"identitz"));
        assert_ne!(
            hasher.key(b""),
            hasher.key(b"\0"),
            "length is part of the input"
        );
    }

    #[test]
    fn every_hasher_draws_its_own_secret() {
        let (first, second) = (KeyHasher::random(), KeyHasher::random());
        assert_ne!(first.key(b"identity"), second.key(b"identity"));
        assert_eq!(format!("{first:?}"), "KeyHasher { .. }");
    }

    #[test]
    fn the_table_hash_is_the_keys_low_half() {
        let key: CounterKey = 0x0123_4567_89AB_CDEF_FEDC_BA98_7654_3210;
        assert_eq!(KeyIsHash.hash_one(key), 0xFEDC_BA98_7654_3210);
    }
}
