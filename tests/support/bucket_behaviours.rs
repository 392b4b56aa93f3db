//! Token-bucket behaviour every counter store must show (run for each backend through
//! `store_behaviours`): the burst, the steady rate, refused hits that cost nothing, refunds,
//! and exact admission under concurrency.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use quotad::clock::Clock;
use quotad::engine::{self, Descriptor, Limit, Request, RuleSet, TimeUnit, Window};
use quotad::store::CounterStore;

use super::store_behaviours::{Harness, rules};

/// 60 per minute (one token a second) with room for a burst of `burst`.
fn one_per_second(burst: u32) -> Limit {
    Limit::new(60, Window::of(TimeUnit::Minute)).with_burst(NonZeroU32::new(burst).expect("burst"))
}

pub async fn token_bucket_admits_the_burst_then_the_rate<S: CounterStore>(h: &Harness<S>) {
    let rules = h.rules(vec![one_per_second(5)]);
    for remaining in (0..5).rev() {
        assert_eq!(h.hit(&rules, "a", 1).await, (false, remaining));
    }
    // Refused hits leave the bucket where it was: ten of them do not delay the next token.
    for _ in 0..10 {
        assert_eq!(h.hit(&rules, "a", 1).await, (true, 0));
    }
    h.clock.advance(Duration::from_millis(999));
    assert!(
        h.hit(&rules, "a", 1).await.0,
        "the next token is not there yet"
    );
    h.clock.advance(Duration::from_millis(1));
    assert_eq!(h.hit(&rules, "a", 1).await, (false, 0));
    assert!(h.hit(&rules, "a", 1).await.0);
    h.clock.advance(Duration::from_secs(60));
    assert_eq!(
        h.hit(&rules, "a", 1).await,
        (false, 4),
        "a full bucket again"
    );
    assert!(
        h.hit(&rules, "b", 6).await.0,
        "more than a full bucket never fits"
    );
    assert_eq!(h.hit(&rules, "b", 5).await, (false, 0));
}

pub async fn token_bucket_reports_exactly_when_to_retry<S: CounterStore>(h: &Harness<S>) {
    let rules = h.rules(vec![one_per_second(2)]);
    h.hit(&rules, "a", 2).await;
    let request = Request::new(&h.domain, [Descriptor::from_pairs(&[("k", "a")])]);
    let plan = engine::plan(&rules, &request, h.clock.now());
    let readings = h.store.apply(&plan).await.expect("store call");
    let decision = engine::conclude(&plan, &readings);
    assert!(decision.over_limit);
    let wait = decision.descriptors[0].reset.expect("a reset");
    assert_eq!(wait, Duration::from_secs(1));
    h.clock.advance(wait);
    assert!(
        !h.hit(&rules, "a", 1).await.0,
        "waiting the reported time is enough"
    );
}

pub async fn token_bucket_refunds_a_rejected_request<S: CounterStore>(h: &Harness<S>) {
    let mut limits = rules(&h.domain, vec![one_per_second(3)]);
    let domain = limits.domain(&h.domain).expect("domain").clone();
    limits = RuleSet::new([domain.with_count_rejected_hits(false)]);
    assert_eq!(h.hit(&limits, "a", 2).await, (false, 1));
    // Two descriptors: the bucket for "b" admits, "a" refuses; the request fails, so "b"'s
    // tokens go back.
    let request = Request::new(
        &h.domain,
        [
            Descriptor::from_pairs(&[("k", "b")]).with_hits(3),
            Descriptor::from_pairs(&[("k", "a")]).with_hits(2),
        ],
    );
    let plan = engine::plan(&limits, &request, h.clock.now());
    let readings = h.store.apply(&plan).await.expect("store call");
    let decision = engine::conclude(&plan, &readings);
    assert!(decision.over_limit);
    let refund = plan
        .refund_if_rejected(&decision, &readings)
        .expect("refund");
    assert_eq!(
        refund.len(),
        1,
        "only the bucket that took tokens gives them back"
    );
    h.store.apply(&refund).await.expect("refund");
    assert_eq!(
        h.hit(&limits, "b", 3).await,
        (false, 0),
        "b's bucket is full again"
    );
    assert_eq!(
        h.hit(&limits, "a", 1).await,
        (false, 0),
        "a kept its one token"
    );
}

pub async fn token_bucket_is_exact_under_concurrency<S: CounterStore>(h: &Harness<S>) {
    let rules = Arc::new(h.rules(vec![
        Limit::new(1, Window::of(TimeUnit::Hour)).with_burst(NonZeroU32::new(50).expect("50")),
    ]));
    assert_eq!(h.admitted_by_racing_tasks(&rules, 8, 20).await, 50);
}
