//! Concurrency-lease and refund behaviour every counter store must show (run for each backend
//! through `store_behaviours`): acquire up to the maximum, releases that free exactly one and
//! never go below zero, leases forgotten after two TTL generations, exact admission under
//! concurrency, and `is_negative_hits` refunds on windowed limits.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use quotad::clock::Clock;
use quotad::engine::{self, Descriptor, Limit, Request, TimeUnit, Window};
use quotad::store::CounterStore;

use super::store_behaviours::Harness;

/// At most `max` in flight, leases living five minutes (`T0` is a generation boundary).
fn leases(max: u32) -> Limit {
    let five_minutes = Window::new(TimeUnit::Minute, NonZeroU32::new(5).expect("5"));
    Limit::concurrency(max, five_minutes)
}

/// One acquire (`release` false) or release of `value`; `(over_limit, remaining)`.
async fn lease<S: CounterStore>(
    h: &Harness<S>,
    rules: &engine::RuleSet,
    value: &str,
    hits: u64,
    release: bool,
) -> (bool, u32) {
    let mut descriptor = Descriptor::from_pairs(&[("k", value)]).with_hits(hits);
    descriptor.refund = release;
    let request = Request::new(&h.domain, [descriptor]);
    let plan = engine::plan(rules, &request, h.clock.now());
    let readings = h.store.apply(&plan).await.expect("store call");
    let decision = engine::conclude(&plan, &readings);
    let answer = &decision.descriptors[0];
    (answer.over_limit, answer.remaining)
}

pub async fn concurrency_acquires_up_to_the_maximum_and_releases_exactly_one<S: CounterStore>(
    h: &Harness<S>,
) {
    let rules = h.rules(vec![leases(3)]);
    for remaining in (0..3).rev() {
        assert_eq!(lease(h, &rules, "a", 1, false).await, (false, remaining));
    }
    assert_eq!(
        lease(h, &rules, "a", 1, false).await,
        (true, 0),
        "a fourth is over"
    );
    // The rejected acquire stays counted until Envoy's stream-done release for it arrives.
    assert_eq!(
        lease(h, &rules, "a", 1, true).await,
        (false, 0),
        "its release"
    );
    assert_eq!(
        lease(h, &rules, "a", 1, true).await,
        (false, 1),
        "one finished"
    );
    assert_eq!(
        lease(h, &rules, "a", 1, false).await,
        (false, 0),
        "its slot is reused"
    );
    assert_eq!(
        lease(h, &rules, "a", 0, false).await,
        (false, 0),
        "a read takes nothing"
    );
    assert_eq!(
        lease(h, &rules, "b", 1, false).await,
        (false, 2),
        "values count apart"
    );
}

pub async fn concurrency_releases_never_go_below_zero<S: CounterStore>(h: &Harness<S>) {
    let rules = h.rules(vec![leases(2)]);
    assert_eq!(
        lease(h, &rules, "a", 1, true).await,
        (false, 2),
        "a release of a never-acquired slot is OK and frees nothing"
    );
    assert_eq!(lease(h, &rules, "a", 1, false).await, (false, 1));
    assert_eq!(
        lease(h, &rules, "a", 5, true).await,
        (false, 2),
        "clamped at zero"
    );
    assert_eq!(lease(h, &rules, "a", 1, true).await, (false, 2));
    assert_eq!(
        lease(h, &rules, "a", 1, false).await,
        (false, 1),
        "no credit was banked"
    );
    assert_eq!(lease(h, &rules, "a", 1, false).await, (false, 0));
    assert!(lease(h, &rules, "a", 1, false).await.0);
}

pub async fn concurrency_leases_are_forgotten_after_two_generations<S: CounterStore>(
    h: &Harness<S>,
) {
    let rules = h.rules(vec![leases(2)]);
    assert_eq!(lease(h, &rules, "a", 2, false).await, (false, 0));
    h.clock.advance(Duration::from_secs(300));
    assert!(
        lease(h, &rules, "a", 1, false).await.0,
        "one generation later the leases still count"
    );
    // Generation 1 holds that rejected acquire; a release takes the older lease first.
    assert_eq!(lease(h, &rules, "a", 1, true).await, (false, 0));
    assert_eq!(lease(h, &rules, "a", 1, true).await, (false, 1));
    h.clock.advance(Duration::from_secs(300));
    assert_eq!(
        lease(h, &rules, "a", 0, false).await,
        (false, 1),
        "the lost lease of generation 0 is forgotten; generation 1's still counts"
    );
    h.clock.advance(Duration::from_secs(300));
    assert_eq!(
        lease(h, &rules, "a", 0, false).await,
        (false, 2),
        "all forgotten"
    );
}

pub async fn concurrency_admits_exactly_the_maximum_under_concurrency<S: CounterStore>(
    h: &Harness<S>,
) {
    let rules = Arc::new(h.rules(vec![leases(5)]));
    assert_eq!(h.admitted_by_racing_tasks(&rules, 8, 10).await, 5);
    for _ in 0..80 {
        lease(h, &rules, "x", 1, true).await;
    }
    assert_eq!(
        lease(h, &rules, "x", 0, false).await,
        (false, 5),
        "every lease released"
    );
}

/// `is_negative_hits` on a windowed limit gives the hits back, clamped at zero, and is OK.
pub async fn negative_hits_refund_a_window<S: CounterStore>(h: &Harness<S>) {
    let rules = h.rules(vec![Limit::new(5, Window::of(TimeUnit::Minute))]);
    assert_eq!(lease(h, &rules, "a", 5, false).await, (false, 0));
    assert!(lease(h, &rules, "a", 1, false).await.0);
    assert_eq!(
        lease(h, &rules, "a", 4, true).await,
        (false, 3),
        "a refund is never over"
    );
    assert_eq!(
        lease(h, &rules, "a", 99, true).await,
        (false, 5),
        "clamped at zero"
    );
    assert_eq!(lease(h, &rules, "a", 1, false).await, (false, 4));
}
