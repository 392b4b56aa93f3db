//! The whole chain a test talks to — client → Envoy → upstream, with Envoy asking an in-process
//! quotad — started in one call. quotad counts by a manual clock parked at midnight UTC, so no
//! window rolls over while a test runs however slow the machine is.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use quotad::app::{self, RunningServer, ServerConfig};
use quotad::clock::{ManualClock, Timestamp};
use quotad::config::compile_str;
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
