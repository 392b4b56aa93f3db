//! quotad: a gRPC quota-decision service for Envoy's RateLimitService v3.
//!
//! Module map:
//! - [`clock`]: the injected time source (system clock, manual clock for tests).
//! - [`engine`]: pure decision logic — rules, windows, plan → apply → conclude.
//! - [`store`]: counter stores behind one trait (in-memory atomics).
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![forbid(unsafe_code)]

pub mod clock;
pub mod engine;
pub mod store;
