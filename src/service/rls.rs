//! Envoy's `RateLimitService` over the engine: one rules snapshot per call, plan, let the store
//! apply the hits, conclude, answer. A store failure is answered by the operator's
//! [`StoreErrorPolicy`]: OK (fail open), OVER_LIMIT, or `UNAVAILABLE` so Envoy's
//! `failure_mode_deny` chooses.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use tonic::{Request, Response, Status};

use crate::clock::Clock;
use crate::engine::{self, Ban, Plan, ResponsePolicy, RuleSet, ban_identity};
use crate::metrics::{BanMetrics, Method, Metrics, Outcome};
use crate::store::{CounterStore, StoreError};

use super::convert::{RequestLimits, read_request, response_from_decision};
use super::headers::decorate;
use super::policy::StoreErrorPolicy;

/// The rules every call reads; swapping the inner `Arc` publishes a new snapshot atomically.
pub type SharedRules = Arc<ArcSwap<RuleSet>>;

/// Wraps a rule set in a handle that can later be swapped without restarting the server.
pub fn shared_rules(rules: RuleSet) -> SharedRules {
    Arc::new(ArcSwap::from_pointee(rules))
}

/// The rate-limit service: rules, counters and the clock the windows are measured by.
pub struct RateLimiter<S: CounterStore, C: Clock> {
    pub(in crate::service) rules: SharedRules,
    pub(in crate::service) store: Arc<S>,
    pub(in crate::service) clock: C,
    pub(in crate::service) metrics: Option<Metrics>,
    ban_metrics: Option<BanMetrics>,
    on_store_error: StoreErrorPolicy,
    default_response: ResponsePolicy,
}

impl<S: CounterStore, C: Clock> fmt::Debug for RateLimiter<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("domains", &self.rules.load().domains().count())
            .finish_non_exhaustive()
    }
}

impl<S: CounterStore, C: Clock> RateLimiter<S, C> {
    /// A service deciding against `rules`, counting in `store`, with time from `clock`.
    pub fn new(rules: SharedRules, store: Arc<S>, clock: C) -> Self {
        Self {
            rules,
            store,
            clock,
            metrics: None,
            ban_metrics: None,
            on_store_error: StoreErrorPolicy::default(),
            default_response: ResponsePolicy::default(),
        }
    }

    /// The same service, answering for domains that set no `response_headers` or
    /// `over_limit_body` with `policy` (by default: no headers, no body, as envoyproxy/ratelimit).
    pub fn with_default_response(mut self, policy: ResponsePolicy) -> Self {
        self.default_response = policy;
        self
    }

    /// The same service, answering store failures by `policy` (fail open by default).
    pub fn with_store_error_policy(mut self, policy: StoreErrorPolicy) -> Self {
        self.on_store_error = policy;
        self
    }

