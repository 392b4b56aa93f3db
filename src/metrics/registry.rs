//! One Prometheus registry per server, with every fixed series registered up front: request
//! counters and latency histograms per (method, outcome), reload and store figures, and the
//! per-rule counters. Handles are plain atomics, so recording takes no lock and no allocation.
//! Each server owns its registry (tests run several in one process); `main` additionally
//! installs it as the global recorder so `metrics::counter!` anywhere in quotad lands here too.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    BuildError, Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tonic::Status;

use super::names::{self, LABEL_METHOD, LABEL_OUTCOME, LABEL_RESULT, LABEL_STORE};
use super::rules::{NearLimitRatio, RuleCounters};
use crate::clock::Timestamp;
use crate::config::{ConfigVersion, ReloadFailure, ReloadObserver};
use crate::engine::{Decision, Request, RuleSet};

pub(super) const METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

/// How a decision request reached quotad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// gRPC `ShouldRateLimit`.
    ShouldRateLimit,
    /// HTTP `POST /json`.
    Json,
    /// HTTP `GET /usage` (a lookup: never over the limit, never consumes).
    Usage,
}

impl Method {
    const ALL: [Method; 3] = [Method::ShouldRateLimit, Method::Json, Method::Usage];

    /// The `method` label value.
    pub const fn name(self) -> &'static str {
        match self {
            Method::ShouldRateLimit => "should_rate_limit",
            Method::Json => "json",
            Method::Usage => "usage",
        }
    }
}

/// How a decision request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered OK.
    Ok,
    /// Answered OVER_LIMIT.
    OverLimit,
    /// Refused as malformed.
    InvalidArgument,
    /// The store failed, so the caller got `UNAVAILABLE`.
    Unavailable,
    /// Asked for something quotad does not support.
    Unimplemented,
    /// Any other failure.
    Error,
}

impl Outcome {
    const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::OverLimit,
        Outcome::InvalidArgument,
        Outcome::Unavailable,
        Outcome::Unimplemented,
        Outcome::Error,
    ];

    /// The `outcome` label value.
    pub const fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::OverLimit => "over_limit",
            Outcome::InvalidArgument => "invalid_argument",
            Outcome::Unavailable => "unavailable",
            Outcome::Unimplemented => "unimplemented",
            Outcome::Error => "error",
        }
    }

    /// The outcome of one answered (or failed) call.
    pub fn of(result: &Result<RateLimitResponse, Status>) -> Self {
        match result {
            Ok(response) if response.overall_code == i32::from(Code::OverLimit) => {
                Outcome::OverLimit
            }
            Ok(_) => Outcome::Ok,
            Err(status) => match status.code() {
                tonic::Code::InvalidArgument => Outcome::InvalidArgument,
                tonic::Code::Unavailable => Outcome::Unavailable,
                tonic::Code::Unimplemented => Outcome::Unimplemented,
                _ => Outcome::Error,
            },
        }
    }
}

#[derive(Debug, Clone)]
struct RequestHandles {
    count: Counter,
    latency: Histogram,
}

struct Inner {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    near_limit_ratio: NearLimitRatio,
    requests: Vec<RequestHandles>,
    reload_success: Counter,
    reload_failure: Counter,
    last_reload_successful: Gauge,
    config_version: Gauge,
    config_loaded_at: Gauge,
    store_keys: Gauge,
    store_errors: Counter,
    rules: RuleCounters,
}

