//! Wiring and lifecycle: bind both listeners, serve gRPC (RateLimitService + health) and HTTP,
//! sweep expired counters in the background, and stop gracefully — readiness drops first, then
//! the listeners close and in-flight calls finish. Tests drive this API directly, with a manual
//! clock and loopback listeners on port 0.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::clock::{Clock, SystemClock};
use crate::http::{self, Readiness};
use crate::service::{RateLimiter, SharedRules};
use crate::store::MemoryStore;
use crate::telemetry::error_chain;

/// How often expired counters are reclaimed unless configured otherwise.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The gRPC service name health checks ask about.
pub const RATE_LIMIT_SERVICE_NAME: &str =
    envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::SERVICE_NAME;

/// Everything `start` needs: where to listen, which rules, and which clock to count by.
#[derive(Debug, Clone)]
pub struct ServerConfig<C = SystemClock> {
    /// Address for gRPC; port 0 picks a free port (see [`RunningServer::grpc_addr`]).
    pub grpc_addr: SocketAddr,
    /// Address for HTTP; port 0 picks a free port (see [`RunningServer::http_addr`]).
    pub http_addr: SocketAddr,
    /// The rules handle; whoever holds a clone can publish new rules.
    pub rules: SharedRules,
    /// The time source for every window.
    pub clock: C,
    /// How often expired counters are reclaimed.
    pub sweep_interval: Duration,
}

