//! What a server is started with: addresses, rules, clock, and the operator's knobs (sweep,
//! near-limit ratio, drain delay, reload triggers), with defaults that suit tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::config::{self, ConfigVersion};
use crate::metrics::NearLimitRatio;
use crate::service::SharedRules;

/// How often expired counters are reclaimed unless configured otherwise.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The gRPC service name health checks ask about.
pub const RATE_LIMIT_SERVICE_NAME: &str =
    envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::SERVICE_NAME;

/// Everything `start` needs: where to listen, which rules, and which clock to count by.
#[derive(Debug, Clone)]
pub struct ServerConfig<C = SystemClock> {
    /// Address for gRPC; port 0 picks a free port (see [`RunningServer::grpc_addr`]).
    pub grpc_addr: SocketAddr,
    /// Address for HTTP; port 0 picks a free port (see [`RunningServer::http_addr`]).
    pub http_addr: SocketAddr,
    /// The rules handle; whoever holds a clone can publish new rules.
    pub rules: SharedRules,
    /// The time source for every window.
    pub clock: C,
    /// How often expired counters are reclaimed.
    pub sweep_interval: Duration,
    /// The share of a limit at which hits also count as `near_limit`.
    pub near_limit_ratio: NearLimitRatio,
    /// How long readiness reports 503 before the listeners close on shutdown.
    pub drain_delay: Duration,
    /// Where the rules came from, for reloads; `None` for rules built in code.
    pub reload: Option<ReloadSettings>,
    /// Where the counters live: memory (default) or Redis.
    pub store: super::store::StoreSettings,
    /// What a request gets when the store fails (default: allowed).
    pub on_store_error: crate::service::StoreErrorPolicy,
    /// The gRPC listener's transport: TLS, keepalive, connection age, size and load limits.
    pub grpc: super::grpc::GrpcSettings,
    /// Headers and body for domains whose rules choose none (default: none, as envoyproxy).
    pub default_response: crate::engine::ResponsePolicy,
    /// Serve `GET /usage` to every client, not only loopback ones (default: loopback only).
    pub usage_endpoint_public: bool,
}

/// How the rules are reloaded: from which path, and on which triggers (`POST /reload` always).
#[derive(Debug, Clone)]
pub struct ReloadSettings {
    /// The file or directory the rules were loaded from.
    pub path: PathBuf,
    /// The version of the rules already serving (from [`config::load_versioned`]).
    pub version: ConfigVersion,
    /// Reload when the files change.
    pub watch: bool,
    /// Reload on `SIGHUP`.
    pub sighup: bool,
    /// How long the files must stay quiet before a watched change is reloaded.
    pub debounce: Duration,
}

impl ReloadSettings {
    /// Every trigger on, with the default debounce.
    pub fn new(path: PathBuf, version: ConfigVersion) -> Self {
        Self {
            path,
            version,
            watch: true,
            sighup: true,
            debounce: config::DEFAULT_DEBOUNCE,
        }
    }
}

impl<C: Clock + Clone> ServerConfig<C> {
    /// A configuration with the default sweep interval.
    pub fn new(grpc_addr: SocketAddr, http_addr: SocketAddr, rules: SharedRules, clock: C) -> Self {
        Self {
            grpc_addr,
            http_addr,
            rules,
            clock,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            near_limit_ratio: NearLimitRatio::DEFAULT,
            drain_delay: Duration::ZERO,
            reload: None,
            store: super::store::StoreSettings::default(),
            on_store_error: crate::service::StoreErrorPolicy::default(),
            grpc: super::grpc::GrpcSettings::default(),
            default_response: crate::engine::ResponsePolicy::default(),
            usage_endpoint_public: false,
        }
    }
}
