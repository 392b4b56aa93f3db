//! `algorithm: distinct` on a manual clock with the memory store: against a model set, and
//! with a ban on the outer key ("a key used from too many addresses is banned").

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::clock::Timestamp;
use crate::store::MemoryStore;

const HOUR_START: u64 = 500_000 * 3_600;

fn key_ips(limit: Limit) -> RuleSet {
    RuleSet::per_value_pair("d", "key", "ip", Rule::limited("key.ip", [limit]))
}

fn per_hour(limit: u32) -> Limit {
    Limit::new(limit, Window::of(TimeUnit::Hour)).with_algorithm(Algorithm::Distinct)
}

/// One hit: (over, banned, used).
fn hit(
    rules: &RuleSet,
    store: &MemoryStore,
    key: &str,
    ip: &str,
    now: Timestamp,
) -> (bool, bool, u64) {
    let request = Request::new("d", [Descriptor::from_pairs(&[("key", key), ("ip", ip)])]);
    let plan = plan(rules, &request, now);
    let readings = store.apply_plan(&plan);
    let decision = conclude(&plan, &readings);
    if let Some(strikes) = plan.strikes(&request, &decision) {
        for ban in strikes.bans_due(&store.apply_plan(&strikes)) {
            store.keep_ban(&ban, now);
        }
    }
    let answer = &decision.descriptors[0];
    let used = answer
        .checked
        .first()
        .map_or(0, |(_, assessment)| assessment.used);
    (answer.over_limit, answer.banned_until.is_some(), used)
}

proptest! {
    /// Within one window: a known value always passes, a new one passes only while fewer than
    /// the limit are known, and the count is exactly the admitted set.
    #[test]
    fn distinct_counts_match_a_model_set(
        limit in 0u32..6,
        ips in prop::collection::vec(0u8..10, 1..80),
    ) {
        let rules = key_ips(per_hour(limit));
        let store = MemoryStore::new();
        let now = Timestamp::from_secs(HOUR_START + 10);
        let mut admitted = BTreeSet::new();
        for ip in ips {
            let known = admitted.contains(&ip);
            let expect_over = !known && admitted.len() >= limit as usize;
            if !expect_over {
                admitted.insert(ip);
            }
            let (over, _, used) = hit(&rules, &store, "K", &ip.to_string(), now);
            prop_assert_eq!(over, expect_over, "ip {}", ip);
            prop_assert_eq!(used, admitted.len() as u64);
        }
    }
}

#[test]
fn a_key_used_from_too_many_addresses_is_banned() {
    let ban = BanPolicy::new(
        "key",
        NonZeroU32::MIN,
        Window::of(TimeUnit::Day),
        Duration::from_secs(600),
    );
    let rules = key_ips(per_hour(2).with_ban(ban));
    let store = MemoryStore::new();
    let now = Timestamp::from_secs(HOUR_START);
    assert_eq!(hit(&rules, &store, "K", "1.1.1.1", now), (false, false, 1));
    assert_eq!(hit(&rules, &store, "K", "2.2.2.2", now), (false, false, 2));
    assert_eq!(
        hit(&rules, &store, "K", "3.3.3.3", now),
        (true, false, 2),
        "a third address"
    );
    let (over, banned, _) = hit(&rules, &store, "K", "1.1.1.1", now);
    assert!(over && banned, "the key is now banned from every address");
    assert!(
        !hit(&rules, &store, "L", "3.3.3.3", now).0,
        "other keys are not"
    );
    let later = now.saturating_add(Duration::from_secs(600));
    assert_eq!(
        hit(&rules, &store, "K", "1.1.1.1", later),
        (false, false, 2),
        "ban over"
    );
}
