//! Per-rule hit counting, envoyproxy/ratelimit style, without allocating on the request path:
//! the counter handles for every (domain, key path) are registered once per rule set and found
//! by the matched rule's address (one integer hash, no string hashing or comparing per
//! descriptor). The handle map is tied to the `RuleSet` it was built from, so a reload (or anyone
//! swapping the rules) gets a fresh map the first time the new rules are used, and the addresses
//! it holds belong to that live rule set.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use foldhash::fast::RandomState;
use metrics::{Counter, Key, Label, Level, Metadata, Recorder};

use super::names::{
    LABEL_DOMAIN, LABEL_KEY_PATH, RULE_HITS, RULE_NEAR_LIMIT, RULE_OVER_LIMIT, RULE_SHADOW_MODE,
    RULE_WITHIN_LIMIT,
};
use crate::engine::{Children, Decision, DescriptorDecision, Request, Rule, RuleSet};

type FastMap<K, V> = HashMap<K, V, RandomState>;

const METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

/// The share of a limit at which allowed hits also count as `near_limit`, in (0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NearLimitRatio(f64);

/// A near-limit ratio outside (0, 1].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("near-limit ratio must be above 0 and at most 1, got {0}")]
pub struct InvalidRatio(pub f64);

impl NearLimitRatio {
    /// envoyproxy/ratelimit's default: 80% of the limit.
    pub const DEFAULT: Self = Self(0.8);

    /// A validated ratio.
    pub fn new(ratio: f64) -> Result<Self, InvalidRatio> {
        if ratio > 0.0 && ratio <= 1.0 {
            Ok(Self(ratio))
        } else {
            Err(InvalidRatio(ratio))
        }
    }

    /// The ratio as a number.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl Default for NearLimitRatio {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The five counters of one rule.
#[derive(Debug, Clone)]
struct RuleHandles {
    hits: Counter,
    over_limit: Counter,
    near_limit: Counter,
    within_limit: Counter,
    shadow_mode: Counter,
}

impl RuleHandles {
    fn register(recorder: &impl Recorder, domain: &str, key_path: &str) -> Self {
        let labels = [
            Label::new(LABEL_DOMAIN, domain.to_owned()),
            Label::new(LABEL_KEY_PATH, key_path.to_owned()),
        ];
        let counter = |name: &'static str| {
            recorder.register_counter(&Key::from_parts(name, labels.to_vec()), &METADATA)
        };
        Self {
            hits: counter(RULE_HITS),
            over_limit: counter(RULE_OVER_LIMIT),
            near_limit: counter(RULE_NEAR_LIMIT),
            within_limit: counter(RULE_WITHIN_LIMIT),
            shadow_mode: counter(RULE_SHADOW_MODE),
        }
    }

    /// Counts `hits` as envoyproxy/ratelimit does: every hit in `total_hits`, then over or
    /// within the limit; shadow-mode excesses count as over limit and as shadow mode.
    fn record(&self, answer: &DescriptorDecision<'_>, hits: u64, ratio: NearLimitRatio) {
        self.hits.increment(hits);
        if answer.over_limit || answer.shadow_over_limit {
            self.over_limit.increment(hits);
            if answer.shadow_over_limit {
                self.shadow_mode.increment(hits);
            }
            return;
        }
        self.within_limit.increment(hits);
        if is_near_limit(answer, ratio) {
            self.near_limit.increment(hits);
        }
    }
}

/// Whether the reported limit's usage after this request is at least `ratio` of the limit.
fn is_near_limit(answer: &DescriptorDecision<'_>, ratio: NearLimitRatio) -> bool {
    answer.limit.is_some_and(|limit| {
        let allowed = limit.requests_per_unit;
        let used = allowed.saturating_sub(answer.remaining);
        allowed > 0 && f64::from(used) >= ratio.get() * f64::from(allowed)
    })
}

