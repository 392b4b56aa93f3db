//! The embedded counter store: one lock-free map from counter identity to a cell (see `cell`),
//! updated by compare-and-swap. Reads take no lock; an update allocates only when a key is new.
//!
//! Expired cells are reclaimed by `sweep`: it marks a cell dead with the same CAS the request
//! path uses, then unlinks it, so a request racing the sweep sees the mark and retries on a
//! fresh cell instead of counting into a cell nobody will read again.
//!
//! Memory is bounded: past `max_keys` cells, the request that would add a key first makes room
//! (`evict`): expired cells go first, then the least recently used ones. Only one request
//! evicts at a time and the others carry on, so the map can overshoot the bound by at most the
//! number of requests inserting concurrently. An evicted live counter starts again from zero —
//! the price of never running out of memory when every request brings a new key; busy keys
//! are the most recently used and so the last to go.

mod bans;
mod cell;
mod distinct;
mod evict;

use std::future::{Future, ready};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use foldhash::fast::RandomState;
use papaya::HashMap;

use crate::clock::Timestamp;
use crate::engine::{Ban, CounterReading, Plan};

use super::{CounterStore, StoreError};
use bans::Bans;
use cell::Cell;
use distinct::DistinctSets;

/// The default bound on counter cells: about 1 GB at the measured cost per key.
pub const DEFAULT_MAX_KEYS: usize = 5_000_000;

/// Counts for an operator: how many counters the store holds and how many it had to evict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStoreStats {
    /// Counter cells currently held (live or awaiting the sweeper).
    pub keys: usize,
    /// Cells removed to stay under `max_keys` since the store started (expired ones included).
    pub evictions: u64,
}

/// The in-process, lock-free counter store.
#[derive(Debug)]
pub struct MemoryStore {
    cells: HashMap<Box<[u8]>, Cell, RandomState>,
    max_keys: usize,
    evicting: AtomicBool,
    evictions: AtomicU64,
    bans: Bans,
    distinct: DistinctSets,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store holding at most [`DEFAULT_MAX_KEYS`] counters.
    pub fn new() -> Self {
        Self::with_max_keys(DEFAULT_MAX_KEYS)
    }

    /// An empty store holding at most `max_keys` counters (at least 1).
    pub fn with_max_keys(max_keys: usize) -> Self {
        Self {
            cells: HashMap::with_hasher(RandomState::default()),
            max_keys: max_keys.max(1),
            evicting: AtomicBool::new(false),
            evictions: AtomicU64::new(0),
            bans: Bans::new(max_keys),
            distinct: DistinctSets::new(max_keys),
        }
    }

    /// Applies every counter of `plan` and returns the readings, in plan order.
    pub fn apply_plan(&self, plan: &Plan<'_>) -> Vec<CounterReading> {
        let cells = self.cells.pin();
        plan.counters()
            .map(|(key, update)| {
                if update.reads_ban {
                    return CounterReading {
                        current: self.bans.until(key),
                        previous: 0,
                    };
                }
                if let Some(params) = &update.distinct {
                    let value = plan.distinct_value(update);
                    return self.distinct.apply(key, update, params, value, plan.now());
                }
                loop {
                    let cell = match cells.get(key) {
                        Some(cell) => cell,
                        None => {
                            if cells.len() >= self.max_keys {
                                self.make_room(plan.now());
                            }
                            cells.get_or_insert_with(Box::from(key), || Cell::new(update))
                        }
                    };
                    match cell.apply_update(update, plan.now()) {
                        Some(reading) => break reading,
                        None => {
                            // Reclaimed under us: help unlink the dead cell, then start afresh.
                            let _ = cells.remove_if(key, |_, current| ptr::eq(current, cell));
                        }
                    }
                }
            })
            .collect()
    }

    /// Starts `ban` (a later end on the same value wins); false when the store already holds
    /// `max_keys` bans in force. The synchronous form of `CounterStore::start_ban`.
    pub fn keep_ban(&self, ban: &Ban, now: Timestamp) -> bool {
        self.bans.start(ban, now)
    }

    /// Reclaims every cell whose windows have ended (or whose bucket is full again) at `now`;
    /// returns how many were removed.
    pub fn sweep(&self, now: Timestamp) -> usize {
        let cells = self.cells.pin();
        let mut removed = 0;
        for (key, cell) in cells.iter() {
            if cell.kill_if_expired(now)
                && matches!(
                    cells.remove_if(key, |_, current| ptr::eq(current, cell)),
                    Ok(Some(_))
                )
            {
                removed += 1;
            }
        }
        removed + self.bans.sweep(now) + self.distinct.sweep(now)
    }

