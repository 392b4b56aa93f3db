//! plan → apply → conclude. `plan` lists the counters a request touches; a store applies them
//! atomically and returns readings; `conclude` turns readings into the answer. Both steps are
//! pure, so every rule is testable on a fake clock and any store slots in between.
//!
//! Rejected hits are counted, as envoyproxy/ratelimit counts them: a store adds every planned
//! hit, and the decision only reads the result. A domain with `count_rejected_hits: false`
//! gives a rejected request's hits back with a second, refunding plan
//! ([`Plan::refund_if_rejected`]), so a blocked caller is not kept blocked by its own retries;
//! between the two steps a concurrent request may see the extra hits (a brief, bounded
//! over-count, never an under-count).
//!
//! Concurrency leases are the exception: a rejected acquire stays counted whatever the domain
//! says, because Envoy (verified with 1.40) sends the stream-done release for requests it
//! answered with 429 too; refunding the acquire as well would free someone else's lease.
//! A descriptor sent with `is_negative_hits` gives its hits back and is never over the limit.

use std::ops::Range;
use std::time::Duration;

use smallvec::SmallVec;

use crate::clock::Timestamp;

use super::ban::{BanPolicy, ban_identity_len};
use super::bucket::BucketParams;
use super::distinct::DistinctParams;
use super::identity::{ban_read, counter_update, identity_len};
use super::limit::{Algorithm, Limit, Window};
use super::request::Request;
use super::rules::{BanTarget, DomainRules, Policy, Rule, RuleSet};
use super::window::{Assessment, CounterReading, assess};

/// One counter a request touches: which key, which window, and how many hits to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterUpdate {
    pub(super) key: Range<usize>,
    /// Index of the window `now` falls in (grows by one per window).
    pub window_index: u64,
    /// Length of the window in nanoseconds (the longest one for calendar windows).
    pub window_nanos: u64,
    /// The window itself, for stores that reclaim expired counters.
    pub window: Window,
    /// How the store must keep the counter (sliding windows also read the previous window).
    pub algorithm: Algorithm,
    /// Hits to add (0 reads without consuming).
    pub hits: u64,
    /// Give `hits` back instead of adding them, never below 0: windows and buckets only within
    /// the same window; concurrency leases from the older generation first, then the newer.
    pub refund: bool,
    /// For token buckets, the bucket's parameters (the threshold-dependent part a store needs
    /// to decide admission atomically); `None` for windows.
    pub bucket: Option<BucketParams>,
    /// Read the end of the ban with this identity (nanoseconds since the epoch, 0 when none)
    /// into the reading's `current`, instead of counting.
    pub reads_ban: bool,
    /// For distinct counters, the limit and the value to add (see `distinct`).
    pub distinct: Option<DistinctParams>,
}

/// Which limit a planned counter checks: one from the rules, or one the caller sent.
#[derive(Debug, Clone, Copy)]
pub(super) enum LimitSource<'r> {
    Configured(&'r Limit),
    Override(usize),
}

/// How one request descriptor will be answered.
#[derive(Debug, Clone)]
pub(super) enum Planned<'r> {
    NoRule,
    Unlimited,
    Limited {
        rule: Option<&'r Rule>,
        limits: SmallVec<[(LimitSource<'r>, usize); 2]>,
    },
}

/// A ban read planned for one request descriptor.
#[derive(Debug, Clone, Copy)]
pub(super) struct BanCheck<'r> {
    pub(super) descriptor: usize,
    pub(super) counter: usize,
    pub(super) target: &'r BanTarget,
}

/// A strike planned against a limit that carries a ban, and the value it would ban.
#[derive(Debug, Clone)]
pub(super) struct Strike<'r> {
    pub(super) counter: usize,
    pub(super) policy: &'r BanPolicy,
    pub(super) rule: &'r Rule,
    pub(super) limit: &'r Limit,
    pub(super) value: String,
}

