//! Usage reports from engine decisions: every status, every limit of a rule, and lookups that
//! never change a count, on the memory store and a fake clock.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::engine::{self, Children, Descriptor, DomainRules, Node, Rule, TimeUnit, Window};
use crate::service::{RateLimiter, RequestLimits, shared_rules};
use crate::store::MemoryStore;
use crate::store::broken::BrokenStore;

/// Midnight UTC on 2024-10-04, so minute and calendar-month windows start at whole seconds.
const START: Timestamp = Timestamp::from_secs(1_728_000_000);

fn per_minute(requests: u32) -> Limit {
    Limit::new(requests, Window::of(TimeUnit::Minute))
}

/// `api`: `plan=pro,api_key=*` 5/minute + 100/calendar month, `free` unlimited, `user`
/// 2/minute named `per_user`, `vip` 5/hour replacing `per_user`, `tokens` a bucket.
fn rules() -> RuleSet {
    let mut pro = Children::default();
    let month = Window::calendar(TimeUnit::Month).expect("months have a calendar");
    pro.insert_default(
        "api_key",
        Node::leaf(Rule::limited(
            "plan_pro.api_key",
            [
                per_minute(5).named("pro_per_minute"),
                Limit::new(100, month).named("pro_per_month"),
            ],
        )),
    );
    let mut root = Children::default();
    root.insert_exact(
        "plan",
        "pro",
        Node {
            rule: None,
            children: pro,
        },
    );
    let free = Rule {
        policy: Policy::Unlimited,
        ..Rule::limited("free", [])
    };
    root.insert_default("free", Node::leaf(free));
    root.insert_default(
        "user",
        Node::leaf(Rule::limited("user", [per_minute(2).named("per_user")])),
    );
    let vip = Limit::new(5, Window::of(TimeUnit::Hour)).replacing(&["per_user"]);
    root.insert_default("vip", Node::leaf(Rule::limited("vip", [vip])));
    let bucket = per_minute(60).with_burst(NonZeroU32::new(10).expect("non-zero"));
    root.insert_default("tokens", Node::leaf(Rule::limited("tokens", [bucket])));
    RuleSet::new([DomainRules::new("api", root)])
}

fn query(domain: &str, descriptors: &[&[(&str, &str)]]) -> UsageQuery {
    UsageQuery {
        domain: domain.into(),
        descriptors: descriptors
            .iter()
            .map(|entries| {
                entries
                    .iter()
                    .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                    .collect()
            })
            .collect(),
    }
}

fn reader(store: Arc<MemoryStore>, clock: &ManualClock) -> RateLimiter<MemoryStore, ManualClock> {
    RateLimiter::new(shared_rules(rules()), store, clock.clone())
}

/// Adds one hit to each descriptor, as a ShouldRateLimit call would.
fn consume(store: &MemoryStore, clock: &ManualClock, pairs: &[(&str, &str)], times: usize) {
    let rules = rules();
    for _ in 0..times {
        let request = Request::new("api", [Descriptor::from_pairs(pairs)]);
        store.apply_plan(&engine::plan(&rules, &request, clock.now()));
    }
}

const PRO: &[(&str, &str)] = &[("plan", "pro"), ("api_key", "K")];

#[tokio::test]
async fn every_limit_of_a_rule_is_reported_and_looking_consumes_nothing() {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(START);
    clock.advance(Duration::from_millis(15_500));
    consume(&store, &clock, PRO, 3);
    let reader = reader(store, &clock);
    let first = reader.usage(&query("api", &[PRO])).await.expect("report");
    for _ in 0..5 {
        let again = reader.usage(&query("api", &[PRO])).await.expect("report");
        assert_eq!(again, first, "a lookup changed the counts");
    }
    assert!(first.known_domain);
    assert_eq!(first.at, "2024-10-04T00:00:15.500Z");
    let [descriptor] = first.descriptors.as_slice() else {
        panic!("one descriptor: {first:?}");
    };
    assert_eq!(descriptor.status, RuleStatus::Limited);
    assert_eq!(descriptor.rule.as_deref(), Some("plan_pro.api_key"));
    assert!(!descriptor.exhausted);
    let [minute, month] = descriptor.limits.as_slice() else {
        panic!("two limits: {descriptor:?}");
    };
    assert_eq!(minute.name.as_deref(), Some("pro_per_minute"));
    assert_eq!(
        (minute.limit, minute.used, minute.remaining),
        (5, 3, 2),
        "{minute:?}"
    );
    assert_eq!(minute.reset_seconds, 44.5);
    assert_eq!(minute.reset_at, "2024-10-04T00:01:00Z");
    assert_eq!(
        minute.window,
        WindowUsage {
            unit: "minute",
            multiplier: 1,
            calendar: false,
            seconds: 60
        }
    );
    assert_eq!((month.used, month.remaining), (3, 97));
    assert_eq!(month.reset_at, "2024-11-01T00:00:00Z");
    assert_eq!(month.window.seconds, 31 * 86_400, "October has 31 days");
    assert!(month.window.calendar);
    assert_eq!(month.burst, None);
}

