//! Renders a domain's response policy onto the wire answer: rate-limit headers in the chosen
//! style (Envoy adds `response_headers_to_add` to 200s and 429s alike), a second header pair
//! for a long-window quota, and the 429 body from its template (`raw_body`).
//!
//! The headers describe the deciding descriptor — the one over its limit, else the one with the
//! least remaining — so a client always sees the budget that will stop it first.

use std::fmt::Write as _;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;

use crate::clock::Timestamp;
use crate::engine::{
    Assessment, Decision, DescriptorDecision, HeaderNames, HeaderStyle, Limit, Request,
    ResponsePolicy, Segment,
};

/// Adds `policy`'s headers and body for `decision` to `response`.
pub fn decorate(
    response: &mut RateLimitResponse,
    policy: &ResponsePolicy,
    decision: &Decision<'_>,
    request: &Request<'_>,
    now: Timestamp,
) {
    let nothing_to_add = policy.style == HeaderStyle::None && policy.quota.is_none();
    if nothing_to_add && !decision.over_limit {
        return;
    }
    let Some((index, deciding)) = decision.deciding() else {
        return;
    };
    let Some(limit) = deciding.limit else {
        return;
    };
    let reset_secs = deciding.reset.map_or(0, ceil_secs);
    // A client told to retry in 0 seconds would retry at once; one second is the floor.
    let retry_after = reset_secs.max(1);
    let headers = &mut response.response_headers_to_add;
    let over = decision.over_limit;
    match policy.style {
        HeaderStyle::None => {}
        HeaderStyle::Legacy | HeaderStyle::LegacyDelta => {
            let names = HeaderNames::legacy();
            let reset = if policy.style == HeaderStyle::Legacy {
                now.as_secs().saturating_add(reset_secs)
            } else {
                reset_secs
            };
            push_triple(
                headers,
                &names,
                limit.requests_per_unit,
                deciding.remaining,
                reset,
            );
            if over {
                push(headers, "Retry-After", retry_after.to_string());
            }
        }
        HeaderStyle::EnvoyRatelimit => {
            let names = policy
                .names
                .clone()
                .unwrap_or_else(HeaderNames::envoy_ratelimit);
            push_triple(
                headers,
                &names,
                limit.requests_per_unit,
                deciding.remaining,
                reset_secs,
            );
        }
        HeaderStyle::Ietf => {
            push(headers, "RateLimit-Policy", ietf_policies(decision));
            let name = policy_name(deciding, limit);
            let field = format!("\"{name}\";r={};t={reset_secs}", deciding.remaining);
            push(headers, "RateLimit", field);
            if over {
                push(headers, "Retry-After", retry_after.to_string());
            }
        }
    }
    if let Some(quota) = &policy.quota {
        let min = quota.min_window_secs;
        let found = long_window(deciding, min).or_else(|| {
            decision
                .descriptors
                .iter()
                .find_map(|descriptor| long_window(descriptor, min))
        });
        if let Some((limit, assessment)) = found {
            let remaining = if assessment.over_limit {
                0
            } else {
                assessment.remaining
            };
            push(headers, &quota.limit, limit.requests_per_unit.to_string());
            push(headers, &quota.remaining, remaining.to_string());
        }
    }
    // A rule's own body wins over the domain's.
    let body = deciding
        .rule
        .and_then(|rule| rule.over_limit_body.as_deref())
        .or(policy.body.as_ref());
    if let (true, Some(body)) = (over, body) {
        let json = body.content_type.contains("json");
        let mut text = String::new();
        for segment in &*body.segments {
            match segment {
                Segment::Text(literal) => text.push_str(literal),
                Segment::Limit => push_display(&mut text, limit.requests_per_unit),
                Segment::Remaining => push_display(&mut text, deciding.remaining),
                Segment::Used => push_display(&mut text, used(deciding, limit)),
                Segment::RetryAfter => push_display(&mut text, retry_after),
                Segment::Window => window_text(&mut text, limit),
                Segment::Rule => {
                    let path = deciding.rule.map_or("", |rule| &*rule.key_path);
                    push_value(&mut text, path, json);
                }
                Segment::Name => push_value(&mut text, limit.name.as_deref().unwrap_or(""), json),
                Segment::Domain => push_value(&mut text, request.domain, json),
                Segment::Value(key) => {
                    let value = request.descriptors.get(index).and_then(|descriptor| {
                        descriptor.entries.iter().find(|entry| entry.key == &**key)
                    });
                    push_value(&mut text, value.map_or("", |entry| entry.value), json);
                }
            }
        }
        response.raw_body = text.into_bytes();
        push(
            &mut response.response_headers_to_add,
            "content-type",
            body.content_type.to_string(),
        );
    }
}