/// The counters a request touches, in the order the store must return readings.
#[derive(Debug, Clone)]
pub struct Plan<'r> {
    pub(super) now: Timestamp,
    count_rejected_hits: bool,
    pub(super) domain: Option<&'r DomainRules>,
    pub(super) descriptors: SmallVec<[Planned<'r>; 4]>,
    overrides: SmallVec<[Limit; 1]>,
    pub(super) counters: SmallVec<[CounterUpdate; 4]>,
    pub(super) keys: Vec<u8>,
    ban_checks: SmallVec<[BanCheck<'r>; 1]>,
    pub(super) strikes: Vec<Strike<'r>>,
}

impl<'r> Plan<'r> {
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
    /// window length and algorithm tag; [`super::shard_key`] strips that suffix.
    pub fn counters(&self) -> impl ExactSizeIterator<Item = (&[u8], &CounterUpdate)> {
        self.counters
            .iter()
            .map(|update| (&self.keys[update.key.clone()], update))
    }

    /// When the domain does not count rejected hits and `decision` rejected the request, the
    /// plan that gives back every hit this plan added (`readings` tell which token buckets
    /// actually took theirs); else `None`.
    pub fn refund_if_rejected(
        &self,
        decision: &Decision<'_>,
        readings: &[CounterReading],
    ) -> Option<Plan<'r>> {
        if self.count_rejected_hits || !decision.over_limit {
            return None;
        }
        let mut refund = self.clone();
        refund.ban_checks.clear();
        refund.strikes.clear();
        let mut index = 0;
        refund.counters.retain(|update| {
            let reading = readings.get(index).copied().unwrap_or_default();
            index += 1;
            let charged = match update.bucket {
                Some(_) => reading.current != reading.previous,
                None => true,
            };
            // Envoy releases a rejected acquire itself at stream done (see the module doc).
            // A refused distinct value was never added, and a passed one is not a count.
            let uncounted = matches!(
                update.algorithm,
                Algorithm::Concurrency | Algorithm::Distinct
            );
            update.hits > 0 && charged && !update.refund && !uncounted
        });
        for update in &mut refund.counters {
            update.refund = true;
        }
        (!refund.counters.is_empty()).then_some(refund)
    }

    /// The value a distinct counter adds (empty for other counters).
    pub fn distinct_value(&self, update: &CounterUpdate) -> &[u8] {
        update
            .distinct
            .as_ref()
            .and_then(|distinct| self.keys.get(distinct.value.clone()))
            .unwrap_or_default()
    }

    /// A plan for the same moment and domain that touches nothing yet.
    pub(super) fn empty_like(&self) -> Plan<'r> {
        Plan {
            now: self.now,
            count_rejected_hits: self.count_rejected_hits,
            domain: self.domain,
            descriptors: SmallVec::new(),
            overrides: SmallVec::new(),
            counters: SmallVec::new(),
            keys: Vec::new(),
            ban_checks: SmallVec::new(),
            strikes: Vec::new(),
        }
    }

    fn limit<'s>(&'s self, source: LimitSource<'r>) -> Option<&'s Limit>
    where
        'r: 's,
    {
        match source {
            LimitSource::Configured(limit) => Some(limit),
            LimitSource::Override(index) => self.overrides.get(index),
        }
    }
}

/// The answer for one request descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorDecision<'p> {
    /// Whether this descriptor is over an enforced limit (never for shadow-mode rules).
    pub over_limit: bool,
    /// The rule that matched, if one applies (none when unmatched or replaced).
    pub rule: Option<&'p Rule>,
    /// The limit reported: the first exceeded enforced one, else the one with the least
    /// remaining (a caller-supplied override when the domain allows those).
    pub limit: Option<&'p Limit>,
    /// Hits still allowed by the reported limit (`u32::MAX` for unlimited rules).
    pub remaining: u32,
    /// Time until the reported limit resets (for a banned descriptor, until the ban ends).
    pub reset: Option<Duration>,
    /// The descriptor carries a banned value: refused until this moment whatever its quota.
    pub banned_until: Option<Timestamp>,
    /// The rule was over a limit but in shadow mode, so the descriptor was allowed.
    pub shadow_over_limit: bool,
    /// A soft limit was exceeded: reported, not enforced.
    pub soft_over_limit: bool,
    /// Every limit checked for this descriptor with what its reading meant, in rule order
    /// (for headers that describe a second, long-window quota).
    pub checked: SmallVec<[(&'p Limit, Assessment); 2]>,
}

impl DescriptorDecision<'_> {
    const fn unmatched(remaining: u32) -> Self {
        Self {
            over_limit: false,
            rule: None,
            limit: None,
            remaining,
            reset: None,
            banned_until: None,
            shadow_over_limit: false,
            soft_over_limit: false,
            checked: SmallVec::new_const(),
        }
    }
}

/// The answer to a whole request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'p> {
    /// Whether the request is rejected: any ordinary descriptor over its limit, or all of its
    /// quota-mode descriptors.
    pub over_limit: bool,
    /// One decision per request descriptor, in request order.
    pub descriptors: SmallVec<[DescriptorDecision<'p>; 4]>,
}

impl<'p> Decision<'p> {
    /// The descriptor whose limit explains the answer: the first one over an enforced limit,
    /// else the limited one with the least remaining (first on ties); with its index.
    pub fn deciding(&self) -> Option<(usize, &DescriptorDecision<'p>)> {
        let limited = || {
            self.descriptors
                .iter()
                .enumerate()
                .filter(|(_, descriptor)| descriptor.limit.is_some())
        };
        limited()
            .find(|(_, descriptor)| descriptor.over_limit)
            .or_else(|| limited().min_by_key(|(_, descriptor)| descriptor.remaining))
    }
}

