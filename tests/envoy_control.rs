//! End-to-end tests with a real Envoy 1.40 for what changes how much is counted or enforced:
//! per-descriptor `hits_addend` from the filter-level `rate_limits`, rules swapped while Envoy
//! keeps running, and `failure_mode_deny` once quotad is gone.

mod envoy_harness;

use std::sync::Arc;

use envoy_harness::{Listener, Stack, compile, envoy_or_skip};

const HITS_RULES: &str = r#"
domain: api
descriptors:
  - key: export
    value: csv
    rate_limit: { unit: minute, requests_per_unit: 10 }
  - key: tenant
    rate_limit: { unit: minute, requests_per_unit: 10 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_level_hits_addend_is_counted_per_descriptor() {
    let Some(envoy) = envoy_or_skip("filter_level_hits_addend_is_counted_per_descriptor") else {
        return;
    };
    // Envoy honours `hits_addend` only in the filter-level `rate_limits`; a fixed cost on one
    // listener, a cost read from a request header on the other.
    let fixed = Listener::new("fixed", "api")
        .route("/", "")
        .filter_rate_limits(
            r#"
- actions:
  - generic_key: { descriptor_key: export, descriptor_value: csv }
  hits_addend: { number: 4 }
"#,
        );
    let from_header = Listener::new("from_header", "api")
        .route("/", "")
        .filter_rate_limits(
            r#"
- actions:
  - request_headers: { header_name: x-tenant, descriptor_key: tenant }
  hits_addend: { format: "%REQ(x-cost)%" }
"#,
        );
    let stack = Stack::start(&envoy, HITS_RULES, vec![fixed, from_header]).await;

    let mut seen = Vec::new();
    for _ in 0..3 {
        let reply = stack.send("fixed", "GET", "/export", &[]).await;
        seen.push((
            reply.status,
            reply.header("x-ratelimit-remaining").map(str::to_owned),
        ));
    }
    let remaining = |left: &str| Some(left.to_owned());
    assert_eq!(
        seen,
        [
            (200, remaining("6")),
            (200, remaining("2")),
            (429, remaining("0"))
        ],
        "each request costs 4 of 10"
    );

    let tenant = |cost| [("x-tenant", "t1"), ("x-cost", cost)];
    let costs = [("7", 200, "3"), ("3", 200, "0"), ("1", 429, "0")];
    for (cost, status, left) in costs {
        let reply = stack.send("from_header", "GET", "/", &tenant(cost)).await;
        assert_eq!(
            (reply.status, reply.header("x-ratelimit-remaining")),
            (status, Some(left)),
            "cost {cost} from the x-cost header"
        );
    }
    stack.stop().await;
}

const RELOAD_BEFORE: &str = r#"
domain: api
descriptors:
  - key: plan
    value: starter
    descriptors:
      - key: api_key
        rate_limit: { unit: minute, requests_per_unit: 2 }
"#;

const RELOAD_AFTER: &str = r#"
domain: api
descriptors:
  - key: plan
    value: starter
    descriptors:
      - key: api_key
        rate_limit: { unit: minute, requests_per_unit: 5 }
  - key: plan
    value: trial
    descriptors:
      - key: api_key
        rate_limit: { unit: minute, requests_per_unit: 1 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_rules_change_what_envoy_enforces_without_a_restart() {
    let Some(envoy) = envoy_or_skip("swapped_rules_change_what_envoy_enforces") else {
        return;
    };
    let plans = Listener::new("api", "api").route(
        "/",
        r#"
- actions:
  - request_headers: { header_name: x-plan, descriptor_key: plan }
  - request_headers: { header_name: x-api-key, descriptor_key: api_key }
"#,
    );
    let stack = Stack::start(&envoy, RELOAD_BEFORE, vec![plans]).await;
    let starter = [("x-plan", "starter"), ("x-api-key", "k")];
    let trial = [("x-plan", "trial"), ("x-api-key", "k")];
    let before = stack.statuses("api", "GET", "/", &starter, 3).await;
    assert_eq!(before, [200, 200, 429], "2 per minute before the reload");
    let trials = stack.statuses("api", "GET", "/", &trial, 3).await;
    assert_eq!(trials, [200; 3], "no trial rule yet");

    stack.quotad.rules().store(Arc::new(compile(RELOAD_AFTER)));

    let reply = stack.send("api", "GET", "/", &starter).await;
    assert_eq!(
        reply.status, 200,
        "the raised limit admits the same key again"
    );
    assert_eq!(reply.header("x-ratelimit-limit"), Some("5, 5;w=60"));
    let trials = stack.statuses("api", "GET", "/", &trial, 2).await;
    assert_eq!(trials, [200, 429], "the new trial rule is enforced at once");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_mode_deny_decides_once_quotad_is_stopped() {
    let Some(envoy) = envoy_or_skip("failure_mode_deny_decides_once_quotad_is_stopped") else {
        return;
    };
    let actions = "- actions:\n  - generic_key: { descriptor_value: all }";
    let listeners = vec![
        Listener::new("open", "api").route("/", actions),
        Listener::new("closed", "api")
            .route("/", actions)
            .failure_mode_deny(true),
    ];
    let rules = r#"
domain: api
descriptors:
  - key: generic_key
    value: all
    rate_limit: { unit: minute, requests_per_unit: 2 }
"#;
    let Stack {
        quotad,
        envoy,
        client,
        ..
    } = Stack::start(&envoy, rules, listeners).await;
    let send = |listener: &'static str| {
        let url = envoy.url(listener, "/");
        let client = client.clone();
        async move { envoy_harness::send(&client, "GET", &url, &[]).await.status }
    };
    let asked = [send("open").await, send("closed").await, send("open").await];
    assert_eq!(
        asked,
        [200, 200, 429],
        "both listeners ask the running quotad"
    );

    quotad.shutdown().await.expect("quotad stops cleanly");
    assert_eq!(
        send("open").await,
        200,
        "failure_mode_deny: false lets traffic through\n{}",
        envoy.log()
    );
    assert_eq!(
        send("closed").await,
        500,
        "failure_mode_deny: true rejects\n{}",
        envoy.log()
    );
}
