//! Usage lookups: for each descriptor, every limit that applies with what it has used, what is
//! left and when it resets — what a customer dashboard or a billing job shows. A lookup is the
//! gRPC call with every descriptor's `hits_addend` at 0 (which both stores read without
//! writing, so looking never consumes), reported limit by limit instead of as Envoy's one
//! status per descriptor.

use std::num::NonZeroU32;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor,
};
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::google::protobuf::UInt64Value;
use serde::Serialize;
use time::OffsetDateTime;

use crate::clock::Timestamp;
use crate::engine::{Algorithm, Assessment, Decision, Limit, Policy, Request, RuleSet};
use crate::store::StoreError;

use super::convert::InvalidRequest;

mod reader;

/// What to look up: a domain and its descriptors, each a list of `(key, value)` entries in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageQuery {
    /// The domain whose rules apply.
    pub domain: String,
    /// The descriptors, each as its entries, outermost key first.
    pub descriptors: Vec<Vec<(String, String)>>,
}

impl UsageQuery {
    /// The equivalent wire request: every descriptor carries an explicit `hits_addend` of 0, so
    /// the gRPC validation (and its request limits) applies unchanged.
    fn to_wire(&self) -> RateLimitRequest {
        let descriptor = |entries: &Vec<(String, String)>| RateLimitDescriptor {
            entries: entries
                .iter()
                .map(|(key, value)| rate_limit_descriptor::Entry {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            hits_addend: Some(UInt64Value { value: 0 }),
            ..RateLimitDescriptor::default()
        };
        RateLimitRequest {
            domain: self.domain.clone(),
            descriptors: self.descriptors.iter().map(descriptor).collect(),
            hits_addend: 0,
        }
    }
}

/// Why a lookup could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// The query broke the limits every request obeys; the message names the descriptor.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The counter store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything that applies to one lookup, as a dashboard renders it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageReport {
    /// The domain asked about.
    pub domain: String,
    /// Whether the loaded rules have this domain (when not, no descriptor has a rule).
    pub known_domain: bool,
    /// The moment the counters were read, RFC 3339 in UTC (to the millisecond).
    pub at: String,
    /// One report per descriptor, in query order.
    pub descriptors: Vec<DescriptorUsage>,
}

/// How a descriptor is limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleStatus {
    /// A rule matched and at least one of its limits applies.
    Limited,
    /// A rule matched and says `unlimited`: never limited, never counted.
    Unlimited,
    /// No rule matches (or the domain is unknown): never limited.
    NoRule,
    /// A rule matched, but every one of its limits is replaced by another descriptor's limit
    /// of the same name in this query.
    Replaced,
}

/// One descriptor's usage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DescriptorUsage {
    /// The descriptor's entries, in order.
    pub entries: Vec<EntryUsage>,
    /// Whether and how it is limited.
    pub status: RuleStatus,
    /// The matched rule's path, as `/rlconfig` and the `key_path` metric label name it.
    pub rule: Option<String>,
    /// Whether the next hit would be over the limit: an enforced (not soft) limit has nothing
    /// left (rejected unless the rule is in shadow mode), or a value is banned.
    pub exhausted: bool,
    /// When a ban on one of its values refuses the descriptor whatever its quota: when the ban
    /// ends, RFC 3339 in UTC; `null` otherwise.
    pub banned_until: Option<String>,
    /// Every limit that applies, in rule order; empty unless `status` is `limited`.
    pub limits: Vec<LimitUsage>,
}

/// One `key=value` entry of a descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryUsage {
    /// The entry's key.
    pub key: String,
    /// The entry's value.
    pub value: String,
}

/// One limit's usage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitUsage {
    /// The limit's name, if it has one.
    pub name: Option<String>,
    /// `fixed_window`, `sliding_window`, `token_bucket` or `concurrency`.
    pub algorithm: &'static str,
    /// The window (for concurrency limits, the lease TTL).
    pub window: WindowUsage,
    /// `requests_per_unit` (the rate, for token buckets), or `max_in_flight`.
    pub limit: u32,
    /// For token buckets, the hits a full bucket holds; `null` otherwise.
    pub burst: Option<u32>,
    /// Hits counted now: in the window (estimated for sliding windows), leases in flight, or
    /// tokens taken from the bucket. Rejected hits count, so this may exceed `limit`.
    pub used: u64,
    /// Hits still allowed now.
    pub remaining: u32,
    /// Seconds until the limit resets: the window ends, the lease generation turns, or the
    /// next token drips in (a sliding window with nothing left: until one more hit fits).
    pub reset_seconds: f64,
    /// When that is, RFC 3339 in UTC.
    pub reset_at: String,
    /// Measured and reported, never enforced.
    pub soft: bool,
    /// The rule is in shadow mode: counted and reported, never rejects.
    pub shadow: bool,
}

