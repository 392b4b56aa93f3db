//! The protobuf JSON mapping of `RateLimitRequest` and `RateLimitResponse`, for `POST /json`.
//! envoy-types has no serde support, so this covers just these two messages: lowerCamelCase
//! names (the proto names are accepted too), enums by name or number, 64-bit integers as
//! numbers or strings, durations as `"1.5s"`. Unknown fields are refused, as protobuf's own
//! JSON parser refuses them, so a typo is a 400 rather than a silently ignored field.

use std::fmt::Write as _;

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::{Duration as ProtoDuration, UInt64Value};
use serde::{Deserialize, Deserializer, Serialize};

/// `RateLimitRequest` as protobuf JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JsonRequest {
    #[serde(default)]
    domain: String,
    #[serde(default)]
    descriptors: Vec<JsonDescriptor>,
    #[serde(default, alias = "hits_addend", rename = "hitsAddend")]
    #[serde(deserialize_with = "u32_from_json")]
    hits_addend: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonDescriptor {
    #[serde(default)]
    entries: Vec<JsonEntry>,
    #[serde(default)]
    limit: Option<JsonLimitOverride>,
    #[serde(default, alias = "hits_addend", rename = "hitsAddend")]
    #[serde(deserialize_with = "optional_u64_from_json")]
    hits_addend: Option<u64>,
    #[serde(default, alias = "is_negative_hits", rename = "isNegativeHits")]
    is_negative_hits: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEntry {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLimitOverride {
    #[serde(default, alias = "requests_per_unit", rename = "requestsPerUnit")]
    #[serde(deserialize_with = "u32_from_json")]
    requests_per_unit: u32,
    #[serde(default)]
    unit: Option<JsonEnum>,
}

/// A protobuf enum in JSON: its name or its number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JsonEnum {
    Number(i32),
    Name(String),
}

/// A protobuf 32/64-bit integer in JSON: a number or a decimal string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JsonInteger {
    Number(u64),
    Text(String),
}

impl JsonInteger {
    fn value<E: serde::de::Error>(self) -> Result<u64, E> {
        match self {
            JsonInteger::Number(number) => Ok(number),
            JsonInteger::Text(text) => text
                .parse()
                .map_err(|_| E::custom(format!("expected an unsigned integer, found {text:?}"))),
        }
    }
}

fn u32_from_json<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let value = JsonInteger::deserialize(deserializer)?.value()?;
    u32::try_from(value).map_err(|_| {
        serde::de::Error::custom(format!("expected a 32-bit unsigned integer, found {value}"))
    })
}

fn optional_u64_from_json<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    Option::<JsonInteger>::deserialize(deserializer)?
        .map(JsonInteger::value)
        .transpose()
}

impl JsonRequest {
    /// The wire request; fails only for an override unit no Envoy release names.
    pub(super) fn into_wire(self) -> Result<RateLimitRequest, String> {
        let descriptors = self
            .descriptors
            .into_iter()
            .enumerate()
            .map(|(index, descriptor)| descriptor.into_wire(index))
            .collect::<Result<_, _>>()?;
        Ok(RateLimitRequest {
            domain: self.domain,
            descriptors,
            hits_addend: self.hits_addend,
        })
    }
}

impl JsonDescriptor {
    fn into_wire(self, index: usize) -> Result<RateLimitDescriptor, String> {
        let limit = self
            .limit
            .map(|limit| {
                let unit = match limit.unit {
                    None => 0,
                    Some(JsonEnum::Number(number)) => number,
                    Some(JsonEnum::Name(name)) => {
                        Unit::from_str_name(&name).map(i32::from).ok_or_else(|| {
                            format!(
                                "descriptors[{index}].limit.unit: expected one of SECOND, MINUTE, \
                                 HOUR, DAY, WEEK, MONTH, YEAR, found {name:?}"
                            )
                        })?
                    }
                };
                Ok::<_, String>(rate_limit_descriptor::RateLimitOverride {
                    requests_per_unit: limit.requests_per_unit,
                    unit,
                })
            })
            .transpose()?;
        Ok(RateLimitDescriptor {
            entries: self
                .entries
                .into_iter()
                .map(|entry| rate_limit_descriptor::Entry {
                    key: entry.key,
                    value: entry.value,
                })
                .collect(),
            limit,
            hits_addend: self.hits_addend.map(|value| UInt64Value { value }),
            is_negative_hits: self.is_negative_hits,
        })
    }
}

