//! End-to-end tests with a real Envoy 1.40 in front of quotad: the descriptors Envoy's actions
//! build (request headers, remote address, generic key, header value match, path) reach quotad
//! and match its rules, quotad's answers become 200s and 429s at the client, Envoy's own
//! `x-ratelimit-*` headers carry quotad's numbers, and shadow-mode rules never reject.

mod envoy_harness;

use envoy_harness::{Listener, Stack, envoy_or_skip};

/// Small limits in the shapes of `config/example.yaml`, so a few requests reach each one.
const RULES: &str = r#"
domain: api
descriptors:
  - key: plan
    value: starter
    descriptors:
      - key: api_key
        rate_limit: { name: starter_per_minute, unit: minute, requests_per_unit: 3 }
  - key: plan
    value: pro
    descriptors:
      - key: api_key
        rate_limit: { name: pro_per_minute, unit: minute, requests_per_unit: 5 }
  - key: method_class
    value: read
    descriptors:
      - key: api_key
        rate_limit: { unit: minute, requests_per_unit: 4 }
  - key: method_class
    value: write
    descriptors:
      - key: api_key
        rate_limit: { unit: minute, requests_per_unit: 2 }
  - key: method_class
    value: delete
    descriptors:
      - key: api_key
        shadow_mode: true
        rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: endpoint
    value: sign_in
    descriptors:
      - key: remote_address
        rate_limit: { unit: minute, requests_per_unit: 2 }
  - key: path
    value: /healthz
  - key: path
    rate_limit: { unit: hour, requests_per_unit: 3 }
"#;

/// Route-level actions as a user writes them: one route per kind of descriptor.
fn api() -> Listener {
    Listener::new("api", "api")
        .route(
            "/plans",
            r#"
- actions:
  - request_headers: { header_name: x-plan, descriptor_key: plan }
  - request_headers: { header_name: x-api-key, descriptor_key: api_key }
"#,
        )
        .route(
            "/items",
            r#"
- actions:
  - header_value_match:
      descriptor_key: method_class
      descriptor_value: read
      headers: [{ name: ":method", string_match: { exact: GET } }]
  - request_headers: { header_name: x-api-key, descriptor_key: api_key }
- actions:
  - header_value_match:
      descriptor_key: method_class
      descriptor_value: write
      headers: [{ name: ":method", string_match: { safe_regex: { regex: "POST|PATCH" } } }]
  - request_headers: { header_name: x-api-key, descriptor_key: api_key }
- actions:
  - header_value_match:
      descriptor_key: method_class
      descriptor_value: delete
      headers: [{ name: ":method", string_match: { exact: DELETE } }]
  - request_headers: { header_name: x-api-key, descriptor_key: api_key }
"#,
        )
        .route(
            "/sign_in",
            r#"
- actions:
  - generic_key: { descriptor_key: endpoint, descriptor_value: sign_in }
  - remote_address: {}
"#,
        )
        .route(
            "/",
            r#"
- actions:
  - request_headers: { header_name: ":path", descriptor_key: path }
"#,
        )
}