#[tokio::test]
async fn unlimited_unmatched_replaced_and_unknown_say_so() {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(START);
    let reader = reader(store, &clock);
    let descriptors: &[&[(&str, &str)]] = &[
        &[("user", "a")],
        &[("vip", "a")],
        &[("free", "x")],
        &[("nothing", "x")],
    ];
    let report = reader.usage(&query("api", descriptors)).await.unwrap();
    let statuses: Vec<_> = report
        .descriptors
        .iter()
        .map(|descriptor| (descriptor.status, descriptor.rule.as_deref()))
        .collect();
    assert_eq!(
        statuses,
        [
            (RuleStatus::Replaced, Some("user")),
            (RuleStatus::Limited, Some("vip")),
            (RuleStatus::Unlimited, Some("free")),
            (RuleStatus::NoRule, None),
        ]
    );
    let unknown = reader.usage(&query("web", &[PRO])).await.unwrap();
    assert!(!unknown.known_domain);
    assert_eq!(unknown.descriptors[0].status, RuleStatus::NoRule);
    assert!(unknown.descriptors[0].limits.is_empty());
}

#[tokio::test]
async fn token_buckets_show_their_burst_and_the_next_token() {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(START);
    consume(&store, &clock, &[("tokens", "t")], 10);
    let report = reader(store, &clock)
        .usage(&query("api", &[&[("tokens", "t")]]))
        .await
        .unwrap();
    let bucket = &report.descriptors[0].limits[0];
    assert_eq!(bucket.algorithm, "token_bucket");
    assert_eq!((bucket.limit, bucket.burst), (60, Some(10)));
    assert_eq!((bucket.used, bucket.remaining), (10, 0));
    assert_eq!(bucket.reset_seconds, 1.0, "one token a second");
    assert!(report.descriptors[0].exhausted);
}

#[tokio::test]
async fn store_failures_and_invalid_queries_are_errors() {
    let clock = ManualClock::new(START);
    let broken = RateLimiter::new(shared_rules(rules()), Arc::new(BrokenStore), clock);
    assert_eq!(
        broken.usage(&query("api", &[PRO])).await,
        Err(UsageError::Store(StoreError::Unavailable(
            "redis down".into()
        )))
    );
    assert_eq!(
        broken.usage(&query("", &[PRO])).await,
        Err(UsageError::Invalid(InvalidRequest::EmptyDomain))
    );
    let many = vec![PRO; RequestLimits::default().max_descriptors + 1];
    assert!(matches!(
        broken.usage(&query("api", &many)).await,
        Err(UsageError::Invalid(
            InvalidRequest::TooManyDescriptors { .. }
        ))
    ));
}

#[test]
fn times_are_rfc3339_in_utc() {
    assert_eq!(rfc3339(Timestamp::from_secs(0)), "1970-01-01T00:00:00Z");
    assert_eq!(
        rfc3339(Timestamp::from_nanos(1_728_000_000_123_400_000)),
        "2024-10-04T00:00:00.124Z",
        "rounded up"
    );
    assert_eq!(
        rfc3339(Timestamp::from_nanos(1_728_000_059_999_000_001)),
        "2024-10-04T00:01:00Z"
    );
    assert_eq!(
        rfc3339(Timestamp::from_nanos(u64::MAX)),
        "2554-07-21T23:34:33.709Z"
    );
}
