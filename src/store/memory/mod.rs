//! The embedded counter store: one lock-free map from counter identity to a cell (see `cell`),
//! updated by compare-and-swap. Reads take no lock; an update allocates only when a key is new.
//! The map is keyed by a keyed 128-bit hash of the identity (see `key` for why that is safe),
//! so a counter is one 48-byte map entry plus its table slot, whatever the identity's length.
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
mod key;

use std::future::{Future, ready};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use papaya::{Guard, HashMap, HashMapRef, LocalGuard};

use crate::clock::Timestamp;
use crate::engine::{Ban, CounterReading, CounterUpdate, Plan, Readings};

use super::{CounterStore, StoreError};
use bans::Bans;
use cell::Cell;
use distinct::DistinctSets;
use key::{CounterKey, KeyHasher, KeyIsHash};

/// The counter map: a cell per counter, named by the keyed hash of its identity (see `key`).
type Cells = HashMap<CounterKey, Cell, KeyIsHash>;
/// The counter map under a pin.
type CellsRef<'map> = HashMapRef<'map, CounterKey, Cell, KeyIsHash, LocalGuard<'map>>;

/// The default bound on counter cells: about 0.5 GB of RSS at the measured cost per key.
pub const DEFAULT_MAX_KEYS: usize = 5_000_000;

/// The fewest removals a sweep pass makes before it re-pins (see `MemoryStore::sweep`).
const MIN_SWEEP_PASS: usize = 65_536;
/// The most passes one sweep makes (an eighth of the map each: the whole map and then some).
const MAX_SWEEP_PASSES: usize = 16;
/// New keys between two flushes of the inserting thread's retired garbage (see `insert`).
const FLUSH_EVERY: usize = 4_096;

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
    cells: Cells,
    keys: KeyHasher,
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
            cells: HashMap::with_hasher(KeyIsHash),
            keys: KeyHasher::random(),
            max_keys: max_keys.max(1),
            evicting: AtomicBool::new(false),
            evictions: AtomicU64::new(0),
            bans: Bans::new(max_keys),
            distinct: DistinctSets::new(max_keys),
        }
    }

    /// Applies every counter of `plan` and returns the readings, in plan order.
    pub fn apply_plan(&self, plan: &Plan<'_>) -> Readings {
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
                let key = self.keys.key(key);
                loop {
                    let cell = match cells.get(&key) {
                        Some(cell) => cell,
                        // Reading or giving back nothing needs no cell: a lookup (`/usage`, a
                        // 0-hit peek) must not fill the store with empty counters.
                        None if update.hits == 0 || update.refund => {
                            break CounterReading::default();
                        }
                        None => self.insert(&cells, key, update, plan.now()),
                    };
                    match cell.apply_update(update, plan.now()) {
                        Some(reading) => break reading,
                        None => {
                            // Reclaimed under us: help unlink the dead cell, then start afresh.
                            let _ = cells.remove_if(&key, |_, current| ptr::eq(current, cell));
                        }
                    }
                }
            })
            .collect()
    }

    /// Adds a fresh cell for `key`, making room first if the store is full; returns the cell
    /// a racing request added instead if it won.
    fn insert<'g>(
        &self,
        cells: &'g CellsRef<'_>,
        key: CounterKey,
        update: &CounterUpdate,
        now: Timestamp,
    ) -> &'g Cell {
        let held = cells.len();
        if held >= self.max_keys {
            self.make_room(now);
        }
        if held.is_multiple_of(FLUSH_EVERY) {
            // A table a resize outgrew waits in the retiring thread's batch until that batch
            // fills, and growth alone rarely fills it: hand it on now and then so it is freed
            // (one system call per `FLUSH_EVERY` new keys; the batch may be this thread's).
            self.cells.guard().flush();
        }
        // `try_insert`, not `get_or_insert_with`: papaya 0.2's closure inserts never help
        // finish a resize, so a map grown through them keeps every table it outgrew chained in
        // front of the live one, and each read walks them all (~9k instructions at 1M keys).
        match cells.try_insert(key, Cell::new(update)) {
            Ok(cell) => cell,
            Err(raced) => raced.current,
        }
    }

    /// Starts `ban` (a later end on the same value wins); false when the store already holds
    /// `max_keys` bans in force. The synchronous form of `CounterStore::start_ban`.
    pub fn keep_ban(&self, ban: &Ban, now: Timestamp) -> bool {
        self.bans.start(ban, now)
    }

    /// Reclaims every cell whose windows have ended (or whose bucket is full again) at `now`;
    /// returns how many were removed.
    ///
    /// Works in passes, each under its own pin and stopping after an eighth of the map: what a
    /// pass unlinks can only be freed once its pin drops (the epoch scheme keeps 32 bytes of
    /// bookkeeping per unlinked cell until then), so a sweep after millions of windows ended at
    /// once never holds them all. Each pass walks from the start again; whatever is left after
    /// `MAX_SWEEP_PASSES` waits for the next sweep.
    pub fn sweep(&self, now: Timestamp) -> usize {
        let pass_size = (self.cells.len() / 8).max(MIN_SWEEP_PASS);
        let mut removed = 0;
        for _ in 0..MAX_SWEEP_PASSES {
            let swept = self.sweep_pass(now, pass_size);
            removed += swept;
            if swept < pass_size {
                break;
            }
        }
        removed + self.bans.sweep(now) + self.distinct.sweep(now)
    }

    /// One sweep pass: unlinks expired cells until `limit` are gone or the map has been walked.
    fn sweep_pass(&self, now: Timestamp, limit: usize) -> usize {
        let cells = self.cells.pin();
        let mut removed = 0;
        for (key, cell) in cells.iter() {
            if removed == limit {
                break;
            }
            if cell.kill_if_expired(now)
                && matches!(
                    cells.remove_if(key, |_, current| ptr::eq(current, cell)),
                    Ok(Some(_))
                )
            {
                removed += 1;
            }
        }
        removed
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
    fn apply(&self, plan: &Plan<'_>) -> impl Future<Output = Result<Readings, StoreError>> + Send {
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
mod tests;
