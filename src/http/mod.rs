//! The plain-HTTP side of quotad: probes, metrics, a JSON decision endpoint and loopback-only
//! admin endpoints — for load balancers, Prometheus, curl and operators, never for Envoy.

mod admin;
mod health;
mod json;
mod rlconfig;
mod router;
mod wire;

pub use health::{Readiness, StoreProbe};
pub use json::{Decide, Deciding};
pub use router::{HttpState, router};
