//! plan → apply → conclude. `plan` lists the counters a request touches; a store applies them
//! atomically and returns readings; `conclude` turns readings into the answer. Both steps are
//! pure, so every rule is testable on a fake clock and any store slots in between.
//!
//! Rejected hits are counted, as envoyproxy/ratelimit counts them: a store adds every planned
//! hit, and the decision only reads the result.

use std::ops::Range;
use std::time::Duration;

use smallvec::SmallVec;

use crate::clock::Timestamp;

use super::limit::{Algorithm, Limit};
use super::request::{Entry, Request};
use super::rules::{DomainRules, Policy, Rule, RuleSet};
use super::window::{Assessment, CounterReading, assess, window_index};

/// One counter a request touches: which key, which window, and how many hits to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterUpdate {
    key: Range<usize>,
    /// Epoch-aligned index of the window `now` falls in.
    pub window_index: u64,
    /// Length of the window in nanoseconds.
    pub window_nanos: u64,
    /// How the store must keep the counter (sliding windows also read the previous window).
    pub algorithm: Algorithm,
    /// Hits to add (0 reads without consuming).
    pub hits: u64,
}

/// How one request descriptor will be answered.
#[derive(Debug, Clone)]
enum Planned<'r> {
    NoRule,
    Unlimited,
    Limited {
        rule: &'r Rule,
        limits: SmallVec<[(&'r Limit, usize); 2]>,
    },
}

/// The counters a request touches, in the order the store must return readings.
#[derive(Debug, Clone)]
pub struct Plan<'r> {
    now: Timestamp,
    descriptors: SmallVec<[Planned<'r>; 4]>,
    counters: SmallVec<[CounterUpdate; 4]>,
    keys: Vec<u8>,
}

impl Plan<'_> {
    /// The moment the plan was made for; windows are computed from it.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Number of counters to apply.
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    /// Whether the request touches no counter at all.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// Each counter's identity (bytes that exclude the threshold, so a changed limit keeps its
    /// count) with its update. Identities are `domain, entries…` length-prefixed, then the
    /// window length and algorithm tag; [`shard_key`] strips that suffix.
    pub fn counters(&self) -> impl ExactSizeIterator<Item = (&[u8], &CounterUpdate)> {
        self.counters
            .iter()
            .map(|update| (&self.keys[update.key.clone()], update))
    }
}

/// The answer for one request descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorDecision<'r> {
    /// Whether this descriptor is over its limit (never for shadow-mode rules).
    pub over_limit: bool,
    /// The rule that matched, if one applies (none when unmatched or replaced).
    pub rule: Option<&'r Rule>,
    /// The limit reported: the exceeded one, else the one with the least remaining.
    pub limit: Option<&'r Limit>,
    /// Hits still allowed by the reported limit (`u32::MAX` for unlimited rules).
    pub remaining: u32,
    /// Time until the reported limit resets.
    pub reset: Option<Duration>,
    /// The rule was over a limit but in shadow mode, so the descriptor was allowed.
    pub shadow_over_limit: bool,
}

impl DescriptorDecision<'_> {
    const fn unmatched(remaining: u32) -> Self {
        Self {
            over_limit: false,
            rule: None,
            limit: None,
            remaining,
            reset: None,
            shadow_over_limit: false,
        }
    }
}

/// The answer to a whole request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'r> {
    /// Whether any descriptor is over its limit.
    pub over_limit: bool,
    /// One decision per request descriptor, in request order.
    pub descriptors: SmallVec<[DescriptorDecision<'r>; 4]>,
}

/// Lists the counters `request` touches under `rules` at `now`.
pub fn plan<'r>(rules: &'r RuleSet, request: &Request<'_>, now: Timestamp) -> Plan<'r> {
    let mut plan = Plan {
        now,
        descriptors: SmallVec::new(),
        counters: SmallVec::new(),
        keys: Vec::new(),
    };
    let Some(domain) = rules.domain(request.domain) else {
        plan.descriptors
            .extend(request.descriptors.iter().map(|_| Planned::NoRule));
        return plan;
    };
    let matched: SmallVec<[Option<&Rule>; 4]> = request
        .descriptors
        .iter()
        .map(|descriptor| domain.find(&descriptor.entries))
        .collect();
    for (descriptor, rule) in request.descriptors.iter().zip(&matched) {
        let planned = match rule {
            None => Planned::NoRule,
            Some(rule) => match &rule.policy {
                Policy::Unlimited => Planned::Unlimited,
                Policy::Limited(limits) => {
                    let hits = request.hits_for(descriptor);
                    let mut kept = SmallVec::new();
                    for limit in limits.iter().filter(|limit| !is_replaced(limit, &matched)) {
                        kept.push((limit, plan.counters.len()));
                        let update = counter_update(
                            &mut plan.keys,
                            domain,
                            &descriptor.entries,
                            limit,
                            hits,
                            now,
                        );
                        plan.counters.push(update);
                    }
                    if kept.is_empty() {
                        Planned::NoRule
                    } else {
                        Planned::Limited { rule, limits: kept }
                    }
                }
            },
        };
        plan.descriptors.push(planned);
    }
    plan
}

