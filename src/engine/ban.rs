//! Temporary bans: a caller that exceeds a limit `after` times within `within` is banned for
//! `duration` — every request in the domain that carries the banned value for the banned key is
//! over the limit until the ban ends, whatever its own quota says.
//!
//! A ban is three steps around the ordinary plan → apply → conclude:
//! 1. `plan` adds one ban read per request entry whose key some ban in the domain targets (a
//!    domain without bans pays nothing); `conclude` answers a banned descriptor OVER_LIMIT with
//!    the time left on the ban as its reset.
//! 2. A request that went over a limit carrying a `ban` gets a strike plan
//!    ([`super::Plan::strikes`]): one hit on a sliding window of `within` per exceeded limit.
//!    A request already banned records no strike, so a banned caller's retries never extend
//!    its ban.
//! 3. [`super::Plan::bans_due`] turns strike readings that reached `after` into [`Ban`]s for
//!    the store to keep (a later end wins over an earlier one).
//!
//! Strikes are not forgotten when a ban is lifted by hand: a caller that had `after` strikes
//! within the last `within` is banned again at its next excess.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Timestamp;

use super::keys::Keys;
use super::limit::Window;

/// When a limit's repeated excess bans a caller, and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BanPolicy {
    /// Excesses that start a ban.
    pub after: NonZeroU32,
    /// The sliding window the excesses are counted in.
    pub within: Window,
    /// How long a ban lasts.
    pub duration: Duration,
    /// The descriptor key whose value is banned (e.g. `remote_address`).
    pub key: Arc<str>,
}

impl BanPolicy {
    /// A policy banning `key` for `duration` after `after` excesses within `within`.
    pub fn new(key: &str, after: NonZeroU32, within: Window, duration: Duration) -> Self {
        Self {
            after,
            within,
            duration,
            key: Arc::from(key),
        }
    }
}

/// One ban: a value of a key in a domain, refused until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// The domain the ban applies in.
    pub domain: String,
    /// The banned descriptor key.
    pub key: String,
    /// The banned value of that key.
    pub value: String,
    /// Why the ban started, for operators.
    pub reason: String,
    /// When the ban ends.
    pub until: Timestamp,
}

impl Ban {
    /// The store identity of this ban (see [`ban_identity`]).
    pub fn identity(&self) -> Vec<u8> {
        ban_identity(&self.domain, &self.key, &self.value)
    }

    /// Time left on the ban at `now` (zero once it has ended).
    pub fn remaining(&self, now: Timestamp) -> Duration {
        Duration::from_nanos(self.until.as_nanos().saturating_sub(now.as_nanos()))
    }
}

/// The identity a store keeps a ban under: the domain, key and value length-prefixed like a
/// counter identity, then a zero window and the ban tag, so no counter can share it.
pub fn ban_identity(domain: &str, key: &str, value: &str) -> Vec<u8> {
    let mut identity = Keys::new();
    push_ban_identity(&mut identity, domain, key, value);
    identity.to_vec()
}

/// Appends [`ban_identity`] to `keys`.
pub(super) fn push_ban_identity(keys: &mut Keys, domain: &str, key: &str, value: &str) {
    for text in [domain, key, value] {
        let length = u32::try_from(text.len()).unwrap_or(u32::MAX);
        keys.extend_from_slice(&length.to_le_bytes());
        keys.extend_from_slice(text.as_bytes());
    }
    keys.extend_from_slice(&0u64.to_le_bytes());
    keys.push(BAN_TAG);
}

/// Bytes of a ban identity for these strings.
pub(super) fn ban_identity_len(domain: &str, key: &str, value: &str) -> usize {
    12 + domain.len() + key.len() + value.len() + 9
}

/// The identity tag of bans; counters use their algorithm's (lower-case) tag.
const BAN_TAG: u8 = b'B';

/// Splits a ban identity back into domain, key and value; `None` for anything else.
pub fn parse_ban_identity(identity: &[u8]) -> Option<(&str, &str, &str)> {
    let (body, suffix) = identity.split_at_checked(identity.len().checked_sub(9)?)?;
    if suffix != [0, 0, 0, 0, 0, 0, 0, 0, BAN_TAG] {
        return None;
    }
    let mut rest = body;
    let mut take = || {
        let (length, tail) = rest.split_at_checked(4)?;
        let length = usize::try_from(u32::from_le_bytes(length.try_into().ok()?)).ok()?;
        let (text, tail) = tail.split_at_checked(length)?;
        rest = tail;
        std::str::from_utf8(text).ok()
    };
    let parts = (take()?, take()?, take()?);
    rest.is_empty().then_some(parts)
}

/// A window written back the way it is configured: `10m`, `1h`, `1d`.
pub fn describe_window(window: Window) -> String {
    let unit = match window.unit() {
        super::TimeUnit::Second => "s",
        super::TimeUnit::Minute => "m",
        super::TimeUnit::Hour => "h",
        super::TimeUnit::Day => "d",
        other => other.name(),
    };
    format!("{}{unit}", window.multiplier())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_and_refuse_counters() {
        let identity = ban_identity("auth", "remote_address", "10.0.0.1");
        assert_eq!(
            identity.len(),
            ban_identity_len("auth", "remote_address", "10.0.0.1")
        );
        assert_eq!(
            parse_ban_identity(&identity),
            Some(("auth", "remote_address", "10.0.0.1"))
        );
        let mut counter = identity.clone();
        *counter.last_mut().unwrap() = b'f';
        assert_eq!(parse_ban_identity(&counter), None);
        assert_eq!(parse_ban_identity(&identity[..5]), None);
        assert_ne!(
            ban_identity("a", "bc", "d"),
            ban_identity("ab", "c", "d"),
            "length prefixes keep values apart"
        );
    }
}
