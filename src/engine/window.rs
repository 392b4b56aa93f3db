//! Window arithmetic: which window a moment falls in, and what a counter reading means for a
//! limit (used, remaining, time until reset) under each algorithm.
//!
//! Fixed windows are aligned to the Unix epoch, as envoyproxy/ratelimit aligns them:
//! `duration_until_reset = window - now % window`.
//!
//! Sliding windows estimate the hits of the rolling window ending now from two fixed windows:
//! `used = floor(previous × (window − elapsed) / window) + current`. The estimate is exact when
//! the previous window's hits were spread evenly; when they bunched at its end, a rolling
//! window may briefly hold up to `limit + previous × elapsed / window` hits (never more than
//! twice the limit), while every epoch-aligned window still holds at most `limit` admitted hits.
//!
//! Concurrency limits count leases in two generations of the lease TTL: in flight is
//! `previous + current`, and `duration_until_reset` is the time until the current generation
//! ends (when the oldest generation's forgotten leases, if any, stop counting).

use std::time::Duration;

use smallvec::SmallVec;

use crate::clock::Timestamp;

use super::limit::{Algorithm, Limit};

/// The counts a store returns for one counter after applying a request's hits.
///
/// For distinct counters `current` is the number of distinct values known (an estimate for
/// sketches) and `previous` is 1 when the hit's value was new and refused, else 0.
///
/// For token buckets the two fields hold theoretical arrival times (nanoseconds since the
/// epoch): `current` after the request, `previous` before it; they are equal when the bucket
/// refused the hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CounterReading {
    /// Hits in the current window, including the ones just applied.
    pub current: u64,
    /// Hits in the window just before it (read only for sliding windows and concurrency
    /// leases; 0 otherwise).
    pub previous: u64,
}

/// A plan's readings, one per counter in plan order. Inline up to four counters, so the
/// common request (a few descriptors of one or two limits each) gets its readings without a
/// heap block.
pub type Readings = SmallVec<[CounterReading; 4]>;

/// What a reading means for one limit at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assessment {
    /// Hits counted against the limit (an estimate for sliding windows).
    pub used: u64,
    /// Whether the hits just applied took the count past the limit.
    pub over_limit: bool,
    /// Hits still allowed, saturating at 0.
    pub remaining: u32,
    /// For fixed windows, time until the window ends. For sliding windows, time until one more
    /// hit would be admitted when none would be now, else time until the current window ends.
    pub reset: Duration,
}

/// Judges `reading` (after adding `hits`) against `limit` at `now`.
pub fn assess(limit: &Limit, reading: CounterReading, hits: u64, now: Timestamp) -> Assessment {
    if limit.algorithm == Algorithm::TokenBucket {
        return assess_bucket(limit, reading, hits, now);
    }
    let bounds = limit.window.bounds(now);
    let length = bounds.end.saturating_sub(bounds.start).max(1);
    let elapsed = now.as_nanos().saturating_sub(bounds.start);
    let threshold = u64::from(limit.requests_per_unit);
    let until_window_end = bounds.end.saturating_sub(now.as_nanos());
    let used = match limit.algorithm {
        Algorithm::FixedWindow | Algorithm::TokenBucket | Algorithm::Distinct => reading.current,
        Algorithm::Concurrency => reading.current.saturating_add(reading.previous),
        Algorithm::SlidingWindow => {
            let carried =
                u128::from(reading.previous) * u128::from(until_window_end) / u128::from(length);
            u64::try_from(carried)
                .unwrap_or(u64::MAX)
                .saturating_add(reading.current)
        }
    };
    let remaining = u32::try_from(threshold.saturating_sub(used)).unwrap_or(u32::MAX);
    let reset_nanos = match limit.algorithm {
        Algorithm::SlidingWindow if remaining == 0 => {
            sliding_wait_for_one_more(reading, threshold, length, elapsed)
        }
        _ => until_window_end,
    };
    // A distinct count never passes the limit by a refused value: the store says it refused.
    let over_limit = match limit.algorithm {
        Algorithm::Distinct => reading.previous != 0,
        _ => used > threshold,
    };
    Assessment {
        used,
        over_limit,
        remaining,
        reset: Duration::from_nanos(reset_nanos),
    }
}

