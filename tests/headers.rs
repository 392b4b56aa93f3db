//! What the caller sees, over a real socket: each header style, the quota pair, and the 429
//! body template, from rules compiled from YAML exactly as an operator writes them.

#[allow(dead_code)] // this binary uses only the connection helpers
mod common;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use quotad::app::{self, RunningServer, ServerConfig};
use quotad::clock::ManualClock;
use quotad::config::compile_str;
use quotad::engine::RuleSet;
use quotad::service::shared_rules;

use common::{START, client, descriptor};

/// One domain per style; each allows 2 per minute and 5 per month per API key, and one job
/// at a time per user with its own body.
fn domain(name: &str, response: &str) -> String {
    format!(
        "domain: {name}\n{response}\ndescriptors:\n  - key: api_key\n    rate_limits:\n      - {{name: per_minute, unit: minute, requests_per_unit: 2}}\n      - {{name: per_month, unit: month, requests_per_unit: 5}}\n  - key: user\n    rate_limit: {{unit: minute, requests_per_unit: 1}}\n    over_limit_body: {{template: '{{\"code\":\"JOB_LIMIT_EXCEEDED\",\"limit\":{{limit}}}}'}}\n"
    )
}

fn all_styles() -> RuleSet {
    let files = [
        domain("plain", ""),
        domain(
            "legacy",
            "response_headers:\n  style: legacy\n  quota: {limit: x-ratelimit-requests-limit, remaining: x-ratelimit-requests-remaining}\nover_limit_body: {}",
        ),
        domain("delta", "response_headers: {style: legacy_delta}"),
        domain("ietf", "response_headers: {style: ietf}"),
        domain(
            "envoy",
            "response_headers:\n  style: envoy_ratelimit\n  names: {limit: X-Quota-Limit}\nover_limit_body:\n  template: 'key {descriptor.api_key} used {limit}/{window}; retry in {retry_after}s'\n  content_type: text/plain",
        ),
    ];
    let domains: Vec<_> = files
        .iter()
        .map(|yaml| compile_str("styles.yaml", yaml).unwrap_or_else(|errors| panic!("{errors}")))
        .flat_map(|rules| rules.domains().cloned().collect::<Vec<_>>())
        .collect();
    RuleSet::new(domains)
}

async fn start() -> RunningServer {
    let loopback = "127.0.0.1:0".parse().expect("address");
    let clock = ManualClock::new(START);
    let config = ServerConfig::new(loopback, loopback, shared_rules(all_styles()), clock);
    app::start(config).await.expect("server starts")
}

/// Sends one hit for `api_key=key` in `domain` and returns the whole response.
async fn call(server: &RunningServer, domain: &str, key: &str) -> RateLimitResponse {
    call_with(server, domain, ("api_key", key)).await
}

/// Sends one hit for the one-entry descriptor `entry` in `domain`.
async fn call_with(server: &RunningServer, domain: &str, entry: (&str, &str)) -> RateLimitResponse {
    let request = RateLimitRequest {
        domain: domain.into(),
        descriptors: vec![descriptor(&[entry])],
        hits_addend: 0,
    };
    client(server)
        .await
        .should_rate_limit(request)
        .await
        .expect("call succeeds")
        .into_inner()
}

