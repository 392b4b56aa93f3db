//! The gRPC listener's transport knobs in one place: HTTP/2 keepalive and maximum connection
//! age (so long-lived Envoy connections are rebalanced after a deploy, as envoyproxy/ratelimit's
//! `GRPC_MAX_CONNECTION_AGE` does), the request-size cap, the load-shedding budget, the
//! shutdown grace, and TLS — plain TCP or rustls with reloading certificates.

use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::Server;
use tonic::transport::server::{Router, TcpIncoming};

use super::errors::{ServeError, StartError, TaskResult};
use super::server::until_stopped;
use super::shedding::LoadShedding;
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

/// The gRPC server future: `router` served on `listener`, over TLS when `tls` is set, until
/// `stop` resolves and the calls in flight have finished.
pub(super) fn serve(
    router: Router,
    listener: TcpListener,
    tls: Option<CurrentConfig>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> {
    // Without TCP_NODELAY a response written in two pieces waits out the client's delayed ACK
    // (~40 ms) whenever it is larger than one small segment.
    let tcp = TcpIncoming::from(listener).with_nodelay(Some(true));
    match tls {
        None => Box::pin(router.serve_with_incoming_shutdown(tcp, stop)),
        Some(current) => {
            Box::pin(router.serve_with_incoming_shutdown(tls::incoming(tcp, current), stop))
        }
    }
}