/// A token bucket's reading: admitted when the TAT moved (or nothing was asked for).
fn assess_bucket(limit: &Limit, reading: CounterReading, hits: u64, now: Timestamp) -> Assessment {
    let bucket = limit.bucket();
    let now = now.as_nanos();
    let (after, before) = (reading.current, reading.previous);
    let admitted = hits == 0 || after != before;
    let remaining = bucket.remaining(after, now);
    let reset_nanos = if !admitted {
        // Exactly when these hits would fit; when they never can, when the bucket is full.
        bucket
            .wait_for(before, now, hits)
            .unwrap_or_else(|| before.saturating_sub(now))
    } else if remaining == 0 {
        bucket.wait_for(after, now, 1).unwrap_or(u64::MAX)
    } else if after <= now {
        0
    } else {
        // The next token drips in at the next multiple of the emission interval.
        (after - now - 1) % bucket.emission_nanos.max(1) + 1
    };
    Assessment {
        used: bucket.burst.saturating_sub(remaining),
        over_limit: !admitted,
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        reset: Duration::from_nanos(reset_nanos),
    }
}

/// Nanoseconds until a sliding window would admit one more hit, assuming no other hits arrive.
fn sliding_wait_for_one_more(
    reading: CounterReading,
    threshold: u64,
    length: u64,
    elapsed: u64,
) -> u64 {
    let length_wide = u128::from(length);
    if reading.current < threshold {
        // Still in this window: wait for the previous window's weight to decay enough.
        let room = u128::from(threshold - reading.current);
        let previous = u128::from(reading.previous.max(1));
        let admit_at = length_wide.saturating_sub((room * length_wide).div_ceil(previous)) + 1;
        let admit_at = u64::try_from(admit_at).unwrap_or(length).min(length);
        return admit_at.saturating_sub(elapsed);
    }
    let until_window_end = length.saturating_sub(elapsed);
    if threshold == 0 {
        return until_window_end;
    }
    // The current window becomes the previous one and decays from the next window's start.
    let carried = u128::from(reading.current);
    let admit_at =
        length_wide.saturating_sub((u128::from(threshold) * length_wide).div_ceil(carried)) + 1;
    let admit_at = u64::try_from(admit_at).unwrap_or(length).min(length);
    until_window_end.saturating_add(admit_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::limit::{TimeUnit, Window};

    const SECOND: u64 = 1_000_000_000;

    fn fixed(per_minute: u32) -> Limit {
        Limit::new(per_minute, Window::of(TimeUnit::Minute))
    }

    fn sliding(per_minute: u32) -> Limit {
        fixed(per_minute).with_algorithm(Algorithm::SlidingWindow)
    }

    fn reading(current: u64, previous: u64) -> CounterReading {
        CounterReading { current, previous }
    }

    #[test]
    fn fixed_window_reset_is_time_to_window_end() {
        let now = Timestamp::from_secs(600 + 59);
        let assessment = assess(&fixed(10), reading(3, 0), 1, now);
        assert_eq!(assessment.reset, Duration::from_secs(1));
        assert_eq!(assessment.remaining, 7);
        assert!(!assessment.over_limit);
        let first = assess(&fixed(10), reading(1, 0), 1, Timestamp::from_secs(660));
        assert_eq!(first.reset, Duration::from_secs(60));
    }

    #[test]
    fn landing_exactly_on_the_limit_is_allowed() {
        let at_limit = assess(&fixed(10), reading(10, 0), 1, Timestamp::from_secs(0));
        assert!(!at_limit.over_limit);
        assert_eq!(at_limit.remaining, 0);
        assert!(assess(&fixed(10), reading(11, 0), 1, Timestamp::from_secs(0)).over_limit);
    }

    #[test]
    fn zero_limit_rejects_everything() {
        let assessment = assess(&fixed(0), reading(1, 0), 1, Timestamp::from_secs(5));
        assert!(assessment.over_limit);
        assert_eq!(assessment.reset, Duration::from_secs(55));
    }

    #[test]
    fn sliding_window_weights_the_previous_window() {
        // 15 s into the window, 45/60 of the previous window still counts: 40 × 0.75 = 30.
        let now = Timestamp::from_secs(60 + 15);
        let assessment = assess(&sliding(50), reading(5, 40), 1, now);
        assert_eq!(assessment.used, 35);
        assert_eq!(assessment.remaining, 15);
        assert_eq!(assessment.reset, Duration::from_secs(45));
    }

    #[test]
    fn sliding_window_reset_is_when_one_more_hit_fits() {
        // limit 10, previous 10, current 5 at elapsed 24 s: used = 6 + 5 = 11, over.
        // One more fits once floor(10 × (60 − t) / 60) ≤ 4, i.e. from t = 30 s + 1 ns.
        let now = Timestamp::from_secs(60 + 24);
        let assessment = assess(&sliding(10), reading(5, 10), 1, now);
        assert_eq!(assessment.used, 11);
        assert!(assessment.over_limit);
        assert_eq!(assessment.remaining, 0);
        let wait = assessment.reset.as_nanos() as u64;
        assert_eq!(wait, 6 * SECOND + 1);
        let later = Timestamp::from_nanos(now.as_nanos() + wait);
        let after_wait = assess(&sliding(10), reading(6, 10), 1, later);
        assert!(!after_wait.over_limit, "one more hit fits after the wait");
        let just_before = Timestamp::from_nanos(now.as_nanos() + wait - 1);
        assert!(assess(&sliding(10), reading(6, 10), 1, just_before).over_limit);
    }

    #[test]
    fn sliding_window_full_current_waits_into_next_window() {
        // Current holds 10 of 10 at elapsed 50 s: wait 10 s to the window end; the next
        // window admits as soon as floor(10 × (60 − t) / 60) ≤ 9, i.e. from t = 1 ns.
        let now = Timestamp::from_secs(60 + 50);
        let assessment = assess(&sliding(10), reading(10, 0), 1, now);
        assert_eq!(assessment.reset.as_nanos() as u64, 10 * SECOND + 1);
        // 20 counted hits (rejected ones count too) decay to 9 only after t = 30 s + 1 ns.
        let crowded = assess(&sliding(10), reading(20, 0), 1, now);
        assert_eq!(crowded.reset.as_nanos() as u64, 40 * SECOND + 1);
    }

    #[test]
    fn concurrency_counts_both_generations_and_resets_at_the_generation_end() {
        let lease = Window::new(TimeUnit::Minute, std::num::NonZeroU32::new(5).unwrap());
        let limit = Limit::concurrency(5, lease);
        let now = Timestamp::from_secs(300 + 60);
        let full = assess(&limit, reading(2, 3), 1, now);
        assert_eq!((full.used, full.remaining, full.over_limit), (5, 0, false));
        assert_eq!(full.reset, Duration::from_secs(240));
        assert!(assess(&limit, reading(3, 3), 1, now).over_limit);
    }

    #[test]
    fn month_windows_align_to_thirty_day_epochs() {
        let limit = Limit::new(5_000, Window::of(TimeUnit::Month));
        let month = 30 * 86_400;
        let assessment = assess(
            &limit,
            reading(1, 0),
            1,
            Timestamp::from_secs(3 * month - 1),
        );
        assert_eq!(assessment.reset, Duration::from_secs(1));
        let bounds = limit.window.bounds(Timestamp::from_secs(3 * month));
        assert_eq!((bounds.index, bounds.start), (3, 3 * month * SECOND));
    }
}
