//! From an excess to a ban (see `ban`): the strike plan a rejected request leaves behind, and
//! the bans its readings call for.

use std::fmt::Write as _;

use super::ban::{Ban, describe_window};
use super::conclude::Decision;
use super::decide::{LimitSource, Plan, Planned, Strike};
use super::identity::strike;
use super::limit::{Algorithm, Limit};
use super::request::Request;
use super::window::{CounterReading, assess};

impl<'r> Plan<'r> {
    /// The strikes `decision` calls for: one per exceeded limit that carries a `ban`, on
    /// descriptors that are neither banned already, nor shadowed, nor refunds; `None` when
    /// there are none (always, in domains without bans).
    pub fn strikes(&self, request: &Request<'_>, decision: &Decision<'_>) -> Option<Plan<'r>> {
        self.domain.filter(|domain| domain.has_bans())?;
        let mut strikes = self.empty_like();
        for (index, planned) in self.descriptors.iter().enumerate() {
            let Planned::Limited {
                rule: Some(rule),
                limits,
            } = planned
            else {
                continue;
            };
            let (Some(answer), Some(descriptor)) = (
                decision.descriptors.get(index),
                request.descriptors.get(index),
            ) else {
                continue;
            };
            if answer.banned_until.is_some() || rule.shadow_mode || descriptor.refund {
                continue;
            }
            for (&(source, counter), (_, assessment)) in limits.iter().zip(&answer.checked) {
                let LimitSource::Configured(limit) = source else {
                    continue;
                };
                let Some(policy) = limit.ban.as_deref() else {
                    continue;
                };
                let banned = descriptor
                    .entries
                    .iter()
                    .rfind(|entry| *entry.key == *policy.key);
                let (true, Some(entry)) = (assessment.over_limit, banned) else {
                    continue;
                };
                let Some(update) = self.counters.get(counter) else {
                    continue;
                };
                let identity = &self.keys[update.key.clone()];
                let planned = strike(&mut strikes.keys, identity, policy, self.now);
                strikes.strikes.push(Strike {
                    counter: strikes.counters.len(),
                    policy,
                    rule,
                    limit,
                    value: entry.value.to_owned(),
                });
                strikes.counters.push(planned);
            }
        }
        (!strikes.counters.is_empty()).then_some(strikes)
    }

    /// The bans a strike plan's readings call for: every strike count that reached its
    /// policy's `after` within `within` (a sliding-window count, as sliding limits count).
    pub fn bans_due(&self, readings: &[CounterReading]) -> Vec<Ban> {
        let Some(domain) = self.domain else {
            return Vec::new();
        };
        self.strikes
            .iter()
            .filter(|strike| {
                let reading = readings.get(strike.counter).copied().unwrap_or_default();
                let threshold = strike.policy.after.get();
                let counted = Limit::new(threshold, strike.policy.within)
                    .with_algorithm(Algorithm::SlidingWindow);
                assess(&counted, reading, 1, self.now).used >= u64::from(threshold)
            })
            .map(|strike| Ban {
                domain: domain.name().to_owned(),
                key: strike.policy.key.to_string(),
                value: strike.value.clone(),
                reason: reason(strike),
                until: self.now.saturating_add(strike.policy.duration),
            })
            .collect()
    }
}

/// `signin.remote_address over 5/1m 3 times within 10m`, naming the limit when it has a name.
fn reason(strike: &Strike<'_>) -> String {
    let mut text = format!("{} over ", strike.rule.key_path);
    let limit = strike.limit;
    match &limit.name {
        Some(name) => text.push_str(name),
        None => {
            let _ = write!(
                text,
                "{}/{}",
                limit.requests_per_unit,
                describe_window(limit.window)
            );
        }
    }
    let _ = write!(
        text,
        " {} times within {}",
        strike.policy.after,
        describe_window(strike.policy.within)
    );
    text
}
