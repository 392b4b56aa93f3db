//! Every metric name and label key quotad exports, described once, so dashboards, alert rules
//! and the code cannot drift apart. Label values come from the config (domain, key path) or
//! from small fixed sets (method, outcome, result, store), never from raw request values —
//! except for rules that set `detailed_metric`, where the operator asked for them.
//!
//! Mapping from envoyproxy/ratelimit's statsd names (as its statsd_exporter mapping exposes
//! them), so existing dashboards can be ported:
//!
//! | envoyproxy/ratelimit (statsd)                          | quotad (Prometheus)                          |
//! |--------------------------------------------------------|----------------------------------------------|
//! | `ratelimit.service.rate_limit.DOMAIN.KEY.total_hits`   | `quotad_rule_hits_total{domain,key_path}`     |
//! | `ratelimit.service.rate_limit.DOMAIN.KEY.over_limit`   | `quotad_rule_over_limit_total{…}`             |
//! | `ratelimit.service.rate_limit.DOMAIN.KEY.near_limit`   | `quotad_rule_near_limit_total{…}`             |
//! | `ratelimit.service.rate_limit.DOMAIN.KEY.within_limit` | `quotad_rule_within_limit_total{…}`           |
//! | `ratelimit.service.rate_limit.DOMAIN.KEY.shadow_mode`  | `quotad_rule_shadow_mode_total{…}`            |
//! | `ratelimit.service.call.should_rate_limit.*`           | `quotad_requests_total{method,outcome}`       |
//! | `ratelimit_server.ShouldRateLimit.response_time`       | `quotad_request_duration_seconds{…}`          |
//! | `ratelimit.service.config_load_success` / `_error`     | `quotad_config_reloads_total{result}`         |
//! | `ratelimit.service.rate_limit.*.redis_error`           | `quotad_store_errors_total{store}`            |
//!
//! Redis health has no envoyproxy/ratelimit counterpart: `quotad_store_call_errors_total{store,kind}`,
//! `quotad_store_call_duration_seconds{store}`, `quotad_store_connected{store}` and
//! `quotad_store_breaker_open{store}`; the memory store adds `quotad_store_evictions_total{store}`.

use metrics::{Recorder, SharedString, Unit};

/// Hits counted against a rule (envoyproxy/ratelimit's `total_hits`).
pub const RULE_HITS: &str = "quotad_rule_hits_total";
/// Hits that found the rule over its limit, shadow mode included (`over_limit`).
pub const RULE_OVER_LIMIT: &str = "quotad_rule_over_limit_total";
/// Allowed hits that brought usage to at least `--near-limit-ratio` of the limit (`near_limit`).
pub const RULE_NEAR_LIMIT: &str = "quotad_rule_near_limit_total";
/// Hits allowed by the rule's limits (`within_limit`).
pub const RULE_WITHIN_LIMIT: &str = "quotad_rule_within_limit_total";
/// Over-limit hits allowed only because the rule is in shadow mode (`shadow_mode`).
pub const RULE_SHADOW_MODE: &str = "quotad_rule_shadow_mode_total";
/// Decision requests answered, by method and outcome.
pub const REQUESTS: &str = "quotad_requests_total";
/// Time to answer a decision request, by method and outcome.
pub const REQUEST_DURATION: &str = "quotad_request_duration_seconds";
/// Configuration reload attempts, by result.
pub const CONFIG_RELOADS: &str = "quotad_config_reloads_total";
/// 1 when the last reload attempt succeeded (or none failed yet), 0 while the config on disk is bad.
pub const CONFIG_LAST_RELOAD_SUCCESSFUL: &str = "quotad_config_last_reload_successful";
/// The loaded configuration's version: the first 32 bits of its content hash, as shown by `/rlconfig`.
pub const CONFIG_VERSION: &str = "quotad_config_version";
/// When the serving configuration was loaded, in seconds since the Unix epoch.
pub const CONFIG_LOADED_AT: &str = "quotad_config_loaded_timestamp_seconds";
/// Counter keys a store currently holds (expired ones linger until the next sweep).
pub const STORE_KEYS: &str = "quotad_store_keys";
/// Decisions whose store call failed; each was answered by `--on-store-error`.
pub const STORE_ERRORS: &str = "quotad_store_errors_total";
/// Failed calls as the store itself counts them, by kind (Redis only).
pub const STORE_CALL_ERRORS: &str = "quotad_store_call_errors_total";
/// Time of one store call, connecting and waiting on the breaker included (Redis only).
pub const STORE_CALL_DURATION: &str = "quotad_store_call_duration_seconds";
/// 1 while the store's most recent call reached it, 0 after a timeout or a broken connection.
pub const STORE_CONNECTED: &str = "quotad_store_connected";
/// 1 while the circuit breaker fails store calls fast, 0 while calls go through.
pub const STORE_BREAKER_OPEN: &str = "quotad_store_breaker_open";
/// Live counters the memory store evicted to stay under `--max-keys`.
pub const STORE_EVICTIONS: &str = "quotad_store_evictions_total";
/// Always 1; the `version` label carries quotad's version.
pub const BUILD_INFO: &str = "quotad_build_info";

