//! Counter stores: where hit counts live. Every store applies a plan's counters atomically and
//! returns one reading per counter; the engine decides from the readings.

mod memory;
pub mod redis;

pub use self::redis::{RedisStore, RedisStoreConfig, RedisStoreStatus};
pub use memory::{DEFAULT_MAX_KEYS, MemoryStore, MemoryStoreStats};

use std::future::Future;

use crate::engine::{CounterReading, Plan};

/// Why a store could not apply a plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or timed out; retrying later may succeed.
    #[error("counter store unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// A place that keeps counters and applies a request's hits atomically.
pub trait CounterStore: Send + Sync + 'static {
    /// Adds each counter's hits in its window and returns the counts after adding, in plan order.
    fn apply(
        &self,
        plan: &Plan<'_>,
    ) -> impl Future<Output = Result<Vec<CounterReading>, StoreError>> + Send;
}
