//! Counter identity: the bytes that name one counter (domain, the request's entries, window
//! length and algorithm, never the threshold, so editing a limit keeps its running count), and
//! the planned update that goes with it.

use crate::clock::Timestamp;

use super::decide::CounterUpdate;
use super::limit::{Algorithm, Limit};
use super::request::Entry;
use super::rules::DomainRules;

/// Appends the counter identity for (domain, descriptor entries, window, algorithm) to `keys`.
///
/// Strings are length-prefixed so no value can forge another key; the threshold is left out.
pub(super) fn counter_update(
    keys: &mut Vec<u8>,
    domain: &DomainRules,
    entries: &[Entry<'_>],
    limit: &Limit,
    hits: u64,
    now: Timestamp,
) -> CounterUpdate {
    let start = keys.len();
    push_str(keys, domain.name());
    for entry in entries {
        push_str(keys, entry.key);
        push_str(keys, entry.value);
    }
    let window_nanos = limit.window.nanos();
    keys.extend_from_slice(&window_nanos.to_le_bytes());
    keys.push(limit.algorithm.tag() | if limit.window.is_calendar() { 0x80 } else { 0 });
    CounterUpdate {
        key: start..keys.len(),
        window_index: limit.window.bounds(now).index,
        window_nanos,
        window: limit.window,
        algorithm: limit.algorithm,
        hits,
        refund: false,
        bucket: (limit.algorithm == Algorithm::TokenBucket).then(|| limit.bucket()),
    }
}

/// The length of one counter identity for these entries in `domain` (to size buffers once).
pub(super) fn identity_len(domain: &DomainRules, entries: &[Entry<'_>]) -> usize {
    let strings: usize = entries
        .iter()
        .map(|entry| 8 + entry.key.len() + entry.value.len())
        .sum();
    4 + domain.name().len() + strings + IDENTITY_SUFFIX
}

/// Bytes of a counter identity after the descriptor part: window nanos (u64) and algorithm tag.
const IDENTITY_SUFFIX: usize = 8 + 1;

/// The descriptor part of a counter identity: every limit of one request descriptor shares it,
/// so a sharded store (Redis Cluster) can keep them on one shard.
pub fn shard_key(identity: &[u8]) -> &[u8] {
    &identity[..identity.len().saturating_sub(IDENTITY_SUFFIX)]
}

fn push_str(keys: &mut Vec<u8>, text: &str) {
    let length = u32::try_from(text.len()).unwrap_or(u32::MAX);
    keys.extend_from_slice(&length.to_le_bytes());
    keys.extend_from_slice(text.as_bytes());
}
