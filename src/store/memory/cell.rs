//! One counter cell: a 128-bit atomic holding `[window tag | previous count | current count]`
//! for windows, or a token bucket's theoretical arrival time, updated by compare-and-swap; and
//! the dead mark the sweeper and the evictor set so racing requests retry on a fresh cell.

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

    /// Whether nothing in this state can matter at window `tag` (neither current nor previous).
    fn expired_at(self, tag: u32) -> bool {
        let behind = tag.wrapping_sub(self.tag);
        behind >= 2 && (behind as i32) > 0
    }
}

/// One counter: its packed window state (or bucket TAT), when it was last used (for the
/// evictor), and what the sweeper needs to know.
#[derive(Debug)]
pub(super) struct Cell {
    state: AtomicU128,
    last_used: AtomicU64,
    window: Window,
    bucket: bool,
}

impl Cell {
    /// A fresh cell for `update`'s counter.
    pub(super) fn new(update: &CounterUpdate) -> Self {
        let empty = WindowState {
            tag: update.window_index as u32,
            previous: 0,
            current: 0,
        };
        let bucket = update.bucket.is_some();
        Self {
            state: AtomicU128::new(if bucket { 0 } else { empty.pack() }),
            last_used: AtomicU64::new(0),
            window: update.window,
            bucket,
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
        let state = self.apply(update.window_index as u32, update.hits, update.refund)?;
        Some(CounterReading {
            current: state.current,
            previous: match update.algorithm {
                Algorithm::SlidingWindow => state.previous,
                Algorithm::FixedWindow | Algorithm::TokenBucket => 0,
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

    /// Adds (or with `refund`, gives back) `hits` in window `tag`; `None` when the sweeper
    /// reclaimed this cell first.
    fn apply(&self, tag: u32, hits: u64, refund: bool) -> Option<WindowState> {
        let mut seen = self.state.load(Ordering::Acquire);
        loop {
            if seen == DEAD {
                return None;
            }
            let state = WindowState::unpack(seen);
            let next = if refund {
                state.refund(tag, hits)
            } else {
                state.add(tag, hits)
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
        let expired = if self.bucket {
            // A bucket whose TAT has passed is full: it holds nothing a fresh cell would not.
            seen as u64 <= now.as_nanos()
        } else {
            WindowState::unpack(seen).expired_at(self.window.bounds(now).index as u32)
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
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_packing() {
        let state = WindowState {
            tag: 0xDEAD_BEEF,
            previous: COUNT_MAX,
            current: 7,
        };
        assert_eq!(WindowState::unpack(state.pack()), state);
        assert_ne!(state.pack(), DEAD);
    }

    #[test]
    fn windows_rotate_and_reset() {
        let start = WindowState::unpack(0).add(10, 3);
        assert_eq!((start.tag, start.previous, start.current), (10, 0, 3));
        let same = start.add(10, 2);
        assert_eq!(same.current, 5);
        let next = same.add(11, 1);
        assert_eq!((next.previous, next.current), (5, 1));
        let much_later = next.add(20, 4);
        assert_eq!((much_later.previous, much_later.current), (0, 4));
        let clock_behind = much_later.add(19, 1);
        assert_eq!((clock_behind.tag, clock_behind.current), (20, 5));
    }

    #[test]
    fn refunds_stay_in_their_window_and_never_go_below_zero() {
        let state = WindowState::unpack(0).add(10, 5);
        assert_eq!(state.refund(10, 2).current, 3);
        assert_eq!(state.refund(10, 9).current, 0);
        assert_eq!(
            state.refund(9, 2),
            state,
            "a refund for a window not held is ignored"
        );
        let rotated = state.add(11, 1);
        assert_eq!(
            rotated.refund(10, 2).previous,
            3,
            "the previous window gets its hits back"
        );
    }

    #[test]
    fn counts_saturate_without_wrapping() {
        let state = WindowState::unpack(0).add(1, u64::MAX).add(1, u64::MAX);
        assert_eq!(state.current, COUNT_MAX);
    }

    #[test]
    fn tags_wrap_around_u32() {
        let fresh = WindowState {
            tag: u32::MAX,
            previous: 0,
            current: 0,
        };
        let state = fresh.add(u32::MAX, 2).add(0, 1);
        assert_eq!((state.tag, state.previous, state.current), (0, 2, 1));
        assert!(!state.expired_at(1));
        assert!(state.expired_at(2));
    }

    #[test]
    fn a_dead_cell_refuses_updates() {
        let start = WindowState {
            tag: 5,
            previous: 0,
            current: 0,
        };
        let cell = Cell {
            state: AtomicU128::new(start.pack()),
            last_used: AtomicU64::new(0),
            window: Window::of(crate::engine::TimeUnit::Second),
            bucket: false,
        };
        assert!(cell.apply(5, 1, false).is_some());
        assert!(
            !cell.kill_if_expired(Timestamp::from_secs(6)),
            "previous window still counts"
        );
        assert!(cell.kill_if_expired(Timestamp::from_secs(7)));
        assert_eq!(cell.apply(7, 1, false), None);
    }
}
