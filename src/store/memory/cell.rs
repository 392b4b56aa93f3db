//! One counter cell: a 128-bit atomic holding `[window tag | previous count | current count]`
//! for windows, or a token bucket's theoretical arrival time, updated by compare-and-swap; and
//! the dead mark the sweeper and the evictor set so racing requests retry on a fresh cell.
//! Concurrency leases use the window shape: a generation of the lease TTL per window, leases
//! taken in it in `current`, the generation before in `previous`.

use portable_atomic::{AtomicU64, AtomicU128, Ordering};

use crate::clock::Timestamp;
use crate::engine::{Algorithm, BucketParams, CounterReading, CounterUpdate, Window};

/// Counts saturate here, far above any `u32` limit and below the all-ones dead mark.
const COUNT_MAX: u64 = (1 << 48) - 2;
const COUNT_MASK: u128 = (1 << 48) - 1;
/// A cell the sweeper has reclaimed; no live state can equal it because counts saturate lower.
const DEAD: u128 = u128::MAX;

/// A cell's state, unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WindowState {
    /// The low 32 bits of the window index the `current` count belongs to.
    tag: u32,
    previous: u64,
    current: u64,
}

impl WindowState {
    fn unpack(bits: u128) -> Self {
        Self {
            tag: (bits >> 96) as u32,
            previous: ((bits >> 48) & COUNT_MASK) as u64,
            current: (bits & COUNT_MASK) as u64,
        }
    }

    fn pack(self) -> u128 {
        (u128::from(self.tag) << 96) | (u128::from(self.previous) << 48) | u128::from(self.current)
    }

    /// The state after adding `hits` in window `tag`, rotating the window if time moved on.
    fn add(self, tag: u32, hits: u64) -> Self {
        let add = |count: u64| count.saturating_add(hits).min(COUNT_MAX);
        let behind = tag.wrapping_sub(self.tag);
        if behind == 0 || behind == u32::MAX {
            // Same window, or another thread's clock just crossed into the next one: count into
            // the newest window rather than rotating backwards.
            Self {
                current: add(self.current),
                ..self
            }
        } else if behind == 1 {
            Self {
                tag,
                previous: self.current,
                current: add(0),
            }
        } else {
            Self {
                tag,
                previous: 0,
                current: add(0),
            }
        }
    }

    /// The state after giving back `hits` added in window `tag` (nothing if the window moved on).
    fn refund(self, tag: u32, hits: u64) -> Self {
        if self.tag == tag {
            Self {
                current: self.current.saturating_sub(hits),
                ..self
            }
        } else if self.tag == tag.wrapping_add(1) {
            Self {
                previous: self.previous.saturating_sub(hits),
                ..self
            }
        } else {
            self
        }
    }

    /// The state after releasing `hits` concurrency leases at generation `tag`: rotated as an
    /// acquire would rotate it, then taken from the older generation first (its leases are the
    /// likeliest to be the ones ending), never below 0 in either.
    fn release(self, tag: u32, hits: u64) -> Self {
        let rotated = self.add(tag, 0);
        let from_previous = hits.min(rotated.previous);
        Self {
            previous: rotated.previous - from_previous,
            current: rotated.current.saturating_sub(hits - from_previous),
            ..rotated
        }
    }

    /// Whether nothing in this state can matter at window `tag` (neither current nor previous).
    fn expired_at(self, tag: u32) -> bool {
        let behind = tag.wrapping_sub(self.tag);
        behind >= 2 && (behind as i32) > 0
    }
}

/// What an update does to a window cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Count hits (or acquire leases) in the current window.
    Add,
    /// Give hits back to the window they were counted in.
    Refund,
    /// Release concurrency leases, oldest generation first.
    Release,
}

/// How the sweeper tells that a cell no longer matters: the window its counts belong to, or
/// (for a token bucket) its TAT having passed. An enum rather than a window and a flag so it
/// fits in the window's 8 bytes (`TimeUnit` leaves a niche) and the cell stays at 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Counts in windows of this length (fixed, sliding, concurrency generations).
    Window(Window),
    /// A token bucket's theoretical arrival time.
    Bucket,
}

/// One counter: its packed window state (or bucket TAT), when it was last used (for the
/// evictor), and what the sweeper needs to know. 32 bytes, so a map entry (16-byte key + cell)
/// is 48: every byte here is paid once per counter.
#[derive(Debug)]
pub(super) struct Cell {
    state: AtomicU128,
    last_used: AtomicU64,
    expiry: Expiry,
}

