//! The plain-HTTP side of quotad: probes, metrics, a JSON decision endpoint, usage lookups and
//! loopback-only admin endpoints — for load balancers, Prometheus, curl and operators, never
//! for Envoy.

mod admin;
mod bans;
mod health;
mod json;
mod rlconfig;
mod router;
mod usage;
mod wire;

pub use bans::{Banning, ManageBans};
pub use health::{Readiness, StoreProbe};
pub use json::{Decide, Deciding};
pub use router::{HttpState, router};
pub use usage::{ReportUsage, Reporting};
