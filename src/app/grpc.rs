//! The gRPC listener's transport knobs in one place: HTTP/2 keepalive and maximum connection
//! age (so long-lived Envoy connections are rebalanced after a deploy, as envoyproxy/ratelimit's
//! `GRPC_MAX_CONNECTION_AGE` does), the request-size cap, the load-shedding budget, the
//! shutdown grace, and TLS — plain TCP or rustls with reloading certificates. Rate-limit calls
//! bypass tonic's path router (see `Dispatch`); the other gRPC services go through it.

use std::convert::Infallible;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::{Request, Response};
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use super::errors::{ServeError, StartError, TaskResult};
use super::server::until_stopped;
use super::shedding::{LoadShedding, Shed};
use super::tls::{self, CurrentConfig, TlsFiles};

/// Default cap on one request message: far above any real descriptor set, far below tonic's
/// 4 MiB, so a client cannot make quotad buffer megabytes per call.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Default number of rate-limit calls running at once.
pub const DEFAULT_CONCURRENCY_LIMIT: NonZeroUsize = match NonZeroUsize::new(1024) {
    Some(limit) => limit,
    None => NonZeroUsize::MIN,
};

/// Default number of rate-limit calls waiting for a running slot before more are shed.
pub const DEFAULT_QUEUE_LIMIT: usize = 1024;

/// Default time in-flight calls get to finish after the listener closes on shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// How the gRPC listener treats connections and calls.
#[derive(Debug, Clone)]
pub struct GrpcSettings {
    /// TLS files; `None` serves plain-text HTTP/2.
    pub tls: Option<TlsFiles>,
    /// Rate-limit calls running at once.
    pub concurrency_limit: NonZeroUsize,
    /// Rate-limit calls waiting for a slot; past this, calls get `RESOURCE_EXHAUSTED`.
    pub queue_limit: usize,
    /// Largest request message accepted; larger ones get `OUT_OF_RANGE`.
    pub max_request_bytes: usize,
    /// Interval between HTTP/2 PINGs on idle connections; `None` sends none.
    pub keepalive_interval: Option<Duration>,
    /// How long a PING may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
    /// After this long a connection is sent GOAWAY, so the client reconnects (and rebalances).
    pub max_connection_age: Option<Duration>,
    /// After shutdown starts, how long in-flight calls may take before the tasks are dropped.
    pub shutdown_grace: Duration,
}

impl Default for GrpcSettings {
    fn default() -> Self {
        Self {
            tls: None,
            concurrency_limit: DEFAULT_CONCURRENCY_LIMIT,
            queue_limit: DEFAULT_QUEUE_LIMIT,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            keepalive_interval: Some(Duration::from_secs(60)),
            keepalive_timeout: Duration::from_secs(20),
            max_connection_age: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl GrpcSettings {
    /// The shared load-shedding budget these settings describe.
    pub fn load_shedding(&self) -> LoadShedding {
        LoadShedding::new(self.concurrency_limit, self.queue_limit)
    }

    /// A tonic server builder with the connection-level settings applied.
    pub fn builder(&self) -> Server {
        // HTTP/2 windows, stream limit and adaptive window stay at tonic's defaults (1 MiB
        // windows; no stream limit, since load shedding bounds calls across connections):
        // quotad's messages are tens of bytes, so a WINDOW_UPDATE is rare either way, and the
        // adaptive window measured no gain (docs/PERFORMANCE.md, ranked item 1d).
        let builder = Server::builder()
            .http2_keepalive_interval(self.keepalive_interval)
            .http2_keepalive_timeout(Some(self.keepalive_timeout));
        // Not `max_connection_age_grace`: in tonic 0.14 setting it skips the GOAWAY at the age
        // and cuts the connection at age + grace instead, failing calls in flight. Without it
        // the connection gets GOAWAY and closes once its calls finish.
        match self.max_connection_age {
            Some(age) => builder.max_connection_age(age),
            None => builder,
        }
    }
}

/// Loads the TLS config (failing the start on a bad file) and spawns its file watcher.
pub(super) fn start_tls(
    settings: &GrpcSettings,
    stopped: &watch::Receiver<bool>,
    tasks: &mut JoinSet<TaskResult>,
) -> Result<Option<CurrentConfig>, StartError> {
    let Some(files) = &settings.tls else {
        return Ok(None);
    };
    let current = Arc::new(ArcSwap::new(tls::load(files)?));
    let reloading = tls::reload_on_changes(
        files.clone(),
        current.clone(),
        until_stopped(stopped.clone()),
    );
    tasks.spawn(async move {
        let outcome = reloading.await.map_err(ServeError::TlsWatch);
        ("TLS certificate watcher", outcome)
    });
    Ok(Some(current))
}

/// The gRPC server future: `service` served on `listener` with `settings`' connection knobs,
/// over TLS when `tls` is set, until `stop` resolves and the calls in flight have finished.
pub(super) fn serve<S>(
    settings: &GrpcSettings,
    service: S,
    listener: TcpListener,
    tls: Option<CurrentConfig>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    // Without TCP_NODELAY a response written in two pieces waits out the client's delayed ACK
    // (~40 ms) whenever it is larger than one small segment.
    let tcp = TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = settings.builder();
    match tls {
        None => Box::pin(async move {
            server
                .serve_with_incoming_shutdown(service, tcp, stop)
                .await
        }),
        Some(current) => Box::pin(async move {
            server
                .serve_with_incoming_shutdown(service, tls::incoming(tcp, current), stop)
                .await
        }),
    }
}

/// The gRPC services behind one listener: rate-limit calls go straight to `rate_limit`, every
/// other path (health, RLQS, reflection) through tonic's path router, whose axum route match,
/// boxed service clone and boxed future cost ≈ 3,500 instructions per call (measured with
/// callgrind; docs/PERFORMANCE.md, ranked item 1d).
#[derive(Debug, Clone)]
pub(super) struct Dispatch<S> {
    rate_limit: Shed<S>,
    others: Routes,
}

impl<S> Dispatch<S> {
    /// Serves `rate_limit` directly and everything else through `others`.
    pub(super) fn new(rate_limit: Shed<S>, others: Routes) -> Self {
        Self {
            rate_limit,
            others: others.prepare(),
        }
    }
}

impl<S> Service<Request<Body>> for Dispatch<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match self.rate_limit.poll_ready(cx) {
            Poll::Ready(Ok(())) => Service::<Request<Body>>::poll_ready(&mut self.others, cx),
            not_ready => not_ready,
        }
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if is_call_to::<S>(request.uri().path()) {
            self.rate_limit.call(request)
        } else {
            Box::pin(self.others.call(request))
        }
    }
}

/// Whether `path` is `/<service>/<method>` for the service `S` names.
fn is_call_to<S: NamedService>(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|rest| rest.strip_prefix(S::NAME))
        .is_some_and(|method| method.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;

    use super::*;
    use crate::clock::ManualClock;
    use crate::service::RateLimiter;
    use crate::store::MemoryStore;

    type RateLimit = RateLimitServiceServer<RateLimiter<MemoryStore, ManualClock>>;

    #[test]
    fn only_rate_limit_methods_skip_the_router() {
        let method = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";
        assert!(is_call_to::<RateLimit>(method));
        for other in [
            "/grpc.health.v1.Health/Check",
            "/envoy.service.ratelimit.v3.RateLimitServiceX/ShouldRateLimit",
            "/envoy.service.ratelimit.v3.RateLimitService",
            "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
            "/",
        ] {
            assert!(!is_call_to::<RateLimit>(other), "{other}");
        }
    }
}
