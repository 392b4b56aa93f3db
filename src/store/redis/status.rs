//! What health checks and metrics can learn about the Redis store without calling Redis:
//! whether the last call got through, the breaker's state, and failures counted by kind.
//! Counters are plain atomics bumped on the request path; a snapshot is a handful of loads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::breaker::BreakerState;

/// Why a store call failed, as counted in [`RedisErrorCounts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisErrorKind {
    /// The call did not finish within the configured timeout.
    Timeout,
    /// Redis could not be reached or the connection broke.
    Connection,
    /// Redis answered with an error or an unexpected reply (script, cluster or type errors).
    Reply,
    /// The circuit breaker was open, so Redis was not called.
    BreakerOpen,
}

impl RedisErrorKind {
    /// Every kind, in the order metrics list them.
    pub const ALL: [RedisErrorKind; 4] = [
        RedisErrorKind::Timeout,
        RedisErrorKind::Connection,
        RedisErrorKind::Reply,
        RedisErrorKind::BreakerOpen,
    ];

    /// A short snake_case name, fit for a metric label.
    pub const fn name(self) -> &'static str {
        match self {
            RedisErrorKind::Timeout => "timeout",
            RedisErrorKind::Connection => "connection",
            RedisErrorKind::Reply => "reply",
            RedisErrorKind::BreakerOpen => "breaker_open",
        }
    }
}

/// Failed calls since the store was built, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RedisErrorCounts {
    /// Calls that timed out.
    pub timeout: u64,
    /// Calls that could not reach Redis.
    pub connection: u64,
    /// Calls Redis answered with an error or a malformed reply.
    pub reply: u64,
    /// Calls failed fast because the breaker was open.
    pub breaker_open: u64,
}

impl RedisErrorCounts {
    /// The count for one kind.
    pub const fn get(&self, kind: RedisErrorKind) -> u64 {
        match kind {
            RedisErrorKind::Timeout => self.timeout,
            RedisErrorKind::Connection => self.connection,
            RedisErrorKind::Reply => self.reply,
            RedisErrorKind::BreakerOpen => self.breaker_open,
        }
    }
}

/// A point-in-time view of the Redis store for health and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisStoreStatus {
    /// Whether the most recent call reached Redis (false before the first call).
    pub connected: bool,
    /// Whether calls currently go to Redis.
    pub breaker: BreakerState,
    /// Failed calls in a row (reset by any call that reaches Redis).
    pub consecutive_failures: u32,
    /// Calls that reached Redis and returned counts.
    pub successes: u64,
    /// Failed calls, by kind.
    pub errors: RedisErrorCounts,
}

/// The live counters behind [`RedisStoreStatus`].
#[derive(Debug, Default)]
pub(crate) struct Telemetry {
    connected: AtomicBool,
    successes: AtomicU64,
    errors: [AtomicU64; 4],
}

impl Telemetry {
    pub(crate) fn record_success(&self) {
        self.connected.store(true, Ordering::Relaxed);
        self.successes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_error(&self, kind: RedisErrorKind) {
        match kind {
            // A reply, even an error, proves the connection works.
            RedisErrorKind::Reply => self.connected.store(true, Ordering::Relaxed),
            RedisErrorKind::Timeout | RedisErrorKind::Connection => {
                self.connected.store(false, Ordering::Relaxed);
            }
            RedisErrorKind::BreakerOpen => {}
        }
        self.errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(
        &self,
        breaker: BreakerState,
        consecutive_failures: u32,
    ) -> RedisStoreStatus {
        let count = |kind: RedisErrorKind| self.errors[kind as usize].load(Ordering::Relaxed);
        RedisStoreStatus {
            connected: self.connected.load(Ordering::Relaxed),
            breaker,
            consecutive_failures,
            successes: self.successes.load(Ordering::Relaxed),
            errors: RedisErrorCounts {
                timeout: count(RedisErrorKind::Timeout),
                connection: count(RedisErrorKind::Connection),
                reply: count(RedisErrorKind::Reply),
                breaker_open: count(RedisErrorKind::BreakerOpen),
            },
        }
    }
}
