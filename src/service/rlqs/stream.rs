//! One RLQS stream: answers each usage report with the reported buckets' assignments, decides
//! a bucket again at its decision point (window reset or TTL), re-sends every bucket after a
//! rules swap, and on close gives its grants back so the other streams share the budget.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::rate_limit_quota::v3::rate_limit_quota_response::BucketAction;
use envoy_types::pb::envoy::service::rate_limit_quota::v3::{
    BucketId, RateLimitQuotaResponse, RateLimitQuotaUsageReports,
};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tonic::{Status, Streaming};

use crate::clock::{Clock, Timestamp};
use crate::engine::RuleSet;
use crate::engine::quota::{Assignment, StreamId, Trigger};
use crate::store::CounterStore;

use super::Shared;
use super::wire::{bucket_action, bucket_identity};

/// The shortest wait before deciding a bucket again, so a decision point in the past (a clock
/// step, a sub-millisecond reset) cannot spin the task.
const MIN_GAP: Duration = Duration::from_millis(50);

/// How long a bucket whose store call failed waits before it is decided again unprompted.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// Most buckets one stream may have assigned; a bucket beyond it gets no answer.
const MAX_BUCKETS: usize = 100_000;

/// How long an idle stream (no bucket yet) sleeps between looks at its timer.
const IDLE: Duration = Duration::from_secs(3_600);

/// A bucket this stream reported.
#[derive(Debug)]
struct Tracked {
    domain: Box<str>,
    id: BucketId,
    decide_at: Timestamp,
    matched: bool,
}

/// The state of one stream's task.
struct Stream<S, C> {
    shared: Shared<S, C>,
    id: StreamId,
    buckets: HashMap<Box<[u8]>, Tracked>,
    rules: Arc<RuleSet>,
    outbox: mpsc::Sender<Result<RateLimitQuotaResponse, Status>>,
}

/// Serves one stream until Envoy closes it, stops reading answers, or the server stops.
pub(super) async fn run<S: CounterStore, C: Clock>(
    shared: Shared<S, C>,
    id: StreamId,
    mut reports: Streaming<RateLimitQuotaUsageReports>,
    outbox: mpsc::Sender<Result<RateLimitQuotaResponse, Status>>,
) {
    let mut reload = tokio::time::interval(shared.reload_poll);
    reload.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut stopped = shared.stopped.clone();
    if let Some((_, quota)) = &shared.metrics {
        quota.stream_opened();
    }
    let rules = shared.rules.load_full();
    let mut stream = Stream {
        shared,
        id,
        buckets: HashMap::new(),
        rules,
        outbox,
    };
    tracing::debug!(stream = id.0, "RLQS stream opened");
    loop {
        let wait = stream.until_next_decision();
        let open = tokio::select! {
            message = reports.message() => match message {
                Ok(Some(report)) => stream.on_report(report).await,
                Ok(None) => false,
                Err(status) => {
                    tracing::debug!(stream = id.0, %status, "RLQS stream failed");
                    false
                }
            },
            () = tokio::time::sleep(wait) => stream.on_due().await,
            _ = reload.tick() => stream.on_tick().await,
            () = until_stopped(stopped.as_mut()) => false,
        };
        if !open {
            break;
        }
    }
    stream.close().await;
    tracing::debug!(stream = id.0, "RLQS stream closed");
}

/// Resolves once the server stops (or nobody can stop it any more); never without a signal.
async fn until_stopped(stopped: Option<&mut watch::Receiver<bool>>) {
    match stopped {
        Some(stopped) => {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        }
        None => std::future::pending().await,
    }
}

impl<S: CounterStore, C: Clock> Stream<S, C> {
    fn until_next_decision(&self) -> Duration {
        let now = self.shared.clock.now().as_nanos();
        self.buckets
            .values()
            .map(|bucket| Duration::from_nanos(bucket.decide_at.as_nanos().saturating_sub(now)))
            .min()
            .map_or(IDLE, |wait| wait.max(MIN_GAP))
    }

    /// Counts a report and answers every bucket in it; false once Envoy stopped listening.
    async fn on_report(&mut self, report: RateLimitQuotaUsageReports) -> bool {
        if let Some((_, quota)) = &self.shared.metrics {
            quota.reports_received(report.bucket_quota_usages.len());
        }
        // `time_elapsed` is not read: Envoy 1.40 sends 0 s in a bucket's first report
        // (against the proto's own `gt: 0`), and usage is counted when it arrives anyway.
        let rules = self.shared.rules.load_full();
        let mut actions = Vec::with_capacity(report.bucket_quota_usages.len());
        for usage in report.bucket_quota_usages {
            let Some(bucket) = usage.bucket_id.filter(|id| !id.bucket.is_empty()) else {
                tracing::debug!(
                    stream = self.id.0,
                    "RLQS report without a bucket id ignored"
                );
                continue;
            };
            let allowed = usage.num_requests_allowed;
            let action = self
                .decide(&rules, &report.domain, bucket, allowed, Trigger::Report)
                .await;
            actions.extend(action);
        }
        self.send(actions).await
    }

