//! What the calls came back with: a latency histogram, answers by overall code and failures by
//! gRPC code; one tally per worker, merged at the end.

use anyhow::Context;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code as RlsCode;
use hdrhistogram::Histogram;

/// One call's result, reduced to what is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    OverLimit,
    /// An answer whose overall code was neither OK nor OVER_LIMIT (UNKNOWN).
    Other,
    /// A failed call, by gRPC status code.
    Failed(tonic::Code),
}

impl Outcome {
    /// Reduces a call's result.
    pub(crate) fn of(result: &Result<tonic::Response<RateLimitResponse>, tonic::Status>) -> Self {
        match result {
            Ok(response) => Self::answered(response.get_ref()),
            Err(status) => Self::Failed(status.code()),
        }
    }

    /// Reduces an answer by its overall code.
    pub(crate) fn answered(response: &RateLimitResponse) -> Self {
        match RlsCode::try_from(response.overall_code) {
            Ok(RlsCode::Ok) => Self::Ok,
            Ok(RlsCode::OverLimit) => Self::OverLimit,
            _ => Self::Other,
        }
    }
}

/// What one worker saw; merged at the end.
pub(crate) struct Tally {
    pub(crate) latency: Histogram<u64>,
    /// Open loop only: how late each request was handed to its connection after its scheduled
    /// time (pacing, the client's own backlog, or the in-flight cap).
    pub(crate) send_lag: Histogram<u64>,
    /// Open loop only: the send lag of the requests that found a free call slot, i.e. the
    /// client's own lateness (pacing, its own backlog), without waits caused by the server.
    pub(crate) own_lag: Histogram<u64>,
    /// Failed calls by gRPC status code (0..=16).
    pub(crate) errors: [u64; 17],
    pub(crate) ok: u64,
    pub(crate) over_limit: u64,
    /// Answers whose overall code was neither OK nor OVER_LIMIT (UNKNOWN).
    pub(crate) other: u64,
    /// Open loop only: scheduled requests dropped unsent because the run's time was up.
    pub(crate) unsent: u64,
    /// Open loop only: requests that found every call slot of their connection busy and
    /// waited for one (the wait is in their send lag): the server, not the client, was slow.
    pub(crate) capped: u64,
}

/// 1 µs .. 60 s in nanoseconds, 3 significant digits (0.1% resolution).
fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).context("building a latency histogram")
}

impl Tally {
    pub(crate) fn new() -> anyhow::Result<Self> {
        Ok(Self {
            latency: histogram()?,
            send_lag: histogram()?,
            own_lag: histogram()?,
            errors: [0; 17],
            ok: 0,
            over_limit: 0,
            other: 0,
            unsent: 0,
            capped: 0,
        })
    }

    /// Counts one call that took `nanos`.
    pub(crate) fn record(&mut self, nanos: u64, outcome: Outcome) {
        self.latency.saturating_record(nanos);
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::OverLimit => self.over_limit += 1,
            Outcome::Other => self.other += 1,
            Outcome::Failed(code) => {
                let code = usize::try_from(i32::from(code)).unwrap_or(2);
                self.errors[code.min(16)] += 1;
            }
        }
    }

    pub(crate) fn merge(&mut self, other: &Tally) -> anyhow::Result<()> {
        self.latency
            .add(&other.latency)
            .context("merging latency histograms")?;
        self.send_lag
            .add(&other.send_lag)
            .context("merging send-lag histograms")?;
        self.own_lag
            .add(&other.own_lag)
            .context("merging own-lag histograms")?;
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        self.ok += other.ok;
        self.over_limit += other.over_limit;
        self.other += other.other;
        self.unsent += other.unsent;
        self.capped += other.capped;
        Ok(())
    }

    pub(crate) fn completed(&self) -> u64 {
        self.ok + self.over_limit + self.other + self.errors.iter().sum::<u64>()
    }
}

/// A latency quantile in microseconds.
pub(crate) fn micros(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1_000.0
}
