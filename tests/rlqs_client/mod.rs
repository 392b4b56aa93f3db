//! The RLQS test client: an in-process quotad on a manual clock parked at midnight UTC, a
//! stream that reports usage the way Envoy 1.40 does, and assignments read back as [`Said`].

use std::time::Duration;

use envoy_types::pb::envoy::r#type::v3::rate_limit_strategy::{BlanketRule, Strategy};
use envoy_types::pb::envoy::service::rate_limit_quota::v3::rate_limit_quota_response::BucketAction;
use envoy_types::pb::envoy::service::rate_limit_quota::v3::rate_limit_quota_response::bucket_action::BucketAction as Action;
use envoy_types::pb::envoy::service::rate_limit_quota::v3::rate_limit_quota_service_client::RateLimitQuotaServiceClient;
use envoy_types::pb::envoy::service::rate_limit_quota::v3::rate_limit_quota_usage_reports::BucketQuotaUsage;
use envoy_types::pb::envoy::service::rate_limit_quota::v3::{
    BucketId, RateLimitQuotaResponse, RateLimitQuotaUsageReports,
};
use envoy_types::pb::google::protobuf::Duration as WireDuration;
use quotad::app::{self, RunningServer, ServerConfig, StoreSettings};
use quotad::clock::ManualClock;
use quotad::config::compile_str;
use quotad::service::shared_rules;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::common::{self, START};

pub async fn start(yaml: &str) -> (RunningServer, ManualClock) {
    let clock = ManualClock::new(START);
    (
        start_with(yaml, StoreSettings::default(), &clock).await,
        clock,
    )
}

pub async fn start_with(yaml: &str, store: StoreSettings, clock: &ManualClock) -> RunningServer {
    let loopback = "127.0.0.1:0".parse().expect("valid address");
    let rules = compile_str("rules.yaml", yaml).unwrap_or_else(|errors| panic!("{errors}"));
    let mut config = ServerConfig::new(loopback, loopback, shared_rules(rules), clock.clone());
    config.store = store;
    app::start(config).await.expect("server starts")
}

/// One Envoy-like stream: reports go in through `reports`, assignments come out of `answers`.
pub struct Stream {
    pub reports: mpsc::Sender<RateLimitQuotaUsageReports>,
    pub answers: Streaming<RateLimitQuotaResponse>,
}

pub async fn open(server: &RunningServer) -> Stream {
    let channel = common::channel(server).await;
    let (reports, outgoing) = mpsc::channel(8);
    let answers = RateLimitQuotaServiceClient::new(channel)
        .stream_rate_limit_quotas(ReceiverStream::new(outgoing))
        .await
        .expect("stream opens")
        .into_inner();
    Stream { reports, answers }
}

pub fn bucket(pairs: &[(&str, &str)]) -> BucketId {
    BucketId {
        bucket: pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
    }
}

pub fn key(api_key: &str) -> BucketId {
    bucket(&[("name", "edge-keyed"), ("api_key", api_key)])
}

/// What an assignment says, in one comparable value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Said {
    Allow { ttl: i64 },
    Deny { ttl: i64 },
    Tokens { max: u32, ttl: i64 },
    Abandon,
}

pub fn said(action: &BucketAction) -> Said {
    match action.bucket_action.as_ref().expect("an action") {
        Action::AbandonAction(_) => Said::Abandon,
        Action::QuotaAssignmentAction(quota) => {
            let ttl = quota
                .assignment_time_to_live
                .expect("a TTL, always")
                .seconds;
            match quota.rate_limit_strategy.and_then(|s| s.strategy) {
                Some(Strategy::BlanketRule(rule)) if rule == BlanketRule::AllowAll as i32 => {
                    Said::Allow { ttl }
                }
                Some(Strategy::BlanketRule(_)) => Said::Deny { ttl },
                Some(Strategy::TokenBucket(bucket)) => Said::Tokens {
                    max: bucket.max_tokens,
                    ttl,
                },
                other => panic!("unexpected strategy {other:?}"),
            }
        }
    }
}

impl Stream {
    /// Reports `allowed` requests for each bucket, the first report's `time_elapsed` of 0 s
    /// included, as Envoy 1.40 sends it.
    pub async fn report(&self, domain: &str, usages: &[(&BucketId, u64)]) {
        let bucket_quota_usages = usages
            .iter()
            .map(|(id, allowed)| BucketQuotaUsage {
                bucket_id: Some((*id).clone()),
                time_elapsed: Some(WireDuration::default()),
                num_requests_allowed: *allowed,
                num_requests_denied: 3,
            })
            .collect();
        let report = RateLimitQuotaUsageReports {
            domain: domain.into(),
            bucket_quota_usages,
        };
        self.reports.send(report).await.expect("stream open");
    }

    /// The next answer, with a generous deadline.
    pub async fn next(&mut self) -> Vec<BucketAction> {
        let answer = tokio::time::timeout(Duration::from_secs(30), self.answers.message())
            .await
            .expect("an answer within 30 s")
            .expect("stream healthy")
            .expect("stream still open");
        answer.bucket_action
    }

    /// Reports one bucket and returns what it was assigned (checking the id came back as sent).
    pub async fn ask(&mut self, domain: &str, id: &BucketId, allowed: u64) -> Said {
        self.report(domain, &[(id, allowed)]).await;
        let actions = self.next().await;
        assert_eq!(actions.len(), 1, "{actions:?}");
        assert_eq!(
            actions[0].bucket_id.as_ref(),
            Some(id),
            "the id comes back unchanged"
        );
        said(&actions[0])
    }
}

/// Polls `check` every 20 ms for up to 30 s.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(
            tokio::time::Instant::now() < give_up,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
