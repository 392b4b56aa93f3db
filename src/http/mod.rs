//! The plain-HTTP side of quotad: endpoints for load balancers and operators, never for Envoy.

mod health;

pub use health::{Readiness, router};
