//! The HTTP port over a real socket: probes (and 503 while draining, with gRPC still
//! answering), `POST /json` with protobuf JSON both ways and the right status codes,
//! `/rlconfig`'s one line per limit, and the loopback-only admin endpoints.

mod ops;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ops::{
    DEADLINE, MANUAL, client, current_limit, eventually, get, post, start_from, url, user_rules,
};
use quotad::app::{self, ServerConfig};
use quotad::clock::ManualClock;

async fn served(limit: u32) -> (quotad::app::RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("api.yaml"), user_rules(limit)).expect("write");
    let (server, _clock) = start_from(dir.path(), MANUAL).await;
    (server, dir)
}

#[tokio::test]
async fn probes_answer_and_fail_while_draining() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("api.yaml");
    std::fs::write(&path, user_rules(10)).expect("write");
    let loaded = quotad::config::load_versioned(&path).expect("valid");
    let loopback = "127.0.0.1:0".parse().expect("valid address");
    let rules = Arc::new(ArcSwap::new(loaded.rules));
    let mut config = ServerConfig::new(loopback, loopback, rules, ManualClock::new(ops::START));
    config.drain_delay = Duration::from_secs(5);
    let server = app::start(config).await.expect("server starts");
    for path in ["/healthcheck", "/ready", "/live"] {
        assert_eq!(
            get(&url(&server, path)).await,
            (200, "OK".to_owned()),
            "{path}"
        );
    }
    let health = url(&server, "/healthcheck");
    let live = url(&server, "/live");
    let mut grpc = client(&server).await;
    let draining = tokio::spawn(server.shutdown());
    eventually("healthcheck to fail while draining", DEADLINE, || {
        let health = health.clone();
        async move { (get(&health).await.0 == 503).then_some(()) }
    })
    .await;
    assert_eq!(get(&live).await.0, 200, "draining is not dead");
    assert_eq!(
        current_limit(&mut grpc).await,
        Some(10),
        "gRPC still answers while draining"
    );
    draining
        .await
        .expect("shutdown task")
        .expect("clean shutdown");
}

#[tokio::test]
async fn json_decisions_use_protobuf_json() {
    let (server, _dir) = served(2).await;
    let json = url(&server, "/json");
    let body = r#"{"domain":"api","descriptors":[{"entries":[{"key":"user","value":"u"}]}],"hitsAddend":2}"#;
    let (status, answer) = post(&json, body).await;
    assert_eq!(status, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON answer");
    assert_eq!(answer["overallCode"], "OK");
    let first = &answer["statuses"][0];
    assert_eq!(first["code"], "OK");
    assert_eq!(first["currentLimit"]["requestsPerUnit"], 2);
    assert_eq!(first["currentLimit"]["unit"], "MINUTE");
    assert_eq!(first["limitRemaining"], 0);
    assert_eq!(first["durationUntilReset"], "60s");

    let (status, answer) = post(&json, body).await;
    assert_eq!(status, 429, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON answer");
    assert_eq!(answer["overallCode"], "OVER_LIMIT");

    for (bad, needle) in [
        ("{not json", "malformed RateLimitRequest JSON"),
        (
            r#"{"domain":"api","descriptors":[],"colour":1}"#,
            "unknown field `colour`",
        ),
        (
            r#"{"domain":"","descriptors":[{"entries":[{"key":"k","value":"v"}]}]}"#,
            "domain must not be empty",
        ),
        (
            r#"{"domain":"api","descriptors":[{"entries":[{"key":"user","value":"u"}],"limit":{"requestsPerUnit":1,"unit":"FORTNIGHT"}}]}"#,
            "FORTNIGHT",
        ),
    ] {
        let (status, answer) = post(&json, bad).await;
        assert_eq!(status, 400, "{bad}: {answer}");
        let error: serde_json::Value = serde_json::from_str(&answer).expect("JSON error");
        assert_eq!(error["code"], "INVALID_ARGUMENT");
        let message = error["message"].as_str().expect("message");
        assert!(message.contains(needle), "{bad}: {message}");
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn rlconfig_lists_every_limit_with_the_version() {
    let (server, dir) = served(25).await;
    let (status, page) = get(&url(&server, "/rlconfig")).await;
    assert_eq!(status, 200);
    let version = server.reloader().expect("reloader").status().version;
    let header = format!(
        "# version {version} loaded 2024-10-04T00:00:00Z from {}",
        dir.path().display()
    );
    assert_eq!(
        page,
        format!("{header}\n# last reload error: none\napi user: 25 per minute, fixed_window\n")
    );
    server.shutdown().await.expect("clean shutdown");
}

/// A local address that is not loopback, if this machine has one (found without sending).
fn non_loopback_ip() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn admin_endpoints_refuse_other_hosts() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("SKIPPED admin_endpoints_refuse_other_hosts: no non-loopback address here");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("api.yaml"), user_rules(5)).expect("write");
    let loaded = quotad::config::load_versioned(dir.path()).expect("valid");
    let rules = Arc::new(ArcSwap::new(loaded.rules));
    let grpc: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
    let http = SocketAddr::new(ip, 0);
    let mut config = ServerConfig::new(grpc, http, rules, ManualClock::new(ops::START));
    config.reload = Some(app::ReloadSettings::new(
        dir.path().to_path_buf(),
        loaded.version,
    ));
    config.reload.as_mut().expect("set").watch = false;
    config.reload.as_mut().expect("set").sighup = false;
    let server = app::start(config).await.expect("server starts");
    assert_eq!(post(&url(&server, "/reload"), "").await.0, 403);
    assert_eq!(get(&url(&server, "/rlconfig")).await.0, 403);
    assert_eq!(
        get(&url(&server, "/metrics")).await.0,
        200,
        "metrics are for scrapers"
    );
    assert_eq!(get(&url(&server, "/healthcheck")).await.0, 200);
    server.shutdown().await.expect("clean shutdown");
}
