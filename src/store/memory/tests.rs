//! Tests of the memory store as a whole: racing threads and the sweeper, the key bound and
//! its eviction order, sweeps larger than one pass.

use super::*;
use portable_atomic::Ordering;

/// Threads racing on one key admit exactly the limit, and a sweeper running alongside
/// never loses a hit (every counted hit is in the final count).
#[test]
fn racing_threads_admit_exactly_the_limit() {
    use crate::engine::{self, Descriptor, Limit, Request, RuleSet, TimeUnit, Window};
    use std::sync::atomic::AtomicU64;

    let rules = RuleSet::per_value("d", "k", [Limit::new(100, Window::of(TimeUnit::Hour))]);
    let store = MemoryStore::new();
    let now = Timestamp::from_secs(3_600 * 100);
    // A stale cell from two windows ago: the sweeper may reclaim it while threads rotate it.
    let stale = Request::new("d", [Descriptor::from_pairs(&[("k", "v")])]);
    store.apply_plan(&engine::plan(
        &rules,
        &stale,
        Timestamp::from_secs(3_600 * 98),
    ));
    let admitted = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..500 {
                    let request = Request::new("d", [Descriptor::from_pairs(&[("k", "v")])]);
                    let plan = engine::plan(&rules, &request, now);
                    let decision = engine::conclude(&plan, &store.apply_plan(&plan));
                    if !decision.over_limit {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        scope.spawn(|| {
            for _ in 0..200 {
                store.sweep(now);
            }
        });
    });
    assert_eq!(admitted.load(Ordering::Relaxed), 100);
    let check = Request::new("d", [Descriptor::from_pairs(&[("k", "v")]).with_hits(0)]);
    let plan = engine::plan(&rules, &check, now);
    assert_eq!(
        store.apply_plan(&plan)[0].current,
        2_000,
        "every hit was counted"
    );
}

fn per_hour_rules() -> crate::engine::RuleSet {
    use crate::engine::{Limit, RuleSet, TimeUnit, Window};
    RuleSet::per_value(
        "d",
        "k",
        [Limit::new(1_000_000, Window::of(TimeUnit::Hour))],
    )
}

fn hit(store: &MemoryStore, rules: &crate::engine::RuleSet, value: &str, now: Timestamp) -> u64 {
    use crate::engine::{self, Descriptor, Request};
    let request = Request::new("d", [Descriptor::from_pairs(&[("k", value)])]);
    store.apply_plan(&engine::plan(rules, &request, now))[0].current
}

/// A flood of new keys never takes the store past its bound (a single inserter overshoots
/// by nothing), and a key in steady use is never the one evicted.
#[test]
fn a_key_flood_stays_bounded_and_spares_the_busy_key() {
    let rules = per_hour_rules();
    let store = MemoryStore::with_max_keys(100);
    let start = 3_600 * 1_000;
    for round in 0..2_000u64 {
        let now = Timestamp::from_nanos(start * 1_000_000_000 + round * 1_000_000);
        assert_eq!(
            hit(&store, &rules, "steady", now),
            round + 1,
            "the busy key keeps its count"
        );
        hit(&store, &rules, &format!("attacker-{round}"), now);
        assert!(
            store.stats().keys <= 100,
            "round {round}: {:?}",
            store.stats()
        );
    }
    assert!(store.stats().evictions >= 1_800, "{:?}", store.stats());
}

/// A sweep that empties more cells than one pass takes goes on in further passes until
/// every expired cell is gone, and leaves the live ones.
#[test]
fn a_sweep_larger_than_one_pass_reclaims_everything_expired() {
    let rules = per_hour_rules();
    let store = MemoryStore::new();
    let old = Timestamp::from_secs(3_600 * 1_000);
    let expired = MIN_SWEEP_PASS + MIN_SWEEP_PASS / 2;
    for index in 0..expired {
        hit(&store, &rules, &index.to_string(), old);
    }
    let now = Timestamp::from_secs(3_600 * 1_002);
    hit(&store, &rules, "live", now);
    assert_eq!(store.sweep(now), expired);
    assert_eq!(store.stats().keys, 1);
    assert_eq!(
        hit(&store, &rules, "live", now),
        2,
        "the live cell kept its count"
    );
}

#[test]
fn expired_cells_are_evicted_before_live_ones() {
    let rules = per_hour_rules();
    let store = MemoryStore::with_max_keys(20);
    let old = Timestamp::from_secs(3_600 * 1_000);
    for index in 0..10 {
        hit(&store, &rules, &format!("old-{index}"), old);
    }
    let now = Timestamp::from_secs(3_600 * 1_003);
    for index in 0..10 {
        hit(&store, &rules, &format!("live-{index}"), now);
    }
    hit(&store, &rules, "one-more", now);
    assert_eq!(store.stats().keys, 11, "the ten expired cells made room");
    for index in 0..10 {
        assert_eq!(
            hit(&store, &rules, &format!("live-{index}"), now),
            2,
            "live-{index} kept its count"
        );
    }
}

#[test]
fn reads_and_refunds_of_unknown_keys_store_nothing() {
    use crate::engine::{self, Descriptor, Request};
    let rules = per_hour_rules();
    let store = MemoryStore::new();
    let now = Timestamp::from_secs(3_600 * 1_000);
    let peek = Request::new(
        "d",
        [Descriptor::from_pairs(&[("k", "never-hit")]).with_hits(0)],
    );
    let refund = Request::new("d", [Descriptor::from_pairs(&[("k", "gone")]).refunding()]);
    for request in [peek, refund] {
        let readings = store.apply_plan(&engine::plan(&rules, &request, now));
        assert_eq!(readings[..], [CounterReading::default()]);
    }
    assert_eq!(store.stats().keys, 0, "no empty counter was created");
    assert_eq!(
        hit(&store, &rules, "never-hit", now),
        1,
        "a real hit still counts"
    );
    assert_eq!(store.stats().keys, 1);
}
