//! The whole chain a test talks to — client → Envoy → upstream, with Envoy asking an in-process
//! quotad — started in one call. quotad counts by a manual clock parked at midnight UTC, so no
//! window rolls over while a test runs however slow the machine is. quotad gets its rules either
//! compiled from a string or, as `quotad serve` does, from files it watches and reloads.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use quotad::app::{self, ReloadSettings, RunningServer, ServerConfig};
use quotad::clock::{ManualClock, Timestamp};
use quotad::config::{compile_str, load_versioned};
use quotad::engine::RuleSet;
use quotad::service::shared_rules;
use reqwest::header::HeaderMap;
use tokio::net::TcpListener;

use super::bootstrap::{Bootstrap, Listener};
use super::process::Envoy;

/// Midnight UTC, so every second, minute, hour and day window starts exactly here.
pub const START: Timestamp = Timestamp::from_secs(86_400 * 20_000);

/// Compiles rules YAML written by a test, panicking with every located error.
pub fn compile(yaml: &str) -> RuleSet {
    compile_str("rules.yaml", yaml).unwrap_or_else(|errors| panic!("test rules: {errors}"))
}

/// quotad on loopback port 0 serving `rules`, counting by a manual clock at [`START`].
pub async fn start_quotad(rules: &str) -> (RunningServer, ManualClock) {
    let clock = ManualClock::new(START);
    let loopback = "127.0.0.1:0".parse().expect("valid address");
    let config = ServerConfig::new(
        loopback,
        loopback,
        shared_rules(compile(rules)),
        clock.clone(),
    );
    let server = app::start(config).await.expect("quotad starts");
    (server, clock)
}

/// quotad serving the rules under `path` (a file or a directory) the way `quotad serve` does:
/// loaded with their version, and reloaded by the file watcher with the default debounce when
/// the files change. SIGHUP stays off because every test in the binary shares the process.
pub async fn start_quotad_watching(path: &Path) -> (RunningServer, ManualClock) {
    let loaded = load_versioned(path).unwrap_or_else(|errors| panic!("test rules: {errors}"));
    let clock = ManualClock::new(START);
    let loopback = "127.0.0.1:0".parse().expect("valid address");
    let rules = Arc::new(ArcSwap::new(loaded.rules));
    let mut config = ServerConfig::new(loopback, loopback, rules, clock.clone());
    let mut reload = ReloadSettings::new(path.to_path_buf(), loaded.version);
    reload.sighup = false;
    config.reload = Some(reload);
    let server = app::start(config).await.expect("quotad starts");
    (server, clock)
}

/// Writes `text` to `dir/name` the way editors and deploy tools do — a temp file renamed over
/// the old one — so the watcher never reads half a file.
pub fn write_atomically(dir: &Path, name: &str, text: &str) {
    let temp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temp, text).expect("write temp file");
    std::fs::rename(&temp, dir.join(name)).expect("rename into place");
}

/// How often [`eventually`] looks again: short, so a passing test ends soon after the change.
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `check` every [`POLL`] until it returns `Some`, failing with `what` after
/// [`DEADLINE`](super::process::DEADLINE).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let give_up = tokio::time::Instant::now() + super::process::DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "timed out after {:?} waiting for {what}",
            super::process::DEADLINE
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A tiny upstream: answers every request with 200 and a body naming the path.
pub async fn start_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    let app = axum::Router::new()
        .fallback(|uri: axum::http::Uri| async move { format!("upstream saw {uri}") });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// An HTTP client whose timeout is generous but still ends a hung test.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// What the client got back.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The response body.
    pub body: String,
}

impl Reply {
    /// A header's value, or `None` when absent or not text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// Envoy's `x-ratelimit-limit`, `-remaining` and `-reset` headers, in that order.
    pub fn ratelimit_headers(&self) -> [Option<&str>; 3] {
        [
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
        ]
        .map(|name| self.header(name))
    }

    /// Every value of a header, in the order received (Envoy appends, it does not replace).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect()
    }
}

/// Sends one request and collects the reply; a transport error fails the test.
pub async fn send(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("valid method");
    let mut request = client.request(method, url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|error| panic!("{url}: {error}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("response body");
    Reply {
        status,
        headers,
        body,
    }
}

/// quotad, an upstream and Envoy in front of both, started together.
#[derive(Debug)]
pub struct Stack {
    /// The in-process quotad.
    pub quotad: RunningServer,
    /// The clock quotad counts by.
    pub clock: ManualClock,
    /// The running Envoy.
    pub envoy: Envoy,
    /// A client for requests through Envoy.
    pub client: reqwest::Client,
}

impl Stack {
    /// Starts quotad with `rules`, an upstream, and Envoy with `listeners`.
    pub async fn start(envoy: &Path, rules: &str, listeners: Vec<Listener>) -> Stack {
        let (quotad, clock) = start_quotad(rules).await;
        let upstream = start_upstream().await;
        Self::around(envoy, quotad, clock, upstream, listeners).await
    }

    /// Like [`Stack::start`], with Envoy forwarding to the given `upstream`.
    pub async fn start_with_upstream(
        envoy: &Path,
        rules: &str,
        upstream: SocketAddr,
        listeners: Vec<Listener>,
    ) -> Stack {
        let (quotad, clock) = start_quotad(rules).await;
        Self::around(envoy, quotad, clock, upstream, listeners).await
    }

    /// Starts quotad watching the rules under `path` (see [`start_quotad_watching`]), an
    /// upstream, and Envoy with `listeners`.
    pub async fn start_watching(envoy: &Path, path: &Path, listeners: Vec<Listener>) -> Stack {
        let (quotad, clock) = start_quotad_watching(path).await;
        let upstream = start_upstream().await;
        Self::around(envoy, quotad, clock, upstream, listeners).await
    }

    async fn around(
        envoy: &Path,
        quotad: RunningServer,
        clock: ManualClock,
        upstream: SocketAddr,
        listeners: Vec<Listener>,
    ) -> Stack {
        let bootstrap = Bootstrap::new(quotad.grpc_addr(), upstream, listeners);
        let envoy = Envoy::start(envoy, &bootstrap.render()).await;
        Stack {
            quotad,
            clock,
            envoy,
            client: http_client(),
        }
    }

    /// Sends `method path` with `headers` to the listener called `listener`.
    pub async fn send(
        &self,
        listener: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        send(
            &self.client,
            method,
            &self.envoy.url(listener, path),
            headers,
        )
        .await
    }

    /// Sends `method path` `times` times and returns every status, in order.
    pub async fn statuses(
        &self,
        listener: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        times: usize,
    ) -> Vec<u16> {
        let mut statuses = Vec::with_capacity(times);
        for _ in 0..times {
            statuses.push(self.send(listener, method, path, headers).await.status);
        }
        statuses
    }

    /// Stops Envoy, then quotad.
    pub async fn stop(self) {
        drop(self.envoy);
        self.quotad.shutdown().await.expect("quotad stops cleanly");
    }
}