/// A server's metrics: the registry, its renderer and the pre-registered handles.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("near_limit_ratio", &self.inner.near_limit_ratio)
            .field("rules", &self.inner.rules)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh registry for a server whose counters live in `store` (`memory`, `redis`).
    pub fn new(near_limit_ratio: NearLimitRatio, store: &'static str) -> Result<Self, BuildError> {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(names::REQUEST_DURATION.into()),
                &names::LATENCY_BUCKETS,
            )?
            .set_buckets_for_metric(
                Matcher::Full(names::STORE_CALL_DURATION.into()),
                &names::LATENCY_BUCKETS,
            )?
            .build_recorder();
        let handle = recorder.handle();
        names::describe(&recorder);
        let counter = |name: &'static str, labels: Vec<Label>| {
            recorder.register_counter(&Key::from_parts(name, labels), &METADATA)
        };
        let gauge = |name: &'static str, labels: Vec<Label>| {
            recorder.register_gauge(&Key::from_parts(name, labels), &METADATA)
        };
        let mut requests = Vec::with_capacity(Method::ALL.len() * Outcome::ALL.len());
        for method in Method::ALL {
            for outcome in Outcome::ALL {
                let labels = vec![
                    Label::from_static_parts(LABEL_METHOD, method.name()),
                    Label::from_static_parts(LABEL_OUTCOME, outcome.name()),
                ];
                let key = Key::from_parts(names::REQUEST_DURATION, labels.clone());
                requests.push(RequestHandles {
                    count: counter(names::REQUESTS, labels),
                    latency: recorder.register_histogram(&key, &METADATA),
                });
            }
        }
        let result = |value| vec![Label::from_static_parts(LABEL_RESULT, value)];
        let store_label = || vec![Label::from_static_parts(LABEL_STORE, store)];
        let build = vec![Label::from_static_parts(
            names::LABEL_VERSION,
            env!("CARGO_PKG_VERSION"),
        )];
        gauge(names::BUILD_INFO, build).set(1.0);
        let inner = Inner {
            reload_success: counter(names::CONFIG_RELOADS, result("success")),
            reload_failure: counter(names::CONFIG_RELOADS, result("failure")),
            last_reload_successful: gauge(names::CONFIG_LAST_RELOAD_SUCCESSFUL, vec![]),
            config_version: gauge(names::CONFIG_VERSION, vec![]),
            config_loaded_at: gauge(names::CONFIG_LOADED_AT, vec![]),
            store_keys: gauge(names::STORE_KEYS, store_label()),
            store_errors: counter(names::STORE_ERRORS, store_label()),
            rules: RuleCounters::new(),
            requests,
            near_limit_ratio,
            handle,
            recorder: Arc::new(recorder),
        };
        inner.last_reload_successful.set(1.0);
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Makes this registry the process-wide recorder for the `metrics` macros; false when one
    /// was already installed.
    pub fn install_global(&self) -> bool {
        metrics::set_global_recorder(self.inner.recorder.clone()).is_ok()
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        self.inner.handle.render()
    }

    /// Drains histogram buffers; call every few seconds so memory stays bounded between scrapes.
    pub fn run_upkeep(&self) {
        self.inner.handle.run_upkeep();
    }

    /// The recorder, for series registered outside the fixed set (see `super::store`).
    pub(super) fn recorder(&self) -> &PrometheusRecorder {
        &self.inner.recorder
    }

    /// The ratio at which allowed hits count as `near_limit`.
    pub fn near_limit_ratio(&self) -> NearLimitRatio {
        self.inner.near_limit_ratio
    }

    /// Counts one answered decision request and its latency.
    pub fn record_request(&self, method: Method, outcome: Outcome, elapsed: Duration) {
        // `ALL` lists the variants in declaration order, so the discriminants index it.
        let index = method as usize * Outcome::ALL.len() + outcome as usize;
        if let Some(handles) = self.inner.requests.get(index) {
            handles.count.increment(1);
            handles.latency.record(elapsed.as_secs_f64());
        }
    }

    /// Counts each matched descriptor of `decision` against its rule.
    pub fn record_decision(
        &self,
        rules: &Arc<RuleSet>,
        request: &Request<'_>,
        decision: &Decision<'_>,
    ) {
        let inner = &*self.inner;
        inner.rules.record(
            &*inner.recorder,
            inner.near_limit_ratio,
            rules,
            request,
            decision,
        );
    }

    /// Counts one failed store call.
    pub fn record_store_error(&self) {
        self.inner.store_errors.increment(1);
    }

    /// Publishes how many counter keys the store holds.
    pub fn set_store_keys(&self, keys: usize) {
        // Precision loss above 2^53 keys is irrelevant.
        self.inner.store_keys.set(keys as f64);
    }

    /// Records a configuration that is now serving: registers its rules' series ahead of
    /// traffic and publishes its version and load time.
    pub fn config_loaded(&self, rules: &Arc<RuleSet>, version: u32, at: Timestamp) {
        let inner = &*self.inner;
        inner.rules.prepare(&*inner.recorder, rules);
        inner.config_version.set(f64::from(version));
        inner.config_loaded_at.set(at.as_nanos() as f64 / 1e9);
    }

    /// Counts a reload attempt that replaced (or confirmed) the rules.
    pub fn reload_succeeded(&self) {
        self.inner.reload_success.increment(1);
        self.inner.last_reload_successful.set(1.0);
    }

    /// Counts a reload attempt that was rejected; the previous rules keep serving.
    pub fn reload_failed(&self) {
        self.inner.reload_failure.increment(1);
        self.inner.last_reload_successful.set(0.0);
    }
}

impl ReloadObserver for Metrics {
    fn prepare(&self, rules: &Arc<RuleSet>) {
        self.inner.rules.prepare(&*self.inner.recorder, rules);
    }

    fn applied(&self, rules: &Arc<RuleSet>, version: ConfigVersion, at: Timestamp) {
        self.config_loaded(rules, version.short(), at);
        self.reload_succeeded();
    }

    fn unchanged(&self) {
        self.reload_succeeded();
    }

    fn rejected(&self, _failure: &ReloadFailure) {
        self.reload_failed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixed_series_renders_once_registered() {
        let metrics = Metrics::new(NearLimitRatio::DEFAULT, "memory").unwrap();
        metrics.record_request(Method::Json, Outcome::OverLimit, Duration::from_micros(30));
        metrics.reload_failed();
        let text = metrics.render();
        assert!(
            text.contains("quotad_requests_total{method=\"json\",outcome=\"over_limit\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("quotad_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains("quotad_config_reloads_total{result=\"failure\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("quotad_config_last_reload_successful 0"),
            "{text}"
        );
    }
}