    /// Decides again every bucket whose decision point has passed.
    async fn on_due(&mut self) -> bool {
        let now = self.shared.clock.now();
        let due: Vec<(Box<str>, BucketId)> = self
            .buckets
            .values()
            .filter(|bucket| bucket.decide_at <= now)
            .map(|bucket| (bucket.domain.clone(), bucket.id.clone()))
            .collect();
        self.redecide(due).await
    }

    /// After a rules swap, decides every bucket again under the new rules and re-sends it.
    async fn on_tick(&mut self) -> bool {
        let current = self.shared.rules.load_full();
        if Arc::ptr_eq(&current, &self.rules) {
            return true;
        }
        self.rules = current;
        let all = self
            .buckets
            .values()
            .map(|bucket| (bucket.domain.clone(), bucket.id.clone()))
            .collect();
        self.redecide(all).await
    }

    async fn redecide(&mut self, buckets: Vec<(Box<str>, BucketId)>) -> bool {
        let rules = self.shared.rules.load_full();
        let mut actions = Vec::with_capacity(buckets.len());
        for (domain, bucket) in buckets {
            let action = self.decide(&rules, &domain, bucket, 0, Trigger::Unprompted);
            actions.extend(action.await);
        }
        self.send(actions).await
    }

    /// Counts `allowed` for `bucket` and decides its assignment; `None` when the store failed
    /// (Envoy keeps its current assignment until the TTL, then its expiry behaviour applies).
    async fn decide(
        &mut self,
        rules: &RuleSet,
        domain: &str,
        bucket: BucketId,
        allowed: u64,
        trigger: Trigger,
    ) -> Option<BucketAction> {
        let judged = match self.shared.judge(rules, domain, &bucket, allowed).await {
            Ok(judged) => judged,
            Err(error) => {
                tracing::warn!(%error, domain, "counter store failed; RLQS bucket not assigned");
                if let Some((metrics, _)) = &self.shared.metrics {
                    metrics.record_store_error();
                }
                // Try again later, not at every turn of the loop.
                let retry_at = self.shared.clock.now().saturating_add(STORE_RETRY);
                if let Some(tracked) = self.buckets.get_mut(&bucket_identity(domain, &bucket)) {
                    tracked.decide_at = tracked.decide_at.max(retry_at);
                }
                return None;
            }
        };
        let key = bucket_identity(domain, &bucket);
        if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(&key) {
            // Envoy keeps its no_assignment_behavior for it; memory stays bounded.
            tracing::warn!(
                stream = self.id.0,
                domain,
                "RLQS stream at its bucket limit"
            );
            return None;
        }
        let now = self.shared.clock.now();
        let lost_rule = !judged.matched && self.buckets.get(&key).is_some_and(|b| b.matched);
        let mut ledger = self.shared.ledger.lock().await;
        let assignment = if lost_rule {
            ledger.release(&key, self.id);
            self.buckets.remove(&key);
            Assignment::Abandon
        } else {
            let decided = ledger.decide(&key, self.id, judged.standing, trigger, now);
            let tracked = Tracked {
                domain: domain.into(),
                id: bucket.clone(),
                decide_at: now.saturating_add(decided.decide_again_in.max(MIN_GAP)),
                matched: judged.matched,
            };
            self.buckets.insert(key, tracked);
            decided.assignment
        };
        if let Some((_, quota)) = &self.shared.metrics {
            quota.set_buckets(ledger.buckets());
            quota.assignment_sent(assignment.kind());
        }
        drop(ledger);
        Some(bucket_action(&bucket, assignment))
    }

    async fn send(&self, actions: Vec<BucketAction>) -> bool {
        if actions.is_empty() {
            return true;
        }
        let response = RateLimitQuotaResponse {
            bucket_action: actions,
        };
        self.outbox.send(Ok(response)).await.is_ok()
    }

    /// Gives every grant back, so the remaining streams split the budget without this one.
    async fn close(self) {
        let mut ledger = self.shared.ledger.lock().await;
        for key in self.buckets.keys() {
            ledger.release(key, self.id);
        }
        if let Some((_, quota)) = &self.shared.metrics {
            quota.set_buckets(ledger.buckets());
            quota.stream_closed();
        }
    }
}
