//! The one place a server's counter store is chosen, and what the server does differently per
//! store. Everything else in `server` is generic over [`ServedStore`], so each store gets its
//! own monomorphised request path: the memory path stays a direct call into `MemoryStore`
//! (no boxing, no dispatch, no added allocation), and Redis adds only its latency histogram.
//!
//! Per store: the `store` metric label, the gauges published before each scrape, the readiness
//! probe (Redis only: reachable and breaker closed, from the store's own snapshot, so a health
//! check never calls Redis), and a periodic upkeep task — the memory store sweeps expired
//! counters; the Redis store sends one `PING`, which also closes the breaker without traffic.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::errors::{StartError, TaskResult};
use crate::clock::{Clock, Timestamp};
use crate::engine::{Ban, Plan, Readings};
use crate::http::StoreProbe;
use crate::metrics::{MemoryMetrics, Metrics, RedisMetrics};
use crate::store::redis::{BreakerState, RedisStoreConfig};
use crate::store::{CounterStore, DEFAULT_MAX_KEYS, MemoryStore, RedisStore, StoreError};

/// How often the Redis store is probed with `PING` unless configured otherwise.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Which counter store a server counts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// In-process counters, at most `max_keys` of them (`--store memory`).
    Memory {
        /// The bound on counter cells (`--max-keys`).
        max_keys: usize,
    },
    /// Counters shared through Redis or Redis Cluster (`--store redis`).
    Redis {
        /// Where Redis is, the call timeout and the breaker.
        config: RedisStoreConfig,
        /// How often a background `PING` refreshes readiness and probes an open breaker.
        probe_interval: Duration,
    },
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings::Memory {
            max_keys: DEFAULT_MAX_KEYS,
        }
    }
}

impl StoreSettings {
    /// Redis at `config`, probed every [`DEFAULT_PROBE_INTERVAL`].
    pub fn redis(config: RedisStoreConfig) -> Self {
        StoreSettings::Redis {
            config,
            probe_interval: DEFAULT_PROBE_INTERVAL,
        }
    }
}

/// The ban methods of `CounterStore`, handed to the wrapped `self.store` unchanged: bans are
/// rare, so the served stores add no metrics around them.
macro_rules! delegate_bans {
    () => {
        fn start_ban(
            &self,
            ban: &Ban,
            now: Timestamp,
        ) -> impl Future<Output = Result<(), StoreError>> + Send {
            self.store.start_ban(ban, now)
        }

        fn bans(
            &self,
            now: Timestamp,
        ) -> impl Future<Output = Result<Vec<Ban>, StoreError>> + Send {
            self.store.bans(now)
        }

        fn active_bans(
            &self,
            now: Timestamp,
        ) -> impl Future<Output = Result<u64, StoreError>> + Send {
            self.store.active_bans(now)
        }

        fn lift_ban(
            &self,
            identity: &[u8],
            now: Timestamp,
        ) -> impl Future<Output = Result<bool, StoreError>> + Send {
            self.store.lift_ban(identity, now)
        }
    };
}

/// What a server needs from its counter store besides counting.
pub(super) trait ServedStore: CounterStore {
    /// The `store` label on the server's metrics.
    const LABEL: &'static str;

    /// A readiness probe, for stores that can be unreachable.
    fn probe(self: &Arc<Self>) -> Option<StoreProbe>;

    /// Publishes the store's gauges and counters; cheap, called before every scrape.
    fn publish(&self);

    /// How often [`Self::upkeep`] runs.
    fn upkeep_interval(&self) -> Duration;

    /// One round of periodic upkeep at `now`.
    fn upkeep(self: Arc<Self>, now: Timestamp) -> impl Future<Output = ()> + Send;
}

/// The memory store and its series.
#[derive(Debug)]
pub(super) struct Memory {
    store: MemoryStore,
    metrics: MemoryMetrics,
    sweep_interval: Duration,
}

impl Memory {
    pub(super) fn new(max_keys: usize, sweep_interval: Duration, metrics: &Metrics) -> Self {
        Self {
            store: MemoryStore::with_max_keys(max_keys),
            metrics: metrics.memory_store(),
            sweep_interval,
        }
    }
}

