//! How a counter identity becomes a Redis key. Keys stay printable (`quotad:` + hash tag + hex
//! of the identity) so operators can read them in `redis-cli`, and every limit of one request
//! descriptor carries the same hash tag, so Redis Cluster keeps them in one slot.
//!
//! The tag hashes [`shard_key`] with 64-bit FNV-1a: fixed-size whatever the descriptor's length,
//! and stable across processes, versions and machines, because every quotad replica must
//! compute the same key for the same counter. Only the tag is hashed; the identity itself is
//! kept in full, so two counters never share a key.

use crate::engine::shard_key;

/// The prefix of every key quotad writes, so its keys are easy to find and to keep apart.
pub const KEY_PREFIX: &str = "quotad:";

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The Redis key for the counter with this identity (as listed by `Plan::counters`).
pub fn counter_key(identity: &[u8]) -> Vec<u8> {
    let tag = fnv1a64(shard_key(identity));
    let mut key = Vec::with_capacity(KEY_PREFIX.len() + 20 + 2 * identity.len());
    key.extend_from_slice(KEY_PREFIX.as_bytes());
    key.push(b'{');
    push_hex(&mut key, &tag.to_be_bytes());
    key.extend_from_slice(b"}:");
    push_hex(&mut key, identity);
    key
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    for byte in bytes {
        out.push(HEX[usize::from(byte >> 4)]);
        out.push(HEX[usize::from(byte & 0x0f)]);
    }
}

/// 64-bit FNV-1a: tiny, and specified once for all time (no seed, no version drift).
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn limits_of_one_descriptor_share_the_hash_tag() {
        // Identity = descriptor part, then window nanos (8 bytes) and algorithm tag.
        let minute = [b"desc".as_slice(), &60_000_000_000u64.to_le_bytes(), b"f"].concat();
        let hour = [
            b"desc".as_slice(),
            &3_600_000_000_000u64.to_le_bytes(),
            b"s",
        ]
        .concat();
        let (a, b) = (counter_key(&minute), counter_key(&hour));
        assert_ne!(a, b);
        assert_eq!(a[..26], b[..26], "same prefix and hash tag");
        assert!(a.starts_with(b"quotad:{") && a[24..27] == *b"}:6");
        assert!(a.iter().all(u8::is_ascii_graphic));
    }
}
