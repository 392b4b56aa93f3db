//! Distinct-value counters in the memory store (see `engine::distinct`): one set per counter
//! and window, lock-free. An exact set is an array of keyed 64-bit value hashes claimed by
//! compare-and-swap on its length; a sketch is a 1,024-register HyperLogLog of atomic bytes
//! raised with `fetch_max`. Two requests racing with the same new value may both claim a slot
//! (the value then counts twice: an over-count, never an under-count). Sets of ended windows
//! are dropped by the sweeper.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use foldhash::fast::RandomState;
use foldhash::quality::RandomState as ValueHasher;
use papaya::HashMap;
use smallvec::SmallVec;

use crate::clock::Timestamp;
use crate::engine::{CounterReading, CounterUpdate, DistinctParams};

/// Registers of a sketch: 2^10, for a standard error of 1.04 / √1024 ≈ 3.25%.
const REGISTER_BITS: u32 = 10;
const REGISTERS: usize = 1 << REGISTER_BITS;

/// The distinct values of one counter in one window.
#[derive(Debug)]
enum Set {
    Exact {
        len: AtomicU32,
        slots: Box<[AtomicU64]>,
    },
    Sketch {
        registers: Box<[AtomicU8]>,
    },
}

/// A set and when its window ends.
#[derive(Debug)]
struct Windowed {
    ends: u64,
    set: Set,
}

/// Every distinct counter's sets, bounded like the counters.
#[derive(Debug)]
pub(super) struct DistinctSets {
    sets: HashMap<Box<[u8]>, Windowed, RandomState>,
    values: ValueHasher,
    max_sets: usize,
}

impl DistinctSets {
    /// No sets; at most `max_sets` kept (ended ones are dropped first to make room).
    pub(super) fn new(max_sets: usize) -> Self {
        Self {
            sets: HashMap::with_hasher(RandomState::default()),
            values: ValueHasher::default(),
            max_sets: max_sets.max(1),
        }
    }

    /// Adds `value` to the set of `identity` in the update's window; the reading holds the
    /// count and whether the value was refused.
    pub(super) fn apply(
        &self,
        identity: &[u8],
        update: &CounterUpdate,
        params: &DistinctParams,
        value: &[u8],
        now: Timestamp,
    ) -> CounterReading {
        // On the stack for any ordinary identity: only a new set allocates.
        let mut key: SmallVec<[u8; 128]> = SmallVec::new();
        key.extend_from_slice(identity);
        key.extend_from_slice(&update.window_index.to_le_bytes());
        let sets = self.sets.pin();
        let set = match sets.get(key.as_slice()) {
            Some(set) => set,
            None if update.hits == 0 => return CounterReading::default(),
            None => {
                if sets.len() >= self.max_sets {
                    self.sweep(now);
                }
                if sets.len() >= self.max_sets {
                    // Full of live sets: answer as for a first value rather than refuse.
                    return CounterReading {
                        current: 1,
                        previous: 0,
                    };
                }
                let fresh = Windowed {
                    ends: update.window.bounds(now).end,
                    set: Set::new(params),
                };
                // `try_insert`, not `get_or_insert_with`: only inserts help papaya finish a
                // resize (see `MemoryStore::insert`); a racing loser just drops its set.
                match sets.try_insert(Box::from(key.as_slice()), fresh) {
                    Ok(set) => set,
                    Err(raced) => raced.current,
                }
            }
        };
        // Never 0: an exact set's empty slots hold 0.
        let hash = self.values.hash_one(value) | 1;
        let (count, refused) = set.set.add(hash, params.limit, update.hits > 0);
        CounterReading {
            current: count,
            previous: u64::from(refused),
        }
    }

    /// Drops every set whose window has ended by `now`; returns how many.
    pub(super) fn sweep(&self, now: Timestamp) -> usize {
        let sets = self.sets.pin();
        let before = sets.len();
        sets.retain(|_, set| set.ends > now.as_nanos());
        before.saturating_sub(sets.len())
    }
}

impl Set {
    fn new(params: &DistinctParams) -> Self {
        if params.exact {
            let slots = (0..params.limit).map(|_| AtomicU64::new(0)).collect();
            Set::Exact {
                len: AtomicU32::new(0),
                slots,
            }
        } else {
            let registers = (0..REGISTERS).map(|_| AtomicU8::new(0)).collect();
            Set::Sketch { registers }
        }
    }

    /// Adds `hash` (unless `!add`); returns the count after and whether the value was refused.
    fn add(&self, hash: u64, limit: u32, add: bool) -> (u64, bool) {
        match self {
            Set::Exact { len, slots } => add_exact(len, slots, hash, add),
            Set::Sketch { registers } => add_sketch(registers, hash, limit, add),
        }
    }
}

