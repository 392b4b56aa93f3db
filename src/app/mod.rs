//! Wiring and lifecycle: bind both listeners, serve gRPC (RateLimitService + health) and HTTP
//! (probes, metrics, JSON, admin), reload the rules when the files change or on `SIGHUP`, sweep
//! expired counters in the background, and stop gracefully — readiness drops first, the drain
//! delay lets load balancers notice, then the listeners close and in-flight calls finish.
//! Tests drive this API directly, with a manual clock and loopback listeners on port 0.

mod background;
mod errors;
mod server;
mod settings;
mod signal;

pub use errors::{ServeError, StartError};
pub use server::{RunningServer, start};
pub use settings::{DEFAULT_SWEEP_INTERVAL, RATE_LIMIT_SERVICE_NAME, ReloadSettings, ServerConfig};
pub use signal::shutdown_signal;
