//! Prometheus metrics for operators: who is being limited (per rule, envoyproxy/ratelimit's
//! counters), how the service behaves (requests, latency, store), and whether the config on
//! disk is the one serving (reloads, version). Rendered at `GET /metrics` on the HTTP port.

mod bans;
pub mod names;
mod quota;
mod registry;
mod rules;
mod store;

pub use bans::{BANNED_REQUESTS, BANS_ACTIVE, BANS_STARTED, BanMetrics};
pub use quota::{
    LABEL_ASSIGNMENT_KIND, QuotaMetrics, RLQS_ASSIGNMENTS, RLQS_BUCKETS, RLQS_REPORTS, RLQS_STREAMS,
};
pub use registry::{Method, Metrics, Outcome};
pub use rules::{InvalidRatio, NearLimitRatio};
pub use store::{MemoryMetrics, RedisMetrics};