/// A limit's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WindowUsage {
    /// `second`, `minute`, `hour`, `day`, `week`, `month` or `year`.
    pub unit: &'static str,
    /// How many units the window spans.
    pub multiplier: u32,
    /// Whether it follows the UTC calendar (weeks from Monday, months from the 1st).
    pub calendar: bool,
    /// Length in seconds of the window that holds now (calendar months vary).
    pub seconds: u64,
}

impl UsageReport {
    /// The report for `decision`, made for `request` under `rules` at `now`.
    pub fn from_decision(
        rules: &RuleSet,
        request: &Request<'_>,
        decision: &Decision<'_>,
        now: Timestamp,
    ) -> Self {
        let domain = rules.domain(request.domain);
        let descriptors = request
            .descriptors
            .iter()
            .zip(&decision.descriptors)
            .map(|(descriptor, decided)| {
                // The decision names no rule for unlimited and fully replaced descriptors, and
                // the banning rule for banned ones: the report names the one that matched.
                let found = domain.and_then(|domain| domain.find(&descriptor.entries));
                let shadow = found.is_some_and(|rule| rule.shadow_mode);
                let limits: Vec<LimitUsage> = decided
                    .checked
                    .iter()
                    .map(|(limit, assessment)| LimitUsage::new(limit, assessment, shadow, now))
                    .collect();
                let (status, rule) = match found {
                    _ if !limits.is_empty() => (RuleStatus::Limited, found.or(decided.rule)),
                    Some(rule) if matches!(rule.policy, Policy::Unlimited) => {
                        (RuleStatus::Unlimited, Some(rule))
                    }
                    Some(rule) => (RuleStatus::Replaced, Some(rule)),
                    None => (RuleStatus::NoRule, None),
                };
                DescriptorUsage {
                    entries: descriptor
                        .entries
                        .iter()
                        .map(|entry| EntryUsage {
                            key: entry.key.to_owned(),
                            value: entry.value.to_owned(),
                        })
                        .collect(),
                    status,
                    rule: rule.map(|rule| rule.key_path.to_string()),
                    exhausted: decided.banned_until.is_some()
                        || limits
                            .iter()
                            .any(|limit| limit.remaining == 0 && !limit.soft),
                    banned_until: decided.banned_until.map(rfc3339),
                    limits,
                }
            })
            .collect();
        Self {
            domain: request.domain.to_owned(),
            known_domain: domain.is_some(),
            at: rfc3339(now),
            descriptors,
        }
    }
}

impl LimitUsage {
    fn new(limit: &Limit, assessment: &Assessment, shadow: bool, now: Timestamp) -> Self {
        let bounds = limit.window.bounds(now);
        Self {
            name: limit.name.as_deref().map(str::to_owned),
            algorithm: limit.algorithm.name(),
            window: WindowUsage {
                unit: limit.window.unit().name(),
                multiplier: limit.window.multiplier().get(),
                calendar: limit.window.is_calendar(),
                seconds: bounds.end.saturating_sub(bounds.start) / 1_000_000_000,
            },
            limit: limit.requests_per_unit,
            burst: (limit.algorithm == Algorithm::TokenBucket)
                .then(|| limit.burst.map_or(limit.requests_per_unit, NonZeroU32::get)),
            used: assessment.used,
            remaining: assessment.remaining,
            reset_seconds: assessment.reset.as_secs_f64(),
            reset_at: rfc3339(now.saturating_add(assessment.reset)),
            soft: limit.soft,
            shadow,
        }
    }
}

/// `at` as RFC 3339 in UTC, rounded up to the millisecond (never before `at`) and with the
/// fraction only when it is not whole: the shape JavaScript's `Date` parses everywhere.
pub fn rfc3339(at: Timestamp) -> String {
    const NANOS_PER_MILLI: u64 = 1_000_000;
    let nanos = at.as_nanos();
    let rounded = nanos
        .div_ceil(NANOS_PER_MILLI)
        .checked_mul(NANOS_PER_MILLI)
        .unwrap_or(nanos - nanos % NANOS_PER_MILLI);
    // Every u64 of nanoseconds (up to the year 2554) is a valid date.
    let Ok(time) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(rounded)) else {
        return String::new();
    };
    let millis = time.millisecond();
    let fraction = if millis == 0 {
        String::new()
    } else {
        format!(".{millis:03}")
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

#[cfg(test)]
mod tests;