/// An exact set: a known value passes; a new one claims the next slot while any is left.
fn add_exact(len: &AtomicU32, slots: &[AtomicU64], hash: u64, add: bool) -> (u64, bool) {
    let mut known = 0;
    loop {
        let filled = len.load(Ordering::Acquire);
        let scan = slots
            .get(known as usize..filled as usize)
            .unwrap_or_default();
        if scan.iter().any(|slot| slot.load(Ordering::Acquire) == hash) {
            return (u64::from(filled), false);
        }
        known = filled;
        if !add {
            return (u64::from(filled), false);
        }
        let Some(slot) = slots.get(filled as usize) else {
            return (u64::from(filled), true);
        };
        if len
            .compare_exchange(filled, filled + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            slot.store(hash, Ordering::Release);
            return (u64::from(filled) + 1, false);
        }
        // Another value took the slot: look at what it added, then try the next one.
    }
}

/// A sketch: the value's register keeps the highest rank seen; a raised register is a new
/// value, refused when the estimate then exceeds the limit.
fn add_sketch(registers: &[AtomicU8], hash: u64, limit: u32, add: bool) -> (u64, bool) {
    let index = (hash >> (64 - REGISTER_BITS)) as usize;
    // Rank: leading zeros of the remaining bits, plus one (a sentinel bit bounds it).
    let rest = (hash << REGISTER_BITS) | (1 << (REGISTER_BITS - 1));
    let rank = rest.leading_zeros() as u8 + 1;
    let raised = add
        && registers
            .get(index)
            .is_some_and(|register| register.fetch_max(rank, Ordering::AcqRel) < rank);
    let count = estimate(registers);
    (count, raised && count > u64::from(limit))
}

/// The HyperLogLog estimate, with linear counting for small cardinalities.
fn estimate(registers: &[AtomicU8]) -> u64 {
    let m = registers.len() as f64;
    let (sum, zeros) = registers
        .iter()
        .fold((0.0, 0u32), |(sum, zeros), register| {
            let rank = register.load(Ordering::Acquire);
            (
                sum + (-f64::from(rank)).exp2(),
                zeros + u32::from(rank == 0),
            )
        });
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let raw = alpha * m * m / sum;
    let estimate = if raw <= 2.5 * m && zeros > 0 {
        m * (m / f64::from(zeros)).ln()
    } else {
        raw
    };
    estimate.round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(limit: u32) -> (AtomicU32, Box<[AtomicU64]>) {
        (
            AtomicU32::new(0),
            (0..limit).map(|_| AtomicU64::new(0)).collect(),
        )
    }

    #[test]
    fn exact_sets_admit_known_values_and_refuse_new_ones_past_the_limit() {
        let (len, slots) = exact(3);
        assert_eq!(add_exact(&len, &slots, 11, true), (1, false));
        assert_eq!(add_exact(&len, &slots, 11, true), (1, false), "known");
        assert_eq!(add_exact(&len, &slots, 13, true), (2, false));
        assert_eq!(add_exact(&len, &slots, 15, true), (3, false));
        assert_eq!(add_exact(&len, &slots, 17, true), (3, true), "a 4th value");
        assert_eq!(
            add_exact(&len, &slots, 13, true),
            (3, false),
            "known ones still pass"
        );
        assert_eq!(
            add_exact(&len, &slots, 19, false),
            (3, false),
            "a read adds nothing"
        );
    }

    #[test]
    fn racing_threads_never_admit_more_values_than_the_limit() {
        let (len, slots) = exact(50);
        let refused = AtomicU32::new(0);
        std::thread::scope(|scope| {
            for thread in 0..4u64 {
                let (len, slots, refused) = (&len, &slots, &refused);
                scope.spawn(move || {
                    for value in 0..40u64 {
                        let hash = ((thread * 1_000 + value) << 1) | 1;
                        if add_exact(len, slots, hash, true).1 {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(len.load(Ordering::Relaxed), 50);
        assert_eq!(refused.load(Ordering::Relaxed), 160 - 50);
    }

    #[test]
    fn sketches_estimate_within_a_few_standard_errors() {
        let registers: Box<[AtomicU8]> = (0..REGISTERS).map(|_| AtomicU8::new(0)).collect();
        let hasher = ValueHasher::default();
        for value in 0..20_000u64 {
            add_sketch(&registers, hasher.hash_one(value) | 1, u32::MAX, true);
        }
        let count = estimate(&registers) as f64;
        // 4 standard errors of 3.25%: a failure here is a broken estimator, not bad luck.
        assert!((count - 20_000.0).abs() < 20_000.0 * 0.13, "{count}");
        let before = estimate(&registers);
        let (after, refused) = add_sketch(&registers, hasher.hash_one(5u64) | 1, 10, true);
        assert_eq!(
            (after, refused),
            (before, false),
            "a seen value raises nothing"
        );
    }
}
