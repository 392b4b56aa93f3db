//! Bans on a manual clock: when they start, what a banned request is answered, when they end,
//! and which requests they cover (plan → memory store → conclude → strikes → bans).

use std::num::NonZeroU32;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::clock::{Clock, ManualClock, Timestamp};
use crate::store::MemoryStore;

const HOUR: u64 = 3_600;
/// A whole day since the epoch, so strikes counted in daily windows start a fresh window here.
const DAY_START: u64 = 20_000 * 86_400;

fn ban(key: &str, after: u32, within: Window, seconds: u64) -> BanPolicy {
    BanPolicy::new(
        key,
        NonZeroU32::new(after).unwrap(),
        within,
        Duration::from_secs(seconds),
    )
}

fn day() -> Window {
    Window::of(TimeUnit::Day)
}

/// Domain `auth`: `remote_address` limited to `per_second` a second with `policy`, and
/// `path` (any value) unlimited, so a request can carry the address next to another rule.
fn auth_rules(per_second: u32, policy: BanPolicy, soft: bool) -> RuleSet {
    let mut limit = Limit::new(per_second, Window::of(TimeUnit::Second)).with_ban(policy);
    limit.soft = soft;
    let mut root = Children::default();
    root.insert_default(
        "remote_address",
        Node::leaf(Rule::limited("remote_address", [limit])),
    );
    let mut open = Rule::limited("path", []);
    open.policy = Policy::Unlimited;
    root.insert_default("path", Node::leaf(open));
    RuleSet::new([DomainRules::new("auth", root)])
}

/// The engine, a memory store and the ban steps a server runs after each answer.
struct Harness {
    rules: RuleSet,
    store: MemoryStore,
    clock: ManualClock,
}

impl Harness {
    fn new(rules: RuleSet) -> Self {
        Self {
            rules,
            store: MemoryStore::new(),
            clock: ManualClock::new(Timestamp::from_secs(DAY_START)),
        }
    }

    /// Asks once; returns the decision's (over, banned_until, reset) per descriptor.
    fn ask(&self, request: &Request<'_>) -> Vec<(bool, Option<Timestamp>, Option<Duration>)> {
        let now = self.clock.now();
        let plan = plan(&self.rules, request, now);
        let readings = self.store.apply_plan(&plan);
        let decision = conclude(&plan, &readings);
        if let Some(strikes) = plan.strikes(request, &decision) {
            let counted = self.store.apply_plan(&strikes);
            for ban in strikes.bans_due(&counted) {
                assert!(self.store.keep_ban(&ban, now));
            }
        }
        decision
            .descriptors
            .iter()
            .map(|answer| (answer.over_limit, answer.banned_until, answer.reset))
            .collect()
    }

    fn from(&self, address: &str) -> (bool, Option<Timestamp>, Option<Duration>) {
        let request = Request::new(
            "auth",
            [Descriptor::from_pairs(&[("remote_address", address)])],
        );
        self.ask(&request)[0]
    }

    fn advance(&self, seconds: u64) {
        self.clock.advance(Duration::from_secs(seconds));
    }
}

#[test]
fn the_third_excess_bans_for_exactly_the_ban_duration() {
    let harness = Harness::new(auth_rules(1, ban("remote_address", 3, day(), HOUR), false));
    for excess in 1..=3u64 {
        assert!(
            !harness.from("10.0.0.1").0,
            "first hit of second {excess} admitted"
        );
        let (over, banned, _) = harness.from("10.0.0.1");
        assert!(over, "second hit of the second is over the limit");
        if excess < 3 {
            assert_eq!(banned, None, "excess {excess} does not ban yet");
        }
        harness.advance(1);
    }
    let started = Timestamp::from_secs(DAY_START + 2);
    let until = started.saturating_add(Duration::from_secs(HOUR));
    // A fresh second, under quota: still refused, with the time left on the ban.
    let (over, banned, reset) = harness.from("10.0.0.1");
    assert!(over);
    assert_eq!(banned, Some(until));
    assert_eq!(reset, Some(Duration::from_secs(HOUR - 1)));
    assert!(
        !harness.from("10.0.0.2").0,
        "other addresses are not banned"
    );
    // Every request in the domain carrying the address is refused, whatever its own rule.
    let request = Request::new(
        "auth",
        [
            Descriptor::from_pairs(&[("path", "/home")]),
            Descriptor::from_pairs(&[("remote_address", "10.0.0.1"), ("path", "/x")]),
        ],
    );
    let answers = harness.ask(&request);
    assert!(!answers[0].0, "the path descriptor carries no banned value");
    assert!(answers[1].0 && answers[1].1 == Some(until), "{answers:?}");
    harness
        .clock
        .set(Timestamp::from_nanos(until.as_nanos() - 1));
    let (over, _, reset) = harness.from("10.0.0.1");
    assert!(over, "one nanosecond before the end");
    assert_eq!(reset, Some(Duration::from_nanos(1)));
    harness.clock.set(until);
    assert_eq!(
        harness.from("10.0.0.1"),
        (false, None, Some(Duration::from_secs(1)))
    );
}

