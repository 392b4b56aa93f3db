//! The behaviour every counter store must show, written once against `CounterStore` and run by
//! `tests/store_suite.rs` for each backend. Expectations are absolute numbers, so every store
//! gives the memory store's answers; time moves only through the shared `ManualClock`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use quotad::clock::{Clock, ManualClock, Timestamp};
use quotad::engine::{
    self, Algorithm, CounterReading, Descriptor, Limit, Request, RuleSet, TimeUnit, Window,
};
use quotad::store::redis::counter_key;
use quotad::store::{CounterStore, StoreError};
use redis::cluster_routing::Slot;

pub use super::ban_behaviours::{
    bans_are_listed_extended_and_lifted, bans_start_on_strikes_and_end_on_the_clock,
};
pub use super::bucket_behaviours::{
    token_bucket_admits_the_burst_then_the_rate, token_bucket_is_exact_under_concurrency,
    token_bucket_refunds_a_rejected_request, token_bucket_reports_exactly_when_to_retry,
};
pub use super::concurrency_behaviours::{
    concurrency_acquires_up_to_the_maximum_and_releases_exactly_one,
    concurrency_admits_exactly_the_maximum_under_concurrency,
    concurrency_leases_are_forgotten_after_two_generations,
    concurrency_releases_never_go_below_zero, negative_hits_refund_a_window,
};
pub use super::distinct_behaviours::{
    distinct_values_are_exact_up_to_the_limit, distinct_values_past_the_exact_bound_are_estimated,
};

/// Aligned to minutes, hours, 5-minute and 2-hour windows, so tests can reason about boundaries.
pub const T0: u64 = 1_699_999_200;
/// Where every store saturates a count (the memory store packs 48-bit counts; Redis mirrors it).
pub const COUNT_MAX: u64 = (1 << 48) - 2;

/// One store under test, its clock, and a domain no other test uses.
pub struct Harness<S> {
    pub store: Arc<S>,
    pub clock: ManualClock,
    pub domain: String,
}

