//! A store that is always down, for unit tests of how callers answer store failures.

use std::future::{Future, ready};

use super::{CounterStore, StoreError};
use crate::clock::Timestamp;
use crate::engine::{Ban, Plan, Readings};

/// Every call fails with `Unavailable("redis down")`.
#[derive(Debug)]
pub(crate) struct BrokenStore;

fn down() -> StoreError {
    StoreError::Unavailable("redis down".into())
}

impl CounterStore for BrokenStore {
    fn apply(&self, _plan: &Plan<'_>) -> impl Future<Output = Result<Readings, StoreError>> + Send {
        ready(Err(down()))
    }

    async fn start_ban(&self, _ban: &Ban, _now: Timestamp) -> Result<(), StoreError> {
        Err(down())
    }

    async fn bans(&self, _now: Timestamp) -> Result<Vec<Ban>, StoreError> {
        Err(down())
    }

    async fn active_bans(&self, _now: Timestamp) -> Result<u64, StoreError> {
        Err(down())
    }

    async fn lift_ban(&self, _identity: &[u8], _now: Timestamp) -> Result<bool, StoreError> {
        Err(down())
    }
}
