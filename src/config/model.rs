//! The rules file exactly as written: envoyproxy/ratelimit's YAML shape plus quotad's extensions,
//! with every value wrapped in `Spanned` so the compiler can point at the line it came from.
//! Nothing here is validated beyond YAML types; `compile` turns it into the engine's model.

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

/// One rules file: one domain.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    pub(crate) domain: Option<Spanned<String>>,
    /// quotad extension: the default counting algorithm for every limit in the domain.
    pub(crate) algorithm: Option<Spanned<String>>,
    /// quotad extension: whether a rejected request still consumes its hits (default true).
    pub(crate) count_rejected_hits: Option<bool>,
    /// quotad extension: whether a descriptor's own `limit` replaces the configured one
    /// (default true, as envoyproxy/ratelimit does).
    pub(crate) allow_limit_overrides: Option<bool>,
    /// quotad extension: rate-limit headers on every answer of this domain.
    pub(crate) response_headers: Option<Spanned<RawResponseHeaders>>,
    /// quotad extension: the body Envoy sends with a 429.
    pub(crate) over_limit_body: Option<Spanned<RawBody>>,
    /// quotad extension: how Envoy's Rate Limit Quota buckets map onto these rules.
    pub(crate) rlqs: Option<Spanned<super::rlqs::RawRlqs>>,
    pub(crate) descriptors: Option<Vec<Spanned<RawDescriptor>>>,
}

/// `response_headers:` — which header style, optional renames and a quota pair.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResponseHeaders {
    pub(crate) style: Option<Spanned<String>>,
    pub(crate) names: Option<Spanned<RawHeaderNames>>,
    pub(crate) quota: Option<Spanned<RawQuotaHeaders>>,
}

/// Header names for the `envoy_ratelimit` style.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaderNames {
    pub(crate) limit: Option<Spanned<String>>,
    pub(crate) remaining: Option<Spanned<String>>,
    pub(crate) reset: Option<Spanned<String>>,
}

/// A second header pair for a long-window quota.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuotaHeaders {
    pub(crate) limit: Option<Spanned<String>>,
    pub(crate) remaining: Option<Spanned<String>>,
    /// The shortest window (a unit name) that counts as the quota; `day` when absent.
    pub(crate) min_window: Option<Spanned<String>>,
}

/// `over_limit_body:` — a template and its content type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBody {
    pub(crate) template: Option<Spanned<String>>,
    pub(crate) content_type: Option<Spanned<String>>,
}

/// One descriptor node, at any depth.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDescriptor {
    pub(crate) key: Option<Spanned<String>>,
    pub(crate) value: Option<Spanned<String>>,
    pub(crate) rate_limit: Option<Spanned<RawLimit>>,
    /// quotad extension: several limits on one descriptor (per minute and per month, say).
    pub(crate) rate_limits: Option<Spanned<Vec<Spanned<RawLimit>>>>,
    pub(crate) shadow_mode: Option<bool>,
    pub(crate) detailed_metric: Option<bool>,
    /// quotad extension: a quota-mode descriptor fails the request only together with every
    /// other quota-mode descriptor (envoyproxy/ratelimit's `quota_mode`).
    pub(crate) quota_mode: Option<bool>,
    /// quotad extension: this rule's own 429 body, replacing the domain's.
    pub(crate) over_limit_body: Option<Spanned<RawBody>>,
    pub(crate) descriptors: Option<Vec<Spanned<RawDescriptor>>>,
}

/// One limit: `rate_limit`, or one entry of `rate_limits`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimit {
    pub(crate) unit: Option<Spanned<String>>,
    pub(crate) requests_per_unit: Option<Spanned<u32>>,
    pub(crate) unit_multiplier: Option<Spanned<u32>>,
    /// quotad extension: overrides the domain's algorithm for this limit.
    pub(crate) algorithm: Option<Spanned<String>>,
    pub(crate) unlimited: Option<Spanned<bool>>,
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) replaces: Option<Vec<Spanned<RawReplace>>>,
    /// quotad extension: measured and reported, never enforced.
    pub(crate) soft: Option<bool>,
    /// quotad extension: UTC calendar weeks, months or years instead of epoch-aligned ones.
    pub(crate) calendar: Option<Spanned<bool>>,
    /// quotad extension: a token bucket's capacity (hits admitted at once from a full bucket).
    pub(crate) burst: Option<Spanned<u32>>,
    /// quotad extension: a concurrency limit's most leases held at once.
    pub(crate) max_in_flight: Option<Spanned<u32>>,
    /// quotad extension: how long a concurrency lease lives without its release (`5m`).
    pub(crate) lease_ttl: Option<Spanned<String>>,
    /// quotad extension: ban a caller that keeps exceeding this limit.
    pub(crate) ban: Option<Spanned<RawBan>>,
}

/// `ban:` — `after` excesses `within` a window ban the value of `key` `for` a while.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBan {
    pub(crate) after: Option<Spanned<u32>>,
    pub(crate) within: Option<Spanned<String>>,
    #[serde(rename = "for")]
    pub(crate) duration: Option<Spanned<String>>,
    pub(crate) key: Option<Spanned<String>>,
}

/// One entry of `replaces`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReplace {
    pub(crate) name: Option<Spanned<String>>,
}

impl RawLimit {
    /// The fields that shape a counted window, each with where it was written and its text when
    /// present: `unlimited` and concurrency limits refuse them all.
    pub(crate) fn window_fields(&self) -> [(&'static str, Option<(Location, String)>); 5] {
        let shown = |at: Location, text: String| Some((at, text));
        [
            (
                "unit",
                self.unit
                    .as_ref()
                    .and_then(|u| shown(u.referenced, format!("{:?}", u.value))),
            ),
            (
                "requests_per_unit",
                self.requests_per_unit
                    .as_ref()
                    .and_then(|r| shown(r.referenced, r.value.to_string())),
            ),
            (
                "unit_multiplier",
                self.unit_multiplier
                    .as_ref()
                    .and_then(|m| shown(m.referenced, m.value.to_string())),
            ),
            (
                "burst",
                self.burst
                    .as_ref()
                    .and_then(|b| shown(b.referenced, b.value.to_string())),
            ),
            (
                "calendar",
                self.calendar
                    .as_ref()
                    .and_then(|c| shown(c.referenced, c.value.to_string())),
            ),
        ]
    }
}
