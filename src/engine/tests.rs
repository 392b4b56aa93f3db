//! Behaviour tests for the whole engine (plan → memory store → conclude) on a manual clock:
//! every matching rule and window edge that envoyproxy/ratelimit users rely on.

use std::num::NonZeroU32;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::clock::{Clock, ManualClock, Timestamp};
use crate::store::MemoryStore;

const MINUTE: u64 = 60;

/// A rule set with one domain built from `(key, value, rule)` top-level nodes.
fn domain(name: &str, nodes: Vec<(&str, Option<&str>, Node)>) -> DomainRules {
    let mut root = Children::default();
    for (key, value, node) in nodes {
        let inserted = match value {
            None => root.insert_default(key, node),
            Some(value) if value.contains('*') => {
                root.insert_pattern(key, ValuePattern::new(value), node)
            }
            Some(value) => root.insert_exact(key, value, node),
        };
        assert!(inserted, "duplicate test node {key}={value:?}");
    }
    DomainRules::new(name, root)
}

fn rule(path: &str, limits: Vec<Limit>) -> Rule {
    Rule::limited(path, limits)
}

fn leaf(rule: Rule) -> Node {
    Node::leaf(rule)
}

fn per(requests: u32, unit: TimeUnit) -> Limit {
    Limit::new(requests, Window::of(unit))
}

/// The engine with a memory store and a manual clock, answering one request at a time.
struct Harness {
    rules: RuleSet,
    store: MemoryStore,
    clock: ManualClock,
}

/// One descriptor's answer, owned so tests can compare it after the rules change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    over: bool,
    limit: Option<u32>,
    remaining: u32,
    reset: Option<Duration>,
}

impl Harness {
    fn new(domains: Vec<DomainRules>) -> Self {
        Self {
            rules: RuleSet::new(domains),
            store: MemoryStore::new(),
            clock: ManualClock::new(Timestamp::from_secs(1_000 * MINUTE)),
        }
    }

    fn ask(&self, request: &Request<'_>) -> (bool, Vec<Answer>) {
        let plan = plan(&self.rules, request, self.clock.now());
        let readings = self.store.apply_plan(&plan);
        let decision = conclude(&plan, &readings);
        if let Some(refund) = plan.refund_if_rejected(&decision, &readings) {
            self.store.apply_plan(&refund);
        }
        let answers = decision
            .descriptors
            .iter()
            .map(|answer| Answer {
                over: answer.over_limit,
                limit: answer.limit.map(|limit| limit.requests_per_unit),
                remaining: answer.remaining,
                reset: answer.reset,
            })
            .collect();
        (decision.over_limit, answers)
    }

    fn hit(&self, domain: &str, pairs: &[(&str, &str)]) -> Answer {
        let request = Request::new(domain, [Descriptor::from_pairs(pairs)]);
        self.ask(&request).1.remove(0)
    }

