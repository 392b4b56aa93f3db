//! The one place protobuf meets the engine: an Envoy `RateLimitRequest` becomes a borrowed
//! `engine::Request` (validated, so the engine never sees an empty key), and an engine
//! `Decision` becomes a `RateLimitResponse`. Nothing else in quotad's server touches wire types.

use std::time::Duration;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;
use tonic::Status;

use crate::engine::{
    Decision, Descriptor, DescriptorDecision, Entry, Limit, LimitOverride, Request, TimeUnit,
};

/// Why a request was refused before reaching the engine; indexes are 0-based, as on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    /// The request named no domain.
    #[error("domain must not be empty")]
    EmptyDomain,
    /// The request carried no descriptor.
    #[error("request must carry at least one descriptor")]
    NoDescriptors,
    /// A descriptor had no entries.
    #[error("descriptor {descriptor} has no entries")]
    EmptyDescriptor {
        /// Index of the descriptor in the request.
        descriptor: usize,
    },
    /// A descriptor entry had an empty key.
    #[error("descriptor {descriptor} entry {entry} has an empty key")]
    EmptyKey {
        /// Index of the descriptor in the request.
        descriptor: usize,
        /// Index of the entry in the descriptor.
        entry: usize,
    },
    /// The domain is longer than the server accepts.
    #[error("domain is {len} bytes long; at most {max} are accepted")]
    DomainTooLong {
        /// Its length in bytes.
        len: usize,
        /// The accepted maximum.
        max: usize,
    },
    /// The request carried more descriptors than the server accepts.
    #[error("request carries {count} descriptors; at most {max} are accepted")]
    TooManyDescriptors {
        /// How many were sent.
        count: usize,
        /// The accepted maximum.
        max: usize,
    },
    /// A descriptor carried more entries than the server accepts.
    #[error("descriptor {descriptor} has {count} entries; at most {max} are accepted")]
    TooManyEntries {
        /// Index of the descriptor in the request.
        descriptor: usize,
        /// How many entries it has.
        count: usize,
        /// The accepted maximum.
        max: usize,
    },
    /// An entry's key or value was longer than the server accepts.
    #[error(
        "descriptor {descriptor} entry {entry}: {part} is {len} bytes long; at most {max} are accepted"
    )]
    EntryTooLong {
        /// Index of the descriptor in the request.
        descriptor: usize,
        /// Index of the entry in the descriptor.
        entry: usize,
        /// `key` or `value`.
        part: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The accepted maximum.
        max: usize,
    },
    /// A descriptor's `limit` override named a unit quotad does not know.
    #[error(
        "descriptor {descriptor}: limit override has unknown unit {unit} (expected SECOND, MINUTE, HOUR, DAY, WEEK, MONTH or YEAR)"
    )]
    UnknownOverrideUnit {
        /// Index of the descriptor in the request.
        descriptor: usize,
        /// The unit number as sent.
        unit: i32,
    },
}

impl From<InvalidRequest> for Status {
    fn from(error: InvalidRequest) -> Self {
        Status::invalid_argument(error.to_string())
    }
}

/// How much one request may carry. Envoy's requests are small; these bounds keep a hostile
/// client from making quotad hash megabytes or hold millions of keys per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Longest domain, in bytes.
    pub max_domain_bytes: usize,
    /// Most descriptors in one request.
    pub max_descriptors: usize,
    /// Most entries in one descriptor.
    pub max_entries: usize,
    /// Longest entry key, in bytes.
    pub max_key_bytes: usize,
    /// Longest entry value, in bytes (paths and emails fit comfortably).
    pub max_value_bytes: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_domain_bytes: 256,
            max_descriptors: 64,
            max_entries: 32,
            max_key_bytes: 256,
            max_value_bytes: 4_096,
        }
    }
}

impl<'a> TryFrom<&'a RateLimitRequest> for Request<'a> {
    type Error = InvalidRequest;

    fn try_from(wire: &'a RateLimitRequest) -> Result<Self, Self::Error> {
        request_from_wire(wire, &RequestLimits::default())
    }
}

/// Validates `wire` against `limits` and borrows it as an engine request.
pub fn request_from_wire<'a>(
    wire: &'a RateLimitRequest,
    limits: &RequestLimits,
) -> Result<Request<'a>, InvalidRequest> {
    let mut request = Request::new(&wire.domain, []);
    read_request(&mut request, wire, limits)?;
    Ok(request)
}

/// [`request_from_wire`] into a request the caller owns (everything in it replaced; left
/// half-filled on an error). The service uses this form: a request is most of a kilobyte, and
/// one built aside was copied four more times on its way out.
pub fn read_request<'a>(
    request: &mut Request<'a>,
    wire: &'a RateLimitRequest,
    limits: &RequestLimits,
) -> Result<(), InvalidRequest> {
    if wire.domain.is_empty() {
        return Err(InvalidRequest::EmptyDomain);
    }
    if wire.domain.len() > limits.max_domain_bytes {
        return Err(InvalidRequest::DomainTooLong {
            len: wire.domain.len(),
            max: limits.max_domain_bytes,
        });
    }
    if wire.descriptors.is_empty() {
        return Err(InvalidRequest::NoDescriptors);
    }
    if wire.descriptors.len() > limits.max_descriptors {
        return Err(InvalidRequest::TooManyDescriptors {
            count: wire.descriptors.len(),
            max: limits.max_descriptors,
        });
    }
    request.domain = &wire.domain;
    // Envoy sends 0 when the filter did not set a count; it means one hit.
    request.hits = u64::from(wire.hits_addend.max(1));
    request.descriptors.clear();
    for (index, descriptor) in wire.descriptors.iter().enumerate() {
        // Pushed first and filled where it lies, for the same reason as the request.
        request.descriptors.push(Descriptor::from_pairs(&[]));
        if let Some(slot) = request.descriptors.last_mut() {
            read_descriptor(slot, index, descriptor, limits)?;
        }
    }
    Ok(())
}