/// A rule's identity within the rule set it belongs to: its address, stable while the
/// (immutable) rule set lives.
fn rule_address(rule: &Rule) -> usize {
    std::ptr::from_ref(rule) as usize
}

/// Handles for every rule of one rule set.
struct RuleHandleMap {
    /// A weak pointer keeps the allocation's address reserved, so a later rule set cannot be
    /// mistaken for this one.
    built_for: Weak<RuleSet>,
    /// By [`rule_address`]; rules sharing a (domain, key path) share one set of series.
    rules: FastMap<usize, RuleHandles>,
}

impl RuleHandleMap {
    fn build(recorder: &impl Recorder, rules: &Arc<RuleSet>) -> Self {
        let mut by_address = FastMap::default();
        for domain in rules.domains() {
            let mut by_key_path = FastMap::default();
            collect(
                recorder,
                domain.name(),
                domain.root(),
                &mut by_key_path,
                &mut by_address,
            );
        }
        Self {
            built_for: Arc::downgrade(rules),
            rules: by_address,
        }
    }

    fn is_for(&self, rules: &Arc<RuleSet>) -> bool {
        std::ptr::eq(self.built_for.as_ptr(), Arc::as_ptr(rules))
    }
}

/// Registers the series of every rule under `level` (once per key path of `domain`) and files
/// each rule's handles under its address.
fn collect<'r>(
    recorder: &impl Recorder,
    domain: &str,
    level: &'r Children,
    by_key_path: &mut FastMap<&'r str, RuleHandles>,
    by_address: &mut FastMap<usize, RuleHandles>,
) {
    for (_, _, node) in level.iter() {
        if let Some(rule) = &node.rule
            && !rule.detailed_metric
        {
            let handles = by_key_path
                .entry(&rule.key_path)
                .or_insert_with(|| RuleHandles::register(recorder, domain, &rule.key_path));
            by_address.insert(rule_address(rule), handles.clone());
        }
        collect(recorder, domain, &node.children, by_key_path, by_address);
    }
}

/// The per-rule counters of the rule set in use, rebuilt when the rules change.
pub(super) struct RuleCounters {
    current: ArcSwap<RuleHandleMap>,
    /// The map `current` replaced: a request that loaded the old rules just before a reload
    /// swapped them still finds its handles here instead of rebuilding the whole map.
    previous: ArcSwap<RuleHandleMap>,
}

impl fmt::Debug for RuleCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleCounters")
            .field("rules", &self.current.load().rules.len())
            .finish()
    }
}

impl RuleCounters {
    pub(super) fn new() -> Self {
        let empty = || RuleHandleMap {
            built_for: Weak::new(),
            rules: FastMap::default(),
        };
        Self {
            current: ArcSwap::from_pointee(empty()),
            previous: ArcSwap::from_pointee(empty()),
        }
    }

    /// Registers the handles for `rules` ahead of their first request; the map they replace
    /// stays reachable for requests still on the rules before them.
    pub(super) fn prepare(&self, recorder: &impl Recorder, rules: &Arc<RuleSet>) {
        if !self.current.load().is_for(rules) {
            let replaced = self
                .current
                .swap(Arc::new(RuleHandleMap::build(recorder, rules)));
            self.previous.store(replaced);
        }
    }

    /// Counts every matched descriptor of `decision` against its rule.
    pub(super) fn record(
        &self,
        recorder: &impl Recorder,
        ratio: NearLimitRatio,
        rules: &Arc<RuleSet>,
        request: &Request<'_>,
        decision: &Decision<'_>,
    ) {
        let mut map = self.current.load();
        if !map.is_for(rules) {
            map = self.previous.load();
        }
        if !map.is_for(rules) {
            // Rules swapped without `prepare`: build once; a racing request may build too, which
            // only registers the same series twice.
            self.prepare(recorder, rules);
            map = self.current.load();
        }
        for (descriptor, answer) in request.descriptors.iter().zip(&decision.descriptors) {
            let Some(rule) = answer.rule else {
                continue;
            };
            let hits = request.hits_for(descriptor);
            if rule.detailed_metric {
                let key_path =
                    detailed_key_path(descriptor.entries.iter().map(|e| (e.key, e.value)));
                RuleHandles::register(recorder, request.domain, &key_path)
                    .record(answer, hits, ratio);
                continue;
            }
            match map.rules.get(&rule_address(rule)) {
                Some(handles) => handles.record(answer, hits, ratio),
                None => unknown_rule(recorder, request.domain, rule).record(answer, hits, ratio),
            }
        }
    }
}

