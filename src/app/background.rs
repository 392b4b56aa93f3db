//! The server's background tasks besides the listeners: the reload triggers (file watcher,
//! `SIGHUP`) and the periodic counter sweep, each ending when the server stops.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::errors::{StartError, TaskResult};
use super::server::until_stopped;
use super::settings::{ReloadSettings, ServerConfig};
use crate::clock::Clock;
use crate::config::{self, ConfigWatcher, Reloader};
use crate::metrics::Metrics;
use crate::store::MemoryStore;

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

/// Reclaims expired counters every `every` until stopped. The sweep walks every key, so it
/// runs on the blocking pool rather than stalling a request worker.
pub(super) async fn sweep_until_stopped<C: Clock + Clone>(
    store: Arc<MemoryStore>,
    clock: C,
    metrics: Metrics,
    every: Duration,
    mut stopped: watch::Receiver<bool>,
) -> TaskResult {
    // `interval` refuses a zero period; a millisecond is the fastest sweep worth having.
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stopped| *stopped) => return ("sweeper", Ok(())),
            _ = ticks.tick() => {}
        }
        let (swept, now) = (store.clone(), clock.now());
        match tokio::task::spawn_blocking(move || swept.sweep(now)).await {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, "swept expired counters"),
            Err(error) => tracing::warn!(%error, "counter sweep failed"),
        }
        metrics.set_store_keys(store.stats().keys);
        // Histograms buffer samples until upkeep; doing it here bounds memory between scrapes.
        metrics.run_upkeep();
    }
}