fn headers(response: &RateLimitResponse) -> Vec<(String, String)> {
    response
        .response_headers_to_add
        .iter()
        .map(|header| (header.key.clone(), header.value.clone()))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoyproxy_default_adds_nothing() {
    let server = start().await;
    for _ in 0..3 {
        let response = call(&server, "plain", "k").await;
        assert!(response.response_headers_to_add.is_empty());
        assert!(response.raw_body.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_headers_with_a_quota_pair_and_the_default_json_body() {
    let server = start().await;
    let now = START.as_secs();
    let first = call(&server, "legacy", "k").await;
    assert_eq!(
        headers(&first),
        pairs(&[
            ("X-RateLimit-Limit", "2"),
            ("X-RateLimit-Remaining", "1"),
            ("X-RateLimit-Reset", &(now + 60).to_string()),
            ("x-ratelimit-requests-limit", "5"),
            ("x-ratelimit-requests-remaining", "4"),
        ])
    );
    assert!(first.raw_body.is_empty(), "no body on OK");
    call(&server, "legacy", "k").await;
    let rejected = call(&server, "legacy", "k").await;
    assert_eq!(rejected.overall_code, Code::OverLimit as i32);
    assert_eq!(
        headers(&rejected),
        pairs(&[
            ("X-RateLimit-Limit", "2"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", &(now + 60).to_string()),
            ("Retry-After", "60"),
            ("x-ratelimit-requests-limit", "5"),
            ("x-ratelimit-requests-remaining", "2"),
            ("content-type", "application/json"),
        ])
    );
    let body: serde_json::Value = serde_json::from_slice(&rejected.raw_body).expect("JSON body");
    assert_eq!(
        body,
        serde_json::json!({
            "error": "rate_limit_exceeded",
            "message": "Rate limit exceeded. Retry after 60 seconds.",
            "retry_after": 60
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_delta_reports_seconds_until_reset() {
    let server = start().await;
    let response = call(&server, "delta", "k").await;
    assert_eq!(
        headers(&response),
        pairs(&[
            ("X-RateLimit-Limit", "2"),
            ("X-RateLimit-Remaining", "1"),
            ("X-RateLimit-Reset", "60"),
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ietf_fields_name_the_policy() {
    let server = start().await;
    let response = call(&server, "ietf", "k").await;
    assert_eq!(
        headers(&response),
        pairs(&[
            ("RateLimit-Policy", "\"per_minute\";q=2;w=60"),
            ("RateLimit", "\"per_minute\";r=1;t=60"),
        ])
    );
    call(&server, "ietf", "k").await;
    let rejected = call(&server, "ietf", "k").await;
    assert!(headers(&rejected).contains(&("Retry-After".to_owned(), "60".to_owned())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_ratelimit_names_are_renamable_and_templates_fill_in_values() {
    let server = start().await;
    let first = call(&server, "envoy", "key-\"1\"").await;
    assert_eq!(
        headers(&first),
        pairs(&[
            ("X-Quota-Limit", "2"),
            ("RateLimit-Remaining", "1"),
            ("RateLimit-Reset", "60"),
        ])
    );
    call(&server, "envoy", "key-\"1\"").await;
    let rejected = call(&server, "envoy", "key-\"1\"").await;
    assert_eq!(
        String::from_utf8(rejected.raw_body.clone()).expect("utf-8"),
        "key key-\"1\" used 2/minute; retry in 60s"
    );
    assert!(headers(&rejected).contains(&("content-type".to_owned(), "text/plain".to_owned())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_body_replaces_the_domain_body() {
    let server = start().await;
    call_with(&server, "legacy", ("user", "u")).await;
    let rejected = call_with(&server, "legacy", ("user", "u")).await;
    let body: serde_json::Value = serde_json::from_slice(&rejected.raw_body).expect("JSON body");
    assert_eq!(
        body,
        serde_json::json!({"code": "JOB_LIMIT_EXCEEDED", "limit": 1})
    );
    // A domain without a body of its own still sends the rule's.
    call_with(&server, "plain", ("user", "u")).await;
    let plain = call_with(&server, "plain", ("user", "u")).await;
    assert!(!plain.raw_body.is_empty());
}

#[tokio::test]
async fn domains_without_their_own_policy_follow_the_server_default() {
    use quotad::engine::{HeaderStyle, ResponsePolicy};
    use quotad::service::RateLimiter;
    use quotad::store::MemoryStore;
    let default = ResponsePolicy {
        style: HeaderStyle::LegacyDelta,
        ..ResponsePolicy::default()
    };
    let service = RateLimiter::new(
        shared_rules(all_styles()),
        std::sync::Arc::new(MemoryStore::new()),
        ManualClock::new(START),
    )
    .with_default_response(default);
    let ask = |domain: &str| RateLimitRequest {
        domain: domain.into(),
        descriptors: vec![descriptor(&[("api_key", "k")])],
        hits_addend: 0,
    };
    let plain = service.decide(&ask("plain")).await.expect("answer");
    assert_eq!(
        headers(&plain),
        pairs(&[
            ("X-RateLimit-Limit", "2"),
            ("X-RateLimit-Remaining", "1"),
            ("X-RateLimit-Reset", "60"),
        ])
    );
    let ietf = service.decide(&ask("ietf")).await.expect("answer");
    assert_eq!(
        ietf.response_headers_to_add[0].key, "RateLimit-Policy",
        "a domain's own style wins"
    );
}

#[tokio::test]
async fn a_full_concurrency_limit_says_how_many_are_running() {
    use quotad::service::RateLimiter;
    use quotad::store::MemoryStore;
    let yaml = "domain: jobs\ndescriptors:\n  - key: tenant\n    rate_limit: {algorithm: concurrency, max_in_flight: 2}\n    over_limit_body:\n      template: '{\"code\":\"CONCURRENT_LIMIT_EXCEEDED\",\"message\":\"{used}/{limit} running\"}'\n";
    let rules = compile_str("jobs.yaml", yaml).unwrap_or_else(|errors| panic!("{errors}"));
    let service = RateLimiter::new(
        shared_rules(rules),
        std::sync::Arc::new(MemoryStore::new()),
        ManualClock::new(START),
    );
    let acquire = RateLimitRequest {
        domain: "jobs".into(),
        descriptors: vec![descriptor(&[("tenant", "t")])],
        hits_addend: 0,
    };
    for _ in 0..2 {
        let admitted = service.decide(&acquire).await.expect("answer");
        assert_eq!(admitted.overall_code, Code::Ok as i32);
    }
    let rejected = service.decide(&acquire).await.expect("answer");
    assert_eq!(rejected.overall_code, Code::OverLimit as i32);
    let body: serde_json::Value = serde_json::from_slice(&rejected.raw_body).expect("JSON body");
    assert_eq!(
        body,
        serde_json::json!({"code": "CONCURRENT_LIMIT_EXCEEDED", "message": "2/2 running"})
    );
}