    /// Current size figures.
    pub fn stats(&self) -> MemoryStoreStats {
        MemoryStoreStats {
            keys: self.cells.len(),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    /// The bound on counter cells.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// Evicts down to nine tenths of `max_keys` unless another request is already doing so.
    fn make_room(&self, now: Timestamp) {
        if self
            .evicting
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let target = self.max_keys - self.max_keys / 10;
        let removed = evict::down_to(&self.cells, target, now);
        self.evictions.fetch_add(removed as u64, Ordering::Relaxed);
        self.evicting.store(false, Ordering::Release);
    }
}

impl CounterStore for MemoryStore {
    fn apply(
        &self,
        plan: &Plan<'_>,
    ) -> impl Future<Output = Result<Vec<CounterReading>, StoreError>> + Send {
        ready(Ok(self.apply_plan(plan)))
    }

    fn start_ban(
        &self,
        ban: &Ban,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let kept = self.keep_ban(ban, now);
        ready(kept.then_some(()).ok_or_else(|| {
            StoreError::Unavailable(format!(
                "the memory store already holds {} bans in force",
                self.max_keys
            ))
        }))
    }

    fn bans(&self, now: Timestamp) -> impl Future<Output = Result<Vec<Ban>, StoreError>> + Send {
        ready(Ok(self.bans.list(now)))
    }

    fn active_bans(&self, now: Timestamp) -> impl Future<Output = Result<u64, StoreError>> + Send {
        ready(Ok(self.bans.active(now) as u64))
    }

    fn lift_ban(
        &self,
        identity: &[u8],
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        ready(Ok(self.bans.lift(identity, now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portable_atomic::Ordering;

    /// Threads racing on one key admit exactly the limit, and a sweeper running alongside
    /// never loses a hit (every counted hit is in the final count).
    #[test]
    fn racing_threads_admit_exactly_the_limit() {
        use crate::engine::{self, Descriptor, Limit, Request, RuleSet, TimeUnit, Window};
        use std::sync::atomic::AtomicU64;

        let rules = RuleSet::per_value("d", "k", [Limit::new(100, Window::of(TimeUnit::Hour))]);
        let store = MemoryStore::new();
        let now = Timestamp::from_secs(3_600 * 100);
        // A stale cell from two windows ago: the sweeper may reclaim it while threads rotate it.
        let stale = Request::new("d", [Descriptor::from_pairs(&[("k", "v")])]);
        store.apply_plan(&engine::plan(
            &rules,
            &stale,
            Timestamp::from_secs(3_600 * 98),
        ));
        let admitted = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..500 {
                        let request = Request::new("d", [Descriptor::from_pairs(&[("k", "v")])]);
                        let plan = engine::plan(&rules, &request, now);
                        let decision = engine::conclude(&plan, &store.apply_plan(&plan));
                        if !decision.over_limit {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
            scope.spawn(|| {
                for _ in 0..200 {
                    store.sweep(now);
                }
            });
        });
        assert_eq!(admitted.load(Ordering::Relaxed), 100);
        let check = Request::new("d", [Descriptor::from_pairs(&[("k", "v")]).with_hits(0)]);
        let plan = engine::plan(&rules, &check, now);
        assert_eq!(
            store.apply_plan(&plan)[0].current,
            2_000,
            "every hit was counted"
        );
    }

    fn per_hour_rules() -> crate::engine::RuleSet {
        use crate::engine::{Limit, RuleSet, TimeUnit, Window};
        RuleSet::per_value(
            "d",
            "k",
            [Limit::new(1_000_000, Window::of(TimeUnit::Hour))],
        )
    }

    fn hit(
        store: &MemoryStore,
        rules: &crate::engine::RuleSet,
        value: &str,
        now: Timestamp,
    ) -> u64 {
        use crate::engine::{self, Descriptor, Request};
        let request = Request::new("d", [Descriptor::from_pairs(&[("k", value)])]);
        store.apply_plan(&engine::plan(rules, &request, now))[0].current
    }

    /// A flood of new keys never takes the store past its bound (a single inserter overshoots
    /// by nothing), and a key in steady use is never the one evicted.
    #[test]
    fn a_key_flood_stays_bounded_and_spares_the_busy_key() {
        let rules = per_hour_rules();
        let store = MemoryStore::with_max_keys(100);
        let start = 3_600 * 1_000;
        for round in 0..2_000u64 {
            let now = Timestamp::from_nanos(start * 1_000_000_000 + round * 1_000_000);
            assert_eq!(
                hit(&store, &rules, "steady", now),
                round + 1,
                "the busy key keeps its count"
            );
            hit(&store, &rules, &format!("attacker-{round}"), now);
            assert!(
                store.stats().keys <= 100,
                "round {round}: {:?}",
                store.stats()
            );
        }
        assert!(store.stats().evictions >= 1_800, "{:?}", store.stats());
    }

    #[test]
    fn expired_cells_are_evicted_before_live_ones() {
        let rules = per_hour_rules();
        let store = MemoryStore::with_max_keys(20);
        let old = Timestamp::from_secs(3_600 * 1_000);
        for index in 0..10 {
            hit(&store, &rules, &format!("old-{index}"), old);
        }
        let now = Timestamp::from_secs(3_600 * 1_003);
        for index in 0..10 {
            hit(&store, &rules, &format!("live-{index}"), now);
        }
        hit(&store, &rules, "one-more", now);
        assert_eq!(store.stats().keys, 11, "the ten expired cells made room");
        for index in 0..10 {
            assert_eq!(
                hit(&store, &rules, &format!("live-{index}"), now),
                2,
                "live-{index} kept its count"
            );
        }
    }
}
