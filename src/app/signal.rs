//! The shutdown signal: SIGTERM or SIGINT on Unix, Ctrl-C elsewhere.

use std::future::Future;

use super::errors::StartError;

/// Resolves on the first SIGTERM or SIGINT; the handlers are installed before this returns, so
/// a signal that arrives while the server starts is not lost.
pub fn shutdown_signal() -> Result<impl Future<Output = ()>, StartError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind, name| {
            signal(kind).map_err(|source| StartError::Signal {
                signal: name,
                source,
            })
        };
        let mut terminate = install(SignalKind::terminate(), "SIGTERM")?;
        let mut interrupt = install(SignalKind::interrupt(), "SIGINT")?;
        Ok(async move {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "shutting down");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            tracing::info!(signal = "ctrl-c", "shutting down");
        })
    }
}
