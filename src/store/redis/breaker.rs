//! A lock-free circuit breaker, so a dead Redis costs a request nothing but an atomic load.
//! After N consecutive failures it opens and calls fail fast; once the cool-down has passed,
//! the single caller that wins a compare-and-swap becomes the probe, and a success closes it.
//! Time comes from the injected clock, so tests walk through cool-downs without waiting.
//!
//! The probe re-arms the cool-down when it is admitted, not when it finishes: a probe whose
//! caller gives up (a dropped future) cannot wedge the breaker open; the next one simply goes
//! through one cool-down later.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::clock::Timestamp;

use super::config::BreakerConfig;

/// What the breaker lets a caller do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The breaker is closed: call Redis.
    Pass,
    /// The breaker is open and this caller is the one probe: call Redis.
    Probe,
    /// The breaker is open: fail without calling Redis.
    Reject,
}

/// Whether calls reach Redis right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go to Redis.
    Closed,
    /// Calls fail fast; one probe goes through per cool-down.
    Open,
}

/// Consecutive-failure circuit breaker on atomics.
#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cool_down_nanos: u64,
    failures: AtomicU32,
    /// When the breaker opened or last admitted a probe, in clock nanoseconds; 0 while closed.
    opened_at: AtomicU64,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Self {
            threshold: config.failure_threshold.get(),
            cool_down_nanos: u64::try_from(config.cool_down.as_nanos()).unwrap_or(u64::MAX),
            failures: AtomicU32::new(0),
            opened_at: AtomicU64::new(0),
        }
    }

    /// Decides whether a call at `now` may go to Redis.
    pub(crate) fn admit(&self, now: Timestamp) -> Admission {
        let opened = self.opened_at.load(Ordering::Acquire);
        if opened == 0 {
            return Admission::Pass;
        }
        if now.as_nanos() < opened.saturating_add(self.cool_down_nanos) {
            return Admission::Reject;
        }
        match self.opened_at.compare_exchange(
            opened,
            stamp(now),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Admission::Probe,
            Err(_) => Admission::Reject,
        }
    }

    /// Records that Redis answered: the breaker closes and the failure streak ends.
    pub(crate) fn record_success(&self) {
        self.failures.store(0, Ordering::Release);
        self.opened_at.store(0, Ordering::Release);
    }

    /// Records a failed call admitted as `admission`; opens the breaker at the threshold.
    pub(crate) fn record_failure(&self, now: Timestamp, admission: Admission) {
        let failures = self
            .failures
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |seen| {
                Some(seen.saturating_add(1))
            })
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        if admission == Admission::Probe {
            // Restart the cool-down from the probe's failure, not from its admission.
            self.opened_at.store(stamp(now), Ordering::Release);
        } else if failures >= self.threshold {
            // Only the first opener sets the time; later failures must not push the probe back.
            let _ =
                self.opened_at
                    .compare_exchange(0, stamp(now), Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// The breaker's state and the current failure streak.
    pub(crate) fn state(&self) -> (BreakerState, u32) {
        let state = if self.opened_at.load(Ordering::Acquire) == 0 {
            BreakerState::Closed
        } else {
            BreakerState::Open
        };
        (state, self.failures.load(Ordering::Acquire))
    }
}

/// `now` as an `opened_at` value; 0 means closed, so the epoch itself is nudged by a nanosecond.
fn stamp(now: Timestamp) -> u64 {
    now.as_nanos().max(1)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            failure_threshold: NonZeroU32::new(3).unwrap(),
            cool_down: Duration::from_secs(1),
        })
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let breaker = breaker();
        let now = Timestamp::from_secs(100);
        breaker.record_failure(now, Admission::Pass);
        breaker.record_failure(now, Admission::Pass);
        breaker.record_success();
        breaker.record_failure(now, Admission::Pass);
        breaker.record_failure(now, Admission::Pass);
        assert_eq!(breaker.admit(now), Admission::Pass, "streak was broken");
        breaker.record_failure(now, Admission::Pass);
        assert_eq!(breaker.state(), (BreakerState::Open, 3));
        assert_eq!(breaker.admit(now), Admission::Reject);
    }

    #[test]
    fn one_probe_per_cool_down_and_success_closes() {
        let breaker = breaker();
        let opened = Timestamp::from_secs(100);
        for _ in 0..3 {
            breaker.record_failure(opened, Admission::Pass);
        }
        let almost = Timestamp::from_nanos(opened.as_nanos() + 999_999_999);
        assert_eq!(breaker.admit(almost), Admission::Reject);
        let later = Timestamp::from_secs(101);
        assert_eq!(breaker.admit(later), Admission::Probe);
        assert_eq!(breaker.admit(later), Admission::Reject, "only one probe");
        breaker.record_failure(later, Admission::Probe);
        assert_eq!(breaker.admit(Timestamp::from_secs(101)), Admission::Reject);
        let again = Timestamp::from_secs(102);
        assert_eq!(breaker.admit(again), Admission::Probe);
        breaker.record_success();
        assert_eq!(breaker.state(), (BreakerState::Closed, 0));
        assert_eq!(breaker.admit(again), Admission::Pass);
    }

    #[test]
    fn an_abandoned_probe_does_not_wedge_the_breaker() {
        let breaker = breaker();
        for _ in 0..3 {
            breaker.record_failure(Timestamp::from_secs(10), Admission::Pass);
        }
        assert_eq!(breaker.admit(Timestamp::from_secs(11)), Admission::Probe);
        // The probe's caller went away without recording anything.
        assert_eq!(breaker.admit(Timestamp::from_secs(12)), Admission::Probe);
    }
}