    fn advance_secs(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
}

fn per_key_minute(limit: u32) -> Harness {
    Harness::new(vec![domain(
        "api",
        vec![(
            "api_key",
            None,
            leaf(rule("api_key", vec![per(limit, TimeUnit::Minute)])),
        )],
    )])
}

#[test]
fn admits_up_to_the_limit_then_rejects() {
    let harness = per_key_minute(3);
    let remaining: Vec<u32> = (0..3)
        .map(|_| harness.hit("api", &[("api_key", "k")]).remaining)
        .collect();
    assert_eq!(remaining, [2, 1, 0]);
    let rejected = harness.hit("api", &[("api_key", "k")]);
    assert!(rejected.over);
    assert_eq!(rejected.limit, Some(3));
    assert_eq!(rejected.remaining, 0);
}

#[test]
fn default_rules_keep_one_counter_per_value() {
    let harness = per_key_minute(1);
    assert!(!harness.hit("api", &[("api_key", "a")]).over);
    assert!(!harness.hit("api", &[("api_key", "b")]).over);
    assert!(harness.hit("api", &[("api_key", "a")]).over);
}

#[test]
fn pattern_rules_keep_one_counter_per_value() {
    let harness = Harness::new(vec![domain(
        "api",
        vec![(
            "path",
            Some("/users/*"),
            leaf(rule("path_/users/*", vec![per(1, TimeUnit::Minute)])),
        )],
    )]);
    assert!(!harness.hit("api", &[("path", "/users/1")]).over);
    assert!(!harness.hit("api", &[("path", "/users/2")]).over);
    assert!(harness.hit("api", &[("path", "/users/1")]).over);
    assert_eq!(harness.hit("api", &[("path", "/teams/1")]).limit, None);
}

#[test]
fn last_second_of_a_window_and_first_of_the_next() {
    let harness = per_key_minute(1);
    harness.advance_secs(59);
    let last = harness.hit("api", &[("api_key", "k")]);
    assert_eq!(last.reset, Some(Duration::from_secs(1)));
    assert!(harness.hit("api", &[("api_key", "k")]).over);
    harness.advance_secs(1);
    let first = harness.hit("api", &[("api_key", "k")]);
    assert!(!first.over, "a new window starts on the minute");
    assert_eq!(first.reset, Some(Duration::from_secs(60)));
}

#[test]
fn multiplier_windows_span_several_units() {
    let ten_minutes = Window::new(TimeUnit::Minute, NonZeroU32::new(10).unwrap());
    let harness = Harness::new(vec![domain(
        "auth",
        vec![(
            "email",
            None,
            leaf(rule("email", vec![Limit::new(5, ten_minutes)])),
        )],
    )]);
    // The harness starts at minute 1000, a multiple of 10: a window boundary.
    for _ in 0..5 {
        assert!(!harness.hit("auth", &[("email", "a@b.c")]).over);
    }
    harness.advance_secs(9 * MINUTE + 59);
    let late = harness.hit("auth", &[("email", "a@b.c")]);
    assert!(late.over);
    assert_eq!(late.reset, Some(Duration::from_secs(1)));
    harness.advance_secs(1);
    assert!(!harness.hit("auth", &[("email", "a@b.c")]).over);
}

#[test]
fn month_and_year_windows_roll_on_epoch_multiples() {
    for unit in [TimeUnit::Month, TimeUnit::Year] {
        let harness = Harness::new(vec![domain(
            "api",
            vec![("k", None, leaf(rule("k", vec![per(1, unit)])))],
        )]);
        let length = unit.seconds();
        harness.clock.set(Timestamp::from_secs(7 * length - 1));
        assert!(!harness.hit("api", &[("k", "v")]).over);
        assert!(harness.hit("api", &[("k", "v")]).over);
        harness.advance_secs(1);
        let fresh = harness.hit("api", &[("k", "v")]);
        assert!(!fresh.over, "{unit:?} window rolls at its epoch multiple");
        assert_eq!(fresh.reset, Some(Duration::from_secs(length)));
    }
}

#[test]
fn sliding_window_counts_the_weighted_previous_window() {
    let limit = per(10, TimeUnit::Minute).with_algorithm(Algorithm::SlidingWindow);
    let harness = Harness::new(vec![domain(
        "api",
        vec![("k", None, leaf(rule("k", vec![limit])))],
    )]);
    for _ in 0..10 {
        assert!(!harness.hit("api", &[("k", "v")]).over);
    }
    // 30 s into the next window, half of the previous 10 still count.
    harness.advance_secs(MINUTE + 30);
    let answers: Vec<bool> = (0..6)
        .map(|_| harness.hit("api", &[("k", "v")]).over)
        .collect();
    assert_eq!(answers, [false, false, false, false, false, true]);
}

#[test]
fn hits_addend_weights_and_zero_hit_checks() {
    let harness = per_key_minute(10);
    let request = |hits: Option<u64>| {
        let mut descriptor = Descriptor::from_pairs(&[("api_key", "k")]);
        descriptor.hits = hits;
        let mut request = Request::new("api", [descriptor]);
        request.hits = 4;
        request
    };
    assert_eq!(
        harness.ask(&request(None)).1[0].remaining,
        6,
        "request hits apply"
    );
    assert_eq!(
        harness.ask(&request(Some(0))).1[0].remaining,
        6,
        "0 reads only"
    );
    assert_eq!(harness.ask(&request(Some(6))).1[0].remaining, 0);
    assert!(harness.ask(&request(Some(1))).1[0].over);
    let check = harness.ask(&request(Some(0))).1.remove(0);
    assert!(check.over, "a zero-hit check reports the current state");
}

#[test]
fn a_cost_above_the_limit_is_rejected_without_overflow() {
    let harness = per_key_minute(u32::MAX);
    let mut descriptor = Descriptor::from_pairs(&[("api_key", "k")]);
    descriptor.hits = Some(u64::MAX);
    let (over, answers) = harness.ask(&Request::new("api", [descriptor.clone()]));
    assert!(over);
    assert_eq!(answers[0].remaining, 0);
    assert!(harness.ask(&Request::new("api", [descriptor])).0);
}

#[test]
fn unlimited_rules_are_never_counted() {
    let unlimited = Rule {
        key_path: "key_internal".into(),
        policy: Policy::Unlimited,
        shadow_mode: false,
        detailed_metric: false,
        quota_mode: false,
        over_limit_body: None,
    };
    let harness = Harness::new(vec![domain(
        "api",
        vec![("key", Some("internal"), leaf(unlimited))],
    )]);
    for _ in 0..3 {
        let answer = harness.hit("api", &[("key", "internal")]);
        assert_eq!(
            (answer.over, answer.limit, answer.remaining),
            (false, None, u32::MAX)
        );
    }
    assert_eq!(harness.store.stats().keys, 0);
}

#[test]
fn unmatched_descriptors_and_unknown_domains_are_ok_without_a_limit() {
    let harness = per_key_minute(1);
    let unmatched = harness.hit("api", &[("user", "u")]);
    assert_eq!(
        unmatched,
        Answer {
            over: false,
            limit: None,
            remaining: 0,
            reset: None
        }
    );
    assert_eq!(harness.hit("other", &[("api_key", "k")]), unmatched);
}

#[test]
fn shadow_mode_reports_but_never_rejects() {
    let mut shadow = rule("api_key", vec![per(1, TimeUnit::Minute)]);
    shadow.shadow_mode = true;
    let harness = Harness::new(vec![domain("api", vec![("api_key", None, leaf(shadow))])]);
    harness.hit("api", &[("api_key", "k")]);
    let request = Request::new("api", [Descriptor::from_pairs(&[("api_key", "k")])]);
    let plan = plan(&harness.rules, &request, harness.clock.now());
    let decision = conclude(&plan, &harness.store.apply_plan(&plan));
    let answer = &decision.descriptors[0];
    assert!(!decision.over_limit);
    assert!(!answer.over_limit && answer.shadow_over_limit);
    assert_eq!(answer.limit.map(|limit| limit.requests_per_unit), Some(1));
    assert_eq!(answer.remaining, 0);
}

#[test]
fn statuses_follow_request_order_and_any_over_limit_fails_the_request() {
    let harness = Harness::new(vec![domain(
        "api",
        vec![
            ("a", None, leaf(rule("a", vec![per(5, TimeUnit::Minute)]))),
            ("b", None, leaf(rule("b", vec![per(0, TimeUnit::Minute)]))),
        ],
    )]);
    let request = Request::new(
        "api",
        [
            Descriptor::from_pairs(&[("b", "1")]),
            Descriptor::from_pairs(&[("x", "1")]),
            Descriptor::from_pairs(&[("a", "1")]),
        ],
    );
    let (over, answers) = harness.ask(&request);
    assert!(over);
    assert_eq!(
        answers
            .iter()
            .map(|a| (a.over, a.limit))
            .collect::<Vec<_>>(),
        [(true, Some(0)), (false, None), (false, Some(5))]
    );
}

#[test]
fn replaces_drops_the_named_limit_within_the_request() {
    let general = per(1, TimeUnit::Minute).named("general");
    let premium = per(100, TimeUnit::Minute)
        .named("premium")
        .replacing(&["general"]);
    let harness = Harness::new(vec![domain(
        "api",
        vec![
            ("client", None, leaf(rule("client", vec![general]))),
            (
                "tier",
                Some("premium"),
                leaf(rule("tier_premium", vec![premium])),
            ),
        ],
    )]);
    let both = Request::new(
        "api",
        [
            Descriptor::from_pairs(&[("client", "c")]),
            Descriptor::from_pairs(&[("tier", "premium")]),
        ],
    );
    for _ in 0..3 {
        let (over, answers) = harness.ask(&both);
        assert!(!over);
        assert_eq!(answers[0].limit, None, "replaced limit is not reported");
        assert_eq!(answers[1].limit, Some(100));
    }
    // Alone, the general limit applies and was never counted while replaced.
    assert!(!harness.hit("api", &[("client", "c")]).over);
    assert!(harness.hit("api", &[("client", "c")]).over);
}

#[test]
fn several_limits_report_the_exceeded_or_the_tightest_one() {
    let plan_limits = vec![per(50, TimeUnit::Minute), per(60, TimeUnit::Month)];
    let harness = Harness::new(vec![domain(
        "api",
        vec![("plan", Some("pro"), leaf(rule("plan_pro", plan_limits)))],
    )]);
    let first = harness.hit("api", &[("plan", "pro")]);
    assert_eq!((first.limit, first.remaining), (Some(50), 49));
    for _ in 0..49 {
        harness.hit("api", &[("plan", "pro")]);
    }
    assert!(harness.hit("api", &[("plan", "pro")]).over);
    harness.advance_secs(MINUTE);
    // The minute window reset; the month has 9 left, which is now the tightest.
    let next = harness.hit("api", &[("plan", "pro")]);
    assert_eq!(
        (next.over, next.limit, next.remaining),
        (false, Some(60), 8)
    );
    for _ in 0..8 {
        harness.hit("api", &[("plan", "pro")]);
    }
    let spent = harness.hit("api", &[("plan", "pro")]);
    assert_eq!((spent.over, spent.limit), (true, Some(60)));
}

#[test]
fn changing_a_threshold_keeps_the_count_spent_in_the_window() {
    let mut harness = per_key_minute(3);
    for _ in 0..3 {
        harness.hit("api", &[("api_key", "k")]);
    }
    harness.rules = per_key_minute(5).rules;
    let answer = harness.hit("api", &[("api_key", "k")]);
    assert_eq!(
        (answer.over, answer.limit, answer.remaining),
        (false, Some(5), 1)
    );
}

#[test]
fn domains_keep_separate_counters() {
    let harness = Harness::new(vec![
        domain(
            "a",
            vec![("k", None, leaf(rule("k", vec![per(1, TimeUnit::Minute)])))],
        ),
        domain(
            "b",
            vec![("k", None, leaf(rule("k", vec![per(1, TimeUnit::Minute)])))],
        ),
    ]);
    assert!(!harness.hit("a", &[("k", "v")]).over);
    assert!(!harness.hit("b", &[("k", "v")]).over);
    assert!(harness.hit("a", &[("k", "v")]).over);
}

#[test]
fn swept_counters_start_afresh() {
    let harness = per_key_minute(1);
    harness.hit("api", &[("api_key", "k")]);
    assert_eq!(
        harness.store.sweep(harness.clock.now()),
        0,
        "current window is live"
    );
    harness.advance_secs(2 * MINUTE);
    assert_eq!(harness.store.sweep(harness.clock.now()), 1);
    assert_eq!(harness.store.stats().keys, 0);
    assert!(!harness.hit("api", &[("api_key", "k")]).over);
}

#[test]
fn soft_limits_are_reported_but_never_enforced() {
    let limits = vec![per(2, TimeUnit::Minute).soft(), per(100, TimeUnit::Hour)];
    let harness = Harness::new(vec![domain(
        "api",
        vec![("k", None, leaf(rule("k", limits)))],
    )]);
    harness.hit("api", &[("k", "v")]);
    harness.hit("api", &[("k", "v")]);
    let request = Request::new("api", [Descriptor::from_pairs(&[("k", "v")])]);
    let plan = plan(&harness.rules, &request, harness.clock.now());
    let decision = conclude(&plan, &harness.store.apply_plan(&plan));
    let answer = &decision.descriptors[0];
    assert!(!decision.over_limit && answer.soft_over_limit);
    assert_eq!(answer.limit.map(|limit| limit.requests_per_unit), Some(2));
    assert_eq!(
        answer.remaining, 0,
        "the exceeded soft limit is the tightest one"
    );
}

#[test]
fn rejected_hits_can_be_given_back() {
    let counting = per_key_minute(2);
    let refunding = Harness::new(vec![
        domain(
            "api",
            vec![(
                "api_key",
                None,
                leaf(rule("api_key", vec![per(2, TimeUnit::Minute)])),
            )],
        )
        .with_count_rejected_hits(false),
    ]);
    for harness in [&counting, &refunding] {
        for _ in 0..5 {
            harness.hit("api", &[("api_key", "k")]);
        }
    }
    let check = |harness: &Harness| {
        let request = Request::new(
            "api",
            [Descriptor::from_pairs(&[("api_key", "k")]).with_hits(0)],
        );
        let plan = plan(&harness.rules, &request, harness.clock.now());
        harness.store.apply_plan(&plan)[0].current
    };
    assert_eq!(
        check(&counting),
        5,
        "envoyproxy/ratelimit semantics count every hit"
    );
    assert_eq!(check(&refunding), 2, "only admitted hits stay counted");
}

#[test]
fn a_rejected_request_gives_back_every_descriptor_it_charged() {
    let harness = Harness::new(vec![
        domain(
            "api",
            vec![
                ("a", None, leaf(rule("a", vec![per(10, TimeUnit::Minute)]))),
                ("b", None, leaf(rule("b", vec![per(1, TimeUnit::Minute)]))),
            ],
        )
        .with_count_rejected_hits(false),
    ]);
    let both = Request::new(
        "api",
        [
            Descriptor::from_pairs(&[("a", "1")]),
            Descriptor::from_pairs(&[("b", "1")]),
        ],
    );
    assert!(!harness.ask(&both).0);
    for _ in 0..3 {
        assert!(harness.ask(&both).0);
    }
    assert_eq!(
        harness.hit("api", &[("a", "1")]).remaining,
        8,
        "a kept only the admitted hit"
    );
}

#[test]
fn caller_supplied_limits_apply_only_where_allowed() {
    let override_to = |requests| LimitOverride {
        requests_per_unit: requests,
        unit: TimeUnit::Hour,
    };
    let open = per_key_minute(100);
    let closed = Harness::new(vec![
        domain(
            "api",
            vec![(
                "api_key",
                None,
                leaf(rule("api_key", vec![per(100, TimeUnit::Minute)])),
            )],
        )
        .with_limit_overrides(false),
    ]);
    let request = Request::new(
        "api",
        [Descriptor::from_pairs(&[("api_key", "k")]).with_limit_override(override_to(1))],
    );
    assert!(!open.ask(&request).0);
    let (over, answers) = open.ask(&request);
    assert!(over, "the override's 1/hour applies");
    assert_eq!(
        answers[0].reset.map(|reset| reset.as_secs() <= 3_600),
        Some(true)
    );
    assert!(!closed.ask(&request).0);
    assert!(
        !closed.ask(&request).0,
        "a closed domain ignores the override"
    );
    let unmatched = Request::new(
        "api",
        [Descriptor::from_pairs(&[("user", "u")]).with_limit_override(override_to(0))],
    );
    assert!(
        open.ask(&unmatched).0,
        "an override applies even without a matching rule"
    );
}

#[test]
fn calendar_months_reset_on_the_first_of_the_month() {
    let calendar_month = Window::calendar(TimeUnit::Month).unwrap();
    let harness = Harness::new(vec![domain(
        "api",
        vec![(
            "k",
            None,
            leaf(rule("k", vec![Limit::new(2, calendar_month)])),
        )],
    )]);
    // 2024-02-28T12:00:00Z; 2024 is a leap year, so February ends on the 29th.
    let feb_28_noon = 1_709_121_600;
    harness.clock.set(Timestamp::from_secs(feb_28_noon));
    harness.hit("api", &[("k", "v")]);
    let second = harness.hit("api", &[("k", "v")]);
    assert_eq!(second.reset, Some(Duration::from_secs(36 * 3_600)));
    harness.advance_secs(24 * 3_600);
    assert!(
        harness.hit("api", &[("k", "v")]).over,
        "29 February is still February"
    );
    harness.advance_secs(12 * 3_600);
    assert!(
        !harness.hit("api", &[("k", "v")]).over,
        "1 March starts a new month"
    );
}

proptest! {
    /// For any interleaving of time steps and hit sizes, no epoch-aligned window admits more
    /// than the limit, for fixed and sliding windows alike.
    #[test]
    fn no_window_admits_more_than_the_limit(
        limit in 0u32..20,
        sliding in any::<bool>(),
        steps in proptest::collection::vec((0u64..40_000, 1u64..4), 1..200),
    ) {
        let algorithm = if sliding { Algorithm::SlidingWindow } else { Algorithm::FixedWindow };
        let limit_rule = per(limit, TimeUnit::Minute).with_algorithm(algorithm);
        let harness = Harness::new(vec![domain("api", vec![("k", None, leaf(rule("k", vec![limit_rule])))])]);
        let mut admitted_per_window = std::collections::HashMap::<u64, u64>::new();
        for (advance_millis, hits) in steps {
            harness.clock.advance(Duration::from_millis(advance_millis));
            let mut descriptor = Descriptor::from_pairs(&[("k", "v")]);
            descriptor.hits = Some(hits);
            let (over, _) = harness.ask(&Request::new("api", [descriptor]));
            if !over {
                *admitted_per_window.entry(harness.clock.now().as_secs() / MINUTE).or_default() += hits;
            }
        }
        for (window, admitted) in admitted_per_window {
            prop_assert!(admitted <= u64::from(limit), "window {} admitted {} > {}", window, admitted, limit);
        }
    }
}

proptest! {
    /// Retry-After is exact for every algorithm: a rejected client that waits the reported
    /// reset (and sends nothing meanwhile) gets its next single hit through.
    #[test]
    fn waiting_the_reported_reset_always_admits(
        algorithm in prop_oneof![
            Just(Algorithm::FixedWindow),
            Just(Algorithm::SlidingWindow),
            Just(Algorithm::TokenBucket),
        ],
        limit in 1u32..15,
        burst in 1u32..15,
        steps in proptest::collection::vec((0u64..30_000, 1usize..25), 1..40),
    ) {
        let mut limit_rule = per(limit, TimeUnit::Minute).with_algorithm(algorithm);
        if algorithm == Algorithm::TokenBucket {
            limit_rule = limit_rule.with_burst(NonZeroU32::new(burst).unwrap());
        }
        let harness = Harness::new(vec![domain("api", vec![("k", None, leaf(rule("k", vec![limit_rule])))])]);
        for (advance_millis, requests) in steps {
            harness.clock.advance(Duration::from_millis(advance_millis));
            for _ in 0..requests {
                let answer = harness.hit("api", &[("k", "v")]);
                if answer.over {
                    let wait = answer.reset.expect("a limited answer has a reset");
                    harness.clock.advance(wait);
                    let retried = harness.hit("api", &[("k", "v")]);
                    prop_assert!(!retried.over, "{:?} waited {:?} and was still refused", algorithm, wait);
                }
            }
        }
    }
}

#[test]
fn quota_mode_descriptors_fail_the_request_only_together() {
    let quota = |path: &str| Rule {
        quota_mode: true,
        ..rule(path, vec![per(1, TimeUnit::Minute)])
    };
    let harness = Harness::new(vec![domain(
        "api",
        vec![
            ("daily", None, leaf(quota("daily"))),
            ("monthly", None, leaf(quota("monthly"))),
            (
                "ordinary",
                None,
                leaf(rule("ordinary", vec![per(1, TimeUnit::Minute)])),
            ),
        ],
    )]);
    let request = |pairs: &[(&'static str, &'static str)]| {
        Request::new(
            "api",
            pairs
                .iter()
                .map(|pair| Descriptor::from_pairs(std::slice::from_ref(pair))),
        )
    };
    assert!(!harness.ask(&request(&[("daily", "a"), ("monthly", "a")])).0);
    // Only the daily quota is spent: the monthly one still carries the request.
    let (over, answers) = harness.ask(&request(&[("daily", "a"), ("monthly", "b")]));
    assert!(!over);
    assert!(
        answers[0].over && !answers[1].over,
        "the spent quota still reports OVER_LIMIT"
    );
    // Both spent: rejected.
    assert!(harness.ask(&request(&[("daily", "a"), ("monthly", "a")])).0);
    // An ordinary descriptor over its limit rejects whatever the quotas say.
    harness.hit("api", &[("ordinary", "x")]);
    assert!(
        harness
            .ask(&request(&[("daily", "c"), ("ordinary", "x")]))
            .0
    );
}
