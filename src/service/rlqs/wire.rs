//! RLQS protobuf at the edge: a bucket's identity bytes (domain and sorted pairs, so the same
//! map always names the same bucket however it was serialized) and the engine's assignments as
//! `BucketAction`s. The `bucket_id` sent back is the reported one, unchanged: Envoy 1.40 finds
//! the bucket by hashing the whole map.

use std::time::Duration;

use envoy_types::pb::envoy::r#type::v3::rate_limit_strategy::{BlanketRule, Strategy};
use envoy_types::pb::envoy::r#type::v3::{RateLimitStrategy, TokenBucket};
use envoy_types::pb::envoy::service::rate_limit_quota::v3::BucketId;
use envoy_types::pb::envoy::service::rate_limit_quota::v3::rate_limit_quota_response::BucketAction;
use envoy_types::pb::envoy::service::rate_limit_quota::v3::rate_limit_quota_response::bucket_action::{
    AbandonAction, BucketAction as Action, QuotaAssignmentAction,
};
use envoy_types::pb::google::protobuf::{Duration as WireDuration, UInt32Value};

use crate::engine::quota::{Assignment, FILL_INTERVAL};

/// The bytes that identify a bucket: `domain`, then each `key`, `value` pair in key order,
/// every string length-prefixed so no two different buckets share an identity.
pub(super) fn bucket_identity(domain: &str, bucket: &BucketId) -> Box<[u8]> {
    let mut pairs: Vec<(&String, &String)> = bucket.bucket.iter().collect();
    pairs.sort_unstable();
    let size = pairs
        .iter()
        .map(|(key, value)| key.len() + value.len() + 8)
        .sum::<usize>()
        + domain.len()
        + 4;
    let mut identity = Vec::with_capacity(size);
    let mut push = |text: &str| {
        let length = u32::try_from(text.len()).unwrap_or(u32::MAX);
        identity.extend_from_slice(&length.to_le_bytes());
        identity.extend_from_slice(text.as_bytes());
    };
    push(domain);
    for (key, value) in pairs {
        push(key);
        push(value);
    }
    identity.into_boxed_slice()
}

fn duration(value: Duration) -> WireDuration {
    WireDuration {
        seconds: i64::try_from(value.as_secs()).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// `assignment` for the bucket `id`, as Envoy reads it.
pub(super) fn bucket_action(id: &BucketId, assignment: Assignment) -> BucketAction {
    let assign = |ttl: Duration, strategy: Strategy| {
        Action::QuotaAssignmentAction(QuotaAssignmentAction {
            assignment_time_to_live: Some(duration(ttl)),
            rate_limit_strategy: Some(RateLimitStrategy {
                strategy: Some(strategy),
            }),
        })
    };
    let action = match assignment {
        Assignment::AllowAll { ttl } => {
            assign(ttl, Strategy::BlanketRule(BlanketRule::AllowAll.into()))
        }
        Assignment::DenyAll { ttl } => {
            assign(ttl, Strategy::BlanketRule(BlanketRule::DenyAll.into()))
        }
        Assignment::TokenBucket { max_tokens, ttl } => assign(
            ttl,
            Strategy::TokenBucket(TokenBucket {
                max_tokens,
                tokens_per_fill: Some(UInt32Value { value: 1 }),
                fill_interval: Some(duration(FILL_INTERVAL)),
            }),
        ),
        Assignment::Abandon => Action::AbandonAction(AbandonAction {}),
    };
    BucketAction {
        bucket_id: Some(id.clone()),
        bucket_action: Some(action),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(pairs: &[(&str, &str)]) -> BucketId {
        BucketId {
            bucket: pairs
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn identities_ignore_map_order_and_never_collide_across_boundaries() {
        let one = bucket_identity("api", &bucket(&[("a", "1"), ("b", "2")]));
        let same = bucket_identity("api", &bucket(&[("b", "2"), ("a", "1")]));
        assert_eq!(one, same);
        let shifted = bucket_identity("api", &bucket(&[("a", "1b"), ("", "2")]));
        assert_ne!(one, shifted);
        assert_ne!(
            one,
            bucket_identity("web", &bucket(&[("a", "1"), ("b", "2")]))
        );
    }

    #[test]
    fn token_buckets_carry_whole_second_ttls_and_the_fixed_fill_interval() {
        let id = bucket(&[("name", "edge"), ("api_key", "K")]);
        let action = bucket_action(
            &id,
            Assignment::TokenBucket {
                max_tokens: 7,
                ttl: Duration::from_secs(42),
            },
        );
        assert_eq!(action.bucket_id.as_ref(), Some(&id));
        let Some(Action::QuotaAssignmentAction(quota)) = action.bucket_action else {
            panic!("{action:?}");
        };
        assert_eq!(
            quota.assignment_time_to_live.map(|ttl| ttl.seconds),
            Some(42)
        );
        let Some(Strategy::TokenBucket(bucket)) =
            quota.rate_limit_strategy.and_then(|s| s.strategy)
        else {
            panic!("not a token bucket");
        };
        assert_eq!(bucket.max_tokens, 7);
        assert_eq!(bucket.fill_interval.map(|i| i.seconds), Some(61));
        let abandon = bucket_action(&id, Assignment::Abandon);
        assert_eq!(
            abandon.bucket_action,
            Some(Action::AbandonAction(AbandonAction {}))
        );
    }
}
