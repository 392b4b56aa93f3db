//! The assignment policy on a fake clock, one decision at a time: TTLs, window rollover,
//! fairness across streams, closed and silent streams, racing readings, changed limits.

use std::time::Duration;

use super::*;
use crate::clock::Timestamp;

/// Midnight UTC: minute windows start here.
const START: Timestamp = Timestamp::from_secs(86_400 * 20_000);
const BUCKET: &[u8] = b"api\0key\0K";

fn limited(remaining: u64, until_reset_secs: u64) -> Standing {
    Standing::Limited {
        limit: 1_000,
        remaining,
        until_reset: Duration::from_secs(until_reset_secs),
    }
}

fn at(secs: u64) -> Timestamp {
    START.saturating_add(Duration::from_secs(secs))
}

fn tokens(decided: Decided) -> u32 {
    match decided.assignment {
        Assignment::TokenBucket { max_tokens, .. } => max_tokens,
        Assignment::DenyAll { .. } => 0,
        other => panic!("not a limited assignment: {other:?}"),
    }
}

#[test]
fn a_lone_stream_gets_the_whole_remaining_budget_until_the_reset() {
    let mut ledger = QuotaLedger::new();
    let decided = ledger.decide(BUCKET, StreamId(1), limited(9, 42), Trigger::Report, at(18));
    assert_eq!(
        decided.assignment,
        Assignment::TokenBucket {
            max_tokens: 9,
            ttl: Duration::from_secs(42)
        }
    );
    assert_eq!(decided.decide_again_in, Duration::from_secs(42));
    assert!(
        FILL_INTERVAL > MAX_TTL,
        "a grant never refills before it expires"
    );
}

#[test]
fn a_spent_budget_is_denied_until_the_reset_then_granted_afresh() {
    let mut ledger = QuotaLedger::new();
    let spent = ledger.decide(BUCKET, StreamId(1), limited(0, 25), Trigger::Report, at(35));
    assert_eq!(
        spent.assignment,
        Assignment::DenyAll {
            ttl: Duration::from_secs(25)
        }
    );
    assert_eq!(spent.decide_again_in, Duration::from_secs(25));
    // The stream's timer fires at the reset: a new window, a full budget.
    let fresh = ledger.decide(
        BUCKET,
        StreamId(1),
        limited(10, 60),
        Trigger::Unprompted,
        at(60),
    );
    assert_eq!(tokens(fresh), 10);
}

#[test]
fn ttls_are_whole_seconds_never_past_the_decision_point_and_at_least_one() {
    let mut ledger = QuotaLedger::new();
    let standing = Standing::Limited {
        limit: 10,
        remaining: 5,
        until_reset: Duration::from_millis(7_900),
    };
    let decided = ledger.decide(BUCKET, StreamId(1), standing, Trigger::Report, at(52));
    assert_eq!(decided.assignment.ttl(), Some(Duration::from_secs(7)));
    // The window outlasts the TTL by 0.9 s: decide again just before the TTL ends.
    assert_eq!(decided.decide_again_in, Duration::from_millis(6_500));
    // Under a second left: Envoy drops sub-second TTLs to 0 (expired), so 1 s is sent and the
    // stream decides again at the reset itself.
    let standing = Standing::Limited {
        limit: 10,
        remaining: 5,
        until_reset: Duration::from_millis(300),
    };
    let decided = ledger.decide(BUCKET, StreamId(1), standing, Trigger::Report, at(59));
    assert_eq!(decided.assignment.ttl(), Some(Duration::from_secs(1)));
    assert_eq!(decided.decide_again_in, Duration::from_millis(300));
    // Long windows are capped.
    let decided = ledger.decide(
        BUCKET,
        StreamId(1),
        limited(5, 86_000),
        Trigger::Report,
        at(0),
    );
    assert_eq!(decided.assignment.ttl(), Some(MAX_TTL));
}

#[test]
fn unmatched_and_unlimited_buckets_get_blanket_rules_with_a_ttl() {
    let mut ledger = QuotaLedger::new();
    let allow = ledger.decide(
        BUCKET,
        StreamId(1),
        Standing::Unlimited,
        Trigger::Report,
        at(0),
    );
    assert_eq!(
        allow.assignment,
        Assignment::AllowAll {
            ttl: UNTIL_NEXT_REPORT
        }
    );
    let deny = ledger.decide(
        BUCKET,
        StreamId(1),
        Standing::Unmatched(NoMatch::Deny),
        Trigger::Report,
        at(0),
    );
    assert_eq!(
        deny.assignment,
        Assignment::DenyAll {
            ttl: UNTIL_NEXT_REPORT
        }
    );
    let allow = ledger.decide(
        BUCKET,
        StreamId(1),
        Standing::Unmatched(NoMatch::Allow),
        Trigger::Report,
        at(0),
    );
    assert_eq!(allow.assignment.kind(), AssignmentKind::AllowAll);
    assert_eq!(ledger.buckets(), 0, "only limited buckets are tracked");
}

