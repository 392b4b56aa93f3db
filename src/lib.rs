//! quotad: a gRPC quota-decision service for Envoy's RateLimitService v3.
//!
//! Module map:
//! - [`app`]: wiring and lifecycle — listeners, background sweep, graceful shutdown.
//! - [`cli`]: command-line flags, each also read from a `QUOTAD_*` environment variable.
//! - [`clock`]: the injected time source (system clock, manual clock for tests).
//! - [`config`]: YAML rules (envoyproxy/ratelimit format) compiled to a `RuleSet`, errors located.
//! - [`engine`]: pure decision logic — rules, windows, plan → apply → conclude.
//! - [`http`]: the HTTP port — health and readiness probes, `/metrics`, `POST /json`, and the
//!   loopback-only admin endpoints `/rlconfig` and `/reload`.
//! - [`metrics`]: Prometheus metric names (described once) and the per-server registry.
//! - [`query`]: the `quotad query` client — one ShouldRateLimit call, printed.
//! - [`service`]: tonic adapters — protobuf ⇄ engine conversion and the RateLimitService.
//! - [`store`]: counter stores behind one trait: in-memory atomics (bounded) and Redis / Redis Cluster.
//! - [`telemetry`]: logging setup (text or JSON on stderr).
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod query;
pub mod service;
pub mod store;
pub mod telemetry;