/// Turns the store's readings (one per planned counter, in plan order) into the answer.
///
/// A store that returns fewer readings than planned leaves the missing counters read as 0.
pub fn conclude<'r>(plan: &Plan<'r>, readings: &[CounterReading]) -> Decision<'r> {
    let mut decision = Decision {
        over_limit: false,
        descriptors: SmallVec::with_capacity(plan.descriptors.len()),
    };
    for planned in &plan.descriptors {
        let answer = match planned {
            Planned::NoRule => DescriptorDecision::unmatched(0),
            Planned::Unlimited => DescriptorDecision::unmatched(u32::MAX),
            Planned::Limited { rule, limits } => {
                let Some((limit, assessment)) = reported_limit(limits, readings, plan.now) else {
                    decision.descriptors.push(DescriptorDecision::unmatched(0));
                    continue;
                };
                let over = assessment.over_limit;
                DescriptorDecision {
                    over_limit: over && !rule.shadow_mode,
                    rule: Some(rule),
                    limit: Some(limit),
                    remaining: if over { 0 } else { assessment.remaining },
                    reset: Some(assessment.reset),
                    shadow_over_limit: over && rule.shadow_mode,
                }
            }
        };
        decision.over_limit |= answer.over_limit;
        decision.descriptors.push(answer);
    }
    decision
}

/// The first exceeded limit, else the one with the least remaining (first on ties).
fn reported_limit<'r>(
    limits: &[(&'r Limit, usize)],
    readings: &[CounterReading],
    now: Timestamp,
) -> Option<(&'r Limit, Assessment)> {
    let mut chosen: Option<(&'r Limit, Assessment)> = None;
    for &(limit, counter) in limits {
        let reading = readings.get(counter).copied().unwrap_or_default();
        let assessment = assess(limit, reading, now);
        let better = match &chosen {
            None => true,
            Some((_, best)) => {
                (assessment.over_limit && !best.over_limit)
                    || (assessment.over_limit == best.over_limit
                        && !best.over_limit
                        && assessment.remaining < best.remaining)
            }
        };
        if better {
            chosen = Some((limit, assessment));
        }
    }
    chosen
}

/// Whether another matched rule's limit replaces `limit` by name.
fn is_replaced(limit: &Limit, matched: &[Option<&Rule>]) -> bool {
    let Some(name) = &limit.name else {
        return false;
    };
    matched.iter().flatten().any(|rule| match &rule.policy {
        Policy::Limited(limits) => limits
            .iter()
            .any(|other| other.replaces.iter().any(|replaced| replaced == name)),
        Policy::Unlimited => false,
    })
}

/// Appends the counter identity for (domain, descriptor entries, window, algorithm) to `keys`.
///
/// Strings are length-prefixed so no value can forge another key; the threshold is left out.
fn counter_update(
    keys: &mut Vec<u8>,
    domain: &DomainRules,
    entries: &[Entry<'_>],
    limit: &Limit,
    hits: u64,
    now: Timestamp,
) -> CounterUpdate {
    let start = keys.len();
    push_str(keys, domain.name());
    for entry in entries {
        push_str(keys, entry.key);
        push_str(keys, entry.value);
    }
    let window_nanos = limit.window.nanos();
    keys.extend_from_slice(&window_nanos.to_le_bytes());
    keys.push(limit.algorithm.tag());
    CounterUpdate {
        key: start..keys.len(),
        window_index: window_index(now, window_nanos),
        window_nanos,
        algorithm: limit.algorithm,
        hits,
    }
}

/// Bytes of a counter identity after the descriptor part: window nanos (u64) and algorithm tag.
const IDENTITY_SUFFIX: usize = 8 + 1;

/// The descriptor part of a counter identity: every limit of one request descriptor shares it,
/// so a sharded store (Redis Cluster) can keep them on one shard.
pub fn shard_key(identity: &[u8]) -> &[u8] {
    &identity[..identity.len().saturating_sub(IDENTITY_SUFFIX)]
}

fn push_str(keys: &mut Vec<u8>, text: &str) {
    let length = u32::try_from(text.len()).unwrap_or(u32::MAX);
    keys.extend_from_slice(&length.to_le_bytes());
    keys.extend_from_slice(text.as_bytes());
}
