//! Helpers for integration tests that need real processes: private `redis-server`s and a small
//! Redis Cluster on loopback ports, started per test and killed afterwards.

// Each test binary that includes this module uses only some of its helpers (and re-exports).
#![allow(dead_code, unused_imports)]

pub mod ban_behaviours;
pub mod bucket_behaviours;
pub mod concurrency_behaviours;
pub mod distinct_behaviours;
pub mod redis_server;
pub mod redis_tls;
pub mod store_behaviours;
