//! Bans in the memory store: a lock-free map from ban identity to when the ban ends and why.
//! Reads on the request path are one map lookup; starting, lifting and listing bans are rare
//! and may allocate. Ended bans stop counting at once and are dropped by the sweeper.

use std::sync::Arc;

use foldhash::fast::RandomState;
use papaya::{HashMap, Operation};

use crate::clock::Timestamp;
use crate::engine::{Ban, parse_ban_identity};

/// One ban: its end and its reason.
#[derive(Debug, Clone)]
struct Entry {
    until: u64,
    reason: Arc<str>,
}

/// Every ban the store holds, bounded like the counters.
#[derive(Debug)]
pub(super) struct Bans {
    entries: HashMap<Box<[u8]>, Entry, RandomState>,
    max_bans: usize,
}

impl Bans {
    /// No bans; at most `max_bans` held at once (ended ones are dropped first to make room).
    pub(super) fn new(max_bans: usize) -> Self {
        Self {
            entries: HashMap::with_hasher(RandomState::default()),
            max_bans: max_bans.max(1),
        }
    }

    /// When the ban with this identity ends, in nanoseconds since the epoch (0 when none).
    pub(super) fn until(&self, identity: &[u8]) -> u64 {
        self.entries
            .pin()
            .get(identity)
            .map_or(0, |entry| entry.until)
    }

    /// Starts `ban`, or extends a shorter one on the same value; false when the store is full
    /// of live bans and this one could not be kept.
    pub(super) fn start(&self, ban: &Ban, now: Timestamp) -> bool {
        let entries = self.entries.pin();
        if entries.len() >= self.max_bans {
            self.sweep(now);
            if entries.len() >= self.max_bans {
                return false;
            }
        }
        let until = ban.until.as_nanos();
        let reason: Arc<str> = Arc::from(ban.reason.as_str());
        let fresh = Entry { until, reason };
        // A new value goes in with `try_insert`: papaya's `compute` never helps finish a
        // resize, and a map grown through it alone makes every lookup walk each table it
        // outgrew (see `MemoryStore::insert`). `compute` only settles an existing ban.
        let Err(held) = entries.try_insert(Box::from(ban.identity()), fresh) else {
            return true;
        };
        let fresh = held.not_inserted;
        entries.compute(Box::from(ban.identity()), |current| match current {
            Some((_, held)) if held.until >= until => Operation::Abort(()),
            _ => Operation::Insert(fresh.clone()),
        });
        true
    }

    /// Lifts the ban on `identity`; whether a ban still in force was lifted.
    pub(super) fn lift(&self, identity: &[u8], now: Timestamp) -> bool {
        matches!(
            self.entries.pin().remove(identity),
            Some(entry) if entry.until > now.as_nanos()
        )
    }

    /// Every ban still in force at `now`.
    pub(super) fn list(&self, now: Timestamp) -> Vec<Ban> {
        let entries = self.entries.pin();
        entries
            .iter()
            .filter(|(_, entry)| entry.until > now.as_nanos())
            .filter_map(|(identity, entry)| {
                let (domain, key, value) = parse_ban_identity(identity)?;
                Some(Ban {
                    domain: domain.to_owned(),
                    key: key.to_owned(),
                    value: value.to_owned(),
                    reason: entry.reason.to_string(),
                    until: Timestamp::from_nanos(entry.until),
                })
            })
            .collect()
    }

    /// Bans in force at `now`.
    pub(super) fn active(&self, now: Timestamp) -> usize {
        let entries = self.entries.pin();
        entries
            .iter()
            .filter(|(_, entry)| entry.until > now.as_nanos())
            .count()
    }

    /// Drops every ban that has ended by `now`; returns how many.
    pub(super) fn sweep(&self, now: Timestamp) -> usize {
        let entries = self.entries.pin();
        let before = entries.len();
        entries.retain(|_, entry| entry.until > now.as_nanos());
        before.saturating_sub(entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(value: &str, until_secs: u64, reason: &str) -> Ban {
        Ban {
            domain: "auth".into(),
            key: "remote_address".into(),
            value: value.into(),
            reason: reason.into(),
            until: Timestamp::from_secs(until_secs),
        }
    }

    #[test]
    fn a_later_end_wins_and_ended_bans_stop_counting() {
        let bans = Bans::new(10);
        let now = Timestamp::from_secs(100);
        assert!(bans.start(&ban("a", 200, "first"), now));
        assert!(bans.start(&ban("a", 150, "shorter"), now));
        let identity = ban("a", 0, "").identity();
        assert_eq!(bans.until(&identity), 200_000_000_000);
        assert!(bans.start(&ban("a", 300, "longer"), now));
        let listed = bans.list(now);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].reason, "longer");
        assert_eq!(listed[0].until, Timestamp::from_secs(300));
        assert!(
            bans.list(Timestamp::from_secs(300)).is_empty(),
            "ended at 300"
        );
        assert_eq!(bans.sweep(Timestamp::from_secs(300)), 1);
        assert_eq!(bans.until(&identity), 0);
    }

    #[test]
    fn lifting_and_the_bound() {
        let bans = Bans::new(2);
        let now = Timestamp::from_secs(100);
        assert!(bans.start(&ban("a", 200, "r"), now));
        assert!(bans.start(&ban("b", 110, "r"), now));
        assert!(!bans.start(&ban("c", 200, "r"), now), "full of live bans");
        let later = Timestamp::from_secs(120);
        assert!(
            bans.start(&ban("c", 200, "r"), later),
            "b ended and made room"
        );
        assert!(bans.lift(&ban("a", 0, "").identity(), later));
        assert!(
            !bans.lift(&ban("a", 0, "").identity(), later),
            "already lifted"
        );
        assert_eq!(bans.active(later), 1);
    }
}
