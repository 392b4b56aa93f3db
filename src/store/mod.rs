//! Counter stores: where hit counts live. Every store applies a plan's counters atomically and
//! returns one reading per counter; the engine decides from the readings.

#[cfg(test)]
pub(crate) mod broken;
mod memory;
pub mod redis;

pub use self::redis::{RedisStore, RedisStoreConfig, RedisStoreStatus};
pub use memory::{DEFAULT_MAX_KEYS, MemoryStore, MemoryStoreStats};

use std::future::Future;

use crate::clock::Timestamp;
use crate::engine::{Ban, Plan, Readings};

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

/// A place that keeps counters and applies a request's hits atomically, and keeps the bans
/// that plans read (see `engine::Ban`).
pub trait CounterStore: Send + Sync + 'static {
    /// Adds each counter's hits in its window and returns the counts after adding, in plan order;
    /// for a ban read, the ban's end (nanoseconds since the epoch, 0 when none) as `current`.
    fn apply(&self, plan: &Plan<'_>) -> impl Future<Output = Result<Readings, StoreError>> + Send;

    /// Starts `ban` (a ban already on the same value keeps the later end).
    fn start_ban(
        &self,
        ban: &Ban,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every ban in force at `now`.
    fn bans(&self, now: Timestamp) -> impl Future<Output = Result<Vec<Ban>, StoreError>> + Send;

    /// How many bans are in force at `now`.
    fn active_bans(&self, now: Timestamp) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Lifts the ban with this identity (`engine::ban_identity`); whether one was in force.
    fn lift_ban(
        &self,
        identity: &[u8],
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
