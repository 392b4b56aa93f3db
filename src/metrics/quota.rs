//! Rate Limit Quota Service series: open streams, limited buckets with a grant in force,
//! bucket usage reports received, and assignments sent by kind. Registered on the server's
//! registry when the RLQS service starts; handles are atomics, so recording takes no lock.

use std::fmt;

use metrics::{Counter, Gauge, Key, Label, Recorder, SharedString, Unit};

use super::registry::{METADATA, Metrics};
use crate::engine::quota::AssignmentKind;

/// RLQS streams open now.
pub const RLQS_STREAMS: &str = "quotad_rlqs_streams";
/// Limited RLQS buckets that at least one open stream holds a grant on.
pub const RLQS_BUCKETS: &str = "quotad_rlqs_buckets";
/// Bucket usage reports received (one per bucket per report message).
pub const RLQS_REPORTS: &str = "quotad_rlqs_reports_total";
/// Bucket assignments sent, by kind (`allow_all`, `deny_all`, `token_bucket`, `abandon`).
pub const RLQS_ASSIGNMENTS: &str = "quotad_rlqs_assignments_total";
/// Label: the kind of an assignment.
pub const LABEL_ASSIGNMENT_KIND: &str = "kind";

/// The RLQS series of one server.
#[derive(Clone)]
pub struct QuotaMetrics {
    streams: Gauge,
    buckets: Gauge,
    reports: Counter,
    /// One per [`AssignmentKind::ALL`], in that order.
    assignments: Vec<Counter>,
}

impl fmt::Debug for QuotaMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaMetrics").finish_non_exhaustive()
    }
}

impl QuotaMetrics {
    /// A stream opened.
    pub fn stream_opened(&self) {
        self.streams.increment(1.0);
    }

    /// A stream closed.
    pub fn stream_closed(&self) {
        self.streams.decrement(1.0);
    }

    /// The ledger now tracks `count` limited buckets.
    pub fn set_buckets(&self, count: usize) {
        // Precision loss above 2^53 buckets is irrelevant.
        self.buckets.set(count as f64);
    }

    /// `count` bucket usage reports arrived.
    pub fn reports_received(&self, count: usize) {
        self.reports.increment(count as u64);
    }

    /// One assignment of `kind` was sent.
    pub fn assignment_sent(&self, kind: AssignmentKind) {
        let index = AssignmentKind::ALL.iter().position(|k| *k == kind);
        if let Some(counter) = index.and_then(|index| self.assignments.get(index)) {
            counter.increment(1);
        }
    }
}

impl Metrics {
    /// Registers (and describes) the RLQS series, every assignment kind at zero.
    pub fn quota(&self) -> QuotaMetrics {
        let recorder = self.recorder();
        describe(recorder);
        let key = |name: &'static str| Key::from_name(name);
        let assignments = AssignmentKind::ALL
            .into_iter()
            .map(|kind| {
                let labels = vec![Label::from_static_parts(LABEL_ASSIGNMENT_KIND, kind.name())];
                let key = Key::from_parts(RLQS_ASSIGNMENTS, labels);
                recorder.register_counter(&key, &METADATA)
            })
            .collect();
        QuotaMetrics {
            streams: recorder.register_gauge(&key(RLQS_STREAMS), &METADATA),
            buckets: recorder.register_gauge(&key(RLQS_BUCKETS), &METADATA),
            reports: recorder.register_counter(&key(RLQS_REPORTS), &METADATA),
            assignments,
        }
    }
}

fn describe(recorder: &impl Recorder) {
    let help = SharedString::const_str;
    recorder.describe_gauge(RLQS_STREAMS.into(), None, help("RLQS streams open now."));
    recorder.describe_gauge(
        RLQS_BUCKETS.into(),
        None,
        help("Limited RLQS buckets with a grant in force."),
    );
    recorder.describe_counter(
        RLQS_REPORTS.into(),
        Some(Unit::Count),
        help("RLQS bucket usage reports received."),
    );
    recorder.describe_counter(
        RLQS_ASSIGNMENTS.into(),
        Some(Unit::Count),
        help("RLQS bucket assignments sent, by kind."),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::NearLimitRatio;

    #[test]
    fn every_series_renders_and_counts() {
        let metrics = Metrics::new(NearLimitRatio::DEFAULT, "memory").unwrap();
        let quota = metrics.quota();
        quota.stream_opened();
        quota.set_buckets(3);
        quota.reports_received(2);
        quota.assignment_sent(AssignmentKind::TokenBucket);
        let text = metrics.render();
        for line in [
            "quotad_rlqs_streams 1",
            "quotad_rlqs_buckets 3",
            "quotad_rlqs_reports_total 2",
            "quotad_rlqs_assignments_total{kind=\"token_bucket\"} 1",
            "quotad_rlqs_assignments_total{kind=\"abandon\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
