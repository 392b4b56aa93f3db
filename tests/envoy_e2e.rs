//! End-to-end tests with a real Envoy 1.40 in front of quotad: descriptors built by Envoy's
//! actions reach quotad, and quotad's answers become 200s and 429s at the client.

mod envoy_harness;

use std::time::Duration;

use envoy_harness::{Bootstrap, Envoy, envoy_or_skip, start_upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_fails_open_when_quotad_is_unreachable() {
    let Some(envoy_bin) = envoy_or_skip("envoy_fails_open_when_quotad_is_unreachable") else {
        return;
    };
    let upstream = start_upstream().await;
    // Nothing listens here: bind and drop to get a free loopback port.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut bootstrap = Bootstrap::new(
        dead,
        upstream,
        "api",
        "- actions:\n  - generic_key: { descriptor_value: all }",
    );
    let envoy = Envoy::start(&envoy_bin, &bootstrap).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let response = client.get(envoy.url("/open")).send().await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "failure_mode_deny: false lets traffic through\n{}",
        envoy.log()
    );
    drop(envoy);

    bootstrap.failure_mode_deny = true;
    let envoy = Envoy::start(&envoy_bin, &bootstrap).await;
    let response = client.get(envoy.url("/closed")).send().await.unwrap();
    assert_eq!(
        response.status(),
        500,
        "failure_mode_deny: true rejects\n{}",
        envoy.log()
    );
}
