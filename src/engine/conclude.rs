//! `conclude`: the store's readings turned into the answer — per descriptor the limit that
//! explains it (the first exceeded enforced one, else the tightest), shadow and soft limits,
//! bans, and whether the request as a whole is rejected (`quota_mode` included).

use std::time::Duration;

use smallvec::SmallVec;

use crate::clock::Timestamp;

use super::decide::{Plan, Planned};
use super::limit::Limit;
use super::rules::{BanTarget, Rule};
use super::window::{Assessment, CounterReading, assess};

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

/// Turns the store's readings (one per planned counter, in plan order) into the answer.
///
/// A store that returns fewer readings than planned leaves the missing counters read as 0.
pub fn conclude<'p>(plan: &'p Plan<'_>, readings: &[CounterReading]) -> Decision<'p> {
    let mut decision = Decision::default();
    conclude_into(&mut decision, plan, readings);
    decision
}

/// [`conclude`] into a decision the caller owns (emptied first). The request path uses this
/// form: a decision is over half a kilobyte, and returning one by value copies it again.
pub fn conclude_into<'p>(
    decision: &mut Decision<'p>,
    plan: &'p Plan<'_>,
    readings: &[CounterReading],
) {
    decision.over_limit = false;
    // No `with_capacity`: it builds the inline vector aside and copies it in; four
    // descriptors fit inline, and a longer request grows once.
    decision.descriptors.clear();
    for planned in &plan.descriptors {
        // Each answer is filled where it lies: built aside and pushed, a decision is copied
        // twice more per descriptor, which cost more than judging the limits.
        decision.descriptors.push(DescriptorDecision::unmatched(0));
        let Some(answer) = decision.descriptors.last_mut() else {
            continue;
        };
        match planned {
            Planned::NoRule => {}
            Planned::Unlimited => answer.remaining = u32::MAX,
            Planned::Limited { rule, limits } => {
                answer
                    .checked
                    .extend(limits.iter().filter_map(|&(source, counter)| {
                        let limit = plan.limit(source)?;
                        let reading = readings.get(counter).copied().unwrap_or_default();
                        let update = plan.counters.get(counter);
                        let hits = update.map_or(0, |update| update.hits);
                        let mut assessment = assess(limit, reading, hits, plan.now);
                        // Giving hits back never makes anything over its limit.
                        assessment.over_limit &= !update.is_some_and(|update| update.refund);
                        Some((limit, assessment))
                    }));
                if let Some(reported) = reported_limit(&answer.checked) {
                    let shadow = rule.is_some_and(|rule| rule.shadow_mode);
                    let enforced_over = reported.enforced_over;
                    answer.over_limit = enforced_over && !shadow;
                    answer.rule = *rule;
                    answer.limit = Some(reported.limit);
                    answer.remaining = if enforced_over {
                        0
                    } else {
                        reported.assessment.remaining
                    };
                    answer.reset = Some(reported.assessment.reset);
                    answer.shadow_over_limit = enforced_over && shadow;
                    answer.soft_over_limit = reported.soft_over;
                }
            }
        }
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