/// `RateLimitResponse` as protobuf JSON (codes and remaining hits always present, for curl users).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JsonResponse {
    overall_code: &'static str,
    statuses: Vec<JsonStatus>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    response_headers_to_add: Vec<JsonHeader>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    request_headers_to_add: Vec<JsonHeader>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonStatus {
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_limit: Option<JsonLimit>,
    limit_remaining: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_until_reset: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonLimit {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    requests_per_unit: u32,
    unit: &'static str,
}

#[derive(Debug, Serialize)]
struct JsonHeader {
    key: String,
    value: String,
}

impl From<&RateLimitResponse> for JsonResponse {
    fn from(response: &RateLimitResponse) -> Self {
        Self {
            overall_code: code_name(response.overall_code),
            statuses: response.statuses.iter().map(status).collect(),
            response_headers_to_add: headers(&response.response_headers_to_add),
            request_headers_to_add: headers(&response.request_headers_to_add),
        }
    }
}

fn code_name(code: i32) -> &'static str {
    Code::try_from(code).map_or("UNKNOWN", |code| code.as_str_name())
}

fn status(status: &DescriptorStatus) -> JsonStatus {
    JsonStatus {
        code: code_name(status.code),
        current_limit: status.current_limit.as_ref().map(limit),
        limit_remaining: status.limit_remaining,
        duration_until_reset: status.duration_until_reset.as_ref().map(duration),
    }
}

fn limit(limit: &RateLimit) -> JsonLimit {
    JsonLimit {
        name: limit.name.clone(),
        requests_per_unit: limit.requests_per_unit,
        unit: Unit::try_from(limit.unit).map_or("UNKNOWN", |unit| unit.as_str_name()),
    }
}

fn headers(headers: &[HeaderValue]) -> Vec<JsonHeader> {
    headers
        .iter()
        .map(|header| JsonHeader {
            key: header.key.clone(),
            value: if header.value.is_empty() {
                String::from_utf8_lossy(&header.raw_value).into_owned()
            } else {
                header.value.clone()
            },
        })
        .collect()
}

/// A `google.protobuf.Duration` as JSON: seconds with 0, 3, 6 or 9 fractional digits.
fn duration(duration: &ProtoDuration) -> String {
    let mut text = duration.seconds.to_string();
    let nanos = duration.nanos.unsigned_abs();
    if nanos != 0 {
        let _ = match (nanos % 1_000_000, nanos % 1_000) {
            (0, _) => write!(text, ".{:03}", nanos / 1_000_000),
            (_, 0) => write!(text, ".{:06}", nanos / 1_000),
            _ => write!(text, ".{nanos:09}"),
        };
    }
    text.push('s');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_accept_camel_and_proto_names_and_string_integers() {
        let json = r#"{"domain":"api","hits_addend":2,"descriptors":[{"entries":[{"key":"k","value":"v"}],
            "hitsAddend":"5","limit":{"requestsPerUnit":10,"unit":"MINUTE"}}]}"#;
        let wire = serde_json::from_str::<JsonRequest>(json)
            .unwrap()
            .into_wire()
            .unwrap();
        assert_eq!(wire.hits_addend, 2);
        let descriptor = &wire.descriptors[0];
        assert_eq!(descriptor.hits_addend, Some(UInt64Value { value: 5 }));
        assert_eq!(
            descriptor.limit.as_ref().map(|l| l.unit),
            Some(Unit::Minute.into())
        );
    }

    #[test]
    fn unknown_fields_and_units_are_refused() {
        assert!(serde_json::from_str::<JsonRequest>(r#"{"domian":"api"}"#).is_err());
        let json = r#"{"domain":"a","descriptors":[{"limit":{"unit":"FORTNIGHT"}}]}"#;
        let error = serde_json::from_str::<JsonRequest>(json)
            .unwrap()
            .into_wire()
            .unwrap_err();
        assert!(error.contains("FORTNIGHT"), "{error}");
    }

    #[test]
    fn durations_use_protobuf_json_text() {
        let of = |seconds, nanos| duration(&ProtoDuration { seconds, nanos });
        assert_eq!(of(60, 0), "60s");
        assert_eq!(of(1, 500_000_000), "1.500s");
        assert_eq!(of(0, 1_500), "0.000001500s");
    }
}
