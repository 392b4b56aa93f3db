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

use smallvec::SmallVec;
use std::ops::Range;

use crate::clock::Timestamp;

use super::ban::{BanPolicy, ban_identity_len};
use super::bucket::BucketParams;
use super::conclude::Decision;
use super::distinct::DistinctParams;
use super::identity::{ban_read, counter_update, identity_len};
use super::keys::Keys;
use super::limit::{Algorithm, Limit, Window};
use super::request::Request;
use super::rules::{BanTarget, DomainRules, Policy, Rule, RuleSet};
use super::window::CounterReading;

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
    pub(super) keys: Keys,
    pub(super) ban_checks: SmallVec<[BanCheck<'r>; 1]>,
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
        Plan::empty(self.now, self.domain)
    }

    /// A plan at `now` in `domain` (none: an unknown domain) that touches nothing yet.
    fn empty(now: Timestamp, domain: Option<&'r DomainRules>) -> Plan<'r> {
        Plan {
            now,
            count_rejected_hits: domain.is_none_or(DomainRules::counts_rejected_hits),
            domain,
            descriptors: SmallVec::new(),
            overrides: SmallVec::new(),
            counters: SmallVec::new(),
            keys: Keys::new(),
            ban_checks: SmallVec::new(),
            strikes: Vec::new(),
        }
    }

    /// Empties the plan for a request at `now` in `domain`, keeping any heap capacity.
    fn reset(&mut self, now: Timestamp, domain: Option<&'r DomainRules>) {
        self.now = now;
        self.count_rejected_hits = domain.is_none_or(DomainRules::counts_rejected_hits);
        self.domain = domain;
        self.descriptors.clear();
        self.overrides.clear();
        self.counters.clear();
        self.keys.clear();
        self.ban_checks.clear();
        self.strikes.clear();
    }

    pub(super) fn limit<'s>(&'s self, source: LimitSource<'r>) -> Option<&'s Limit>
    where
        'r: 's,
    {
        match source {
            LimitSource::Configured(limit) => Some(limit),
            LimitSource::Override(index) => self.overrides.get(index),
        }
    }
}

impl Default for Plan<'_> {
    /// A plan for no domain at the epoch, touching nothing: a slot for [`plan_into`] to fill.
    fn default() -> Self {
        Plan::empty(Timestamp::from_nanos(0), None)
    }
}

/// Lists the counters `request` touches under `rules` at `now`.
pub fn plan<'r>(rules: &'r RuleSet, request: &Request<'_>, now: Timestamp) -> Plan<'r> {
    let mut plan = Plan::default();
    plan_into(&mut plan, rules, request, now);
    plan
}

/// [`plan`] into a plan the caller owns (emptied first). The request path uses this form: a
/// plan is about a kilobyte, and returning one by value copies it once more per request.
pub fn plan_into<'r>(
    plan: &mut Plan<'r>,
    rules: &'r RuleSet,
    request: &Request<'_>,
    now: Timestamp,
) {
    let domain = rules.domain(request.domain);
    plan.reset(now, domain);
    let Some(domain) = domain else {
        plan.descriptors
            .extend(request.descriptors.iter().map(|_| Planned::NoRule));
        return;
    };
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
                descriptor.refund,
                now,
            );
            plan.counters.push(update);
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
                                descriptor.refund,
                                now,
                            );
                            plan.counters.push(update);
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
}

/// The entries of `descriptor` whose values a ban in `domain` may refuse (none for releases
/// and refunds, which are never refused).
fn banned_entries<'e, 'a>(
    domain: &'e DomainRules,
    descriptor: &'e super::Descriptor<'a>,
) -> impl Iterator<Item = &'e super::Entry<'a>> {
    // Domains without bans (the common case) skip the entries altogether.
    let checked = domain.has_bans() && !descriptor.refund;
    let entries = if checked {
        &descriptor.entries[..]
    } else {
        &[]
    };
    entries
        .iter()
        .filter(move |entry| domain.ban_target(entry.key).is_some())
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
