//! Token buckets as GCRA (the generic cell rate algorithm): one timestamp per key — the
//! theoretical arrival time (TAT) — replaces a token count and a refill timer. A bucket admits
//! `rate × time + burst` hits over any interval, and tells exactly when the next hit fits.
//!
//! Unlike windows, a bucket never charges a rejected hit: a refused request leaves the TAT where
//! it was, so a blocked caller's retries cannot push its recovery further away.

/// The parameters of one bucket, derived from a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketParams {
    /// Nanoseconds per token (window length / requests per unit); `u64::MAX` when the rate is 0.
    pub emission_nanos: u64,
    /// Hits the bucket holds when full.
    pub burst: u64,
}

impl BucketParams {
    /// How far ahead of now the TAT may run: a full bucket's worth of emission intervals.
    const fn tolerance(self) -> u64 {
        self.burst.saturating_mul(self.emission_nanos)
    }

    /// The TAT after admitting `hits` at `now` from `tat`, or `None` when they do not fit.
    /// Zero hits always fit and leave the TAT unchanged.
    pub fn admit(self, tat: u64, now: u64, hits: u64) -> Option<u64> {
        if hits == 0 {
            return Some(tat);
        }
        if self.emission_nanos == u64::MAX || self.burst == 0 {
            return None;
        }
        let next = tat
            .max(now)
            .saturating_add(hits.saturating_mul(self.emission_nanos));
        (next - now <= self.tolerance()).then_some(next)
    }

    /// The TAT after giving `hits` back (never earlier than a full bucket needs).
    pub fn refund(self, tat: u64, hits: u64) -> u64 {
        tat.saturating_sub(hits.saturating_mul(self.emission_nanos))
    }

    /// Hits that would still fit at `now` with this TAT.
    pub fn remaining(self, tat: u64, now: u64) -> u64 {
        if self.emission_nanos == u64::MAX {
            return 0;
        }
        let used = tat.saturating_sub(now).div_ceil(self.emission_nanos.max(1));
        self.burst.saturating_sub(used)
    }

    /// Nanoseconds from `now` until `hits` more would fit with this TAT (0 if they fit now),
    /// or `None` when they never can (more than a full bucket, or a zero rate).
    pub fn wait_for(self, tat: u64, now: u64, hits: u64) -> Option<u64> {
        if hits > self.burst || self.emission_nanos == u64::MAX {
            return None;
        }
        let needed = tat
            .max(now)
            .saturating_add(hits.saturating_mul(self.emission_nanos));
        Some(needed.saturating_sub(self.tolerance()).saturating_sub(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECOND: u64 = 1_000_000_000;

    /// 900 per minute with a burst of 20: 15 per second, 20 at once from a full bucket.
    fn fifteen_per_second() -> BucketParams {
        BucketParams {
            emission_nanos: 60 * SECOND / 900,
            burst: 20,
        }
    }

    #[test]
    fn a_full_bucket_admits_the_burst_then_refills_at_the_rate() {
        let bucket = fifteen_per_second();
        let mut tat = 0;
        let now = 100 * SECOND;
        let admitted = (0..30)
            .filter(|_| match bucket.admit(tat, now, 1) {
                Some(next) => {
                    tat = next;
                    true
                }
                None => false,
            })
            .count();
        assert_eq!(admitted, 20);
        assert_eq!(bucket.remaining(tat, now), 0);
        let wait = bucket
            .wait_for(tat, now, 1)
            .expect("one hit fits eventually");
        assert_eq!(wait, bucket.emission_nanos);
        assert!(bucket.admit(tat, now + wait - 1, 1).is_none());
        assert!(bucket.admit(tat, now + wait, 1).is_some());
    }

    #[test]
    fn zero_rate_and_huge_costs_never_fit() {
        let closed = BucketParams {
            emission_nanos: u64::MAX,
            burst: 5,
        };
        assert_eq!(closed.admit(0, SECOND, 1), None);
        assert_eq!(fifteen_per_second().admit(0, SECOND, u64::MAX), None);
        assert_eq!(fifteen_per_second().admit(0, SECOND, 0), Some(0));
    }

    proptest! {
        /// Over any run of requests, admitted hits never exceed burst + elapsed × rate, and
        /// `wait_for` is exact: waiting that long admits, one nanosecond less does not.
        #[test]
        fn admits_at_most_rate_times_time_plus_burst(
            burst in 1u64..30,
            per_second in 1u64..50,
            steps in proptest::collection::vec((0u64..200_000_000, 1u64..4), 1..300),
        ) {
            let bucket = BucketParams { emission_nanos: SECOND / per_second, burst };
            let start = 1_000 * SECOND;
            let (mut now, mut tat, mut admitted) = (start, 0u64, 0u64);
            for (advance, hits) in steps {
                now += advance;
                match bucket.admit(tat, now, hits) {
                    Some(next) => { tat = next; admitted += hits; }
                    None => {
                        let Some(wait) = bucket.wait_for(tat, now, hits) else {
                            prop_assert!(hits > burst);
                            continue;
                        };
                        prop_assert!(wait > 0);
                        prop_assert!(bucket.admit(tat, now + wait, hits).is_some());
                        prop_assert!(bucket.admit(tat, now + wait - 1, hits).is_none());
                    }
                }
                let allowance = burst + (now - start) / bucket.emission_nanos;
                prop_assert!(admitted <= allowance, "admitted {} > {}", admitted, allowance);
            }
        }
    }
}
