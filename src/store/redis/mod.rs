//! The Redis counter store: several quotad replicas share one budget through Redis, standalone
//! or Redis Cluster. `config` says where Redis is and how patient to be, `keys` names counters,
//! `script` applies them atomically in Lua, `breaker` and `status` handle a slow or dead Redis,
//! and `store` ties them into a `CounterStore`.

mod bans;
mod breaker;
mod config;
mod keys;
mod script;
mod status;
mod store;

pub use breaker::BreakerState;
pub use config::{BreakerConfig, DEFAULT_TIMEOUT, RedisConfigError, RedisStoreConfig, RedisTarget};
pub use keys::{KEY_PREFIX, counter_key};
pub use status::{RedisErrorCounts, RedisErrorKind, RedisStoreStatus};
pub use store::RedisStore;