impl<C: Clock + Clone> ServerConfig<C> {
    /// A configuration with the default sweep interval.
    pub fn new(grpc_addr: SocketAddr, http_addr: SocketAddr, rules: SharedRules, clock: C) -> Self {
        Self {
            grpc_addr,
            http_addr,
            rules,
            clock,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen for {protocol} on {addr}")]
    Bind {
        /// Which listener ("gRPC" or "HTTP").
        protocol: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
    /// A shutdown signal handler could not be installed.
    #[error("cannot install the {signal} handler")]
    Signal {
        /// The signal's name.
        signal: &'static str,
        /// What the operating system said.
        source: io::Error,
    },
}

/// Why serving ended badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC server failed.
    #[error("gRPC server failed")]
    Grpc(#[source] tonic::transport::Error),
    /// The HTTP server failed.
    #[error("HTTP server failed")]
    Http(#[source] io::Error),
    /// A server task ended although nobody asked it to.
    #[error("{0} stopped unexpectedly")]
    Exited(&'static str),
    /// A server task panicked or was cancelled.
    #[error("{task} task ended abnormally: {message}")]
    Task {
        /// Which task.
        task: &'static str,
        /// The runtime's description.
        message: String,
    },
}

type TaskResult = (&'static str, Result<(), ServeError>);

/// A started server. Dropping it stops the servers without waiting; prefer [`Self::shutdown`].
#[derive(Debug)]
pub struct RunningServer {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    rules: SharedRules,
    readiness: Readiness,
    health: HealthReporter,
    stop: watch::Sender<bool>,
    tasks: JoinSet<TaskResult>,
}

/// Binds both listeners and starts serving; returns once both accept connections.
pub async fn start<C: Clock + Clone>(config: ServerConfig<C>) -> Result<RunningServer, StartError> {
    let (grpc_listener, grpc_addr) = bind("gRPC", config.grpc_addr).await?;
    let (http_listener, http_addr) = bind("HTTP", config.http_addr).await?;
    let store = Arc::new(MemoryStore::new());
    let limiter = RateLimiter::new(config.rules.clone(), store.clone(), config.clock.clone());
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(RATE_LIMIT_SERVICE_NAME, ServingStatus::Serving)
        .await;
    let readiness = Readiness::new();
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();

    let grpc = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(RateLimitServiceServer::new(limiter))
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(grpc_listener),
            until_stopped(stopped.clone()),
        );
    let grpc_stopped = stopped.clone();
    tasks.spawn(async move {
        let result = grpc.await.map_err(ServeError::Grpc);
        (
            "gRPC server",
            result.and_then(|()| expected_exit(&grpc_stopped, "gRPC server")),
        )
    });

    let http = axum::serve(http_listener, http::router(readiness.clone()))
        .with_graceful_shutdown(until_stopped(stopped.clone()));
    let http_stopped = stopped.clone();
    tasks.spawn(async move {
        let result = http.await.map_err(ServeError::Http);
        (
            "HTTP server",
            result.and_then(|()| expected_exit(&http_stopped, "HTTP server")),
        )
    });

    let sweep_every = config.sweep_interval;
    tasks.spawn(sweep_until_stopped(
        store,
        config.clock,
        sweep_every,
        stopped,
    ));

    readiness.set(true);
    tracing::info!(grpc = %grpc_addr, http = %http_addr, "quotad serving");
    Ok(RunningServer {
        grpc_addr,
        http_addr,
        rules: config.rules,
        readiness,
        health,
        stop,
        tasks,
    })
}

impl RunningServer {
    /// The address the gRPC listener is bound to.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The address the HTTP listener is bound to.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The rules handle the service reads from.
    pub fn rules(&self) -> &SharedRules {
        &self.rules
    }

    /// Serves until `signal` resolves, then shuts down; ends early if a server task fails.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<(), ServeError> {
        let early = tokio::select! {
            () = signal => None,
            Some(ended) = self.tasks.join_next() => Some(task_outcome(ended)),
        };
        let drained = self.shutdown().await;
        match early {
            Some(Err(error)) => Err(error),
            _ => drained,
        }
    }

    /// Drops readiness, stops accepting, lets in-flight calls finish and waits for every task.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        self.readiness.set(false);
        for service in [RATE_LIMIT_SERVICE_NAME, ""] {
            self.health
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
        self.stop.send_replace(true);
        let mut outcome = Ok(());
        while let Some(ended) = self.tasks.join_next().await {
            if let Err(error) = task_outcome(ended) {
                tracing::error!(error = %error_chain(&error), "server task failed during shutdown");
                outcome = outcome.and(Err(error));
            }
        }
        tracing::info!("quotad stopped");
        outcome
    }
}

/// Resolves on the first SIGTERM or SIGINT; the handlers are installed before this returns, so
/// a signal that arrives while the server starts is not lost.
pub fn shutdown_signal() -> Result<impl Future<Output = ()>, StartError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind, name| {
            signal(kind).map_err(|source| StartError::Signal {
                signal: name,
                source,
            })
        };
        let mut terminate = install(SignalKind::terminate(), "SIGTERM")?;
        let mut interrupt = install(SignalKind::interrupt(), "SIGINT")?;
        Ok(async move {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "shutting down");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            tracing::info!(signal = "ctrl-c", "shutting down");
        })
    }
}

async fn bind(
    protocol: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let error = |source| StartError::Bind {
        protocol,
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    Ok((listener, bound))
}

/// Resolves once a stop is requested, or once nobody can request one any more.
async fn until_stopped(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stopped| *stopped).await;
}

fn expected_exit(stopped: &watch::Receiver<bool>, task: &'static str) -> Result<(), ServeError> {
    if *stopped.borrow() {
        Ok(())
    } else {
        Err(ServeError::Exited(task))
    }
}

fn task_outcome(ended: Result<TaskResult, tokio::task::JoinError>) -> Result<(), ServeError> {
    match ended {
        Ok((_, result)) => result,
        Err(error) => Err(ServeError::Task {
            task: "server",
            message: error.to_string(),
        }),
    }
}

/// Reclaims expired counters every `every` until stopped. The sweep walks every key, so it
/// runs on the blocking pool rather than stalling a request worker.
async fn sweep_until_stopped<C: Clock + Clone>(
    store: Arc<MemoryStore>,
    clock: C,
    every: Duration,
    mut stopped: watch::Receiver<bool>,
) -> TaskResult {
    // `interval` refuses a zero period; a millisecond is the fastest sweep worth having.
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stopped| *stopped) => return ("sweeper", Ok(())),
            _ = ticks.tick() => {}
        }
        let (store, now) = (store.clone(), clock.now());
        match tokio::task::spawn_blocking(move || store.sweep(now)).await {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, "swept expired counters"),
            Err(error) => tracing::warn!(%error, "counter sweep failed"),
        }
    }
}