impl CounterStore for Memory {
    #[inline]
    fn apply(&self, plan: &Plan<'_>) -> impl Future<Output = Result<Readings, StoreError>> + Send {
        self.store.apply(plan)
    }

    delegate_bans!();
}

impl ServedStore for Memory {
    const LABEL: &'static str = "memory";

    fn probe(self: &Arc<Self>) -> Option<StoreProbe> {
        None
    }

    fn publish(&self) {
        self.metrics.publish(self.store.stats());
    }

    fn upkeep_interval(&self) -> Duration {
        self.sweep_interval
    }

    /// Reclaims expired counters. The sweep walks every key, so it runs on the blocking pool
    /// rather than stalling a request worker.
    async fn upkeep(self: Arc<Self>, now: Timestamp) {
        let sweeping = Arc::clone(&self);
        match tokio::task::spawn_blocking(move || sweeping.store.sweep(now)).await {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, "swept expired counters"),
            Err(error) => tracing::warn!(%error, "counter sweep failed"),
        }
        self.publish();
    }
}

/// The Redis store, its series, and how often it is probed.
#[derive(Debug)]
pub(super) struct Redis {
    store: RedisStore,
    metrics: RedisMetrics,
    probe_interval: Duration,
}

impl Redis {
    pub(super) fn new<C: Clock + Clone>(
        config: &RedisStoreConfig,
        probe_interval: Duration,
        clock: C,
        metrics: &Metrics,
    ) -> Result<Self, StartError> {
        Ok(Self {
            store: RedisStore::new(config, clock).map_err(StartError::Store)?,
            metrics: metrics.redis_store(),
            probe_interval,
        })
    }
}

impl CounterStore for Redis {
    fn apply(&self, plan: &Plan<'_>) -> impl Future<Output = Result<Readings, StoreError>> + Send {
        // A plan without counters never reaches Redis; timing it would skew the histogram.
        let calls_redis = !plan.is_empty();
        let call = self.store.apply(plan);
        async move {
            let started = tokio::time::Instant::now();
            let result = call.await;
            if calls_redis {
                self.metrics.record_call(started.elapsed());
            }
            result
        }
    }

    delegate_bans!();
}

impl ServedStore for Redis {
    const LABEL: &'static str = "redis";

    fn probe(self: &Arc<Self>) -> Option<StoreProbe> {
        let served = Arc::clone(self);
        Some(StoreProbe::new(move || {
            let status = served.store.status();
            status.connected && status.breaker == BreakerState::Closed
        }))
    }

    fn publish(&self) {
        self.metrics.publish(&self.store.status());
    }

    fn upkeep_interval(&self) -> Duration {
        self.probe_interval
    }

    /// Pings Redis: it marks the store connected (or not) for readiness, and is the probe that
    /// closes an open breaker when no traffic arrives to do it.
    async fn upkeep(self: Arc<Self>, _now: Timestamp) {
        let was_reachable = self.store.status().connected;
        match self.store.ping().await {
            Ok(()) if !was_reachable => tracing::info!("redis store reachable"),
            Ok(()) => {}
            Err(error) if was_reachable => tracing::warn!(%error, "redis store unreachable"),
            Err(error) => tracing::debug!(%error, "redis store still unreachable"),
        }
        self.publish();
    }
}

/// Runs the store's upkeep (and the metrics registry's) every interval until stopped.
pub(super) async fn upkeep_until_stopped<S: ServedStore, C: Clock>(
    store: Arc<S>,
    clock: C,
    metrics: Metrics,
    mut stopped: watch::Receiver<bool>,
) -> TaskResult {
    // `interval` refuses a zero period; a millisecond is the fastest upkeep worth having.
    let bans = metrics.bans();
    let mut ticks = tokio::time::interval(store.upkeep_interval().max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stopped| *stopped) => return ("store upkeep", Ok(())),
            _ = ticks.tick() => {}
        }
        store.clone().upkeep(clock.now()).await;
        // A failure here is the store's own to report (readiness, store metrics).
        if let Ok(active) = store.active_bans(clock.now()).await {
            bans.set_active(active);
        }
        // Histograms buffer samples until upkeep; doing it here bounds memory between scrapes.
        metrics.run_upkeep();
    }
}
