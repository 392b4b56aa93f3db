//! Generates the Envoy bootstraps the end-to-end tests run: one or more listeners on ephemeral
//! loopback ports, each with its own rate-limit filter settings and routes, all forwarding to one
//! upstream and asking one quotad. Rate-limit actions are written by the tests as YAML so each
//! test shows exactly what a user would put in their own bootstrap.

use std::fmt::Write as _;
use std::net::SocketAddr;

/// One route: a path prefix and its route-level `rate_limits` (YAML list items, or empty).
#[derive(Debug, Clone)]
pub struct Route {
    /// The path prefix the route matches.
    pub prefix: String,
    /// YAML list items for `route.rate_limits`.
    pub rate_limits: String,
}

/// One listener with one HTTP connection manager and one rate-limit filter.
#[derive(Debug, Clone)]
pub struct Listener {
    /// The listener's name, used to look its address up once Envoy runs.
    pub name: String,
    /// The rate-limit domain Envoy sends.
    pub domain: String,
    /// Whether Envoy rejects requests when quotad cannot be reached.
    pub failure_mode_deny: bool,
    /// Whether Envoy adds its own `x-ratelimit-*` headers (`DRAFT_VERSION_03`) built from
    /// quotad's statuses; on by default.
    pub x_ratelimit_headers: bool,
    /// YAML list items for the filter-level `rate_limits` (empty for none); when set, Envoy
    /// ignores the route-level ones.
    pub filter_rate_limits: String,
    /// Routes, matched in order.
    pub routes: Vec<Route>,
}

impl Listener {
    /// A listener for `domain` without routes, failing open.
    pub fn new(name: &str, domain: &str) -> Self {
        Self {
            name: name.to_owned(),
            domain: domain.to_owned(),
            failure_mode_deny: false,
            x_ratelimit_headers: true,
            filter_rate_limits: String::new(),
            routes: Vec::new(),
        }
    }

    /// Adds a route for `prefix` with route-level `rate_limits`.
    pub fn route(mut self, prefix: &str, rate_limits: &str) -> Self {
        self.routes.push(Route {
            prefix: prefix.to_owned(),
            rate_limits: rate_limits.to_owned(),
        });
        self
    }

    /// Sets the filter-level `rate_limits`.
    pub fn filter_rate_limits(mut self, rate_limits: &str) -> Self {
        self.filter_rate_limits = rate_limits.to_owned();
        self
    }

    /// Sets `failure_mode_deny`.
    pub fn failure_mode_deny(mut self, deny: bool) -> Self {
        self.failure_mode_deny = deny;
        self
    }

    /// Sets whether Envoy adds its own `x-ratelimit-*` headers. Turned off where quotad's
    /// `legacy` style names the same headers, so each header the client sees has one source.
    pub fn x_ratelimit_headers(mut self, enabled: bool) -> Self {
        self.x_ratelimit_headers = enabled;
        self
    }

    fn render(&self, out: &mut String) {
        let mut routes = String::new();
        for route in &self.routes {
            let _ = writeln!(routes, "- match: {{ prefix: \"{}\" }}", route.prefix);
            let _ = writeln!(routes, "  route:");
            let _ = writeln!(routes, "    cluster: upstream");
            if !route.rate_limits.trim().is_empty() {
                let _ = writeln!(routes, "    rate_limits:");
                routes.push_str(&indent(&route.rate_limits, 4));
            }
        }
        let filter_rate_limits = if self.filter_rate_limits.trim().is_empty() {
            String::new()
        } else {
            format!("rate_limits:\n{}", indent(&self.filter_rate_limits, 0))
        };
        let _ = write!(
            out,
            r#"- name: {name}
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: {name}
        # The peer address (not a client-supplied X-Forwarded-For) feeds `remote_address`.
        use_remote_address: true
        route_config:
          virtual_hosts:
          - name: {name}
            domains: ["*"]
            routes:
{routes}        http_filters:
        - name: envoy.filters.http.ratelimit
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
            domain: {domain}
            # The default is 20 ms, which a loaded test machine can miss.
            timeout: 5s
            failure_mode_deny: {deny}
            enable_x_ratelimit_headers: {x_headers}
{filter_rate_limits}            rate_limit_service:
              transport_api_version: V3
              grpc_service: {{ envoy_grpc: {{ cluster_name: quotad }} }}
        - name: envoy.filters.http.router
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#,
            name = self.name,
            routes = indent(&routes, 12),
            domain = self.domain,
            deny = self.failure_mode_deny,
            // Quoted: Envoy's YAML reader takes a bare `OFF` for the boolean false.
            x_headers = if self.x_ratelimit_headers {
                "DRAFT_VERSION_03"
            } else {
                "\"OFF\""
            },
            filter_rate_limits = indent(&filter_rate_limits, 12),
        );
    }
}

/// A whole bootstrap: listeners, the upstream every route forwards to, and quotad.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// quotad's gRPC address.
    pub quotad: SocketAddr,
    /// The upstream every route forwards to.
    pub upstream: SocketAddr,
    /// The listeners, each reachable by name once Envoy runs.
    pub listeners: Vec<Listener>,
}

impl Bootstrap {
    /// A bootstrap with `listeners` in front of `upstream`, asking quotad at `quotad`.
    pub fn new(quotad: SocketAddr, upstream: SocketAddr, listeners: Vec<Listener>) -> Self {
        Self {
            quotad,
            upstream,
            listeners,
        }
    }

    /// The bootstrap as YAML.
    pub fn render(&self) -> String {
        let mut listeners = String::new();
        for listener in &self.listeners {
            listener.render(&mut listeners);
        }
        format!(
            r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
static_resources:
  listeners:
{listeners}  clusters:
{upstream}{quotad}"#,
            listeners = indent(&listeners, 2),
            upstream = cluster("upstream", self.upstream, false),
            quotad = cluster("quotad", self.quotad, true),
        )
    }
}

fn cluster(name: &str, addr: SocketAddr, http2: bool) -> String {
    let protocol = if http2 {
        r#"    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
"#
    } else {
        ""
    };
    format!(
        r#"  - name: {name}
    type: STATIC
    connect_timeout: 1s
{protocol}    load_assignment:
      cluster_name: {name}
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: {ip}, port_value: {port} }} }} }} }}] }}]
"#,
        ip = addr.ip(),
        port = addr.port(),
    )
}

/// Indents every non-blank line of `block` by `spaces`.
pub fn indent(block: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    block
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| format!("{pad}{line}\n"))
        .collect()
}
