//! Starting and stopping one server: bind both listeners, wire the service, metrics, HTTP
//! state and reloader together, and shut down in order — readiness first, then the drain
//! delay, then the listeners, then every task.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use super::background::start_reloads;
use super::errors::{ServeError, StartError, TaskResult, expected_exit, task_outcome};
use super::grpc;
use super::settings::{RATE_LIMIT_SERVICE_NAME, ServerConfig};
use super::store::{Memory, Redis, ServedStore, StoreSettings, upkeep_until_stopped};
use crate::clock::Clock;
use crate::config::Reloader;
use crate::http::{self, HttpState, Readiness};
use crate::metrics::Metrics;
use crate::service::{QuotaService, RateLimiter, SharedRules, reflection_v1, reflection_v1alpha};
use crate::telemetry::error_chain;

/// A started server. Dropping it stops the servers without waiting; prefer [`Self::shutdown`].
#[derive(Debug)]
pub struct RunningServer {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    rules: SharedRules,
    metrics: Metrics,
    reloader: Option<Reloader>,
    drain_delay: Duration,
    shutdown_grace: Duration,
    readiness: Readiness,
    health: HealthReporter,
    stop: watch::Sender<bool>,
    tasks: JoinSet<TaskResult>,
}

/// Binds both listeners and starts serving; returns once both accept connections.
pub async fn start<C: Clock + Clone>(config: ServerConfig<C>) -> Result<RunningServer, StartError> {
    // The one place the store is chosen; `serve` is generic over it, so each store gets its
    // own request path and the memory one pays nothing for Redis being possible.
    match config.store.clone() {
        StoreSettings::Memory { max_keys } => {
            let metrics = new_metrics(&config, Memory::LABEL)?;
            let store = Memory::new(max_keys, config.sweep_interval, &metrics);
            serve(config, store, metrics).await
        }
        StoreSettings::Redis {
            config: redis,
            probe_interval,
        } => {
            let metrics = new_metrics(&config, Redis::LABEL)?;
            let store = Redis::new(&redis, probe_interval, config.clock.clone(), &metrics)?;
            serve(config, store, metrics).await
        }
    }
}

fn new_metrics<C>(config: &ServerConfig<C>, store: &'static str) -> Result<Metrics, StartError> {
    Metrics::new(config.near_limit_ratio, store).map_err(StartError::Metrics)
}

async fn serve<C: Clock + Clone, S: ServedStore>(
    config: ServerConfig<C>,
    store: S,
    metrics: Metrics,
) -> Result<RunningServer, StartError> {
    let (grpc_listener, grpc_addr) = bind("gRPC", config.grpc_addr).await?;
    let (http_listener, http_addr) = bind("HTTP", config.http_addr).await?;
    let store = Arc::new(store);
    let limiter = Arc::new(
        RateLimiter::new(config.rules.clone(), store.clone(), config.clock.clone())
            .with_metrics(metrics.clone())
            .with_store_error_policy(config.on_store_error)
            .with_default_response(config.default_response.clone()),
    );
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(RATE_LIMIT_SERVICE_NAME, ServingStatus::Serving)
        .await;
    let readiness = Readiness::new();
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    // Before the gRPC server starts: the reloader registers the rules' metric series (tens of
    // ms for 10,000 rules), and a call served earlier would build them a second time itself.
    let reloader = match &config.reload {
        Some(settings) => Some(start_reloads(
            &config, settings, &metrics, &stopped, &mut tasks,
        )?),
        None => None,
    };

    let tls = grpc::start_tls(&config.grpc, &stopped, &mut tasks)?;
    let rate_limit_service = RateLimitServiceServer::from_arc(limiter.clone())
        .max_decoding_message_size(config.grpc.max_request_bytes);
    let rate_limit = config.grpc.load_shedding().wrap(rate_limit_service);
    let others = Routes::new(health_service)
        .add_service(
            QuotaService::new(config.rules.clone(), store.clone(), config.clock.clone())
                .with_metrics(&metrics)
                .with_shutdown(stopped.clone())
                .into_server(),
        )
        .add_service(reflection_v1().map_err(StartError::Reflection)?)
        .add_service(reflection_v1alpha().map_err(StartError::Reflection)?);
    let until = until_stopped(stopped.clone());
    let service = grpc::Dispatch::new(rate_limit, others);
    let grpc = grpc::serve(&config.grpc, service, grpc_listener, tls, until);
    let grpc_stopped = stopped.clone();
    tasks.spawn(async move {
        let result = grpc.await.map_err(ServeError::Grpc);
        (
            "gRPC server",
            result.and_then(|()| expected_exit(&grpc_stopped, "gRPC server")),
        )
    });

    let mut http_state = HttpState::new(readiness.clone(), config.rules.clone())
        .with_metrics(metrics.clone(), {
            let store = store.clone();
            move || store.publish()
        })
        .with_json(limiter.clone())
        .with_bans(limiter.clone())
        .with_usage(limiter, config.usage_endpoint_public);
    if let Some(probe) = store.probe() {
        http_state = http_state.with_store_probe(probe);
    }
    if let Some(reloader) = &reloader {
        http_state = http_state.with_reloader(reloader.clone());
    }
    let http_listener = http_listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on an HTTP connection");
        }
    });
    let http = axum::serve(http_listener, http::router(http_state))
        .with_graceful_shutdown(until_stopped(stopped.clone()));
    let http_stopped = stopped.clone();
    tasks.spawn(async move {
        let result = http.await.map_err(ServeError::Http);
        (
            "HTTP server",
            result.and_then(|()| expected_exit(&http_stopped, "HTTP server")),
        )
    });

    tasks.spawn(upkeep_until_stopped(
        store,
        config.clock,
        metrics.clone(),
        stopped,
    ));

    readiness.set(true);
    tracing::info!(grpc = %grpc_addr, http = %http_addr, "quotad serving");
    Ok(RunningServer {
        grpc_addr,
        http_addr,
        rules: config.rules,
        metrics,
        reloader,
        drain_delay: config.drain_delay,
        shutdown_grace: config.grpc.shutdown_grace,
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

    /// The server's metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The reloader, when the rules came from a path.
    pub fn reloader(&self) -> Option<&Reloader> {
        self.reloader.as_ref()
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
        if !self.drain_delay.is_zero() {
            tracing::info!(delay = ?self.drain_delay, "draining: health checks fail, still serving");
            tokio::time::sleep(self.drain_delay).await;
        }
        self.stop.send_replace(true);
        let mut outcome = Ok(());
        // In-flight calls get the grace period to finish; past it they are cut, not awaited.
        let mut grace = std::pin::pin!(tokio::time::sleep(self.shutdown_grace));
        while let Some(ended) = tokio::select! {
            ended = self.tasks.join_next() => ended,
            () = &mut grace => {
                tracing::warn!(grace = ?self.shutdown_grace, "calls still in flight after the shutdown grace; closing");
                self.tasks.abort_all();
                None
            }
        } {
            if let Err(error) = task_outcome(ended) {
                tracing::error!(error = %error_chain(&error), "server task failed during shutdown");
                outcome = outcome.and(Err(error));
            }
        }
        tracing::info!("quotad stopped");
        outcome
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
pub(super) async fn until_stopped(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stopped| *stopped).await;
}
