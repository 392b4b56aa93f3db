//! Envoy's Rate Limit Quota Service (`StreamRateLimitQuotas`) over the same rules and counters
//! as `ShouldRateLimit`: each bucket usage report is counted through plan → apply like a
//! descriptor with `hits` = the requests Envoy allowed, and answered with assignments from the
//! shared [`QuotaLedger`], which splits the remaining budget across the open streams.
//!
//! Each stream runs in its own task until Envoy closes it or the server stops. Besides
//! answering reports it decides a bucket again when its assignment reaches its decision point
//! (window reset or TTL), and re-sends every bucket when the rules snapshot is swapped (checked
//! every [`RELOAD_POLL`]), with `abandon_action` for buckets whose rule is gone.

mod decide;
mod stream;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use envoy_types::pb::envoy::service::rate_limit_quota::v3::rate_limit_quota_service_server::{
    RateLimitQuotaService, RateLimitQuotaServiceServer,
};
use envoy_types::pb::envoy::service::rate_limit_quota::v3::{
    RateLimitQuotaResponse, RateLimitQuotaUsageReports,
};
use tokio::sync::{Mutex, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::clock::Clock;
use crate::engine::quota::{QuotaLedger, StreamId};
use crate::metrics::{Metrics, QuotaMetrics};
use crate::store::CounterStore;

use super::rls::SharedRules;

/// How often an open stream checks whether the rules were swapped.
pub const RELOAD_POLL: Duration = Duration::from_secs(1);

/// Answers buffered per stream before the stream's task waits for Envoy to read them.
const OUTBOX: usize = 16;

/// What every stream shares: rules, counters, clock, the ledger and the metrics (each stream
/// task holds a clone).
struct Shared<S, C> {
    rules: SharedRules,
    store: Arc<S>,
    clock: C,
    /// A tokio mutex held only for a pure, allocation-light ledger update (never across a
    /// store call); reports arrive every few seconds per bucket, not per request.
    ledger: Arc<Mutex<QuotaLedger>>,
    metrics: Option<(Metrics, QuotaMetrics)>,
    stopped: Option<watch::Receiver<bool>>,
    reload_poll: Duration,
}

impl<S, C: Clone> Clone for Shared<S, C> {
    fn clone(&self) -> Self {
        Self {
            rules: self.rules.clone(),
            store: self.store.clone(),
            clock: self.clock.clone(),
            ledger: self.ledger.clone(),
            metrics: self.metrics.clone(),
            stopped: self.stopped.clone(),
            reload_poll: self.reload_poll,
        }
    }
}

/// The RLQS service.
pub struct QuotaService<S, C> {
    shared: Shared<S, C>,
    next_stream: AtomicU64,
}

impl<S, C> fmt::Debug for QuotaService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaService")
            .field("streams_opened", &self.next_stream.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<S: CounterStore, C: Clock + Clone> QuotaService<S, C> {
    /// A service assigning quota from `rules`, counting in `store`, with time from `clock`.
    pub fn new(rules: SharedRules, store: Arc<S>, clock: C) -> Self {
        Self {
            shared: Shared {
                rules,
                store,
                clock,
                ledger: Arc::new(Mutex::new(QuotaLedger::new())),
                metrics: None,
                stopped: None,
                reload_poll: RELOAD_POLL,
            },
            next_stream: AtomicU64::new(0),
        }
    }

    /// The same service, recording streams, reports and assignments (and store errors) in
    /// `metrics`.
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        self.shared.metrics = Some((metrics.clone(), metrics.quota()));
        self
    }

    /// The same service, ending every stream once `stopped` turns true (server shutdown), so
    /// long-lived streams do not hold the graceful shutdown open.
    pub fn with_shutdown(mut self, stopped: watch::Receiver<bool>) -> Self {
        self.shared.stopped = Some(stopped);
        self
    }

    /// The same service, checking for swapped rules every `every` instead of [`RELOAD_POLL`].
    pub fn with_reload_poll(mut self, every: Duration) -> Self {
        self.shared.reload_poll = every;
        self
    }
}

#[tonic::async_trait]
impl<S: CounterStore, C: Clock + Clone> RateLimitQuotaService for QuotaService<S, C> {
    type StreamRateLimitQuotasStream = ReceiverStream<Result<RateLimitQuotaResponse, Status>>;

    async fn stream_rate_limit_quotas(
        &self,
        request: Request<Streaming<RateLimitQuotaUsageReports>>,
    ) -> Result<Response<Self::StreamRateLimitQuotasStream>, Status> {
        let id = StreamId(self.next_stream.fetch_add(1, Ordering::Relaxed));
        let (outbox, answers) = mpsc::channel(OUTBOX);
        let reports = request.into_inner();
        tokio::spawn(stream::run(self.shared.clone(), id, reports, outbox));
        Ok(Response::new(ReceiverStream::new(answers)))
    }
}

impl<S: CounterStore, C: Clock + Clone> QuotaService<S, C> {
    /// The tonic server for this service. Reports may list many buckets, so messages up to
    /// tonic's default 4 MiB are accepted (the `ShouldRateLimit` cap is much smaller). Not
    /// meant for load shedding: a stream lives for hours and would hold a slot all along.
    pub fn into_server(self) -> RateLimitQuotaServiceServer<Self> {
        RateLimitQuotaServiceServer::new(self)
    }
}
