//! Watches the configuration path for changes and reports them debounced, so an editor's
//! several writes or a ConfigMap update become one reload. The watch is on the directory (the
//! path itself, or a file's parent) rather than on files: editors replace files by rename, and
//! Kubernetes updates a mounted ConfigMap by swapping its `..data` symlink, and both are only
//! visible as entries changing in the directory.

use std::ffi::OsStr;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

use super::reload::{Reloader, Trigger};

/// How long the files must stay quiet before a reload starts, unless configured otherwise.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(200);

/// A busy writer cannot hold a reload back longer than this many quiet periods.
const MAX_DEBOUNCE_PERIODS: u32 = 10;

/// The watch could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path} for changes")]
pub struct WatchError {
    /// The directory that could not be watched.
    pub path: PathBuf,
    /// What the watcher backend said.
    #[source]
    pub source: notify::Error,
}

/// A live watch on the directory holding the configuration; dropping it stops watching.
pub struct ConfigWatcher {
    _watcher: RecommendedWatcher,
    changes: Arc<Notify>,
    watched: Vec<PathBuf>,
}

impl fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigWatcher")
            .field("watched", &self.watched)
            .finish_non_exhaustive()
    }
}

impl ConfigWatcher {
    /// Starts watching the directory `path` names (or, for a file, the directory holding it;
    /// for a symlinked file, its target's directory too).
    pub fn new(path: &Path) -> Result<Self, WatchError> {
        let changes = Arc::new(Notify::new());
        let notify_changes = changes.clone();
        let config_name = if path.is_dir() {
            None
        } else {
            path.file_name().map(OsStr::to_os_string)
        };
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
            // Errors (e.g. a queue overflow) may hide a change: reload to be sure.
            if event.is_err()
                || event.is_ok_and(|event| is_relevant(&event, config_name.as_deref()))
            {
                notify_changes.notify_one();
            }
        })
        .map_err(|source| WatchError {
            path: path.to_path_buf(),
            source,
        })?;
        let watched = directories_to_watch(path);
        for (index, directory) in watched.iter().enumerate() {
            let result = watcher.watch(directory, RecursiveMode::NonRecursive);
            match result {
                Ok(()) => {}
                // The first directory is the one that matters; the others are best effort.
                Err(source) if index == 0 => {
                    return Err(WatchError {
                        path: directory.clone(),
                        source,
                    });
                }
                Err(error) => tracing::debug!(%error, dir = %directory.display(), "not watched"),
            }
        }
        Ok(Self {
            _watcher: watcher,
            changes,
            watched,
        })
    }

    /// Resolves once something changed and then nothing more for `quiet` (or after at most
    /// ten quiet periods of continuous changes, so a busy writer cannot starve reloads).
    pub async fn changed(&self, quiet: Duration) {
        self.changes.notified().await;
        let give_up = tokio::time::Instant::now() + quiet * MAX_DEBOUNCE_PERIODS;
        while tokio::time::timeout(quiet, self.changes.notified())
            .await
            .is_ok()
        {
            if tokio::time::Instant::now() >= give_up {
                return;
            }
        }
    }
}

/// Reloads after every debounced change until `stop` resolves. Errors are logged (and kept
/// in the reloader's status) rather than returned: a bad edit must not stop the watching.
pub async fn reload_on_changes(
    reloader: Reloader,
    watcher: ConfigWatcher,
    quiet: Duration,
    stop: impl Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = watcher.changed(quiet) => {}
        }
        // The reloader logs and records the outcome; there is nothing more to do with it here.
        let _ = reloader.reload(Trigger::FileChange).await;
    }
}

/// Reloads on every `SIGHUP` until `stop` resolves. The handler is installed before this
/// returns, so a signal sent right after startup is not lost.
#[cfg(unix)]
pub fn reload_on_sighup(
    reloader: Reloader,
    stop: impl Future<Output = ()>,
) -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(async move {
        let mut stop = std::pin::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                received = hangups.recv() => if received.is_none() { return },
            }
            tracing::info!("SIGHUP received: reloading the configuration");
            let _ = reloader.reload(Trigger::Signal).await;
        }
    })
}

/// Whether `event` may change what the loader reads. Reads (our own included) never do, and
/// neither do other files sharing the directory — a log file written there must not turn each
/// rejected reload's error line into another reload.
fn is_relevant(event: &Event, config_name: Option<&OsStr>) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    event.paths.is_empty()
        || event.paths.iter().any(|path| {
            let Some(name) = path.file_name() else {
                return true;
            };
            let text = name.to_string_lossy();
            // `..data` and `..<timestamp>` are a ConfigMap's; rule files are YAML.
            text.starts_with("..")
                || text.ends_with(".yaml")
                || text.ends_with(".yml")
                || config_name == Some(name)
        })
}

/// The directory to watch for `path`, then (best effort) the real directory behind a symlink.
fn directories_to_watch(path: &Path) -> Vec<PathBuf> {
    let is_dir = path.is_dir();
    let holder = |path: &Path| -> PathBuf {
        if is_dir {
            path.to_path_buf()
        } else {
            match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            }
        }
    };
    let mut directories = vec![holder(path)];
    if let Ok(real) = path.canonicalize() {
        let real = holder(&real);
        let same = directories[0]
            .canonicalize()
            .is_ok_and(|first| first == real);
        if !same {
            directories.push(real);
        }
    }
    directories
}

#[cfg(test)]
mod tests {
    use notify::event::{AccessKind, CreateKind, ModifyKind};

    use super::*;

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn only_changes_to_rule_files_and_configmap_links_count() {
        let modify = EventKind::Modify(ModifyKind::Any);
        let config = Some(OsStr::new("rules.conf"));
        assert!(is_relevant(&event(modify, "/c/api.yaml"), None));
        assert!(is_relevant(&event(modify, "/c/api.yml"), None));
        assert!(is_relevant(
            &event(EventKind::Create(CreateKind::Any), "/c/..data"),
            None
        ));
        assert!(is_relevant(&event(modify, "/c/rules.conf"), config));
        assert!(!is_relevant(&event(modify, "/c/quotad.log"), config));
        assert!(!is_relevant(&event(modify, "/c/.api.yaml.swp"), None));
        let read = EventKind::Access(AccessKind::Any);
        assert!(!is_relevant(&event(read, "/c/api.yaml"), None));
        assert!(
            is_relevant(&Event::new(EventKind::Any), None),
            "a rescan hint counts"
        );
    }
}
