//! `quotad query`: ask a running server one question the way Envoy would, and print the answer
//! for a person (a table) or a script (JSON). Handy for checking rules against a live server.

use std::fmt::Write as _;
use std::time::Duration;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{Code, DescriptorStatus};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::{Duration as ProtoDuration, UInt64Value};
use serde_json::{Value, json};
use tonic::transport::Endpoint;

use crate::cli::QueryArgs;

/// How long to wait for the connection before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the answer once connected.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a query got no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The server could not be reached.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The address given.
        addr: String,
        /// The transport's reason.
        source: tonic::transport::Error,
    },
    /// The server answered with a gRPC error.
    #[error("server refused the call: {code:?}: {message}")]
    Call {
        /// The gRPC status code.
        code: tonic::Code,
        /// The server's message.
        message: String,
    },
}

/// The request `args` describe; `--hits` is set on every descriptor, so 0 checks without
/// consuming.
pub fn build_request(args: &QueryArgs) -> RateLimitRequest {
    RateLimitRequest {
        domain: args.domain.clone(),
        descriptors: args
            .descriptors
            .iter()
            .map(|descriptor| RateLimitDescriptor {
                entries: descriptor
                    .entries
                    .iter()
                    .map(|(key, value)| rate_limit_descriptor::Entry {
                        key: key.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                hits_addend: Some(UInt64Value {
                    value: u64::from(args.hits),
                }),
                ..RateLimitDescriptor::default()
            })
            .collect(),
        hits_addend: 0,
    }
}

/// Sends one ShouldRateLimit call built from `args`; an address without a scheme means
/// `http://`.
pub async fn send(args: &QueryArgs) -> Result<RateLimitResponse, QueryError> {
    let connect_error = |source| QueryError::Connect {
        addr: args.addr.clone(),
        source,
    };
    let uri = if args.addr.contains("://") {
        args.addr.clone()
    } else {
        format!("http://{}", args.addr)
    };
    // A person is waiting: fail in seconds rather than after the OS's TCP timeout.
    let channel = Endpoint::from_shared(uri)
        .map_err(connect_error)?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .connect()
        .await
        .map_err(connect_error)?;
    RateLimitServiceClient::new(channel)
        .should_rate_limit(build_request(args))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| QueryError::Call {
            code: status.code(),
            message: status.message().to_owned(),
        })
}

/// Whether the overall answer was OVER_LIMIT.
pub fn is_over_limit(response: &RateLimitResponse) -> bool {
    response.overall_code == i32::from(Code::OverLimit)
}

/// The answer as a table: the overall code, then one row per descriptor.
pub fn render_table(args: &QueryArgs, response: &RateLimitResponse) -> String {
    let mut out = format!("overall: {}\n", code_name(response.overall_code));
    let rows: Vec<[String; 5]> = response
        .statuses
        .iter()
        .enumerate()
        .map(|(index, status)| {
            [
                descriptor_text(args, index),
                code_name(status.code).to_owned(),
                limit_text(status),
                remaining_text(status.limit_remaining),
                status
                    .duration_until_reset
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |reset| format!("{}s", seconds(reset))),
            ]
        })
        .collect();
    let header = ["descriptor", "code", "limit", "remaining", "reset"].map(str::to_owned);
    let mut widths = header.clone().map(|cell| cell.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The answer as a JSON object, with codes and units by name and the reset in seconds.
pub fn render_json(args: &QueryArgs, response: &RateLimitResponse) -> Value {
    let statuses: Vec<Value> = response
        .statuses
        .iter()
        .enumerate()
        .map(|(index, status)| {
            json!({
                "descriptor": descriptor_text(args, index),
                "code": code_name(status.code),
                "limit": status.current_limit.as_ref().map(|limit| json!({
                    "requests_per_unit": limit.requests_per_unit,
                    "unit": unit_name(limit.unit),
                    "name": limit.name,
                })),
                "remaining": status.limit_remaining,
                "reset_seconds": status.duration_until_reset.as_ref().map(seconds),
            })
        })
        .collect();
    json!({
        "overall_code": code_name(response.overall_code),
        "statuses": statuses,
    })
}

fn descriptor_text(args: &QueryArgs, index: usize) -> String {
    args.descriptors
        .get(index)
        .map(|descriptor| {
            let pairs: Vec<String> = descriptor
                .entries
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect();
            pairs.join(",")
        })
        .unwrap_or_else(|| format!("#{index}"))
}

fn code_name(code: i32) -> &'static str {
    Code::try_from(code).map_or("UNKNOWN", |code| code.as_str_name())
}

fn unit_name(unit: i32) -> String {
    Unit::try_from(unit).map_or_else(
        |_| "unknown".to_owned(),
        |unit| unit.as_str_name().to_ascii_lowercase(),
    )
}

fn limit_text(status: &DescriptorStatus) -> String {
    match &status.current_limit {
        None => "-".to_owned(),
        Some(limit) => {
            let text = format!("{}/{}", limit.requests_per_unit, unit_name(limit.unit));
            if limit.name.is_empty() {
                text
            } else {
                format!("{text} {}", limit.name)
            }
        }
    }
}

fn remaining_text(remaining: u32) -> String {
    if remaining == u32::MAX {
        "unlimited".to_owned()
    } else {
        remaining.to_string()
    }
}

fn seconds(duration: &ProtoDuration) -> f64 {
    // Millisecond precision is all a person or a script needs here.
    let millis = duration.seconds.saturating_mul(1_000) + i64::from(duration.nanos / 1_000_000);
    millis as f64 / 1_000.0
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::RateLimit;

    use super::*;
    use crate::cli::parse_descriptor;

    fn args() -> QueryArgs {
        QueryArgs {
            addr: "http://127.0.0.1:1".into(),
            domain: "api".into(),
            descriptors: vec![
                parse_descriptor("key=a").unwrap(),
                parse_descriptor("path=/x").unwrap(),
            ],
            hits: 0,
            json: false,
        }
    }

    fn response() -> RateLimitResponse {
        RateLimitResponse {
            overall_code: Code::OverLimit.into(),
            statuses: vec![
                DescriptorStatus {
                    code: Code::OverLimit.into(),
                    current_limit: Some(RateLimit {
                        name: "per_key".into(),
                        requests_per_unit: 50,
                        unit: Unit::Minute.into(),
                    }),
                    limit_remaining: 0,
                    duration_until_reset: Some(ProtoDuration {
                        seconds: 12,
                        nanos: 500_000_000,
                    }),
                    quota: None,
                },
                DescriptorStatus {
                    code: Code::Ok.into(),
                    limit_remaining: u32::MAX,
                    ..DescriptorStatus::default()
                },
            ],
            ..RateLimitResponse::default()
        }
    }

    #[test]
    fn zero_hits_are_sent_per_descriptor() {
        let request = build_request(&args());
        assert_eq!(request.descriptors.len(), 2);
        assert_eq!(
            request.descriptors[0].hits_addend,
            Some(UInt64Value { value: 0 })
        );
        assert_eq!(request.descriptors[1].entries[0].value, "/x");
    }

    #[test]
    fn tables_show_every_descriptor() {
        let table = render_table(&args(), &response());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "overall: OVER_LIMIT");
        assert!(lines[2].contains("OVER_LIMIT") && lines[2].contains("50/minute per_key"));
        assert!(lines[2].ends_with("12.5s"), "{table}");
        assert!(lines[3].contains("unlimited"), "{table}");
    }

    #[test]
    fn json_names_codes_and_units() {
        let value = render_json(&args(), &response());
        assert_eq!(value["overall_code"], "OVER_LIMIT");
        assert_eq!(value["statuses"][0]["limit"]["unit"], "minute");
        assert_eq!(value["statuses"][0]["reset_seconds"], 12.5);
        assert_eq!(value["statuses"][1]["limit"], Value::Null);
    }
}
