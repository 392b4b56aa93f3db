//! Ban series: bans started and requests refused by a ban, per domain, and bans in force.
//! Per-domain handles are registered on first use and cached, so recording a banned request
//! (the hot path during an attack) is one lookup and one atomic add.

use std::fmt;
use std::sync::Arc;

use foldhash::fast::RandomState;
use metrics::{Counter, Gauge, Key, Label, Recorder};
use papaya::HashMap;

use super::names::LABEL_DOMAIN;
use super::registry::{METADATA, Metrics};

/// Bans started, by domain.
pub const BANS_STARTED: &str = "quotad_bans_started_total";
/// Requests refused because they carried a banned value, by domain.
pub const BANNED_REQUESTS: &str = "quotad_banned_requests_total";
/// Bans in force, sampled by the store upkeep.
pub const BANS_ACTIVE: &str = "quotad_bans_active";

/// The ban series of one server; cheap to clone.
#[derive(Clone)]
pub struct BanMetrics {
    metrics: Metrics,
    domains: Arc<HashMap<Box<str>, DomainHandles, RandomState>>,
    active: Gauge,
}

#[derive(Clone)]
struct DomainHandles {
    started: Counter,
    banned: Counter,
}

impl fmt::Debug for BanMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BanMetrics")
            .field("domains", &self.domains.len())
            .finish_non_exhaustive()
    }
}

impl BanMetrics {
    /// A ban started in `domain`.
    pub fn ban_started(&self, domain: &str) {
        self.handles(domain).started.increment(1);
    }

    /// A request in `domain` was refused by a ban.
    pub fn request_banned(&self, domain: &str) {
        self.handles(domain).banned.increment(1);
    }

    /// `count` bans are in force.
    pub fn set_active(&self, count: u64) {
        // Precision loss above 2^53 bans is irrelevant.
        self.active.set(count as f64);
    }

    fn handles(&self, domain: &str) -> DomainHandles {
        let domains = self.domains.pin();
        if let Some(handles) = domains.get(domain) {
            return handles.clone();
        }
        let recorder = self.metrics.recorder();
        let label = || vec![Label::new(LABEL_DOMAIN, domain.to_owned())];
        let handles = DomainHandles {
            started: recorder.register_counter(&Key::from_parts(BANS_STARTED, label()), &METADATA),
            banned: recorder
                .register_counter(&Key::from_parts(BANNED_REQUESTS, label()), &METADATA),
        };
        domains.get_or_insert(Box::from(domain), handles).clone()
    }
}

impl Metrics {
    /// The ban series on this registry (handles shared with every other call).
    pub fn bans(&self) -> BanMetrics {
        let recorder = self.recorder();
        recorder.describe_counter(BANS_STARTED.into(), None, "Bans started, by domain.".into());
        recorder.describe_counter(
            BANNED_REQUESTS.into(),
            None,
            "Requests refused because they carried a banned value, by domain.".into(),
        );
        recorder.describe_gauge(BANS_ACTIVE.into(), None, "Bans in force.".into());
        BanMetrics {
            metrics: self.clone(),
            domains: Arc::new(HashMap::with_hasher(RandomState::default())),
            active: recorder.register_gauge(&Key::from_name(BANS_ACTIVE), &METADATA),
        }
    }
}
