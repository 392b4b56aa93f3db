//! The reader behind `GET /usage`: the rate-limit service's rules, store and clock, planning
//! every descriptor with 0 hits so a lookup reads counters without ever adding to them.

use std::fmt;
use std::sync::Arc;

use crate::clock::Clock;
use crate::engine;
use crate::metrics::{Method, Metrics, Outcome};
use crate::store::CounterStore;

use crate::service::{RequestLimits, SharedRules, request_from_wire};

use super::{UsageError, UsageQuery, UsageReport};

/// Answers usage lookups from the same rules, store and clock the rate-limit service uses.
pub struct UsageReader<S: CounterStore, C: Clock> {
    rules: SharedRules,
    store: Arc<S>,
    clock: C,
    metrics: Option<Metrics>,
}

impl<S: CounterStore, C: Clock> fmt::Debug for UsageReader<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsageReader")
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}

impl<S: CounterStore, C: Clock> UsageReader<S, C> {
    /// A reader of `store`'s counters under `rules`, with time from `clock`.
    pub fn new(rules: SharedRules, store: Arc<S>, clock: C) -> Self {
        Self {
            rules,
            store,
            clock,
            metrics: None,
        }
    }

    /// The same reader, counting lookups (method `usage`) and store errors in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Reads the usage of every limit that applies to `query`'s descriptors, consuming nothing.
    pub async fn report(&self, query: &UsageQuery) -> Result<UsageReport, UsageError> {
        let started = tokio::time::Instant::now();
        let result = self.read(query).await;
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

    async fn read(&self, query: &UsageQuery) -> Result<UsageReport, UsageError> {
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
