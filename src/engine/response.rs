//! What a domain's answers carry besides the decision: the rate-limit header style, an
//! optional named pair for a long-window quota, and the body template for rejected requests.
//! Pure data compiled from the YAML; the transport renders it.

use std::sync::Arc;

/// Which rate-limit headers a domain's responses carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderStyle {
    /// No headers: envoyproxy/ratelimit's default behaviour.
    #[default]
    None,
    /// `X-RateLimit-Limit/Remaining/Reset` with Reset as a Unix timestamp, plus `Retry-After`.
    Legacy,
    /// Like `Legacy`, with Reset in seconds until the reset.
    LegacyDelta,
    /// The IETF httpapi draft's `RateLimit-Policy` and `RateLimit` fields, plus `Retry-After`.
    Ietf,
    /// `RateLimit-Limit/Remaining/Reset` (seconds) as envoyproxy/ratelimit emits them, renamable.
    EnvoyRatelimit,
}

impl HeaderStyle {
    /// Every style with its YAML name.
    pub const ALL: [(HeaderStyle, &'static str); 5] = [
        (HeaderStyle::None, "none"),
        (HeaderStyle::Legacy, "legacy"),
        (HeaderStyle::LegacyDelta, "legacy_delta"),
        (HeaderStyle::Ietf, "ietf"),
        (HeaderStyle::EnvoyRatelimit, "envoy_ratelimit"),
    ];

    /// Parses a YAML style name.
    pub fn parse(name: &str) -> Option<HeaderStyle> {
        Self::ALL
            .into_iter()
            .find(|(_, written)| *written == name)
            .map(|(style, _)| style)
    }
}

/// Header names for the limit, remaining and reset values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderNames {
    /// Name of the limit header.
    pub limit: Arc<str>,
    /// Name of the remaining header.
    pub remaining: Arc<str>,
    /// Name of the reset header.
    pub reset: Arc<str>,
}

impl HeaderNames {
    /// The names envoyproxy/ratelimit uses by default.
    pub fn envoy_ratelimit() -> Self {
        Self {
            limit: "RateLimit-Limit".into(),
            remaining: "RateLimit-Remaining".into(),
            reset: "RateLimit-Reset".into(),
        }
    }

    /// The de-facto `X-RateLimit-*` names most public APIs document.
    pub fn legacy() -> Self {
        Self {
            limit: "X-RateLimit-Limit".into(),
            remaining: "X-RateLimit-Remaining".into(),
            reset: "X-RateLimit-Reset".into(),
        }
    }
}

/// A second header pair describing a long-window quota (a daily or monthly plan budget).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaHeaders {
    /// Name of the quota's limit header, e.g. `x-ratelimit-requests-limit`.
    pub limit: Arc<str>,
    /// Name of the quota's remaining header, e.g. `x-ratelimit-requests-remaining`.
    pub remaining: Arc<str>,
    /// Only limits whose window is at least this long (in seconds) count as the quota.
    pub min_window_secs: u64,
}

/// One piece of a body template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Literal text.
    Text(Box<str>),
    /// `{limit}`: the deciding limit's requests per unit.
    Limit,
    /// `{remaining}`: hits left (0 on rejection, unless another descriptor decided).
    Remaining,
    /// `{used}`: what the deciding limit has counted, at most the limit ("5/5 running").
    Used,
    /// `{retry_after}`: whole seconds until a retry can succeed.
    RetryAfter,
    /// `{window}`: the deciding limit's window, e.g. `10 minute`.
    Window,
    /// `{rule}`: the deciding rule's key path, e.g. `plan_pro.api_key`.
    Rule,
    /// `{name}`: the deciding limit's name (empty when unnamed).
    Name,
    /// `{domain}`: the request's domain.
    Domain,
    /// `{descriptor.KEY}`: the value of entry KEY in the deciding descriptor (empty if absent).
    Value(Box<str>),
}

/// Why a body template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{…}` names nothing quotad can fill in.
    #[error("unknown placeholder {{{0}}}")]
    UnknownPlaceholder(String),
    /// A `{` without its `}`.
    #[error("unclosed placeholder starting at byte {0}")]
    Unclosed(usize),
}

/// Placeholder names a template may use, for error messages.
pub const PLACEHOLDERS: &str = "{limit}, {remaining}, {used}, {retry_after}, {window}, {rule}, {name}, {domain}, {descriptor.KEY}";

/// The JSON body sent with a 429 when a domain asks for a body without writing its own.
pub const DEFAULT_BODY: &str = r#"{"error":"rate_limit_exceeded","message":"Rate limit exceeded. Retry after {retry_after} seconds.","retry_after":{retry_after}}"#;

