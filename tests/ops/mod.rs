//! Shared fixtures for the operator-facing tests (reload, metrics, HTTP): a server started from
//! rule files on disk with a manual clock, plain HTTP helpers, and a deadline poll — tests
//! wait for a condition, never for a fixed time.
#![allow(dead_code)] // each test binary uses its own subset

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::DescriptorStatus;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use quotad::app::{self, ReloadSettings, RunningServer, ServerConfig};
use quotad::clock::ManualClock;
use quotad::config;
use tonic::transport::Channel;

// The wire helpers are the gRPC tests' own; one copy serves both suites.
#[path = "../common/mod.rs"]
mod common;
pub use common::{START, client, descriptor, request};

/// Long enough for a loaded CI machine; only reached when something is actually wrong.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// How often a deadline loop looks again.
pub const POLL: Duration = Duration::from_millis(10);

/// Which reload triggers a test server listens to (`POST /reload` always works).
#[derive(Debug, Clone, Copy)]
pub struct Triggers {
    /// Watch the files.
    pub watch: bool,
    /// Listen for SIGHUP.
    pub sighup: bool,
}

/// Only `POST /reload`.
pub const MANUAL: Triggers = Triggers {
    watch: false,
    sighup: false,
};

/// Loads `path` and serves it on loopback port 0 with a manual clock.
pub async fn start_from(path: &Path, triggers: Triggers) -> (RunningServer, ManualClock) {
    let loaded = config::load_versioned(path).expect("initial rules are valid");
    let clock = ManualClock::new(START);
    let loopback = "127.0.0.1:0".parse().expect("valid address");
    let rules = Arc::new(ArcSwap::new(loaded.rules));
    let mut server_config = ServerConfig::new(loopback, loopback, rules, clock.clone());
    let mut reload = ReloadSettings::new(path.to_path_buf(), loaded.version);
    reload.watch = triggers.watch;
    reload.sighup = triggers.sighup;
    reload.debounce = Duration::from_millis(50);
    server_config.reload = Some(reload);
    // Frequent sweeps, so tests that move the clock see reclaimed counters promptly.
    server_config.sweep_interval = Duration::from_millis(100);
    let server = app::start(server_config).await.expect("server starts");
    (server, clock)
}

/// `domain: api` with one key-only rule on `user`, `limit` per minute.
pub fn user_rules(limit: u32) -> String {
    format!(
        "domain: api\ndescriptors:\n  - key: user\n    rate_limit:\n      unit: minute\n      \
         requests_per_unit: {limit}\n"
    )
}

/// Writes `text` to `dir/name` atomically (temp file, then rename), as editors and deploy
/// tools do, so a watcher never sees half a file.
pub fn write_atomically(dir: &Path, name: &str, text: &str) {
    let temp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temp, text).expect("write temp file");
    std::fs::rename(&temp, dir.join(name)).expect("rename into place");
}

/// One hit (or, with `hits` 0, a peek) for `user=<value>`; the descriptor's status.
pub async fn hit_user(
    client: &mut RateLimitServiceClient<Channel>,
    value: &str,
    hits: u32,
) -> DescriptorStatus {
    let descriptors = vec![descriptor(&[("user", value)])];
    let request = request(descriptors, hits);
    let request = if hits == 0 {
        with_zero_hits(request)
    } else {
        request
    };
    let mut response = client
        .should_rate_limit(request)
        .await
        .expect("call succeeds")
        .into_inner();
    response.statuses.remove(0)
}

/// A request whose descriptors read without consuming (`hits_addend` 0 at the request level
/// means 1, so the descriptors carry an explicit 0).
fn with_zero_hits(mut request: RateLimitRequest) -> RateLimitRequest {
    for descriptor in &mut request.descriptors {
        descriptor.hits_addend = Some(envoy_types::pb::google::protobuf::UInt64Value { value: 0 });
    }
    request
}

/// The limit the server currently applies to `user` (read without consuming).
pub async fn current_limit(client: &mut RateLimitServiceClient<Channel>) -> Option<u32> {
    hit_user(client, "probe", 0)
        .await
        .current_limit
        .map(|limit| limit.requests_per_unit)
}

/// `http://<http addr><path>`.
pub fn url(server: &RunningServer, path: &str) -> String {
    format!("http://{}{path}", server.http_addr())
}

/// An HTTP client that never goes through a proxy from the environment.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client")
}

/// GET, returning status and body.
pub async fn get(url: &str) -> (u16, String) {
    let response = http().get(url).send().await.expect("GET succeeds");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// POST `body`, returning status and body.
pub async fn post(url: &str, body: &str) -> (u16, String) {
    let response = http()
        .post(url)
        .body(body.to_owned())
        .send()
        .await
        .expect("POST succeeds");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// Polls `check` every [`POLL`] until it returns `Some`, failing with `what` after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The value of the series whose line starts with `series` (name and labels, as rendered).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// How many series the exposition holds (every non-comment line is one sample).
pub fn series_count(metrics: &str) -> usize {
    metrics
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .count()
}
