//! What an HTTP client gets back through a real Envoy 1.40 when quotad shapes the answer: the
//! headers of each style on 200s and 429s, `Retry-After`, the default JSON body and a custom
//! template as the 429 body with quotad's content type, and Envoy's own `x-ratelimit-*` headers
//! agreeing with quotad's for the same request. `tests/headers.rs` pins the gRPC side; this file
//! pins what survives Envoy's translation into HTTP.
//!
//! Envoy facts these tests verify (source: `ratelimit.cc` in Envoy's HTTP rate-limit filter):
//! - `response_headers_to_add` is appended to the upstream's 200 and to the 429 local reply;
//!   headers are appended, never replaced, so a name quotad and Envoy both set arrives twice.
//! - `raw_body` becomes the 429 body. Envoy's local reply would label a body `text/plain`, but
//!   when the rate-limit service sends a `content-type` header Envoy drops its own first, so the
//!   client sees exactly quotad's. No filter setting is needed for this.
//! - With no `raw_body` the 429 has an empty body and no `content-type` at all.

mod envoy_harness;

use envoy_harness::{Listener, START, Stack, envoy_or_skip, write_atomically};
use serde_json::json;

/// `legacy` headers with the monthly quota pair, and the default JSON body.
const LEGACY: &str = r#"
domain: legacy
response_headers:
  style: legacy
  quota: {limit: x-ratelimit-requests-limit, remaining: x-ratelimit-requests-remaining}
over_limit_body: {}
descriptors:
  - key: api_key
    rate_limits:
      - {name: per_minute, unit: minute, requests_per_unit: 2}
      - {name: per_month, unit: month, requests_per_unit: 5}
"#;

/// `ietf` fields and no body.
const IETF: &str = r#"
domain: ietf
response_headers: {style: ietf}
descriptors:
  - key: api_key
    rate_limit: {name: per_minute, unit: minute, requests_per_unit: 2}
"#;

/// A custom JSON template that echoes a request value, under a content type of its own.
const CUSTOM: &str = r#"
domain: custom
response_headers: {style: envoy_ratelimit}
over_limit_body:
  template: '{"error":"quota","key":"{descriptor.api_key}","limit":{limit},"retry_after":{retry_after}}'
  content_type: application/problem+json
descriptors:
  - key: api_key
    rate_limit: {unit: minute, requests_per_unit: 1}
"#;

/// Two descriptors with different limits and windows, so which one decides changes as the
/// requests go; quotad's header names do not overlap Envoy's `x-ratelimit-*`.
const AGREE: &str = r#"
domain: agree
response_headers: {style: envoy_ratelimit}
descriptors:
  - key: api_key
    rate_limit: {unit: minute, requests_per_unit: 4}
  - key: tenant
    rate_limit: {unit: hour, requests_per_unit: 10}
"#;

/// A listener for `domain` whose one route sends the `x-api-key` header as `api_key`.
fn by_api_key(name: &str, domain: &str) -> Listener {
    Listener::new(name, domain).route(
        "/",
        "- actions:\n  - request_headers: { header_name: x-api-key, descriptor_key: api_key }",
    )
}

async fn stack(test: &str) -> Option<(Stack, tempfile::TempDir)> {
    let envoy = envoy_or_skip(test)?;
    // One file per domain in a directory, loaded the way `quotad serve --config <dir>` does.
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, rules) in [
        ("legacy.yaml", LEGACY),
        ("ietf.yaml", IETF),
        ("custom.yaml", CUSTOM),
        ("agree.yaml", AGREE),
    ] {
        write_atomically(dir.path(), name, rules);
    }
    let agree = Listener::new("agree", "agree").route(
        "/",
        r#"
- actions:
  - request_headers: { header_name: x-api-key, descriptor_key: api_key }
- actions:
  - request_headers: { header_name: x-tenant, descriptor_key: tenant }
"#,
    );
    let listeners = vec![
        // `legacy` names the same headers as Envoy's draft-03 ones: a user turns Envoy's off.
        by_api_key("legacy", "legacy").x_ratelimit_headers(false),
        by_api_key("legacy_and_envoy", "legacy"),
        by_api_key("ietf", "ietf"),
        by_api_key("custom", "custom"),
        agree,
    ];
    let stack = Stack::start_watching(&envoy, dir.path(), listeners).await;
    Some((stack, dir))
}

