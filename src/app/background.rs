//! The server's reload triggers (file watcher, `SIGHUP`), each ending when the server stops.
//! The store's periodic upkeep (sweep or probe) lives with the store choice, in `store`.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::errors::{StartError, TaskResult};
use super::server::until_stopped;
use super::settings::{ReloadSettings, ServerConfig};
use crate::clock::Clock;
use crate::config::{self, ConfigWatcher, Reloader};
use crate::metrics::Metrics;

/// Builds the reloader and spawns the watcher and `SIGHUP` tasks the settings ask for.
pub(super) fn start_reloads<C: Clock + Clone>(
    config: &ServerConfig<C>,
    settings: &ReloadSettings,
    metrics: &Metrics,
    stopped: &watch::Receiver<bool>,
    tasks: &mut JoinSet<TaskResult>,
) -> Result<Reloader, StartError> {
    let reloader = Reloader::new(
        settings.path.clone(),
        config.rules.clone(),
        settings.version,
        Arc::new(config.clock.clone()),
        Some(Arc::new(metrics.clone())),
    );
    if settings.watch {
        let watcher = ConfigWatcher::new(&settings.path)?;
        let watching = config::reload_on_changes(
            reloader.clone(),
            watcher,
            settings.debounce,
            until_stopped(stopped.clone()),
        );
        tasks.spawn(async move {
            watching.await;
            ("config watcher", Ok(()))
        });
    }
    #[cfg(unix)]
    if settings.sighup {
        let hangups = config::reload_on_sighup(reloader.clone(), until_stopped(stopped.clone()))
            .map_err(|source| StartError::Signal {
                signal: "SIGHUP",
                source,
            })?;
        tasks.spawn(async move {
            hangups.await;
            ("SIGHUP reloader", Ok(()))
        });
    }
    Ok(reloader)
}