/// Validates one wire descriptor, including its optional `limit` override, into `descriptor`
/// (which starts empty).
fn read_descriptor<'a>(
    descriptor: &mut Descriptor<'a>,
    index: usize,
    wire: &'a RateLimitDescriptor,
    limits: &RequestLimits,
) -> Result<(), InvalidRequest> {
    if wire.entries.is_empty() {
        return Err(InvalidRequest::EmptyDescriptor { descriptor: index });
    }
    if wire.entries.len() > limits.max_entries {
        return Err(InvalidRequest::TooManyEntries {
            descriptor: index,
            count: wire.entries.len(),
            max: limits.max_entries,
        });
    }
    for (entry, pair) in wire.entries.iter().enumerate() {
        let too_long = |part, len, max| InvalidRequest::EntryTooLong {
            descriptor: index,
            entry,
            part,
            len,
            max,
        };
        if pair.key.is_empty() {
            return Err(InvalidRequest::EmptyKey {
                descriptor: index,
                entry,
            });
        } else if pair.key.len() > limits.max_key_bytes {
            return Err(too_long("key", pair.key.len(), limits.max_key_bytes));
        } else if pair.value.len() > limits.max_value_bytes {
            return Err(too_long("value", pair.value.len(), limits.max_value_bytes));
        }
        descriptor.entries.push(Entry {
            key: &pair.key,
            value: &pair.value,
        });
    }
    // Present means present: an explicit 0 checks the limit without consuming it.
    descriptor.hits = wire.hits_addend.as_ref().map(|hits| hits.value);
    descriptor.limit_override = wire
        .limit
        .as_ref()
        .map(|limit| {
            let unit = override_unit(limit.unit).ok_or(InvalidRequest::UnknownOverrideUnit {
                descriptor: index,
                unit: limit.unit,
            })?;
            Ok(LimitOverride {
                requests_per_unit: limit.requests_per_unit,
                unit,
            })
        })
        .transpose()?;
    // Envoy's refund (a stream-done action with `is_negative_hits`): give the hits back.
    descriptor.refund = wire.is_negative_hits;
    Ok(())
}

/// The engine unit for `envoy.type.v3.RateLimitUnit` as sent in a limit override (7 is WEEK in
/// newer Envoy releases); `None` for UNKNOWN and numbers no release defines.
fn override_unit(unit: i32) -> Option<TimeUnit> {
    match unit {
        1 => Some(TimeUnit::Second),
        2 => Some(TimeUnit::Minute),
        3 => Some(TimeUnit::Hour),
        4 => Some(TimeUnit::Day),
        5 => Some(TimeUnit::Month),
        6 => Some(TimeUnit::Year),
        7 => Some(TimeUnit::Week),
        _ => None,
    }
}

/// The wire response for an engine decision: one status per descriptor, in request order.
pub fn response_from_decision(decision: &Decision<'_>) -> RateLimitResponse {
    RateLimitResponse {
        overall_code: code(decision.over_limit).into(),
        statuses: decision.descriptors.iter().map(status_from).collect(),
        ..RateLimitResponse::default()
    }
}

fn status_from(decision: &DescriptorDecision<'_>) -> DescriptorStatus {
    DescriptorStatus {
        code: code(decision.over_limit).into(),
        current_limit: decision.limit.map(rate_limit_from),
        limit_remaining: decision.remaining,
        duration_until_reset: decision.reset.map(duration_to_wire),
        quota: None,
    }
}

fn code(over_limit: bool) -> Code {
    if over_limit {
        Code::OverLimit
    } else {
        Code::Ok
    }
}

fn rate_limit_from(limit: &Limit) -> RateLimit {
    RateLimit {
        name: limit.name.as_deref().unwrap_or_default().to_owned(),
        requests_per_unit: limit.requests_per_unit,
        unit: wire_unit(limit).into(),
    }
}

/// The wire unit for a limit. The wire has no multiplier, so a window that equals a whole unit
/// (60 seconds, 24 hours) is reported as that unit; any other window reports its own unit, as
/// envoyproxy/ratelimit does, and `duration_until_reset` stays exact either way.
pub fn wire_unit(limit: &Limit) -> Unit {
    let window_secs = limit.window.nanos() / 1_000_000_000;
    let unit = TimeUnit::ALL
        .into_iter()
        .rev()
        .find(|unit| unit.seconds() == window_secs)
        .unwrap_or(limit.window.unit());
    unit_to_wire(unit)
}

/// The wire enum for an engine time unit.
pub fn unit_to_wire(unit: TimeUnit) -> Unit {
    match unit {
        TimeUnit::Second => Unit::Second,
        TimeUnit::Minute => Unit::Minute,
        TimeUnit::Hour => Unit::Hour,
        TimeUnit::Day => Unit::Day,
        TimeUnit::Week => Unit::Week,
        TimeUnit::Month => Unit::Month,
        TimeUnit::Year => Unit::Year,
    }
}

fn duration_to_wire(duration: Duration) -> ProtoDuration {
    ProtoDuration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        // Always below 1e9, so it fits.
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests;