/// Lists the counters `request` touches under `rules` at `now`.
pub fn plan<'r>(rules: &'r RuleSet, request: &Request<'_>, now: Timestamp) -> Plan<'r> {
    let mut plan = Plan {
        now,
        count_rejected_hits: true,
        domain: None,
        descriptors: SmallVec::new(),
        overrides: SmallVec::new(),
        counters: SmallVec::new(),
        keys: Vec::new(),
        ban_checks: SmallVec::new(),
        strikes: Vec::new(),
    };
    let Some(domain) = rules.domain(request.domain) else {
        plan.descriptors
            .extend(request.descriptors.iter().map(|_| Planned::NoRule));
        return plan;
    };
    plan.count_rejected_hits = domain.counts_rejected_hits();
    plan.domain = Some(domain);
    let matched: SmallVec<[Option<&Rule>; 4]> = request
        .descriptors
        .iter()
        .map(|descriptor| domain.find(&descriptor.entries))
        .collect();
    // One allocation for every identity the request needs instead of a growing buffer.
    let identities: usize = request
        .descriptors
        .iter()
        .zip(&matched)
        .map(|(descriptor, rule)| {
            let limits = match rule.map(|rule| &rule.policy) {
                Some(Policy::Limited(limits)) => limits.len(),
                _ => usize::from(descriptor.limit_override.is_some()),
            };
            limits * identity_len(domain, &descriptor.entries)
                + banned_entries(domain, descriptor)
                    .map(|entry| ban_identity_len(domain.name(), entry.key, entry.value))
                    .sum::<usize>()
        })
        .sum();
    plan.keys.reserve_exact(identities);
    for (index, (descriptor, rule)) in request.descriptors.iter().zip(&matched).enumerate() {
        for entry in banned_entries(domain, descriptor) {
            if let Some(target) = domain.ban_target(entry.key) {
                let counter = plan.counters.len();
                let read = ban_read(&mut plan.keys, domain.name(), entry.key, entry.value);
                plan.counters.push(read);
                plan.ban_checks.push(BanCheck {
                    descriptor: index,
                    counter,
                    target,
                });
            }
        }
        let hits = request.hits_for(descriptor);
        let override_limit = descriptor
            .limit_override
            .filter(|_| domain.allows_limit_overrides());
        let planned = if let Some(requested) = override_limit {
            // As envoyproxy/ratelimit does: the caller's limit replaces any rule, never shadowed.
            let limit = Limit::new(requested.requests_per_unit, Window::of(requested.unit));
            let counter = plan.counters.len();
            let update = counter_update(
                &mut plan.keys,
                domain,
                &descriptor.entries,
                &limit,
                hits,
                now,
            );
            plan.counters.push(CounterUpdate {
                refund: descriptor.refund,
                ..update
            });
            plan.overrides.push(limit);
            let source = LimitSource::Override(plan.overrides.len() - 1);
            Planned::Limited {
                rule: None,
                limits: smallvec::smallvec![(source, counter)],
            }
        } else {
            match rule {
                None => Planned::NoRule,
                Some(rule) => match &rule.policy {
                    Policy::Unlimited => Planned::Unlimited,
                    Policy::Limited(limits) => {
                        let mut kept = SmallVec::new();
                        for limit in limits.iter().filter(|limit| !is_replaced(limit, &matched)) {
                            kept.push((LimitSource::Configured(limit), plan.counters.len()));
                            let update = counter_update(
                                &mut plan.keys,
                                domain,
                                &descriptor.entries,
                                limit,
                                hits,
                                now,
                            );
                            plan.counters.push(CounterUpdate {
                                refund: descriptor.refund,
                                ..update
                            });
                        }
                        if kept.is_empty() {
                            Planned::NoRule
                        } else {
                            Planned::Limited {
                                rule: Some(rule),
                                limits: kept,
                            }
                        }
                    }
                },
            }
        };
        plan.descriptors.push(planned);
    }
    plan
}

/// The entries of `descriptor` whose values a ban in `domain` may refuse (none for releases
/// and refunds, which are never refused).
fn banned_entries<'e, 'a>(
    domain: &'e DomainRules,
    descriptor: &'e super::Descriptor<'a>,
) -> impl Iterator<Item = &'e super::Entry<'a>> {
    let checked = domain.has_bans() && !descriptor.refund;
    descriptor
        .entries
        .iter()
        .filter(move |entry| checked && domain.ban_target(entry.key).is_some())
}