/// Every metric name above, for tools and tests that check dashboards and alerts against them.
pub const ALL: [&str; 19] = [
    RULE_HITS,
    RULE_OVER_LIMIT,
    RULE_NEAR_LIMIT,
    RULE_WITHIN_LIMIT,
    RULE_SHADOW_MODE,
    REQUESTS,
    REQUEST_DURATION,
    CONFIG_RELOADS,
    CONFIG_LAST_RELOAD_SUCCESSFUL,
    CONFIG_VERSION,
    CONFIG_LOADED_AT,
    STORE_KEYS,
    STORE_ERRORS,
    STORE_CALL_ERRORS,
    STORE_CALL_DURATION,
    STORE_CONNECTED,
    STORE_BREAKER_OPEN,
    STORE_EVICTIONS,
    BUILD_INFO,
];

/// Label: the rate-limit domain.
pub const LABEL_DOMAIN: &str = "domain";
/// Label: the rule's key path (`plan_pro.api_key`), or the request's values for `detailed_metric`.
pub const LABEL_KEY_PATH: &str = "key_path";
/// Label: `should_rate_limit` (gRPC), `json` (`POST /json`) or `usage` (`GET /usage`).
pub const LABEL_METHOD: &str = "method";
/// Label: how a request ended (see [`super::Outcome`]).
pub const LABEL_OUTCOME: &str = "outcome";
/// Label: `success` or `failure`.
pub const LABEL_RESULT: &str = "result";
/// Label: which counter store (`memory`, `redis`).
pub const LABEL_STORE: &str = "store";
/// Label: why a store call failed (`timeout`, `connection`, `reply`, `breaker_open`).
pub const LABEL_KIND: &str = "kind";
/// Label: quotad's version, on [`BUILD_INFO`].
pub const LABEL_VERSION: &str = "version";

/// Latency histogram buckets in seconds: a memory-store decision takes microseconds, a Redis
/// round trip a millisecond or so, and anything near a second is an incident.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 1.0,
];

/// Registers the help text and unit of every metric with `recorder`.
pub(super) fn describe(recorder: &impl Recorder) {
    let counters: [(&'static str, &'static str); 10] = [
        (RULE_HITS, "Hits counted against a rule."),
        (RULE_OVER_LIMIT, "Hits that found the rule over its limit."),
        (
            RULE_NEAR_LIMIT,
            "Allowed hits at or above the near-limit ratio of the limit.",
        ),
        (RULE_WITHIN_LIMIT, "Hits allowed by the rule's limits."),
        (
            RULE_SHADOW_MODE,
            "Over-limit hits allowed because the rule is in shadow mode.",
        ),
        (
            REQUESTS,
            "Decision requests answered, by method and outcome.",
        ),
        (CONFIG_RELOADS, "Configuration reload attempts, by result."),
        (
            STORE_ERRORS,
            "Decisions whose counter store call failed (answered by --on-store-error).",
        ),
        (STORE_CALL_ERRORS, "Failed counter store calls, by kind."),
        (
            STORE_EVICTIONS,
            "Counters evicted to stay under --max-keys.",
        ),
    ];
    for (name, help) in counters {
        recorder.describe_counter(name.into(), None, SharedString::const_str(help));
    }
    let gauges: [(&'static str, Option<Unit>, &'static str); 7] = [
        (
            CONFIG_LAST_RELOAD_SUCCESSFUL,
            None,
            "1 unless the last reload attempt was rejected.",
        ),
        (
            CONFIG_VERSION,
            None,
            "First 32 bits of the loaded configuration's content hash.",
        ),
        (
            CONFIG_LOADED_AT,
            Some(Unit::Seconds),
            "When the serving configuration was loaded (Unix seconds).",
        ),
        (STORE_KEYS, None, "Counter keys the store holds."),
        (
            STORE_CONNECTED,
            None,
            "1 while the store's last call reached it.",
        ),
        (
            STORE_BREAKER_OPEN,
            None,
            "1 while the circuit breaker fails store calls fast.",
        ),
        (
            BUILD_INFO,
            None,
            "Always 1; labelled with quotad's version.",
        ),
    ];
    for (name, unit, help) in gauges {
        recorder.describe_gauge(name.into(), unit, SharedString::const_str(help));
    }
    recorder.describe_histogram(
        REQUEST_DURATION.into(),
        Some(Unit::Seconds),
        SharedString::const_str("Time to answer a decision request."),
    );
    recorder.describe_histogram(
        STORE_CALL_DURATION.into(),
        Some(Unit::Seconds),
        SharedString::const_str("Time of one counter store call."),
    );
}
