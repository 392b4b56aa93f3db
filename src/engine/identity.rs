//! Counter identity: the bytes that name one counter (domain, the request's entries, window
//! length and algorithm, never the threshold, so editing a limit keeps its running count), and
//! the planned update that goes with it.

use crate::clock::Timestamp;

use super::ban::{BanPolicy, push_ban_identity};
use super::decide::CounterUpdate;
use super::distinct::DistinctParams;
use super::keys::Keys;
use super::limit::{Algorithm, Limit, TimeUnit, Window};
use super::request::Entry;
use super::rules::DomainRules;

/// Appends the counter identity for (domain, descriptor entries, window, algorithm) to `keys`
/// and plans adding `hits` to it (giving them back when `refund`).
///
/// Strings are length-prefixed so no value can forge another key; the threshold is left out.
/// A distinct counter leaves the last entry's value out of its identity and appends it after
/// the identity as the value to add.
pub(super) fn counter_update(
    keys: &mut Keys,
    domain: &DomainRules,
    entries: &[Entry<'_>],
    limit: &Limit,
    hits: u64,
    refund: bool,
    now: Timestamp,
) -> CounterUpdate {
    let start = keys.len();
    push_str(keys, domain.name());
    let distinct = limit.algorithm == Algorithm::Distinct;
    let (named, counted) = match entries.split_last() {
        Some((last, named)) if distinct => (named, Some(last)),
        _ => (entries, None),
    };
    for entry in named {
        push_str(keys, entry.key);
        push_str(keys, entry.value);
    }
    if let Some(last) = counted {
        push_str(keys, last.key);
    }
    let window_nanos = limit.window.nanos();
    keys.extend_from_slice(&window_nanos.to_le_bytes());
    keys.push(limit.algorithm.tag() | if limit.window.is_calendar() { 0x80 } else { 0 });
    let key = start..keys.len();
    let distinct = distinct.then(|| {
        let value_start = keys.len();
        keys.extend_from_slice(counted.map_or("", |last| last.value).as_bytes());
        DistinctParams::new(limit.requests_per_unit, value_start..keys.len())
    });
    CounterUpdate {
        key,
        window_index: limit.window.bounds(now).index,
        window_nanos,
        window: limit.window,
        algorithm: limit.algorithm,
        hits,
        refund,
        bucket: (limit.algorithm == Algorithm::TokenBucket).then(|| limit.bucket()),
        reads_ban: false,
        distinct,
    }
}

/// Appends the identity of the ban on `key`=`value` in `domain` and plans reading it.
pub(super) fn ban_read(keys: &mut Keys, domain: &str, key: &str, value: &str) -> CounterUpdate {
    let start = keys.len();
    push_ban_identity(keys, domain, key, value);
    let window = Window::of(TimeUnit::Second);
    CounterUpdate {
        key: start..keys.len(),
        window_index: 0,
        window_nanos: window.nanos(),
        window,
        algorithm: Algorithm::FixedWindow,
        hits: 0,
        refund: false,
        bucket: None,
        reads_ban: true,
        distinct: None,
    }
}

/// Appends the identity of the strikes against one counter (its identity, then the strike
/// window and tag) and plans one strike on a sliding window of `policy.within`.
pub(super) fn strike(
    keys: &mut Keys,
    counter: &[u8],
    policy: &BanPolicy,
    now: Timestamp,
) -> CounterUpdate {
    let start = keys.len();
    keys.extend_from_slice(counter);
    let window_nanos = policy.within.nanos();
    keys.extend_from_slice(&window_nanos.to_le_bytes());
    keys.push(STRIKE_TAG);
    CounterUpdate {
        key: start..keys.len(),
        window_index: policy.within.bounds(now).index,
        window_nanos,
        window: policy.within,
        algorithm: Algorithm::SlidingWindow,
        hits: 1,
        refund: false,
        bucket: None,
        reads_ban: false,
        distinct: None,
    }
}

/// The identity tag of strike counters.
const STRIKE_TAG: u8 = b'x';

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

#[inline]
fn push_str(keys: &mut Keys, text: &str) {
    let length = u32::try_from(text.len()).unwrap_or(u32::MAX);
    keys.extend_from_slice(&length.to_le_bytes());
    keys.extend_from_slice(text.as_bytes());
}
