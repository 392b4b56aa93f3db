//! The HTTP port's routes and the state they share. One listener carries probes, metrics, the
//! JSON decision endpoint and the admin endpoints; the admin ones check the peer address
//! themselves, which is why the router must be served with connection info.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use axum::routing::{delete, get, post};

use super::admin;
use super::bans::{self, ManageBans};
use super::health::{self, Readiness, StoreProbe};
use super::json::{self, Decide};
use super::usage::{self, ReportUsage};
use crate::config::Reloader;
use crate::metrics::Metrics;
use crate::service::SharedRules;

/// Everything the HTTP handlers read; cheap to clone.
#[derive(Clone)]
pub struct HttpState {
    pub(super) readiness: Readiness,
    pub(super) rules: SharedRules,
    pub(super) store: Option<StoreProbe>,
    pub(super) metrics: Option<Metrics>,
    pub(super) before_scrape: Option<Arc<dyn Fn() + Send + Sync>>,
    pub(super) reloader: Option<Reloader>,
    pub(super) decider: Option<Arc<dyn Decide>>,
    pub(super) bans: Option<Arc<dyn ManageBans>>,
    pub(super) usage: Option<Arc<dyn ReportUsage>>,
    pub(super) usage_public: bool,
}

impl fmt::Debug for HttpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpState")
            .field("readiness", &self.readiness)
            .field("store", &self.store)
            .field("metrics", &self.metrics.is_some())
            .field("reloader", &self.reloader)
            .field("json", &self.decider.is_some())
            .field("bans", &self.bans.is_some())
            .field("usage", &self.usage.is_some())
            .field("usage_public", &self.usage_public)
            .finish_non_exhaustive()
    }
}

impl HttpState {
    /// State for probes and `/rlconfig` over `rules`; the other endpoints answer 404 until
    /// their part is added.
    pub fn new(readiness: Readiness, rules: SharedRules) -> Self {
        Self {
            readiness,
            rules,
            store: None,
            metrics: None,
            before_scrape: None,
            reloader: None,
            decider: None,
            bans: None,
            usage: None,
            usage_public: false,
        }
    }

    /// Readiness also requires `probe` to report the store reachable.
    pub fn with_store_probe(mut self, probe: StoreProbe) -> Self {
        self.store = Some(probe);
        self
    }

    /// Serves `metrics` at `/metrics`, calling `before_scrape` first to refresh sampled gauges.
    pub fn with_metrics(
        mut self,
        metrics: Metrics,
        before_scrape: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        self.metrics = Some(metrics);
        self.before_scrape = Some(Arc::new(before_scrape));
        self
    }

    /// Enables `POST /reload` and the reload status on `/rlconfig`.
    pub fn with_reloader(mut self, reloader: Reloader) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// Answers `POST /json` with `decider`.
    pub fn with_json(mut self, decider: Arc<dyn Decide>) -> Self {
        self.decider = Some(decider);
        self
    }

    /// Serves `GET /bans` and `DELETE /bans/{domain}/{key}/{value}` with `bans`.
    pub fn with_bans(mut self, bans: Arc<dyn ManageBans>) -> Self {
        self.bans = Some(bans);
        self
    }

    /// Answers `GET /usage` with `reader`: to loopback clients only, or to anyone if `public`.
    pub fn with_usage(mut self, reader: Arc<dyn ReportUsage>, public: bool) -> Self {
        self.usage = Some(reader);
        self.usage_public = public;
        self
    }
}

/// The routes, as a service that hands each handler its peer address.
pub fn router(state: HttpState) -> IntoMakeServiceWithConnectInfo<Router, SocketAddr> {
    Router::new()
        .route("/healthcheck", get(health::ready))
        .route("/ready", get(health::ready))
        .route("/live", get(health::live))
        .route("/metrics", get(admin::metrics))
        .route("/rlconfig", get(admin::rlconfig))
        .route("/reload", post(admin::reload))
        .route("/json", post(json::json))
        .route("/bans", get(bans::list))
        .route("/bans/{domain}/{key}/{value}", delete(bans::lift))
        .route("/usage", get(usage::usage))
        .with_state(state)
        .into_make_service_with_connect_info::<SocketAddr>()
}
