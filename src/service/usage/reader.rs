//! Usage lookups (`GET /usage`) on the rate-limit service itself: its rules, store and clock,
//! every descriptor planned with 0 hits so a lookup reads counters without ever adding to them.

use crate::clock::Clock;
use crate::engine;
use crate::metrics::{Method, Outcome};
use crate::store::CounterStore;

use crate::service::{RateLimiter, RequestLimits, request_from_wire};

use super::{UsageError, UsageQuery, UsageReport};

impl<S: CounterStore, C: Clock> RateLimiter<S, C> {
    /// Reads the usage of every limit that applies to `query`'s descriptors, consuming nothing.
    pub async fn usage(&self, query: &UsageQuery) -> Result<UsageReport, UsageError> {
        let started = tokio::time::Instant::now();
        let result = self.read_usage(query).await;
        if let Some(metrics) = &self.metrics {
            let outcome = match &result {
                Ok(_) => Outcome::Ok,
                Err(UsageError::Invalid(_)) => Outcome::InvalidArgument,
                Err(UsageError::Store(_)) => Outcome::Unavailable,
            };
            metrics.record_request(Method::Usage, outcome, started.elapsed());
        }
        result
    }

    async fn read_usage(&self, query: &UsageQuery) -> Result<UsageReport, UsageError> {
        let wire = query.to_wire();
        let mut request = request_from_wire(&wire, &RequestLimits::default())?;
        for descriptor in &mut request.descriptors {
            // Looking must never consume: 0 hits read without writing in every store.
            descriptor.hits = Some(0);
            descriptor.refund = false;
            descriptor.limit_override = None;
        }
        // An owned snapshot, as in the service: the store call awaits.
        let rules = self.rules.load_full();
        let plan = engine::plan(&rules, &request, self.clock.now());
        let readings = self.store.apply(&plan).await.inspect_err(|error| {
            tracing::warn!(%error, domain = request.domain, "counter store failed on a usage lookup");
            if let Some(metrics) = &self.metrics {
                metrics.record_store_error();
            }
        })?;
        let decision = engine::conclude(&plan, &readings);
        Ok(UsageReport::from_decision(
            &rules,
            &request,
            &decision,
            plan.now(),
        ))
    }
}
