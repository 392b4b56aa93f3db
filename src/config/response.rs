//! A domain's `response_headers` and `over_limit_body` to the engine's `ResponsePolicy`: the
//! header style, renamed headers, the quota pair and a body template whose placeholders are
//! checked at load time, so a typo fails the load instead of reaching a client.

use std::sync::Arc;

use serde_saphyr::{Location, Spanned};

use super::compile::Ctx;
use super::model::{RawBody, RawFile, RawHeaderNames, RawQuotaHeaders};
use crate::engine::{
    BodyTemplate, DEFAULT_BODY, HeaderNames, HeaderStyle, PLACEHOLDERS, QuotaHeaders,
    ResponsePolicy, TimeUnit,
};

const STYLES: &str = "one of none, legacy, legacy_delta, ietf, envoy_ratelimit";

/// The domain's response policy; problems are reported and the defaults kept in their place.
pub(crate) fn policy(ctx: &mut Ctx<'_>, raw: &RawFile) -> ResponsePolicy {
    let mut policy = ResponsePolicy::default();
    if let Some(headers) = &raw.response_headers {
        let headers = &headers.value;
        if let Some(style) = &headers.style {
            match HeaderStyle::parse(&style.value) {
                Some(parsed) => policy.style = parsed,
                None => ctx.report(
                    style.referenced,
                    "response_headers.style",
                    STYLES,
                    format!("{:?}", style.value),
                ),
            }
        }
        if let Some(names) = &headers.names {
            if policy.style != HeaderStyle::EnvoyRatelimit {
                ctx.report(
                    names.referenced,
                    "response_headers.names",
                    "names only with style envoy_ratelimit (other styles use standard names)",
                    format!(
                        "names with style {:?}",
                        headers.style.as_ref().map_or("none", |s| s.value.as_str())
                    ),
                );
            }
            policy.names = Some(names_from(ctx, &names.value));
        }
        if let Some(quota) = &headers.quota {
            policy.quota = quota_from(ctx, &quota.value, quota.referenced);
        }
    }
    if let Some(body) = &raw.over_limit_body {
        policy.body = body_from(ctx, &body.value, "over_limit_body.template");
    }
    policy
}

fn header_name(
    ctx: &mut Ctx<'_>,
    written: Option<&Spanned<String>>,
    field: &str,
    default: &str,
) -> Arc<str> {
    match written {
        None => default.into(),
        Some(name) if is_token(&name.value) => name.value.as_str().into(),
        Some(name) => {
            let expected = "an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)";
            ctx.report(
                name.referenced,
                field,
                expected,
                format!("{:?}", name.value),
            );
            default.into()
        }
    }
}

fn names_from(ctx: &mut Ctx<'_>, raw: &RawHeaderNames) -> HeaderNames {
    let defaults = HeaderNames::envoy_ratelimit();
    HeaderNames {
        limit: header_name(
            ctx,
            raw.limit.as_ref(),
            "response_headers.names.limit",
            &defaults.limit,
        ),
        remaining: header_name(
            ctx,
            raw.remaining.as_ref(),
            "response_headers.names.remaining",
            &defaults.remaining,
        ),
        reset: header_name(
            ctx,
            raw.reset.as_ref(),
            "response_headers.names.reset",
            &defaults.reset,
        ),
    }
}

fn quota_from(ctx: &mut Ctx<'_>, raw: &RawQuotaHeaders, at: Location) -> Option<QuotaHeaders> {
    let min_window_secs = match &raw.min_window {
        None => TimeUnit::Day.seconds(),
        Some(unit) => match TimeUnit::parse(&unit.value) {
            Some(unit) => unit.seconds(),
            None => {
                let expected = "one of second, minute, hour, day, week, month, year";
                let found = format!("{:?}", unit.value);
                ctx.report(
                    unit.referenced,
                    "response_headers.quota.min_window",
                    expected,
                    found,
                );
                return None;
            }
        },
    };
    for (name, field) in [(&raw.limit, "limit"), (&raw.remaining, "remaining")] {
        if name.is_none() {
            let field = format!("response_headers.quota.{field}");
            ctx.report(
                at,
                field,
                "a header name, e.g. x-ratelimit-requests-limit",
                "nothing",
            );
        }
    }
    Some(QuotaHeaders {
        limit: header_name(
            ctx,
            raw.limit.as_ref(),
            "response_headers.quota.limit",
            "x-ratelimit-requests-limit",
        ),
        remaining: header_name(
            ctx,
            raw.remaining.as_ref(),
            "response_headers.quota.remaining",
            "x-ratelimit-requests-remaining",
        ),
        min_window_secs,
    })
}

/// A body template with its content type; a template with an unknown placeholder is
/// reported against `field`.
pub(crate) fn body_from(ctx: &mut Ctx<'_>, raw: &RawBody, field: &str) -> Option<BodyTemplate> {
    let content_type = raw
        .content_type
        .as_ref()
        .map_or("application/json", |written| written.value.as_str());
    let template = raw.template.as_ref();
    let text = template.map_or(DEFAULT_BODY, |written| written.value.as_str());
    match BodyTemplate::parse(text, content_type) {
        Ok(body) => Some(body),
        Err(error) => {
            let at = template.map_or(Location::UNKNOWN, |written| written.referenced);
            let expected = format!("a template using only {PLACEHOLDERS}");
            ctx.report(at, field, expected, error.to_string());
            None
        }
    }
}

/// Whether `name` is an RFC 9110 token, i.e. a valid header name.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
