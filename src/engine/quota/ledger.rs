//! The grants in force on one quotad instance, per bucket and per stream, and the policy that
//! decides the next one. Pure: time comes in as a `Timestamp`, counts as a [`Standing`].
//!
//! Invariant: after every decision, what a bucket's holders may have admitted without the
//! shared counters knowing (each stream's *exposure*: every grant it got since its last report,
//! within the window) adds up to at most the bucket's remaining budget as the counters showed
//! it at that decision. A report resets the reporting stream's exposure to its new grant; a
//! decision without one (a TTL about to end, a reload re-send) adds a new grant to it, so a
//! re-sent grant never hands out budget the stream may already have spent — or re-sends the
//! unchanged token bucket, which Envoy keeps with its state (spent tokens stay spent), adding
//! nothing.
//!
//! The bound this gives (the "reporting lag"): within one window, admitted requests exceed the
//! limit by at most (a) what a stream admits between sending a report and applying the answer
//! (one network round trip of its old grant), (b) what Envoy admits under its
//! `no_assignment_behavior` before a bucket's first answer arrives, and at a window reset
//! between the old assignment's TTL ending and the fresh one arriving (a TTL ends no later
//! than the reset, except for the 1 s minimum Envoy needs), and (c) what other callers
//! of the same counters admit meanwhile — `ShouldRateLimit` callers, and streams on other quotad
//! instances, whose grants this ledger cannot see: up to one reporting interval (5 s) of their
//! traffic. Usage reported after a window ends is counted in the next window.
//!
//! Fairness: a limited bucket's remaining budget is split evenly across the streams that
//! reported it in the last [`STALE_AFTER`] (remainder to the lowest stream ids); a newcomer gets
//! its share once the holders' next reports free it (within one reporting interval).

use std::collections::HashMap;
use std::time::Duration;

use crate::clock::Timestamp;

use super::assignment::{
    Assignment, Decided, MAX_TTL, REPORT_INTERVAL, Standing, Trigger, UNTIL_NEXT_REPORT,
    whole_seconds_ttl,
};
use super::settings::NoMatch;

/// A stream that has not reported a bucket for this long no longer counts toward its fair split
/// (its grant, while in force, still counts as spent).
pub const STALE_AFTER: Duration = Duration::from_secs(3 * REPORT_INTERVAL.as_secs());

/// How long before a TTL ends the stream decides again when the window outlasts the TTL.
pub const REFRESH_AHEAD: Duration = Duration::from_millis(500);

/// One open RLQS stream; ids are never reused within a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u64);

/// One stream's exposure on one bucket: every grant it got since its last report, any part
/// of which it may have spent without the counters knowing yet.
#[derive(Debug, Clone, Copy)]
struct Holder {
    stream: StreamId,
    exposure: u64,
    /// `max_tokens` of the token bucket last sent (0 after a denial).
    tokens: u64,
    /// The exposure counts until this window reset (later usage belongs to a later window).
    resets_at: Timestamp,
    /// The stream's last report of this bucket.
    seen: Timestamp,
}

/// One bucket's holders, and the lowest remaining budget read in the current window.
#[derive(Debug, Default)]
struct BucketState {
    holders: Vec<Holder>,
    /// ((when the window resets, the limit), remaining): a reading only goes down within a
    /// window under one limit, so an older, larger reading that arrives late (two streams'
    /// store calls racing) must not win; a new window or a changed limit starts afresh.
    floor: Option<((Timestamp, u64), u64)>,
}

/// Every limited bucket's grants on this instance, keyed by the bucket's identity bytes.
#[derive(Debug, Default)]
pub struct QuotaLedger {
    buckets: HashMap<Box<[u8]>, BucketState>,
}

fn nanos_between(earlier: Timestamp, later: Timestamp) -> Duration {
    Duration::from_nanos(later.as_nanos().saturating_sub(earlier.as_nanos()))
}

