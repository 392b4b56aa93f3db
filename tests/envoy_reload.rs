//! Hot reload as an operator does it, through a real Envoy 1.40: quotad serves rules from a
//! directory with its file watcher on (as `quotad serve` does), the rules file is rewritten,
//! and Envoy — never restarted, never reconfigured — starts enforcing the new limit, counts
//! kept. A broken rewrite changes nothing Envoy enforces.

mod envoy_harness;

use std::sync::atomic::{AtomicU32, Ordering};

use envoy_harness::{Listener, Stack, envoy_or_skip, eventually, write_atomically};

/// `api_key` limited to `limit` per minute.
fn rules(limit: u32) -> String {
    format!(
        "domain: api\ndescriptors:\n  - key: api_key\n    rate_limit: {{unit: minute, \
         requests_per_unit: {limit}}}\n"
    )
}

/// Not a valid unit: the load fails with a located error.
const BROKEN: &str = "domain: api\ndescriptors:\n  - key: api_key\n    rate_limit: {unit: \
                      fortnight, requests_per_unit: 1}\n";

fn api() -> Listener {
    Listener::new("api", "api").route(
        "/",
        "- actions:\n  - request_headers: { header_name: x-api-key, descriptor_key: api_key }",
    )
}

/// Starts the stack on a temp directory holding `api.yaml` with `rules(limit)`.
async fn stack(test: &str, limit: u32) -> Option<(Stack, tempfile::TempDir)> {
    let envoy = envoy_or_skip(test)?;
    let dir = tempfile::tempdir().expect("temp dir");
    write_atomically(dir.path(), "api.yaml", &rules(limit));
    let stack = Stack::start_watching(&envoy, dir.path(), vec![api()]).await;
    Some((stack, dir))
}

/// Numbers the probe keys; each test has its own quotad, so sharing the sequence is harmless.
static PROBES: AtomicU32 = AtomicU32::new(0);

/// Envoy's `x-ratelimit-limit` for a fresh api key each call, so polling spends nobody's budget.
async fn limit_seen_by_envoy(stack: &Stack) -> String {
    let key = format!("probe-{}", PROBES.fetch_add(1, Ordering::Relaxed));
    let reply = stack.send("api", "GET", "/", &[("x-api-key", &key)]).await;
    assert_eq!(reply.status, 200, "a fresh key is always admitted");
    reply
        .header("x-ratelimit-limit")
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_rules_file_changes_what_envoy_enforces() {
    let Some((stack, dir)) = stack("a_rewritten_rules_file_changes_what_envoy_enforces", 5).await
    else {
        return;
    };
    let steady = [("x-api-key", "steady")];
    let before = stack.statuses("api", "GET", "/", &steady, 2).await;
    assert_eq!(before, [200, 200], "5 per minute before the rewrite");
    let reloader = stack.quotad.reloader().expect("rules came from a path");
    let first_version = reloader.status().version;

    write_atomically(dir.path(), "api.yaml", &rules(2));
    let stack_ref = &stack;
    eventually("Envoy to see the rewritten limit", || async move {
        (limit_seen_by_envoy(stack_ref).await == "2, 2;w=60").then_some(())
    })
    .await;

    let status = reloader.status();
    assert_ne!(status.version, first_version, "the watcher reloaded");
    assert!(!status.failing, "{:?}", status.last_failure);
    let reply = stack.send("api", "GET", "/", &steady).await;
    assert_eq!(
        reply.status, 429,
        "the 2 earlier hits count against the new limit of 2"
    );
    assert_eq!(
        stack.envoy.stat("cluster.upstream.ratelimit.error").await,
        0,
        "no call to quotad failed across the reload"
    );
    assert_eq!(
        stack.envoy.stat("cluster.quotad.upstream_cx_total").await,
        1,
        "Envoy kept its one connection to quotad: nothing restarted"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_rewrite_leaves_envoy_enforcing_the_last_good_rules() {
    let Some((stack, dir)) = stack(
        "a_broken_rewrite_leaves_envoy_enforcing_the_last_good_rules",
        2,
    )
    .await
    else {
        return;
    };
    let reloader = stack.quotad.reloader().expect("rules came from a path");
    write_atomically(dir.path(), "api.yaml", BROKEN);
    eventually("the watcher to reject the broken file", || {
        let failing = reloader.status().failing;
        async move { failing.then_some(()) }
    })
    .await;
    let statuses = stack
        .statuses("api", "GET", "/", &[("x-api-key", "k")], 3)
        .await;
    assert_eq!(statuses, [200, 200, 429], "still 2 per minute");

    // Fixing the file is picked up the same way.
    write_atomically(dir.path(), "api.yaml", &rules(4));
    let stack_ref = &stack;
    eventually("Envoy to see the fixed file's limit", || async move {
        (limit_seen_by_envoy(stack_ref).await == "4, 4;w=60").then_some(())
    })
    .await;
    let statuses = stack
        .statuses("api", "GET", "/", &[("x-api-key", "k")], 2)
        .await;
    assert_eq!(
        statuses,
        [200, 429],
        "3 hits so far (the rejected one too), now 4 allowed"
    );
    stack.stop().await;
}
