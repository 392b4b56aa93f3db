//! How starting and serving fail, and how a finished task is judged.

use std::io;
use std::net::SocketAddr;

use tokio::sync::watch;

use crate::config::WatchError;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen for {protocol} on {addr}")]
    Bind {
        /// Which listener ("gRPC" or "HTTP").
        protocol: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
    /// A shutdown signal handler could not be installed.
    #[error("cannot install the {signal} handler")]
    Signal {
        /// The signal's name.
        signal: &'static str,
        /// What the operating system said.
        source: io::Error,
    },
    /// The metrics registry could not be built.
    #[error("cannot set up metrics")]
    Metrics(#[source] metrics_exporter_prometheus::BuildError),
    /// The configuration path could not be watched.
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// The reflection service's descriptors did not decode.
    #[error("cannot build the gRPC reflection service")]
    Reflection(#[source] crate::service::ReflectionError),
    /// The counter store's settings cannot work.
    #[error("cannot set up the counter store")]
    Store(#[source] crate::store::redis::RedisConfigError),
    /// The TLS certificate, key or client CA files are unusable.
    #[error("cannot set up TLS for gRPC")]
    Tls(#[from] super::tls::TlsError),
}

/// Why serving ended badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC server failed.
    #[error("gRPC server failed")]
    Grpc(#[source] tonic::transport::Error),
    /// The HTTP server failed.
    #[error("HTTP server failed")]
    Http(#[source] io::Error),
    /// The TLS certificate watcher failed.
    #[error("cannot watch the TLS certificates")]
    TlsWatch(#[source] super::tls::TlsError),
    /// A server task ended although nobody asked it to.
    #[error("{0} stopped unexpectedly")]
    Exited(&'static str),
    /// A server task panicked or was cancelled.
    #[error("{task} task ended abnormally: {message}")]
    Task {
        /// Which task.
        task: &'static str,
        /// The runtime's description.
        message: String,
    },
}

/// What a background task reports when it ends: its name and how it ended.
pub(super) type TaskResult = (&'static str, Result<(), ServeError>);

/// Ok when the task ended because a stop was requested.
pub(super) fn expected_exit(
    stopped: &watch::Receiver<bool>,
    task: &'static str,
) -> Result<(), ServeError> {
    if *stopped.borrow() {
        Ok(())
    } else {
        Err(ServeError::Exited(task))
    }
}

/// How a joined task ended, flattening panics into [`ServeError::Task`].
pub(super) fn task_outcome(
    ended: Result<TaskResult, tokio::task::JoinError>,
) -> Result<(), ServeError> {
    match ended {
        Ok((_, result)) => result,
        Err(error) => Err(ServeError::Task {
            task: "server",
            message: error.to_string(),
        }),
    }
}