    /// The same service, counting requests, decisions and store errors in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.ban_metrics = Some(metrics.bans());
        self.metrics = Some(metrics);
        self
    }

    /// The moment on this service's clock.
    pub fn now(&self) -> crate::clock::Timestamp {
        self.clock.now()
    }

    /// Every ban in force now.
    pub async fn bans(&self) -> Result<Vec<Ban>, StoreError> {
        self.store.bans(self.clock.now()).await
    }

    /// Lifts the ban on `key`=`value` in `domain`; whether one was in force.
    pub async fn lift_ban(&self, domain: &str, key: &str, value: &str) -> Result<bool, StoreError> {
        let identity = ban_identity(domain, key, value);
        let lifted = self.store.lift_ban(&identity, self.clock.now()).await?;
        if lifted {
            tracing::info!(domain, key, value, "ban lifted");
        }
        Ok(lifted)
    }

    /// Records the strikes a rejected request earned and starts the bans they call for. A
    /// failure only delays a ban (the next excess retries), so it is logged, never answered.
    async fn strike(&self, strikes: &Plan<'_>, domain: &str) {
        let readings = match self.store.apply(strikes).await {
            Ok(readings) => readings,
            Err(error) => {
                tracing::warn!(%error, domain, "recording strikes failed");
                return;
            }
        };
        for ban in strikes.bans_due(&readings) {
            match self.store.start_ban(&ban, strikes.now()).await {
                Ok(()) => {
                    tracing::info!(
                        domain,
                        key = ban.key,
                        value = ban.value,
                        reason = ban.reason,
                        seconds = ban.remaining(strikes.now()).as_secs(),
                        "ban started"
                    );
                    if let Some(metrics) = &self.ban_metrics {
                        metrics.ban_started(domain);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, domain, key = ban.key, "starting a ban failed")
                }
            }
        }
    }

    /// Answers one request like [`Self::decide`] and records it as a `method` call. Latency is
    /// measured on tokio's monotonic clock: it is a duration, not a window position.
    pub async fn answer(
        &self,
        method: Method,
        wire: &RateLimitRequest,
    ) -> Result<RateLimitResponse, Status> {
        let started = tokio::time::Instant::now();
        let result = self.decide(wire).await;
        if let Some(metrics) = &self.metrics {
            metrics.record_request(method, Outcome::of(&result), started.elapsed());
        }
        result
    }

    /// Answers one request exactly as the gRPC method does.
    pub async fn decide(&self, wire: &RateLimitRequest) -> Result<RateLimitResponse, Status> {
        // Read in place: built aside, a request was copied several times on its way here.
        let mut request = engine::Request::new("", []);
        read_request(&mut request, wire, &RequestLimits::default())?;
        // An owned snapshot, not a guard: the call awaits the store and must not pin a
        // reload's old rules in arc-swap's debt list while it waits.
        let rules = self.rules.load_full();
        // Plan and decision are filled in place: each is too large to return by value cheaply.
        let mut plan = engine::Plan::default();
        engine::plan_into(&mut plan, &rules, &request, self.clock.now());
        let readings = match self.store.apply(&plan).await {
            Ok(readings) => readings,
            Err(error) => {
                let policy = self.on_store_error;
                tracing::warn!(%error, domain = request.domain, %policy, "counter store failed");
                self.metrics
                    .as_ref()
                    .inspect(|metrics| metrics.record_store_error());
                return policy.answer(request.descriptors.len(), &error);
            }
        };
        let mut decision = engine::Decision::default();
        engine::conclude_into(&mut decision, &plan, &readings);
        if let Some(metrics) = &self.metrics {
            metrics.record_decision(&rules, &request, &decision);
        }
        if let Some(refund) = plan.refund_if_rejected(&decision, &readings) {
            // The answer stands either way; a failed refund only leaves the hits counted.
            if let Err(error) = self.store.apply(&refund).await {
                tracing::warn!(%error, domain = request.domain, "refunding rejected hits failed");
                self.metrics
                    .as_ref()
                    .inspect(|metrics| metrics.record_store_error());
            }
        }
        if let Some(metrics) = &self.ban_metrics
            && decision
                .descriptors
                .iter()
                .any(|descriptor| descriptor.banned_until.is_some())
        {
            metrics.request_banned(request.domain);
        }
        if let Some(strikes) = plan.strikes(&request, &decision) {
            self.strike(&strikes, request.domain).await;
        }
        let mut response = response_from_decision(&decision);
        if let Some(domain) = rules.domain(request.domain) {
            decorate(
                &mut response,
                domain.response().unwrap_or(&self.default_response),
                &decision,
                &request,
                plan.now(),
            );
        }
        Ok(response)
    }
}

#[tonic::async_trait]
impl<S: CounterStore, C: Clock> RateLimitService for RateLimiter<S, C> {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        self.answer(Method::ShouldRateLimit, request.get_ref())
            .await
            .map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
        RateLimitDescriptor, rate_limit_descriptor,
    };
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code as WireCode;
    use tonic::Code;

    use super::*;
    use crate::clock::{ManualClock, Timestamp};
    use crate::store::MemoryStore;
    use crate::store::broken::BrokenStore;

    fn request(domain: &str) -> RateLimitRequest {
        RateLimitRequest {
            domain: domain.into(),
            descriptors: vec![RateLimitDescriptor {
                entries: vec![rate_limit_descriptor::Entry {
                    key: "k".into(),
                    value: "v".into(),
                }],
                ..RateLimitDescriptor::default()
            }],
            hits_addend: 0,
        }
    }

    fn clock() -> ManualClock {
        ManualClock::new(Timestamp::from_secs(1_000))
    }

    #[tokio::test]
    async fn store_failures_follow_the_policy() {
        let limiter = |policy| {
            RateLimiter::new(
                shared_rules(RuleSet::default()),
                Arc::new(BrokenStore),
                clock(),
            )
            .with_store_error_policy(policy)
        };
        let status = limiter(StoreErrorPolicy::Error)
            .decide(&request("api"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("redis down"), "{status:?}");
        let open = limiter(StoreErrorPolicy::default())
            .decide(&request("api"))
            .await
            .unwrap();
        assert_eq!(open.overall_code, i32::from(WireCode::Ok));
        assert_eq!(open.statuses.len(), 1);
        let closed = limiter(StoreErrorPolicy::Deny)
            .decide(&request("api"))
            .await
            .unwrap();
        assert_eq!(closed.overall_code, i32::from(WireCode::OverLimit));
        assert_eq!(closed.statuses[0].code, i32::from(WireCode::OverLimit));
    }

    #[tokio::test]
    async fn invalid_requests_never_reach_the_store() {
        let limiter = RateLimiter::new(
            shared_rules(RuleSet::default()),
            Arc::new(BrokenStore),
            clock(),
        );
        let status = limiter.decide(&request("")).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }

    #[tokio::test]
    async fn unknown_domains_are_allowed_without_a_limit() {
        let limiter = RateLimiter::new(
            shared_rules(RuleSet::default()),
            Arc::new(MemoryStore::new()),
            clock(),
        );
        let response = limiter.decide(&request("nowhere")).await.unwrap();
        assert_eq!(response.statuses.len(), 1);
        assert_eq!(response.statuses[0].current_limit, None);
        assert_eq!(response.statuses[0].limit_remaining, 0);
    }
}