#[test]
fn banned_retries_never_extend_the_ban() {
    let harness = Harness::new(auth_rules(1, ban("remote_address", 1, day(), 60), false));
    harness.from("a");
    assert_eq!(
        harness.from("a").1,
        None,
        "the excess itself is refused by the limit"
    );
    let until = Timestamp::from_secs(DAY_START + 60);
    assert_eq!(harness.from("a").1, Some(until), "and has started the ban");
    for _ in 0..59 {
        harness.advance(1);
        for _ in 0..5 {
            assert_eq!(harness.from("a").1, Some(until));
        }
    }
    harness.advance(1);
    assert!(!harness.from("a").0, "the ban ended on time");
}

#[test]
fn a_soft_limit_with_a_ban_only_refuses_once_banned() {
    let harness = Harness::new(auth_rules(1, ban("remote_address", 2, day(), 60), true));
    harness.from("a");
    assert!(!harness.from("a").0, "soft: the excess is allowed");
    let (over, banned, _) = harness.from("a");
    assert!(!over, "the excess that starts the ban is still allowed");
    assert!(banned.is_none());
    assert!(harness.from("a").0, "then the ban refuses");
}

#[test]
fn shadow_rules_never_strike_and_bans_can_target_an_outer_key() {
    let limit = Limit::new(1, Window::of(TimeUnit::Second)).with_ban(ban("api_key", 1, day(), 60));
    let mut rule = Rule::limited("api_key.remote_address", [limit]);
    let per_pair = |rule| RuleSet::per_value_pair("auth", "api_key", "remote_address", rule);
    let harness = Harness::new(per_pair(rule.clone()));
    let from = |address: &str| {
        let request = Request::new(
            "auth",
            [Descriptor::from_pairs(&[
                ("api_key", "K"),
                ("remote_address", address),
            ])],
        );
        harness.ask(&request)[0]
    };
    from("1.1.1.1");
    assert!(from("1.1.1.1").0, "the excess");
    assert!(from("1.1.1.1").1.is_some(), "has banned the key");
    assert!(from("2.2.2.2").0, "the key is banned from every address");
    let other = Request::new("auth", [Descriptor::from_pairs(&[("api_key", "L")])]);
    assert!(!harness.ask(&other)[0].0, "other keys are not");

    rule.shadow_mode = true;
    let shadowed = Harness::new(per_pair(rule));
    for _ in 0..10 {
        let request = Request::new(
            "auth",
            [Descriptor::from_pairs(&[
                ("api_key", "K"),
                ("remote_address", "1.1.1.1"),
            ])],
        );
        assert_eq!(shadowed.ask(&request)[0].1, None, "shadow mode never bans");
    }
}

#[test]
fn domains_without_bans_plan_no_ban_reads() {
    let rules = RuleSet::per_value("d", "k", [Limit::new(1, Window::of(TimeUnit::Second))]);
    let request = Request::new("d", [Descriptor::from_pairs(&[("k", "v")])]);
    let plan = plan(&rules, &request, Timestamp::from_secs(DAY_START));
    assert_eq!(plan.len(), 1);
    assert!(plan.counters().all(|(_, update)| !update.reads_ban));
}

proptest! {
    /// Against a model: every excess of a 1-per-second limit (banned requests still count
    /// hits but strike nothing) is a strike; the `after`-th strike bans for exactly `for`,
    /// every request while banned is refused with the exact time left, none after.
    #[test]
    fn bans_start_and_end_exactly(
        after in 1u32..4,
        seconds in 1u64..30,
        gaps in prop::collection::vec(0u64..1_500, 1..150),
    ) {
        let harness = Harness::new(auth_rules(1, ban("remote_address", after, day(), seconds), false));
        let mut strikes = 0u32;
        let mut banned_until: Option<u64> = None;
        let mut second = u64::MAX;
        let mut in_second = 0u32;
        for gap in gaps {
            harness.clock.advance(Duration::from_millis(gap));
            let now = harness.clock.now().as_nanos();
            if now / 1_000_000_000 != second {
                second = now / 1_000_000_000;
                in_second = 0;
            }
            in_second += 1;
            let (over, banned, reset) = harness.from("a");
            match banned_until.filter(|&until| until > now) {
                Some(until) => {
                    prop_assert!(over);
                    prop_assert_eq!(banned, Some(Timestamp::from_nanos(until)));
                    prop_assert_eq!(reset, Some(Duration::from_nanos(until - now)));
                }
                None => {
                    prop_assert_eq!(banned, None);
                    prop_assert_eq!(over, in_second > 1);
                    if in_second > 1 {
                        strikes += 1;
                        if strikes >= after {
                            banned_until = Some(now + seconds * 1_000_000_000);
                        }
                    }
                }
            }
        }
    }
}
