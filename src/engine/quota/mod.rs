//! Envoy's Rate Limit Quota Service (RLQS) as pure policy: how a bucket's string map becomes a
//! descriptor, and which assignment each stream gets so that every Envoy together stays within
//! the limit the rules set (see [`QuotaLedger`] for the invariant and the reporting-lag bound).
//! No tokio, no I/O: the service adapter counts usage through the same plan → apply path as
//! `ShouldRateLimit` and passes the result in as a [`Standing`].

mod assignment;
mod ledger;
mod settings;

#[cfg(test)]
mod simulation;
#[cfg(test)]
mod tests;

pub use assignment::{
    Assignment, AssignmentKind, Decided, FILL_INTERVAL, MAX_TTL, REPORT_INTERVAL, Standing,
    Trigger, UNTIL_NEXT_REPORT, whole_seconds_ttl,
};
pub use ledger::{QuotaLedger, REFRESH_AHEAD, STALE_AFTER, StreamId};
pub use settings::{NoMatch, QuotaSettings};
