//! Wiring and lifecycle: bind both listeners, serve gRPC (RateLimitService + health) and HTTP
//! (probes, metrics, JSON, admin), reload the rules when the files change or on `SIGHUP`, sweep
//! expired counters in the background, and stop gracefully — readiness drops first, the drain
//! delay lets load balancers notice, then the listeners close and in-flight calls finish.
//! Tests drive this API directly, with a manual clock and loopback listeners on port 0.

mod background;
mod errors;
mod grpc;
mod runtime;
mod server;
mod settings;
mod shedding;
mod signal;
mod store;
mod tls;

pub use errors::{ServeError, StartError};
pub use grpc::{
    DEFAULT_CONCURRENCY_LIMIT, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_QUEUE_LIMIT,
    DEFAULT_SHUTDOWN_GRACE, GrpcSettings,
};
pub use runtime::build_runtime;
pub use server::{RunningServer, start};
pub use settings::{DEFAULT_SWEEP_INTERVAL, RATE_LIMIT_SERVICE_NAME, ReloadSettings, ServerConfig};
pub use shedding::{LoadShedding, Shed};
pub use signal::shutdown_signal;
pub use store::{DEFAULT_PROBE_INTERVAL, StoreSettings};
pub use tls::{TlsError, TlsFiles, load as load_tls};
