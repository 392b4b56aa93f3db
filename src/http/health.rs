//! `GET /healthcheck` for load balancers and orchestrators: 200 "OK" once rules are loaded and
//! the gRPC server is accepting, 503 before that and while draining, so traffic moves away
//! before the listener closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

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

/// The HTTP routes, answering from `readiness`.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthcheck", get(healthcheck))
        .with_state(readiness)
}

async fn healthcheck(State(readiness): State<Readiness>) -> (StatusCode, &'static str) {
    if readiness.is_ready() {
        (StatusCode::OK, "OK")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "NOT READY")
    }
}