impl QuotaLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Limited buckets with at least one holder.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Decides what `stream` is told about `bucket` given its `standing` at `now`, and records
    /// the grant. `trigger` says whether the stream's usage up to now is in the standing.
    pub fn decide(
        &mut self,
        bucket: &[u8],
        stream: StreamId,
        standing: Standing,
        trigger: Trigger,
        now: Timestamp,
    ) -> Decided {
        let (limit, remaining, until_reset) = match standing {
            Standing::Limited {
                limit,
                remaining,
                until_reset,
            } => (limit, remaining, until_reset),
            Standing::Unmatched(NoMatch::Deny) => {
                self.release(bucket, stream);
                return open_ended(Assignment::DenyAll {
                    ttl: UNTIL_NEXT_REPORT,
                });
            }
            Standing::Unmatched(NoMatch::Allow) | Standing::Unlimited => {
                self.release(bucket, stream);
                return open_ended(Assignment::AllowAll {
                    ttl: UNTIL_NEXT_REPORT,
                });
            }
        };
        let state = match self.buckets.get_mut(bucket) {
            Some(state) => state,
            None => self.buckets.entry(bucket.into()).or_default(),
        };
        let resets_at = now.saturating_add(until_reset);
        let series = (resets_at, limit);
        let remaining = match state.floor {
            Some((seen, floor)) if seen == series => remaining.min(floor),
            _ => remaining,
        };
        state.floor = Some((series, remaining));
        let fresh = |holder: &Holder| nanos_between(holder.seen, now) <= STALE_AFTER;
        let exposed = |holder: &Holder| {
            if now < holder.resets_at {
                holder.exposure
            } else {
                0
            }
        };
        state
            .holders
            .retain(|holder| holder.stream == stream || fresh(holder) || exposed(holder) > 0);
        let index = match state.holders.iter().position(|h| h.stream == stream) {
            Some(index) => index,
            None => {
                state.holders.push(Holder {
                    stream,
                    exposure: 0,
                    tokens: 0,
                    resets_at,
                    seen: now,
                });
                state.holders.len() - 1
            }
        };
        // A report puts the stream's usage so far in the counters; without one, everything
        // it was granted since its last report may already be spent.
        let holder = state.holders[index];
        // A report puts the stream's usage so far in the counters; without one, everything
        // it was granted since its last report may already be spent.
        let own = match trigger {
            Trigger::Report => {
                state.holders[index].seen = now;
                0
            }
            Trigger::Unprompted => exposed(&holder),
        };
        let last_tokens = if exposed(&holder) > 0 {
            holder.tokens
        } else {
            0
        };
        let active = state.holders.iter().filter(|h| fresh(h)).count().max(1) as u64;
        let rank = state
            .holders
            .iter()
            .filter(|h| fresh(h) && h.stream < stream)
            .count() as u64;
        let others: u64 = state
            .holders
            .iter()
            .filter(|h| h.stream != stream)
            .map(exposed)
            .sum();
        let fair = remaining / active + u64::from(rank < remaining % active);
        let mine = remaining.saturating_sub(others);
        let grant = fair.min(mine.saturating_sub(own)).min(u64::from(u32::MAX));
        let ttl = whole_seconds_ttl(until_reset);
        let wait = whole_seconds_ttl(until_reset.min(UNTIL_NEXT_REPORT));
        let unprompted = trigger == Trigger::Unprompted;
        // (assignment, its TTL, tokens it adds to the stream's exposure, tokens of the bucket)
        let (assignment, ttl, added, tokens) = if remaining == 0 {
            // Spent: refuse until the window resets.
            (Assignment::DenyAll { ttl }, ttl, 0, 0)
        } else if grant > 0 && !(unprompted && grant == last_tokens) {
            let max_tokens = u32::try_from(grant).unwrap_or(u32::MAX);
            (
                Assignment::TokenBucket { max_tokens, ttl },
                ttl,
                grant,
                grant,
            )
        } else if unprompted && last_tokens > 0 && own <= mine {
            // The same bucket again only extends its TTL: Envoy keeps a bucket whose grant is
            // unchanged, tokens spent stay spent, so the exposure does not grow.
            let max_tokens = u32::try_from(last_tokens).unwrap_or(u32::MAX);
            (
                Assignment::TokenBucket { max_tokens, ttl },
                ttl,
                0,
                last_tokens,
            )
        } else {
            // Budget left, all of it possibly spent by holders: wait for their next reports.
            (Assignment::DenyAll { ttl: wait }, wait, 0, 0)
        };
        let holder = &mut state.holders[index];
        holder.exposure = own.saturating_add(added);
        holder.tokens = tokens;
        holder.resets_at = resets_at;
        // Decide again at the reset, or just before the TTL ends (so the next assignment
        // arrives before Envoy falls back to its expiry behaviour).
        let decide_again_in = if until_reset <= ttl {
            until_reset
        } else {
            ttl.saturating_sub(REFRESH_AHEAD)
        };
        Decided {
            assignment,
            decide_again_in,
        }
    }

    /// Forgets `stream`'s grant on `bucket` (the stream closed, or the bucket is no longer
    /// limited): it stops counting toward the bucket's split.
    pub fn release(&mut self, bucket: &[u8], stream: StreamId) {
        if let Some(state) = self.buckets.get_mut(bucket) {
            state.holders.retain(|holder| holder.stream != stream);
            if state.holders.is_empty() {
                self.buckets.remove(bucket);
            }
        }
    }
}

/// An assignment only the next report (or a reload) changes.
const fn open_ended(assignment: Assignment) -> Decided {
    Decided {
        assignment,
        decide_again_in: UNTIL_NEXT_REPORT,
    }
}

const _: () = assert!(UNTIL_NEXT_REPORT.as_secs() <= MAX_TTL.as_secs());