/// Turns the store's readings (one per planned counter, in plan order) into the answer.
///
/// A store that returns fewer readings than planned leaves the missing counters read as 0.
pub fn conclude<'p>(plan: &'p Plan<'_>, readings: &[CounterReading]) -> Decision<'p> {
    let mut decision = Decision {
        over_limit: false,
        descriptors: SmallVec::with_capacity(plan.descriptors.len()),
    };
    for planned in &plan.descriptors {
        let answer = match planned {
            Planned::NoRule => DescriptorDecision::unmatched(0),
            Planned::Unlimited => DescriptorDecision::unmatched(u32::MAX),
            Planned::Limited { rule, limits } => {
                let checked: SmallVec<[(&Limit, Assessment); 2]> = limits
                    .iter()
                    .filter_map(|&(source, counter)| {
                        let limit = plan.limit(source)?;
                        let reading = readings.get(counter).copied().unwrap_or_default();
                        let update = plan.counters.get(counter);
                        let hits = update.map_or(0, |update| update.hits);
                        let mut assessment = assess(limit, reading, hits, plan.now);
                        // Giving hits back never makes anything over its limit.
                        assessment.over_limit &= !update.is_some_and(|update| update.refund);
                        Some((limit, assessment))
                    })
                    .collect();
                let Some(reported) = reported_limit(&checked) else {
                    decision.descriptors.push(DescriptorDecision::unmatched(0));
                    continue;
                };
                let shadow = rule.is_some_and(|rule| rule.shadow_mode);
                let enforced_over = reported.enforced_over;
                DescriptorDecision {
                    over_limit: enforced_over && !shadow,
                    rule: *rule,
                    limit: Some(reported.limit),
                    remaining: if enforced_over {
                        0
                    } else {
                        reported.assessment.remaining
                    },
                    reset: Some(reported.assessment.reset),
                    banned_until: None,
                    shadow_over_limit: enforced_over && shadow,
                    soft_over_limit: reported.soft_over,
                    checked,
                }
            }
        };
        decision.descriptors.push(answer);
    }
    for check in &plan.ban_checks {
        let until = readings
            .get(check.counter)
            .map_or(0, |reading| reading.current);
        if until <= plan.now.as_nanos() {
            continue;
        }
        if let Some(answer) = decision.descriptors.get_mut(check.descriptor) {
            let later = answer
                .banned_until
                .is_none_or(|known| known.as_nanos() < until);
            if later {
                ban_answer(answer, check.target, Timestamp::from_nanos(until), plan.now);
            }
        }
    }
    decision.over_limit = request_over_limit(&decision.descriptors);
    decision
}

/// Whether the request as a whole is rejected: any ordinary descriptor over its limit, or every
/// quota-mode descriptor over its limit (envoyproxy/ratelimit's `quota_mode`).
fn request_over_limit(descriptors: &[DescriptorDecision<'_>]) -> bool {
    let in_quota_mode = |descriptor: &&DescriptorDecision<'_>| {
        descriptor.banned_until.is_none() && descriptor.rule.is_some_and(|rule| rule.quota_mode)
    };
    let ordinary_over = descriptors
        .iter()
        .filter(|descriptor| !in_quota_mode(descriptor))
        .any(|descriptor| descriptor.over_limit);
    let mut quota = descriptors.iter().filter(in_quota_mode).peekable();
    ordinary_over || (quota.peek().is_some() && quota.all(|descriptor| descriptor.over_limit))
}

/// Turns `answer` into a refusal until `until`, reported against the banning rule and limit.
fn ban_answer<'p>(
    answer: &mut DescriptorDecision<'p>,
    target: &'p BanTarget,
    until: Timestamp,
    now: Timestamp,
) {
    answer.over_limit = true;
    answer.rule = Some(&target.rule);
    answer.limit = target.limit();
    answer.remaining = 0;
    answer.reset = Some(Duration::from_nanos(
        until.as_nanos().saturating_sub(now.as_nanos()),
    ));
    answer.banned_until = Some(until);
    answer.shadow_over_limit = false;
}

/// The limit a descriptor reports, and what its reading means.
struct Reported<'p> {
    limit: &'p Limit,
    assessment: Assessment,
    enforced_over: bool,
    soft_over: bool,
}

/// The first exceeded enforced limit, else the one with the least remaining (first on ties);
/// also whether any soft limit was exceeded.
fn reported_limit<'p>(checked: &[(&'p Limit, Assessment)]) -> Option<Reported<'p>> {
    let mut chosen: Option<Reported<'p>> = None;
    let mut soft_over = false;
    for &(limit, assessment) in checked {
        let enforced_over = assessment.over_limit && !limit.soft;
        soft_over |= assessment.over_limit && limit.soft;
        let better = match &chosen {
            None => true,
            // An enforced excess wins over anything else; otherwise the tightest limit does.
            Some(best) if best.enforced_over => false,
            Some(best) => enforced_over || assessment.remaining < best.assessment.remaining,
        };
        if better {
            chosen = Some(Reported {
                limit,
                assessment,
                enforced_over,
                soft_over: false,
            });
        }
    }
    chosen.map(|reported| Reported {
        soft_over,
        ..reported
    })
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