impl<S: CounterStore> Harness<S> {
    /// A harness on a fresh clock at `T0`, with a domain unique within this process.
    pub fn new(store: S, clock: ManualClock) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self {
            store: Arc::new(store),
            clock,
            domain: format!("suite{}", NEXT.fetch_add(1, Ordering::Relaxed)),
        }
    }

    /// Rules with one rule, for key `k` with any value, holding `limits`.
    pub fn rules(&self, limits: Vec<Limit>) -> RuleSet {
        rules(&self.domain, limits)
    }

    /// Sends one request of `(value, hits)` descriptors; returns `(over_limit, remaining)` each.
    pub async fn send(&self, rules: &RuleSet, descriptors: &[(&str, u64)]) -> Vec<(bool, u32)> {
        self.try_send(rules, descriptors).await.expect("store call")
    }

    /// Like `send`, but hands back the store's error.
    pub async fn try_send(
        &self,
        rules: &RuleSet,
        descriptors: &[(&str, u64)],
    ) -> Result<Vec<(bool, u32)>, StoreError> {
        let request = self.request(descriptors);
        let plan = engine::plan(rules, &request, self.clock.now());
        let readings = self.store.apply(&plan).await?;
        let decision = engine::conclude(&plan, &readings);
        Ok(decision
            .descriptors
            .iter()
            .map(|answer| (answer.over_limit, answer.remaining))
            .collect())
    }

    /// Sends a one-descriptor request and returns its `(over_limit, remaining)`.
    pub async fn hit(&self, rules: &RuleSet, value: &str, hits: u64) -> (bool, u32) {
        self.send(rules, &[(value, hits)]).await[0]
    }

    /// The raw readings a request gets, one per planned counter.
    pub async fn readings(
        &self,
        rules: &RuleSet,
        descriptors: &[(&str, u64)],
    ) -> Vec<CounterReading> {
        let request = self.request(descriptors);
        let plan = engine::plan(rules, &request, self.clock.now());
        let readings = self.store.apply(&plan).await.expect("store call");
        readings.into_vec()
    }

    /// How many of `tasks` × `per_task` one-hit requests for `k=x`, racing from separate tasks
    /// at the same instant, the store admits under `rules`.
    pub async fn admitted_by_racing_tasks(
        &self,
        rules: &Arc<RuleSet>,
        tasks: usize,
        per_task: usize,
    ) -> u64 {
        let admitted = Arc::new(AtomicU64::new(0));
        let racers: Vec<_> = (0..tasks)
            .map(|_| {
                let (store, rules, admitted) =
                    (self.store.clone(), rules.clone(), admitted.clone());
                let (domain, now) = (self.domain.clone(), self.clock.now());
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        let request =
                            Request::new(&domain, [Descriptor::from_pairs(&[("k", "x")])]);
                        let plan = engine::plan(&rules, &request, now);
                        let readings = store.apply(&plan).await.expect("store call");
                        if !engine::conclude(&plan, &readings).over_limit {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for racer in racers {
            racer.await.expect("task");
        }
        admitted.load(Ordering::Relaxed)
    }

    /// The Redis keys of a request's counters, in plan order.
    pub fn keys(&self, rules: &RuleSet, descriptors: &[(&str, u64)]) -> Vec<Vec<u8>> {
        let request = self.request(descriptors);
        let plan = engine::plan(rules, &request, self.clock.now());
        plan.counters()
            .map(|(identity, _)| counter_key(identity))
            .collect()
    }

    fn request<'a>(&'a self, descriptors: &[(&'a str, u64)]) -> Request<'a> {
        Request::new(
            &self.domain,
            descriptors
                .iter()
                .map(|&(value, hits)| Descriptor::from_pairs(&[("k", value)]).with_hits(hits)),
        )
    }
}

/// Rules for `domain`: key `k` with any value gets `limits`.
pub fn rules(domain: &str, limits: Vec<Limit>) -> RuleSet {
    RuleSet::per_value(domain, "k", limits)
}

fn per(requests: u32, unit: TimeUnit) -> Limit {
    Limit::new(requests, Window::of(unit))
}

fn reading(current: u64, previous: u64) -> CounterReading {
    CounterReading { current, previous }
}

pub async fn fixed_window_limit_is_exact<S: CounterStore>(h: &Harness<S>) {
    let rules = h.rules(vec![per(5, TimeUnit::Minute)]);
    for remaining in (0..5).rev() {
        assert_eq!(h.hit(&rules, "a", 1).await, (false, remaining));
    }
    assert_eq!(h.hit(&rules, "a", 1).await, (true, 0));
    assert_eq!(
        h.hit(&rules, "b", 1).await,
        (false, 4),
        "other values count apart"
    );
}

pub async fn windows_roll_over_on_the_clock<S: CounterStore>(h: &Harness<S>) {
    let rules = h.rules(vec![per(3, TimeUnit::Minute)]);
    h.clock.set(Timestamp::from_secs(T0 + 59));
    assert_eq!(h.hit(&rules, "a", 3).await, (false, 0));
    assert_eq!(h.hit(&rules, "a", 1).await, (true, 0));
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(
        h.hit(&rules, "a", 1).await,
        (false, 2),
        "next window starts fresh"
    );
    // Another replica's clock a hair behind counts into the newest window, not a stale one.
    h.clock
        .set(Timestamp::from_nanos((T0 + 60) * 1_000_000_000 - 1));
    assert_eq!(h.readings(&rules, &[("a", 1)]).await, [reading(2, 0)]);
    h.clock.set(Timestamp::from_secs(T0 + 60 + 180));
    assert_eq!(
        h.hit(&rules, "a", 1).await,
        (false, 2),
        "later windows reset"
    );
}

pub async fn sliding_window_weights_the_previous_window<S: CounterStore>(h: &Harness<S>) {
    let sliding = per(10, TimeUnit::Minute).with_algorithm(Algorithm::SlidingWindow);
    let rules = h.rules(vec![sliding]);
    assert_eq!(h.hit(&rules, "a", 10).await, (false, 0));
    // 15 s into the next window, 45/60 of the previous 10 still count: floor(7.5) = 7.
    h.clock.set(Timestamp::from_secs(T0 + 75));
    assert_eq!(h.hit(&rules, "a", 1).await, (false, 2));
    assert_eq!(h.hit(&rules, "a", 1).await, (false, 1));
    assert_eq!(h.hit(&rules, "a", 1).await, (false, 0));
    assert_eq!(h.hit(&rules, "a", 1).await, (true, 0));
    assert_eq!(h.readings(&rules, &[("a", 0)]).await, [reading(4, 10)]);
    // Two windows on, the first one no longer counts.
    h.clock.set(Timestamp::from_secs(T0 + 150));
    assert_eq!(h.readings(&rules, &[("a", 0)]).await, [reading(0, 4)]);
}

pub async fn multiplier_windows_count_together<S: CounterStore>(h: &Harness<S>) {
    let five_minutes = Window::new(TimeUnit::Minute, 5.try_into().unwrap());
    let two_hours = Window::new(TimeUnit::Hour, 2.try_into().unwrap());
    let rules = h.rules(vec![
        Limit::new(2, five_minutes),
        Limit::new(3, two_hours).with_algorithm(Algorithm::SlidingWindow),
    ]);
    h.clock.set(Timestamp::from_secs(T0));
    assert!(!h.hit(&rules, "a", 1).await.0);
    h.clock.set(Timestamp::from_secs(T0 + 4 * 60));
    assert_eq!(h.hit(&rules, "a", 1).await, (false, 0));
    h.clock.set(Timestamp::from_secs(T0 + 5 * 60 - 1));
    assert!(
        h.hit(&rules, "a", 1).await.0,
        "third hit in one 5-minute window"
    );
    h.clock.set(Timestamp::from_secs(T0 + 5 * 60));
    let counts = h.readings(&rules, &[("a", 1)]).await;
    assert_eq!(counts, [reading(1, 0), reading(4, 0)]);
    // Every unit with a multiplier: one hit per three units.
    for unit in TimeUnit::ALL {
        let window = Window::new(unit, 3.try_into().unwrap());
        let rules = h.rules(vec![Limit::new(1, window)]);
        assert!(!h.hit(&rules, "m", 1).await.0, "{unit:?}");
        assert!(h.hit(&rules, "m", 1).await.0, "{unit:?}");
        h.clock.advance(Duration::from_secs(3 * unit.seconds()));
        assert!(!h.hit(&rules, "m", 1).await.0, "{unit:?} next window");
    }
}

pub async fn zero_hits_read_without_counting<S: CounterStore>(h: &Harness<S>) {
    let sliding = per(2, TimeUnit::Minute).with_algorithm(Algorithm::SlidingWindow);
    let rules = h.rules(vec![sliding]);
    assert_eq!(h.hit(&rules, "a", 0).await, (false, 2));
    assert_eq!(h.hit(&rules, "a", 1).await, (false, 1));
    for _ in 0..3 {
        assert_eq!(h.readings(&rules, &[("a", 0)]).await, [reading(1, 0)]);
    }
    h.clock.advance(Duration::from_secs(60));
    assert_eq!(h.readings(&rules, &[("a", 0)]).await, [reading(0, 1)]);
    // The read rotated nothing: one more window on, the old window is too old to count.
    h.clock.advance(Duration::from_secs(60));
    assert_eq!(h.readings(&rules, &[("a", 0)]).await, [reading(0, 0)]);
}

pub async fn huge_hits_saturate<S: CounterStore>(h: &Harness<S>) {
    let rules = h.rules(vec![per(u32::MAX, TimeUnit::Hour)]);
    assert_eq!(
        h.readings(&rules, &[("a", u64::MAX)]).await,
        [reading(COUNT_MAX, 0)]
    );
    assert_eq!(
        h.readings(&rules, &[("a", u64::MAX)]).await,
        [reading(COUNT_MAX, 0)]
    );
    assert_eq!(
        h.hit(&rules, "a", 1).await,
        (true, 0),
        "saturated, never wrapped"
    );
}

pub async fn counts_survive_a_threshold_change<S: CounterStore>(h: &Harness<S>) {
    let before = h.rules(vec![per(5, TimeUnit::Minute)]);
    assert_eq!(h.hit(&before, "a", 3).await, (false, 2));
    let after = h.rules(vec![per(4, TimeUnit::Minute)]);
    assert_eq!(h.hit(&after, "a", 1).await, (false, 0));
    assert_eq!(h.hit(&after, "a", 1).await, (true, 0));
}

pub async fn several_descriptors_in_one_request<S: CounterStore>(h: &Harness<S>) {
    let rules = h.rules(vec![per(4, TimeUnit::Minute)]);
    let values = ["v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7"];
    let mut descriptors: Vec<(&str, u64)> = values
        .iter()
        .enumerate()
        .map(|(i, value)| (*value, i as u64 % 3 + 1))
        .collect();
    descriptors.push(("v0", 4));
    let slots: std::collections::HashSet<Slot> = h
        .keys(&rules, &descriptors)
        .iter()
        .map(Slot::for_key)
        .collect();
    assert!(slots.len() >= 3, "the request spans cluster slots");
    let answers = h.send(&rules, &descriptors).await;
    let expected = [
        (false, 3),
        (false, 2),
        (false, 1),
        (false, 3),
        (false, 2),
        (false, 1),
        (false, 3),
        (false, 2),
        (true, 0), // v0 again, after its first hit in the same request: 1 + 4 > 4
    ];
    assert_eq!(answers, expected);
}

pub async fn concurrent_tasks_admit_exactly_the_limit<S: CounterStore>(h: &Harness<S>) {
    let rules = Arc::new(h.rules(vec![per(100, TimeUnit::Hour)]));
    assert_eq!(h.admitted_by_racing_tasks(&rules, 8, 50).await, 100);
    assert_eq!(h.readings(&rules, &[("x", 0)]).await, [reading(400, 0)]);
}

pub async fn calendar_windows_follow_the_utc_calendar<S: CounterStore>(h: &Harness<S>) {
    let month = Window::calendar(TimeUnit::Month).expect("calendar month");
    let rules = h.rules(vec![Limit::new(1, month)]);
    // 2023-11-30 23:59:59 UTC, then 2023-12-01 00:00:00 UTC.
    h.clock.set(Timestamp::from_secs(1_701_388_799));
    assert!(!h.hit(&rules, "a", 1).await.0);
    assert!(h.hit(&rules, "a", 1).await.0);
    h.clock.set(Timestamp::from_secs(1_701_388_800));
    assert!(!h.hit(&rules, "a", 1).await.0, "a new calendar month");
}

/// A domain that does not count rejected hits gives them back, into the window they went to.
pub async fn refunds_return_rejected_hits_to_their_window<S: CounterStore>(h: &Harness<S>) {
    let sliding = per(10, TimeUnit::Minute).with_algorithm(Algorithm::SlidingWindow);
    let mut root = rules(&h.domain, vec![sliding]);
    let domain = root.domain(&h.domain).expect("domain").clone();
    root = RuleSet::new([domain.with_count_rejected_hits(false)]);
    let at = |secs| Timestamp::from_secs(T0 + secs);
    let request = Request::new(&h.domain, [Descriptor::from_pairs(&[("k", "a")])]);
    let apply = |now: Timestamp, hits: u64| {
        let (store, rules) = (h.store.clone(), &root);
        let request = Request {
            hits,
            ..request.clone()
        };
        async move {
            let plan = engine::plan(rules, &request, now);
            let readings = store.apply(&plan).await.expect("store call");
            let decision = engine::conclude(&plan, &readings);
            (
                decision.over_limit,
                plan.refund_if_rejected(&decision, &readings),
            )
        }
    };
    assert!(!apply(at(59), 10).await.0);
    let (over, refund) = apply(at(59), 1).await;
    assert!(over);
    let refund = refund.expect("a rejected request is refunded");
    // Before the refund lands, the key rotates: 59 s into the next window almost nothing of
    // the previous 11 counts, so this hit is admitted.
    assert!(!apply(at(119), 1).await.0);
    h.store.apply(&refund).await.expect("refund");
    h.clock.set(at(119));
    assert_eq!(h.readings(&root, &[("a", 0)]).await, [reading(1, 10)]);
    // A rejected request in the current window gets its hits back from the current count.
    let refund = apply(at(119), 50).await.1.expect("rejected");
    h.store.apply(&refund).await.expect("refund");
    assert_eq!(h.readings(&root, &[("a", 0)]).await, [reading(1, 10)]);
}