#[test]
fn streams_reporting_one_bucket_split_it_evenly() {
    let mut ledger = QuotaLedger::new();
    let (a, b) = (StreamId(1), StreamId(2));
    // A arrives first and holds everything; B must wait for A's next report.
    assert_eq!(
        tokens(ledger.decide(BUCKET, a, limited(10, 60), Trigger::Report, at(0))),
        10
    );
    let waiting = ledger.decide(BUCKET, b, limited(10, 59), Trigger::Report, at(1));
    assert_eq!(tokens(waiting), 0);
    assert_eq!(waiting.assignment.ttl(), Some(UNTIL_NEXT_REPORT));
    // A reports 4 used: the remaining 6 is split 3 / 3.
    assert_eq!(
        tokens(ledger.decide(BUCKET, a, limited(6, 55), Trigger::Report, at(5))),
        3
    );
    assert_eq!(
        tokens(ledger.decide(BUCKET, b, limited(6, 54), Trigger::Report, at(6))),
        3
    );
    // An odd remainder goes to the lower stream id.
    assert_eq!(
        tokens(ledger.decide(BUCKET, a, limited(5, 50), Trigger::Report, at(10))),
        2
    );
    assert_eq!(
        tokens(ledger.decide(BUCKET, b, limited(5, 49), Trigger::Report, at(11))),
        2
    );
    assert_eq!(
        tokens(ledger.decide(BUCKET, a, limited(5, 45), Trigger::Report, at(15))),
        3
    );
}

#[test]
fn a_closed_stream_stops_counting_toward_the_split() {
    let mut ledger = QuotaLedger::new();
    let (a, b) = (StreamId(1), StreamId(2));
    ledger.decide(BUCKET, a, limited(10, 60), Trigger::Report, at(0));
    ledger.decide(BUCKET, b, limited(10, 60), Trigger::Report, at(0));
    ledger.release(BUCKET, a);
    assert_eq!(
        tokens(ledger.decide(BUCKET, b, limited(10, 55), Trigger::Report, at(5))),
        10
    );
    ledger.release(BUCKET, b);
    assert_eq!(ledger.buckets(), 0);
}

#[test]
fn a_silent_stream_stops_counting_once_its_grant_expires() {
    let mut ledger = QuotaLedger::new();
    let (a, b) = (StreamId(1), StreamId(2));
    ledger.decide(BUCKET, a, limited(10, 10), Trigger::Report, at(50));
    assert_eq!(
        tokens(ledger.decide(BUCKET, b, limited(100, 60), Trigger::Report, at(60))),
        50
    );
    // A never reports again: after STALE_AFTER, B gets everything.
    let later = 60 + STALE_AFTER.as_secs() + 1;
    assert_eq!(
        tokens(ledger.decide(
            BUCKET,
            b,
            limited(100, 120 - later),
            Trigger::Report,
            at(later)
        )),
        100
    );
}

#[test]
fn a_late_larger_reading_in_the_same_window_does_not_win() {
    let mut ledger = QuotaLedger::new();
    let (a, b) = (StreamId(1), StreamId(2));
    ledger.decide(BUCKET, a, limited(4, 50), Trigger::Report, at(10));
    ledger.release(BUCKET, a);
    ledger.decide(BUCKET, a, limited(4, 50), Trigger::Report, at(10));
    // B's store call read before A's report was counted, but is decided after it.
    let decided = ledger.decide(BUCKET, b, limited(9, 50), Trigger::Report, at(10));
    assert_eq!(tokens(decided), 0, "A holds the 4 that remain");
}

#[test]
fn a_raised_limit_is_granted_at_once_within_the_window() {
    let mut ledger = QuotaLedger::new();
    let standing = |limit, remaining| Standing::Limited {
        limit,
        remaining,
        until_reset: Duration::from_secs(30),
    };
    assert_eq!(
        tokens(ledger.decide(
            BUCKET,
            StreamId(1),
            standing(10, 2),
            Trigger::Report,
            at(30)
        )),
        2
    );
    assert_eq!(
        tokens(ledger.decide(
            BUCKET,
            StreamId(1),
            standing(20, 12),
            Trigger::Report,
            at(30)
        )),
        12
    );
}
