//! Envoy 1.40's `rate_limit_quota` filter against quotad, end to end: the shipped
//! examples/envoy/rate-limit-quota.yaml (validated, then moved onto loopback) in front of quotad
//! serving examples/envoy/rate-limit-quota-rules.yaml from a watched directory, on a manual
//! clock parked at midnight UTC. Proves the bucket keyed by `x-api-key` gets 429 (with the JSON
//! body) once its 10 per minute are spent, other keys are unaffected, the next window admits
//! again, and a reload lowering the limit reaches the open stream.

mod envoy_harness;

use std::time::Duration;

use envoy_harness::{
    Envoy, envoy_or_skip, eventually, examples_dir, http_client, localize, send,
    start_quotad_watching, start_upstream, validate, write_atomically, yaml_documents,
};
use quotad::app::RunningServer;

const BODY: &str =
    r#"{"error":"rate_limited","message":"quota for this API key is spent; retry later"}"#;

fn example_rules(limit: u32) -> String {
    let path = examples_dir().join("envoy/rate-limit-quota-rules.yaml");
    let text = std::fs::read_to_string(path).expect("example rules");
    assert!(
        text.contains("requests_per_unit: 10 }"),
        "the example's limit"
    );
    text.replace(
        "requests_per_unit: 10 }",
        &format!("requests_per_unit: {limit} }}"),
    )
}

/// The value of one series in quotad's `/metrics` text (0 when absent).
fn series(quotad: &RunningServer, name: &str) -> u64 {
    let text = quotad.metrics().render();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

const TOKEN_BUCKETS: &str = "quotad_rlqs_assignments_total{kind=\"token_bucket\"}";
const DENIALS: &str = "quotad_rlqs_assignments_total{kind=\"deny_all\"}";
const REPORTS: &str = "quotad_rlqs_reports_total";

#[test]
fn rate_limit_quota_example_validates() {
    let Some(envoy) = envoy_or_skip("rate_limit_quota_example_validates") else {
        return;
    };
    let bootstrap = examples_dir().join("envoy/rate-limit-quota.yaml");
    validate(&envoy, &bootstrap)
        .unwrap_or_else(|error| panic!("examples/envoy/rate-limit-quota.yaml:\n{error}"));
    quotad::config::compile_str("rate-limit-quota-rules.yaml", &example_rules(10))
        .unwrap_or_else(|errors| panic!("example rules: {errors}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_enforces_quotad_assignments_per_api_key() {
    let Some(envoy_bin) = envoy_or_skip("envoy_enforces_quotad_assignments_per_api_key") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    write_atomically(dir.path(), "api.yaml", &example_rules(10));
    let (quotad, clock) = start_quotad_watching(dir.path()).await;
    let upstream = start_upstream().await;
    let mut bootstrap =
        yaml_documents(&examples_dir().join("envoy/rate-limit-quota.yaml")).remove(0);
    localize(
        &mut bootstrap,
        &[("app", upstream), ("quotad", quotad.grpc_addr())],
    );
    let envoy = Envoy::start(&envoy_bin, &bootstrap.to_string()).await;
    let client = http_client();
    let url = envoy.url("ingress", "/v1/orders");
    let get = |key: &'static str| {
        let (client, url) = (&client, &url);
        async move { send(client, "GET", url, &[("x-api-key", key)]).await }
    };

    // The first request creates the bucket and is admitted (no_assignment_behavior) while its
    // initial report (time_elapsed 0 s) reaches quotad, which counts it and answers.
    assert_eq!(get("K").await.status, 200, "{}", envoy.log());
    let quotad_ref = &quotad;
    eventually("quotad's first assignment", || async move {
        (series(quotad_ref, TOKEN_BUCKETS) >= 1).then_some(())
    })
    .await;
    // Envoy now enforces the token bucket of the 9 that remain, locally: no reporting lag.
    let mut admitted = 1;
    let refused = loop {
        let reply = get("K").await;
        if reply.status != 200 {
            break reply;
        }
        admitted += 1;
        assert!(admitted <= 12, "never refused after {admitted} requests");
    };
    // One request may slip in between quotad sending the assignment and Envoy applying it.
    assert!(
        (10..=11).contains(&admitted),
        "{admitted} admitted for a limit of 10"
    );
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body, BODY);
    assert_eq!(refused.header("content-type"), Some("application/json"));
    // Another key has its own budget.
    assert_eq!(get("other").await.status, 200);

    // Within one report (5 s) quotad sees the spent budget and sends DENY_ALL for K.
    eventually("quotad to deny the spent key", || async move {
        (series(quotad_ref, DENIALS) >= 1).then_some(())
    })
    .await;
    assert_eq!(get("K").await.status, 429);

    // The next window: the next report is answered with a fresh token bucket.
    clock.advance(Duration::from_secs(60));
    let get_ref = &get;
    eventually("K to be admitted in the next window", || async move {
        (get_ref("K").await.status == 200).then_some(())
    })
    .await;

    // `other` spends 4 in this window; once a report has carried them, lowering the limit to 3
    // leaves it nothing, and the reload reaches the open stream as DENY_ALL.
    let statuses = [
        get("other").await,
        get("other").await,
        get("other").await,
        get("other").await,
    ];
    assert!(statuses.iter().all(|reply| reply.status == 200));
    let reports = series(&quotad, REPORTS);
    eventually("a report carrying the 4 requests", || async move {
        // Each report lists both buckets; two more make sure one started after the requests.
        (series(quotad_ref, REPORTS) >= reports + 4).then_some(())
    })
    .await;
    let reloader = quotad.reloader().expect("rules came from a path");
    let version = reloader.status().version;
    let denials = series(&quotad, DENIALS);
    write_atomically(dir.path(), "api.yaml", &example_rules(3));
    eventually("the watcher to load the lower limit", || async move {
        (reloader.status().version != version).then_some(())
    })
    .await;
    eventually("quotad to send the lowered assignment", || async move {
        (series(quotad_ref, DENIALS) > denials).then_some(())
    })
    .await;
    // The old grant still had 6 tokens: a refusal now comes from the re-sent assignment. One
    // request may still pass while Envoy applies it.
    let mut admitted = 0;
    while get("other").await.status == 200 {
        admitted += 1;
        assert!(admitted <= 1, "the lowered limit did not reach Envoy");
    }
    assert_eq!(
        envoy.stat("cluster.quotad.upstream_cx_total").await,
        1,
        "one connection to quotad throughout: the stream was never reopened"
    );
    assert_eq!(series(&quotad, "quotad_rlqs_streams"), 1);
    drop(envoy);
    quotad.shutdown().await.expect("quotad stops cleanly");
}