const _: () = assert!(std::mem::size_of::<Cell>() == 32);

impl Cell {
    /// A fresh cell for `update`'s counter.
    pub(super) fn new(update: &CounterUpdate) -> Self {
        let empty = WindowState {
            tag: update.window_index as u32,
            previous: 0,
            current: 0,
        };
        let (state, expiry) = match update.bucket {
            Some(_) => (0, Expiry::Bucket),
            None => (empty.pack(), Expiry::Window(update.window)),
        };
        Self {
            state: AtomicU128::new(state),
            last_used: AtomicU64::new(0),
            expiry,
        }
    }

    /// When the cell was last applied to (nanoseconds since the epoch).
    pub(super) fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    /// Applies `update` at `now`; `None` when the sweeper or the evictor reclaimed this cell.
    pub(super) fn apply_update(
        &self,
        update: &CounterUpdate,
        now: Timestamp,
    ) -> Option<CounterReading> {
        // Relaxed: recency only steers eviction, it never decides an answer.
        self.last_used.store(now.as_nanos(), Ordering::Relaxed);
        if let Some(bucket) = update.bucket {
            return self.apply_bucket(bucket, now.as_nanos(), update.hits, update.refund);
        }
        let op = match (update.refund, update.algorithm) {
            (false, _) => Op::Add,
            (true, Algorithm::Concurrency) => Op::Release,
            (true, _) => Op::Refund,
        };
        let state = self.apply(update.window_index as u32, update.hits, op)?;
        Some(CounterReading {
            current: state.current,
            previous: match update.algorithm {
                Algorithm::SlidingWindow | Algorithm::Concurrency => state.previous,
                // Distinct counters live in their own sets (`distinct`), never in a cell.
                Algorithm::FixedWindow | Algorithm::TokenBucket | Algorithm::Distinct => 0,
            },
        })
    }

    /// Admits (or refunds) `hits` in a token bucket; the reading holds the TAT after and before.
    fn apply_bucket(
        &self,
        bucket: BucketParams,
        now: u64,
        hits: u64,
        refund: bool,
    ) -> Option<CounterReading> {
        let mut seen = self.state.load(Ordering::Acquire);
        loop {
            if seen == DEAD {
                return None;
            }
            let tat = seen as u64;
            let next = if refund {
                bucket.refund(tat, hits)
            } else {
                bucket.admit(tat, now, hits).unwrap_or(tat)
            };
            let reading = CounterReading {
                current: next,
                previous: tat,
            };
            if next == tat {
                return Some(reading);
            }
            match self.state.compare_exchange_weak(
                seen,
                u128::from(next),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(reading),
                Err(actual) => seen = actual,
            }
        }
    }

    /// Applies `op` with `hits` in window `tag`; `None` when the sweeper reclaimed this cell
    /// first.
    fn apply(&self, tag: u32, hits: u64, op: Op) -> Option<WindowState> {
        let mut seen = self.state.load(Ordering::Acquire);
        loop {
            if seen == DEAD {
                return None;
            }
            let state = WindowState::unpack(seen);
            let next = match op {
                Op::Add => state.add(tag, hits),
                Op::Refund => state.refund(tag, hits),
                Op::Release => state.release(tag, hits),
            };
            if hits == 0 {
                // A zero-hit request only reads: report what the state would be, write nothing.
                return Some(next);
            }
            match self.state.compare_exchange_weak(
                seen,
                next.pack(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(next),
                Err(actual) => seen = actual,
            }
        }
    }

    /// Marks the cell dead if it holds nothing that matters at `now`; true when marked.
    pub(super) fn kill_if_expired(&self, now: Timestamp) -> bool {
        let seen = self.state.load(Ordering::Acquire);
        let expired = match self.expiry {
            // A bucket whose TAT has passed is full: it holds nothing a fresh cell would not.
            Expiry::Bucket => seen as u64 <= now.as_nanos(),
            Expiry::Window(window) => {
                WindowState::unpack(seen).expired_at(window.bounds(now).index as u32)
            }
        };
        seen != DEAD
            && expired
            && self
                .state
                .compare_exchange(seen, DEAD, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Marks the cell dead whatever it holds (eviction); true when this call marked it.
    pub(super) fn kill(&self) -> bool {
        self.state.swap(DEAD, Ordering::AcqRel) != DEAD
    }
}

#[cfg(test)]
mod tests;
