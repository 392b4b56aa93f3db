//! One bucket's standing under the rules: its map ordered into descriptor entries by the
//! domain's `rlqs` settings, matched like a `ShouldRateLimit` descriptor, the reported usage
//! counted through plan → apply in the shared store, and the remaining budget read back.
//!
//! Only the requests Envoy allowed are counted: the denied ones were refused locally from an
//! assignment and never reached the upstream, so (as with `count_rejected_hits: false`) they do
//! not spend anyone's budget. Concurrency limits cannot be enforced from usage reports (Envoy
//! sends no release), so their buckets get the domain's `no_match` answer.

use envoy_types::pb::envoy::service::rate_limit_quota::v3::BucketId;
use smallvec::SmallVec;

use crate::clock::Clock;
use crate::engine::quota::{NoMatch, Standing, UNTIL_NEXT_REPORT};
use crate::engine::{self, Algorithm, Descriptor, Policy, Request, RuleSet};
use crate::store::{CounterStore, StoreError};

use super::Shared;

/// A bucket's standing, and whether a rule matched it (a bucket that loses its rule on a
/// reload is abandoned).
#[derive(Debug, Clone, Copy)]
pub(super) struct Judged {
    pub(super) standing: Standing,
    pub(super) matched: bool,
}

impl Judged {
    const fn unmatched(no_match: NoMatch) -> Self {
        Self {
            standing: Standing::Unmatched(no_match),
            matched: false,
        }
    }

    const fn unlimited() -> Self {
        Self {
            standing: Standing::Unlimited,
            matched: true,
        }
    }
}

impl<S: CounterStore, C: Clock> Shared<S, C> {
    /// Counts `allowed` requests for `bucket` of `domain` under `rules` and returns what
    /// remains; a store failure is returned, nothing is assumed.
    pub(super) async fn judge(
        &self,
        rules: &RuleSet,
        domain: &str,
        bucket: &BucketId,
        allowed: u64,
    ) -> Result<Judged, StoreError> {
        // An unknown domain is answered as `ShouldRateLimit` answers it: allowed.
        let Some(domain_rules) = rules.domain(domain) else {
            return Ok(Judged::unmatched(NoMatch::Allow));
        };
        let settings = domain_rules.quota_settings();
        let pairs = bucket
            .bucket
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()));
        let entries = settings.entries(pairs);
        let Some(rule) = domain_rules.find(&entries) else {
            return Ok(Judged::unmatched(settings.no_match()));
        };
        let Policy::Limited(limits) = &rule.policy else {
            return Ok(Judged::unlimited());
        };
        if limits
            .iter()
            .any(|limit| limit.algorithm == Algorithm::Concurrency)
        {
            return Ok(Judged {
                standing: Standing::Unmatched(settings.no_match()),
                matched: true,
            });
        }
        let pairs: SmallVec<[(&str, &str); 4]> = entries
            .iter()
            .map(|entry| (entry.key, entry.value))
            .collect();
        let descriptor = Descriptor::from_pairs(&pairs).with_hits(allowed);
        let request = Request::new(domain, [descriptor]);
        let plan = engine::plan(rules, &request, self.clock.now());
        let readings = self.store.apply(&plan).await?;
        let decision = engine::conclude(&plan, &readings);
        let Some(answer) = decision.descriptors.first() else {
            return Ok(Judged::unlimited());
        };
        let Some(limit) = answer.limit.filter(|_| !rule.shadow_mode) else {
            return Ok(Judged::unlimited());
        };
        let remaining = if answer.over_limit {
            0
        } else {
            u64::from(answer.remaining)
        };
        Ok(Judged {
            standing: Standing::Limited {
                limit: u64::from(limit.requests_per_unit),
                remaining,
                until_reset: answer.reset.unwrap_or(UNTIL_NEXT_REPORT),
            },
            matched: true,
        })
    }
}
