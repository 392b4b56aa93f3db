//! Bans, the same on every store: read on the request path in the same call as the counters,
//! started by strikes, ended by the clock, listed and lifted by operators.

use std::num::NonZeroU32;
use std::time::Duration;

use quotad::clock::{Clock, Timestamp};
use quotad::engine::{
    self, Ban, BanPolicy, Descriptor, Limit, Request, RuleSet, TimeUnit, Window, ban_identity,
};
use quotad::store::CounterStore;

use super::store_behaviours::Harness;

/// Key `k` limited to 1 a minute; a single excess bans the value for `seconds`.
fn banning_rules<S>(h: &Harness<S>, seconds: u64) -> RuleSet {
    let policy = BanPolicy::new(
        "k",
        NonZeroU32::MIN,
        Window::of(TimeUnit::Hour),
        Duration::from_secs(seconds),
    );
    let limit = Limit::new(1, Window::of(TimeUnit::Minute)).with_ban(policy);
    RuleSet::per_value(&h.domain, "k", [limit])
}

/// One request for `k=value` as a server runs it, bans included; returns (over, banned_until).
async fn ask<S: CounterStore>(
    h: &Harness<S>,
    rules: &RuleSet,
    value: &str,
) -> (bool, Option<Timestamp>) {
    let now = h.clock.now();
    let request = Request::new(&h.domain, [Descriptor::from_pairs(&[("k", value)])]);
    let plan = engine::plan(rules, &request, now);
    let readings = h.store.apply(&plan).await.expect("store call");
    let decision = engine::conclude(&plan, &readings);
    if let Some(strikes) = plan.strikes(&request, &decision) {
        let counted = h.store.apply(&strikes).await.expect("strikes");
        for ban in strikes.bans_due(&counted) {
            h.store.start_ban(&ban, now).await.expect("start ban");
        }
    }
    let answer = &decision.descriptors[0];
    (answer.over_limit, answer.banned_until)
}

fn ban<S>(h: &Harness<S>, value: &str, until: Timestamp, reason: &str) -> Ban {
    Ban {
        domain: h.domain.clone(),
        key: "k".into(),
        value: value.into(),
        reason: reason.into(),
        until,
    }
}

pub async fn bans_start_on_strikes_and_end_on_the_clock<S: CounterStore>(h: &Harness<S>) {
    let rules = banning_rules(h, 90);
    assert_eq!(ask(h, &rules, "v").await, (false, None));
    assert_eq!(ask(h, &rules, "v").await, (true, None), "the excess");
    let until = h.clock.now().saturating_add(Duration::from_secs(90));
    h.clock.advance(Duration::from_secs(60));
    assert_eq!(
        ask(h, &rules, "v").await,
        (true, Some(until)),
        "a fresh minute, still banned"
    );
    assert_eq!(
        ask(h, &rules, "w").await,
        (false, None),
        "other values pass"
    );
    h.clock.set(Timestamp::from_nanos(until.as_nanos() - 1));
    assert_eq!(
        ask(h, &rules, "v").await,
        (true, Some(until)),
        "to the last nanosecond"
    );
    h.clock.advance(Duration::from_secs(60));
    assert_eq!(
        ask(h, &rules, "v").await,
        (false, None),
        "ended, in a fresh minute"
    );
}

pub async fn bans_are_listed_extended_and_lifted<S: CounterStore>(h: &Harness<S>) {
    let now = h.clock.now();
    let soon = now.saturating_add(Duration::from_secs(60));
    let later = now.saturating_add(Duration::from_secs(600));
    let store = &h.store;
    store
        .start_ban(&ban(h, "a", later, "first"), now)
        .await
        .unwrap();
    store
        .start_ban(&ban(h, "a", soon, "shorter"), now)
        .await
        .unwrap();
    store
        .start_ban(&ban(h, "b", soon, "b's"), now)
        .await
        .unwrap();
    let mut listed: Vec<Ban> = store
        .bans(now)
        .await
        .unwrap()
        .into_iter()
        .filter(|ban| ban.domain == h.domain)
        .collect();
    listed.sort_by(|x, y| x.value.cmp(&y.value));
    assert_eq!(
        listed,
        vec![ban(h, "a", later, "first"), ban(h, "b", soon, "b's")],
        "a shorter ban never shortens a longer one"
    );
    assert!(store.active_bans(now).await.unwrap() >= 2);
    let a = ban_identity(&h.domain, "k", "a");
    assert!(store.lift_ban(&a, now).await.unwrap());
    assert!(!store.lift_ban(&a, now).await.unwrap(), "already lifted");
    let rules = banning_rules(h, 90);
    assert_eq!(
        ask(h, &rules, "a").await,
        (false, None),
        "a lifted value passes"
    );
    let left: Vec<String> = store
        .bans(soon)
        .await
        .unwrap()
        .into_iter()
        .filter(|ban| ban.domain == h.domain)
        .map(|ban| ban.value)
        .collect();
    assert!(left.is_empty(), "b ended at {soon:?}: {left:?}");
}