/// The upstream's own content type, which quotad must never replace on a 200.
const UPSTREAM_TYPE: &str = "text/plain; charset=utf-8";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_headers_quota_pair_and_default_json_body_reach_the_client() {
    let Some((stack, _dir)) = stack("legacy_headers_quota_pair_and_default_json_body").await else {
        return;
    };
    let key = [("x-api-key", "k_legacy")];
    let reset = (START.as_secs() + 60).to_string();
    let seen = |reply: &envoy_harness::Reply| {
        [
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
            "retry-after",
            "x-ratelimit-requests-limit",
            "x-ratelimit-requests-remaining",
        ]
        .map(|name| reply.header(name).map(str::to_owned))
    };
    let some = |value: &str| Some(value.to_owned());

    let first = stack.send("legacy", "GET", "/", &key).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        seen(&first),
        [
            some("2"),
            some("1"),
            some(&reset),
            None,
            some("5"),
            some("4")
        ],
        "on 200: the per-minute limit, then the monthly quota pair"
    );
    assert_eq!(first.header_all("content-type"), [UPSTREAM_TYPE]);
    assert_eq!(first.body, "upstream saw /");

    stack.send("legacy", "GET", "/", &key).await;
    let rejected = stack.send("legacy", "GET", "/", &key).await;
    assert_eq!(rejected.status, 429);
    assert_eq!(
        seen(&rejected),
        [
            some("2"),
            some("0"),
            some(&reset),
            some("60"),
            some("5"),
            some("2")
        ],
        "on 429 the same headers plus Retry-After; the rejected hit counts against the month"
    );
    assert_eq!(rejected.header("x-envoy-ratelimited"), Some("true"));
    assert_eq!(
        rejected.header_all("content-type"),
        ["application/json"],
        "quotad's content type replaces the text/plain of Envoy's local reply"
    );
    let body: serde_json::Value = serde_json::from_str(&rejected.body).expect("a JSON body");
    assert_eq!(
        body,
        json!({
            "error": "rate_limit_exceeded",
            "message": "Rate limit exceeded. Retry after 60 seconds.",
            "retry_after": 60
        })
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ietf_fields_and_retry_after_follow_quotads_clock() {
    let Some((stack, _dir)) = stack("ietf_fields_and_retry_after_follow_quotads_clock").await
    else {
        return;
    };
    let key = [("x-api-key", "k_ietf")];
    let first = stack.send("ietf", "GET", "/", &key).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        [first.header("ratelimit-policy"), first.header("ratelimit")],
        [
            Some(r#""per_minute";q=2;w=60"#),
            Some(r#""per_minute";r=1;t=60"#)
        ]
    );
    assert_eq!(
        first.header("retry-after"),
        None,
        "only a 429 says when to retry"
    );

    stack.clock.advance(std::time::Duration::from_secs(15));
    stack.send("ietf", "GET", "/", &key).await;
    let rejected = stack.send("ietf", "GET", "/", &key).await;
    assert_eq!(rejected.status, 429);
    assert_eq!(
        [rejected.header("ratelimit"), rejected.header("retry-after")],
        [Some(r#""per_minute";r=0;t=45"#), Some("45")],
        "the window's end, 15 s later by quotad's clock"
    );
    assert_eq!(
        rejected.body, "",
        "no over_limit_body: Envoy sends an empty 429"
    );
    assert_eq!(rejected.header("content-type"), None);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_body_template_arrives_with_its_own_content_type() {
    let Some((stack, _dir)) =
        stack("a_custom_body_template_arrives_with_its_own_content_type").await
    else {
        return;
    };
    // A quote in the key: the template fills it in JSON-escaped, so the body stays valid JSON.
    let key = [("x-api-key", r#"k"1"#)];
    let first = stack.send("custom", "GET", "/", &key).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header_all("content-type"),
        [UPSTREAM_TYPE],
        "the body's content type is sent with 429s only"
    );
    let rejected = stack.send("custom", "GET", "/", &key).await;
    assert_eq!(rejected.status, 429);
    assert_eq!(
        rejected.header_all("content-type"),
        ["application/problem+json"],
        "exactly quotad's content type"
    );
    let body: serde_json::Value = serde_json::from_str(&rejected.body)
        .unwrap_or_else(|error| panic!("{error}: {}", rejected.body));
    assert_eq!(
        body,
        json!({"error": "quota", "key": r#"k"1"#, "limit": 1, "retry_after": 60})
    );
    assert_eq!(
        [
            rejected.header("ratelimit-limit"),
            rejected.header("ratelimit-remaining"),
            rejected.header("ratelimit-reset"),
        ],
        [Some("1"), Some("0"), Some("60")]
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_style_and_envoys_draft_headers_arrive_twice_under_one_name() {
    let Some((stack, _dir)) = stack("legacy_style_and_envoys_draft_headers_arrive_twice").await
    else {
        return;
    };
    // Why the README says to pick one: Envoy appends its draft-03 headers next to quotad's
    // `legacy` ones, and the two disagree on format (a unix time against seconds to go).
    let reply = stack
        .send("legacy_and_envoy", "GET", "/", &[("x-api-key", "k_both")])
        .await;
    assert_eq!(reply.status, 200);
    let reset = (START.as_secs() + 60).to_string();
    assert_eq!(
        [
            reply.header_all("x-ratelimit-limit"),
            reply.header_all("x-ratelimit-remaining"),
            reply.header_all("x-ratelimit-reset"),
        ],
        [
            vec!["2", r#"2, 2;w=60;name="per_minute""#],
            vec!["1", "1"],
            vec![reset.as_str(), "60"],
        ],
        "quotad's values first, then Envoy's"
    );
    stack.stop().await;
}

/// The leading number of Envoy's `x-ratelimit-limit` (`"4, 4;w=60, 10;w=3600"` gives 4).
fn leading_number(value: Option<&str>) -> Option<&str> {
    value?.split(',').next().map(str::trim)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoys_and_quotads_headers_agree_on_the_deciding_limit() {
    let Some((stack, _dir)) = stack("envoys_and_quotads_headers_agree_on_the_deciding_limit").await
    else {
        return;
    };
    // Each api key is used twice (4 per minute) while one tenant (10 per hour) drains: first
    // the key's limit has the least left, then the tenant's, and finally the tenant is over.
    // Envoy picks the status with the least remaining; quotad the one over its limit, else the
    // one with the least remaining — the same choice, shown on every request.
    let mut deciding = Vec::new();
    for request in 0..12 {
        let api_key = format!("k{}", request / 2);
        let headers = [("x-api-key", api_key.as_str()), ("x-tenant", "t")];
        let reply = stack.send("agree", "GET", "/", &headers).await;
        let quotad = [
            reply.header("ratelimit-limit"),
            reply.header("ratelimit-remaining"),
            reply.header("ratelimit-reset"),
        ];
        let [limit, remaining, reset] = reply.ratelimit_headers();
        let envoy = [leading_number(limit), remaining, reset];
        assert_eq!(
            quotad, envoy,
            "request {request} ({}): quotad's RateLimit-* against Envoy's x-ratelimit-*",
            reply.status
        );
        deciding.push((reply.status, quotad[0].map(str::to_owned)));
        // Move quotad's clock so the two windows' resets differ from request to request.
        stack.clock.advance(std::time::Duration::from_secs(7));
    }
    let by = |status: u16, limit: &str| (status, Some(limit.to_owned()));
    let mut expected = vec![by(200, "4"); 8];
    expected.extend([by(200, "10"), by(200, "10"), by(429, "10"), by(429, "10")]);
    assert_eq!(
        deciding, expected,
        "the key decides while it has least left (on the ties at requests 6 and 7 both pick \
         the first descriptor), then the tenant, and the tenant's 429s"
    );
    stack.stop().await;
}
