//! The open loop's schedule: when each request is due and how many are due at a given time,
//! as pure arithmetic, so the dispatcher can take every request due by the time it runs
//! instead of being handed them one at a time.

use std::time::Duration;

use tokio::time::Instant;

/// When each request of an open-loop phase is due: request `k` at `start + k / rate`, for the
/// requests due before the phase's deadline (at most `total`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    start: Instant,
    /// Requests per second; at least 1.
    rate: u64,
    /// Requests scheduled: those of the first `total` due before the deadline.
    scheduled: u64,
}

impl Plan {
    /// The schedule of `total` requests at `rate` per second from `start`, cut at `start + limit`.
    pub(crate) fn new(start: Instant, rate: u64, total: u64, limit: Duration) -> Self {
        let rate = rate.max(1);
        // Request k is due before the deadline when k * 1e9 / rate < limit_ns, i.e. for
        // k < limit_ns * rate / 1e9 (rounded up).
        let before_deadline = limit
            .as_nanos()
            .saturating_mul(u128::from(rate))
            .div_ceil(1_000_000_000);
        let scheduled = u64::try_from(before_deadline)
            .unwrap_or(u64::MAX)
            .min(total);
        Self {
            start,
            rate,
            scheduled,
        }
    }

    /// Requests in the schedule.
    pub(crate) fn scheduled(&self) -> u64 {
        self.scheduled
    }

    /// When request `ticket` is due.
    pub(crate) fn due(&self, ticket: u64) -> Instant {
        // At most `--requests` (1e8) seconds ahead at 1 req/s, about 3 years: no overflow.
        let offset = u128::from(ticket) * 1_000_000_000 / u128::from(self.rate);
        self.start + Duration::from_nanos(u64::try_from(offset).unwrap_or(u64::MAX))
    }

    /// How many requests are due at `now` (those whose due time is `now` or earlier).
    pub(crate) fn due_by(&self, now: Instant) -> u64 {
        if now < self.start {
            return 0;
        }
        // floor(k * 1e9 / rate) <= elapsed  <=>  k * 1e9 < (elapsed + 1) * rate.
        let elapsed = now.duration_since(self.start).as_nanos();
        let due = (elapsed + 1)
            .saturating_mul(u128::from(self.rate))
            .div_ceil(1_000_000_000);
        u64::try_from(due).unwrap_or(u64::MAX).min(self.scheduled)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn schedules_only_requests_due_before_the_deadline() {
        let start = Instant::now();
        // 1,000 req/s for 10 ms: requests 0..=9 are due at 0, 1, ..., 9 ms; the 11th would be
        // due exactly at the deadline and is not scheduled.
        assert_eq!(
            Plan::new(start, 1_000, 100, Duration::from_millis(10)).scheduled(),
            10
        );
        assert_eq!(
            Plan::new(start, 1_000, 7, Duration::from_millis(10)).scheduled(),
            7
        );
        assert_eq!(
            Plan::new(start, 3, 100, Duration::from_nanos(1)).scheduled(),
            1
        );
    }

    #[test]
    fn counts_requests_due_at_their_exact_time() {
        let start = Instant::now();
        let plan = Plan::new(start, 1_000, 100, Duration::from_secs(1));
        assert_eq!(plan.due_by(start), 1);
        assert_eq!(plan.due_by(start + Duration::from_nanos(999_999)), 1);
        assert_eq!(plan.due_by(start + Duration::from_millis(1)), 2);
        assert_eq!(plan.due_by(start + Duration::from_secs(5)), 100);
    }

    proptest! {
        /// `due_by` and `due` agree: request k counts as due from its due time on, not before.
        #[test]
        fn due_by_agrees_with_due(rate in 1u64..=1_000_000, ticket in 0u64..10_000_000) {
            let start = Instant::now();
            let plan = Plan::new(start, rate, u64::MAX, Duration::MAX);
            let due = plan.due(ticket);
            prop_assert!(plan.due_by(due) > ticket);
            if due > start {
                prop_assert!(plan.due_by(due - Duration::from_nanos(1)) <= ticket);
            }
        }
    }
}