/// A compiled body template with its content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyTemplate {
    /// The template, split into literal text and placeholders.
    pub segments: Box<[Segment]>,
    /// The `content-type` sent with the body.
    pub content_type: Arc<str>,
}

impl BodyTemplate {
    /// Compiles `template`. A placeholder is `{name}` with `name` made of letters, digits, `_`
    /// and `.`; any other brace is literal text, so JSON bodies need no escaping (`{{` and `}}`
    /// also write literal braces).
    pub fn parse(template: &str, content_type: &str) -> Result<Self, TemplateError> {
        let mut segments = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        while let Some(at) = rest.find(['{', '}']) {
            text.push_str(&rest[..at]);
            let brace = &rest[at..];
            if brace.starts_with("{{") || brace.starts_with("}}") {
                text.push_str(&brace[..1]);
                rest = &brace[2..];
                continue;
            }
            let name_len = brace[1..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(brace.len() - 1);
            let after_name = &brace[1 + name_len..];
            if brace.starts_with('{') && name_len > 0 && after_name.starts_with('}') {
                if !text.is_empty() {
                    segments.push(Segment::Text(std::mem::take(&mut text).into()));
                }
                segments.push(placeholder(&brace[1..1 + name_len])?);
                rest = &after_name[1..];
            } else if brace.starts_with('{') && name_len > 0 && after_name.is_empty() {
                return Err(TemplateError::Unclosed(template.len() - brace.len()));
            } else {
                text.push_str(&brace[..1]);
                rest = &brace[1..];
            }
        }
        text.push_str(rest);
        if !text.is_empty() {
            segments.push(Segment::Text(text.into()));
        }
        Ok(Self {
            segments: segments.into(),
            content_type: content_type.into(),
        })
    }
}

fn placeholder(name: &str) -> Result<Segment, TemplateError> {
    Ok(match name {
        "limit" => Segment::Limit,
        "remaining" => Segment::Remaining,
        "used" => Segment::Used,
        "retry_after" => Segment::RetryAfter,
        "window" => Segment::Window,
        "rule" => Segment::Rule,
        "name" => Segment::Name,
        "domain" => Segment::Domain,
        _ => match name.strip_prefix("descriptor.") {
            Some(key) if !key.is_empty() => Segment::Value(key.into()),
            _ => return Err(TemplateError::UnknownPlaceholder(name.to_owned())),
        },
    })
}

/// Everything a domain's responses carry besides the decision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponsePolicy {
    /// Which rate-limit headers to add.
    pub style: HeaderStyle,
    /// Header names for the `envoy_ratelimit` style (renamable) — other styles fix their names.
    pub names: Option<HeaderNames>,
    /// A second pair for a long-window quota.
    pub quota: Option<QuotaHeaders>,
    /// The body sent with a rejection, if any.
    pub body: Option<BodyTemplate>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_body_compiles_and_keeps_json_braces() {
        let body = BodyTemplate::parse(DEFAULT_BODY, "application/json").unwrap();
        assert_eq!(
            body.segments[0],
            Segment::Text(
                r#"{"error":"rate_limit_exceeded","message":"Rate limit exceeded. Retry after "#
                    .into()
            )
        );
        assert_eq!(body.segments[1], Segment::RetryAfter);
        assert_eq!(body.segments.last(), Some(&Segment::Text("}".into())));
    }

    #[test]
    fn placeholders_are_checked() {
        let body = BodyTemplate::parse("{{x}} {descriptor.api_key}/{limit}", "text/plain").unwrap();
        assert_eq!(
            &*body.segments,
            [
                Segment::Text("{x} ".into()),
                Segment::Value("api_key".into()),
                Segment::Text("/".into()),
                Segment::Limit
            ]
        );
        assert_eq!(
            BodyTemplate::parse("try in {retry_afterr}", "text/plain"),
            Err(TemplateError::UnknownPlaceholder("retry_afterr".into()))
        );
        assert_eq!(
            BodyTemplate::parse("ab {limit", "t"),
            Err(TemplateError::Unclosed(3))
        );
        assert!(BodyTemplate::parse("{descriptor.}", "t").is_err());
    }

    #[test]
    fn styles_parse_by_yaml_name() {
        assert_eq!(
            HeaderStyle::parse("legacy_delta"),
            Some(HeaderStyle::LegacyDelta)
        );
        assert_eq!(HeaderStyle::parse("draft"), None);
    }
}
