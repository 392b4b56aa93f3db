//! Probes for load balancers and orchestrators. `GET /healthcheck` and `GET /ready` answer 200
//! once rules are loaded, the servers accept and the counter store is reachable, and 503 before
//! that and while draining, so traffic moves away before the listeners close. `GET /live`
//! answers 200 while the process can serve HTTP at all, so Kubernetes restarts only a wedged
//! process, never one that is merely draining or waiting for its store.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::StatusCode;

use super::router::HttpState;

/// A latch the server sets once it can answer and clears when it starts draining.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
}

impl Readiness {
    /// A latch that starts not ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the server ready (or not) for every clone of this latch.
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether the server currently reports itself ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Answers whether the counter store can be reached right now, without calling it (a store
/// keeps its own view, e.g. Redis's last call and breaker state).
#[derive(Clone)]
pub struct StoreProbe(Arc<dyn Fn() -> bool + Send + Sync>);

impl StoreProbe {
    /// A probe that asks `reachable`.
    pub fn new(reachable: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(reachable))
    }

    /// Whether the store is reachable.
    pub fn is_reachable(&self) -> bool {
        (self.0)()
    }
}

impl fmt::Debug for StoreProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreProbe")
            .field("reachable", &self.is_reachable())
            .finish()
    }
}

/// `GET /healthcheck` and `GET /ready`.
pub(super) async fn ready(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if !state.readiness.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "NOT READY")
    } else if !state.store.as_ref().is_none_or(StoreProbe::is_reachable) {
        (StatusCode::SERVICE_UNAVAILABLE, "STORE UNREACHABLE")
    } else {
        (StatusCode::OK, "OK")
    }
}

/// `GET /live`.
pub(super) async fn live() -> (StatusCode, &'static str) {
    (StatusCode::OK, "OK")
}