/// Handles for a rule missing from the map (only possible if a caller mixed rule sets).
fn unknown_rule(recorder: &impl Recorder, domain: &str, rule: &Rule) -> RuleHandles {
    RuleHandles::register(recorder, domain, &rule.key_path)
}

/// The key path with the request's values, as envoyproxy/ratelimit names detailed metrics:
/// `key_value` per entry, joined by dots.
fn detailed_key_path<'a>(entries: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut path = String::new();
    for (index, (key, value)) in entries.enumerate() {
        if index > 0 {
            path.push('.');
        }
        path.push_str(key);
        path.push('_');
        path.push_str(value);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::engine::{CounterReading, Descriptor, Limit, TimeUnit, Window};
    use metrics::{Gauge, Histogram, KeyName, SharedString, Unit};

    #[test]
    fn ratios_outside_zero_to_one_are_refused() {
        assert!(NearLimitRatio::new(0.0).is_err());
        assert!(NearLimitRatio::new(1.01).is_err());
        assert!(NearLimitRatio::new(f64::NAN).is_err());
        assert_eq!(NearLimitRatio::new(1.0).map(NearLimitRatio::get), Ok(1.0));
    }

    /// Counts series registrations: each one is the cost a map rebuild pays per rule.
    #[derive(Debug, Default)]
    struct CountingRecorder(std::sync::atomic::AtomicUsize);

    impl CountingRecorder {
        fn registered(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::Relaxed)
        }
        fn count(&self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    impl Recorder for CountingRecorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            self.count();
            Counter::noop()
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            self.count();
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            self.count();
            Histogram::noop()
        }
    }

    /// Records one request for `k=v` answered under `rules`.
    fn record_one(counters: &RuleCounters, recorder: &CountingRecorder, rules: &Arc<RuleSet>) {
        let request = Request::new("d", [Descriptor::from_pairs(&[("k", "v")])]);
        let plan = crate::engine::plan(rules, &request, Timestamp::from_secs(1));
        let readings = vec![CounterReading::default(); plan.len()];
        let decision = crate::engine::conclude(&plan, &readings);
        counters.record(
            recorder,
            NearLimitRatio::DEFAULT,
            rules,
            &request,
            &decision,
        );
    }

    #[test]
    fn requests_on_the_rules_before_a_reload_do_not_rebuild_the_map() {
        let rule_set = |limit| {
            let limit = Limit::new(limit, Window::of(TimeUnit::Minute));
            Arc::new(RuleSet::per_value("d", "k", [limit]))
        };
        let (old, new, never_prepared) = (rule_set(1), rule_set(2), rule_set(3));
        let (counters, recorder) = (RuleCounters::new(), CountingRecorder::default());
        counters.prepare(&recorder, &old);
        counters.prepare(&recorder, &new);
        let prepared = recorder.registered();
        assert!(prepared > 0);

        record_one(&counters, &recorder, &old);
        record_one(&counters, &recorder, &new);
        assert_eq!(recorder.registered(), prepared, "both maps were ready");

        record_one(&counters, &recorder, &never_prepared);
        assert!(
            recorder.registered() > prepared,
            "an unknown rule set builds its map"
        );
    }

    #[test]
    fn detailed_paths_carry_values() {
        let path = detailed_key_path([("plan", "pro"), ("api_key", "abc")].into_iter());
        assert_eq!(path, "plan_pro.api_key_abc");
    }
}
