//! Series that only one kind of counter store has: Redis's connection, breaker, failures by
//! kind and call latency; the memory store's key count and evictions. They are registered only
//! for the store a server runs, so a memory-backed server shows no Redis series at zero.
//! Most values come from the store's own snapshot, published before each scrape; only the
//! latency histogram is recorded on the request path.

use std::fmt;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, Label, Recorder};

use super::names::{self, LABEL_KIND, LABEL_STORE};
use super::registry::{METADATA, Metrics};
use crate::store::MemoryStoreStats;
use crate::store::redis::{BreakerState, RedisErrorKind, RedisStoreStatus};

const REDIS: &str = "redis";
const MEMORY: &str = "memory";

/// The Redis store's series.
#[derive(Clone)]
pub struct RedisMetrics {
    connected: Gauge,
    breaker_open: Gauge,
    /// One per [`RedisErrorKind::ALL`], in that order.
    errors: Vec<Counter>,
    latency: Histogram,
}

impl fmt::Debug for RedisMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisMetrics").finish_non_exhaustive()
    }
}

impl RedisMetrics {
    /// Publishes a status snapshot: connection, breaker and the failure counts by kind.
    pub fn publish(&self, status: &RedisStoreStatus) {
        self.connected.set(if status.connected { 1.0 } else { 0.0 });
        let open = status.breaker == BreakerState::Open;
        self.breaker_open.set(if open { 1.0 } else { 0.0 });
        for (kind, counter) in RedisErrorKind::ALL.into_iter().zip(&self.errors) {
            counter.absolute(status.errors.get(kind));
        }
    }

    /// Records how long one store call took, failed or not.
    pub fn record_call(&self, elapsed: Duration) {
        self.latency.record(elapsed.as_secs_f64());
    }
}

/// The memory store's series.
#[derive(Clone)]
pub struct MemoryMetrics {
    keys: Gauge,
    evictions: Counter,
}

impl fmt::Debug for MemoryMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryMetrics").finish_non_exhaustive()
    }
}

impl MemoryMetrics {
    /// Publishes the store's key count and evictions so far.
    pub fn publish(&self, stats: MemoryStoreStats) {
        // Precision loss above 2^53 keys is irrelevant.
        self.keys.set(stats.keys as f64);
        self.evictions.absolute(stats.evictions);
    }
}

impl Metrics {
    /// Registers the Redis store's series (`store="redis"`).
    pub fn redis_store(&self) -> RedisMetrics {
        let recorder = self.recorder();
        let store = || vec![Label::from_static_parts(LABEL_STORE, REDIS)];
        let key = |name: &'static str| Key::from_parts(name, store());
        let errors = RedisErrorKind::ALL
            .into_iter()
            .map(|kind| {
                let mut labels = store();
                labels.push(Label::from_static_parts(LABEL_KIND, kind.name()));
                let key = Key::from_parts(names::STORE_CALL_ERRORS, labels);
                recorder.register_counter(&key, &METADATA)
            })
            .collect();
        RedisMetrics {
            connected: recorder.register_gauge(&key(names::STORE_CONNECTED), &METADATA),
            breaker_open: recorder.register_gauge(&key(names::STORE_BREAKER_OPEN), &METADATA),
            errors,
            latency: recorder.register_histogram(&key(names::STORE_CALL_DURATION), &METADATA),
        }
    }

    /// Registers the memory store's series (`store="memory"`).
    pub fn memory_store(&self) -> MemoryMetrics {
        let recorder = self.recorder();
        let key = |name: &'static str| {
            Key::from_parts(name, vec![Label::from_static_parts(LABEL_STORE, MEMORY)])
        };
        MemoryMetrics {
            keys: recorder.register_gauge(&key(names::STORE_KEYS), &METADATA),
            evictions: recorder.register_counter(&key(names::STORE_EVICTIONS), &METADATA),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::NearLimitRatio;
    use crate::store::redis::RedisErrorCounts;

    #[test]
    fn redis_series_follow_the_snapshot() {
        let metrics = Metrics::new(NearLimitRatio::DEFAULT, REDIS).unwrap();
        let redis = metrics.redis_store();
        redis.publish(&RedisStoreStatus {
            connected: false,
            breaker: BreakerState::Open,
            consecutive_failures: 5,
            successes: 7,
            errors: RedisErrorCounts {
                timeout: 2,
                connection: 3,
                reply: 0,
                breaker_open: 11,
            },
        });
        redis.record_call(Duration::from_millis(3));
        let text = metrics.render();
        for line in [
            "quotad_store_connected{store=\"redis\"} 0",
            "quotad_store_breaker_open{store=\"redis\"} 1",
            "quotad_store_call_errors_total{store=\"redis\",kind=\"timeout\"} 2",
            "quotad_store_call_errors_total{store=\"redis\",kind=\"breaker_open\"} 11",
            "quotad_store_call_errors_total{store=\"redis\",kind=\"reply\"} 0",
            "quotad_store_call_duration_seconds_bucket{store=\"redis\",le=\"0.005\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(!text.contains("quotad_store_evictions_total"), "{text}");
    }

    #[test]
    fn memory_series_follow_the_stats() {
        let metrics = Metrics::new(NearLimitRatio::DEFAULT, MEMORY).unwrap();
        metrics.memory_store().publish(MemoryStoreStats {
            keys: 12,
            evictions: 4,
        });
        let text = metrics.render();
        assert!(
            text.contains("quotad_store_keys{store=\"memory\"} 12"),
            "{text}"
        );
        assert!(
            text.contains("quotad_store_evictions_total{store=\"memory\"} 4"),
            "{text}"
        );
        assert!(!text.contains("quotad_store_connected"), "{text}");
    }
}