/// What the reported limit has counted, capped at the limit: a rejected acquire of a full
/// concurrency limit reads "5/5 running", not 6.
fn used(descriptor: &DescriptorDecision<'_>, limit: &Limit) -> u64 {
    descriptor
        .checked
        .iter()
        .find(|(checked, _)| std::ptr::eq(*checked, limit))
        .map_or(0, |(_, assessment)| assessment.used)
        .min(u64::from(limit.requests_per_unit))
}

/// The descriptor's longest-window limit of at least `min_secs`, with its reading.
fn long_window<'p>(
    descriptor: &DescriptorDecision<'p>,
    min_secs: u64,
) -> Option<(&'p Limit, Assessment)> {
    descriptor
        .checked
        .iter()
        .filter(|(limit, _)| limit.window.nanos() / 1_000_000_000 >= min_secs)
        .max_by_key(|(limit, _)| limit.window.nanos())
        .copied()
}

fn push(headers: &mut Vec<HeaderValue>, key: &str, value: String) {
    headers.push(HeaderValue {
        key: key.to_owned(),
        value,
        raw_value: Vec::new(),
    });
}

fn push_triple(
    headers: &mut Vec<HeaderValue>,
    names: &HeaderNames,
    limit: u32,
    remaining: u32,
    reset: u64,
) {
    push(headers, &names.limit, limit.to_string());
    push(headers, &names.remaining, remaining.to_string());
    push(headers, &names.reset, reset.to_string());
}

/// Whole seconds, rounded up: a client that waits this long is past the reset.
fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// The IETF policy name for a limit: its name, else the rule's key path, else `default`.
fn policy_name<'a>(descriptor: &'a DescriptorDecision<'_>, limit: &'a Limit) -> String {
    let name = limit
        .name
        .as_deref()
        .or(descriptor.rule.map(|rule| &*rule.key_path))
        .unwrap_or("default");
    // An sf-string allows printable ASCII; escape the two specials and drop the rest.
    name.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            other => vec![other],
        })
        .collect()
}

/// `RateLimit-Policy`: one item per limited descriptor's reported limit, in request order.
fn ietf_policies(decision: &Decision<'_>) -> String {
    let mut field = String::new();
    for descriptor in &decision.descriptors {
        let Some(limit) = descriptor.limit else {
            continue;
        };
        if !field.is_empty() {
            field.push_str(", ");
        }
        let window_secs = limit.window.nanos() / 1_000_000_000;
        let name = policy_name(descriptor, limit);
        let _ = write!(
            field,
            "\"{name}\";q={};w={window_secs}",
            limit.requests_per_unit
        );
    }
    field
}

fn push_display(text: &mut String, value: impl std::fmt::Display) {
    let _ = write!(text, "{value}");
}

fn window_text(text: &mut String, limit: &Limit) {
    let multiplier = limit.window.multiplier().get();
    if multiplier > 1 {
        let _ = write!(text, "{multiplier} ");
    }
    text.push_str(limit.window.unit().name());
}

/// Writes a request-controlled value; inside a JSON body it is escaped as string content, so a
/// descriptor value can never break out of its quotes.
fn push_value(text: &mut String, value: &str, json: bool) {
    if !json {
        text.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '"' => text.push_str("\\\""),
            '\\' => text.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(text, "\\u{:04x}", u32::from(c));
            }
            c => text.push(c),
        }
    }
}
