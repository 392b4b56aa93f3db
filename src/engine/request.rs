//! A rate-limit request as the engine sees it: borrowed strings, validated by the transport
//! adapter, so the engine never touches protobuf types.

use smallvec::SmallVec;

use super::limit::TimeUnit;

/// A limit the caller sent with a descriptor (`RateLimitDescriptor.limit`), used instead of the
/// configured one when the domain allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitOverride {
    /// Hits allowed per unit.
    pub requests_per_unit: u32,
    /// The unit of the window.
    pub unit: TimeUnit,
}

/// One `key=value` pair of a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The descriptor key, never empty.
    pub key: &'a str,
    /// The descriptor value (may be empty, as Envoy sometimes sends).
    pub value: &'a str,
}

/// One descriptor of a request: its entries and an optional per-descriptor hit count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor<'a> {
    /// The entries, outermost key first.
    pub entries: SmallVec<[Entry<'a>; 4]>,
    /// Hits for this descriptor when set (even 0), overriding the request's hits.
    pub hits: Option<u64>,
    /// A caller-supplied limit for this descriptor, if any.
    pub limit_override: Option<LimitOverride>,
    /// Give the hits back instead of adding them (Envoy's `is_negative_hits`): a refund for
    /// windows and buckets, a release for concurrency leases. Never over the limit.
    pub refund: bool,
}

impl<'a> Descriptor<'a> {
    /// A descriptor from `(key, value)` pairs with no per-descriptor hits.
    pub fn from_pairs(pairs: &[(&'a str, &'a str)]) -> Self {
        Self {
            entries: pairs
                .iter()
                .map(|&(key, value)| Entry { key, value })
                .collect(),
            hits: None,
            limit_override: None,
            refund: false,
        }
    }

    /// This descriptor giving its hits back (a refund, or a concurrency release).
    pub fn refunding(mut self) -> Self {
        self.refund = true;
        self
    }

    /// This descriptor with a caller-supplied limit.
    pub fn with_limit_override(mut self, limit: LimitOverride) -> Self {
        self.limit_override = Some(limit);
        self
    }

    /// This descriptor with its own hit count.
    pub fn with_hits(mut self, hits: u64) -> Self {
        self.hits = Some(hits);
        self
    }
}

/// A whole request: a domain, its descriptors and the request-level hit count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The domain whose rules apply.
    pub domain: &'a str,
    /// The descriptors, answered in order.
    pub descriptors: SmallVec<[Descriptor<'a>; 4]>,
    /// Hits added by each descriptor without its own count (the wire's 0 already read as 1).
    pub hits: u64,
}

impl<'a> Request<'a> {
    /// A request for `domain` with one hit per descriptor.
    pub fn new(domain: &'a str, descriptors: impl IntoIterator<Item = Descriptor<'a>>) -> Self {
        Self {
            domain,
            descriptors: descriptors.into_iter().collect(),
            hits: 1,
        }
    }

    /// The hits a descriptor adds: its own count when present, else the request's.
    pub fn hits_for(&self, descriptor: &Descriptor<'_>) -> u64 {
        descriptor.hits.unwrap_or(self.hits)
    }
}