async fn stack(test: &str) -> Option<Stack> {
    let envoy = envoy_or_skip(test)?;
    Some(Stack::start(&envoy, RULES, vec![api()]).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_api_key_headers_select_the_plan_limit() {
    let Some(stack) = stack("plan_and_api_key_headers_select_the_plan_limit").await else {
        return;
    };
    let starter_a = [("x-plan", "starter"), ("x-api-key", "k_a")];
    let statuses = stack.statuses("api", "GET", "/plans", &starter_a, 4).await;
    assert_eq!(
        statuses,
        [200, 200, 200, 429],
        "starter allows 3 per minute"
    );
    let reply = stack.send("api", "GET", "/plans", &starter_a).await;
    assert_eq!(reply.status, 429, "still over the limit");
    assert_eq!(reply.header("x-envoy-ratelimited"), Some("true"));

    let starter_b = [("x-plan", "starter"), ("x-api-key", "k_b")];
    let reply = stack.send("api", "GET", "/plans", &starter_b).await;
    assert_eq!(reply.status, 200, "every api key has its own counter");
    assert_eq!(reply.body, "upstream saw /plans", "the upstream answered");

    let pro_a = [("x-plan", "pro"), ("x-api-key", "k_a")];
    let statuses = stack.statuses("api", "GET", "/plans", &pro_a, 6).await;
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429], "pro allows 5");

    // Without the plan header the action yields nothing, so Envoy drops the whole descriptor
    // and has nothing to ask quotad about.
    let no_plan = [("x-api-key", "k_a")];
    let statuses = stack.statuses("api", "GET", "/plans", &no_plan, 6).await;
    assert_eq!(statuses, [200; 6], "{}", stack.envoy.log());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_value_match_classifies_methods_and_shadow_mode_never_rejects() {
    let Some(stack) = stack("header_value_match_classifies_methods").await else {
        return;
    };
    let key = [("x-api-key", "k_m")];
    let reads = stack.statuses("api", "GET", "/items", &key, 5).await;
    assert_eq!(reads, [200, 200, 200, 200, 429], "reads: 4 per minute");
    let post = stack.send("api", "POST", "/items", &key).await.status;
    let patch = stack.send("api", "PATCH", "/items", &key).await.status;
    let again = stack.send("api", "POST", "/items", &key).await.status;
    assert_eq!(
        [post, patch, again],
        [200, 200, 429],
        "POST and PATCH share the write class, 2 per minute, apart from reads"
    );

    // The delete class allows 1 per minute in shadow mode: counted, never enforced.
    let deletes = stack.statuses("api", "DELETE", "/items", &key, 5).await;
    assert_eq!(deletes, [200; 5], "shadow mode never produces 429");
    let reply = stack.send("api", "DELETE", "/items", &key).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-envoy-ratelimited"), None);
    assert_eq!(
        reply.ratelimit_headers(),
        [Some("1, 1;w=60"), Some("0"), Some("60")],
        "the descriptor reached quotad, which reports the shadow limit as used up"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_is_limited_per_client_address() {
    let Some(stack) = stack("sign_in_is_limited_per_client_address").await else {
        return;
    };
    let statuses = stack.statuses("api", "POST", "/sign_in", &[], 3).await;
    assert_eq!(
        statuses,
        [200, 200, 429],
        "2 sign-ins per minute per address"
    );
    // With `use_remote_address` Envoy trusts the peer address, not what the client claims.
    let spoofed = [("x-forwarded-for", "203.0.113.9")];
    let reply = stack.send("api", "POST", "/sign_in", &spoofed).await;
    assert_eq!(
        reply.status, 429,
        "a forged X-Forwarded-For gets no new budget"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_descriptor_counts_per_path_and_whitelists_exact_values() {
    let Some(stack) = stack("path_descriptor_counts_per_path").await else {
        return;
    };
    let health = stack.statuses("api", "GET", "/healthz", &[], 6).await;
    assert_eq!(
        health, [200; 6],
        "an exact value without a limit is never limited"
    );
    let orders = stack.statuses("api", "GET", "/orders", &[], 4).await;
    assert_eq!(orders, [200, 200, 200, 429], "3 per hour per path");
    let invoices = stack.send("api", "GET", "/invoices", &[]).await;
    assert_eq!(invoices.status, 200, "another path has its own counter");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_ratelimit_headers_carry_quotads_numbers() {
    let Some(stack) = stack("envoy_ratelimit_headers_carry_quotads_numbers").await else {
        return;
    };
    let key = [("x-plan", "starter"), ("x-api-key", "k_headers")];
    let limit = Some(r#"3, 3;w=60;name="starter_per_minute""#);
    for remaining in ["2", "1", "0"] {
        let reply = stack.send("api", "GET", "/plans", &key).await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.ratelimit_headers(),
            [limit, Some(remaining), Some("60")],
            "on 200: limit with window and name, remaining, seconds to reset"
        );
    }
    stack.clock.advance(std::time::Duration::from_secs(15));
    let reply = stack.send("api", "GET", "/plans", &key).await;
    assert_eq!(reply.status, 429);
    assert_eq!(
        reply.ratelimit_headers(),
        [limit, Some("0"), Some("45")],
        "on 429 too; the reset follows quotad's clock"
    );
    stack.stop().await;
}
