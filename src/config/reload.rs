//! Hot reload: read and compile the whole configuration off the async workers, and publish it
//! with one atomic pointer swap only when every file is valid. A request sees either the old
//! rule set or the new one, never a mix; a bad file leaves the old rules serving and is kept
//! as the last failure (same located errors as `quotad check`) for logs, metrics and
//! `/rlconfig`.
//!
//! Counts survive a reload that changes a limit, because a counter's identity is its domain,
//! descriptor, window length and algorithm — never the threshold. Counters of a removed rule
//! are no longer touched; the memory store's periodic sweep reclaims each one once its window
//! (and the previous one, for sliding windows) has ended.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::error::ConfigErrors;
use super::load::{load_path, load_path_on};
use super::summary::summarize;
use crate::clock::{Clock, Timestamp};
use crate::engine::RuleSet;

/// A configuration's identity: a 64-bit FNV-1a hash of its files' names and contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConfigVersion(u64);

impl ConfigVersion {
    /// The first 32 bits, as exported by the `quotad_config_version` gauge.
    pub fn short(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl fmt::Display for ConfigVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A compiled configuration and the version of the files it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The compiled rules.
    pub rules: Arc<RuleSet>,
    /// The files' content hash.
    pub version: ConfigVersion,
}

/// Loads `path` (a file or a directory, as [`load_path`]) and hashes what was loaded. If the
/// files change while they are read, the load is repeated so rules and version agree.
pub fn load_versioned(path: &Path) -> Result<LoadedConfig, ConfigErrors> {
    load_versioned_with(path, load_path)
}

/// [`load_versioned`] with the loader given (a reload's runs on one thread).
fn load_versioned_with(
    path: &Path,
    load: impl Fn(&Path) -> Result<RuleSet, ConfigErrors>,
) -> Result<LoadedConfig, ConfigErrors> {
    let mut before = fingerprint(path);
    for _attempt in 0..3 {
        let result = load(path);
        let after = fingerprint(path);
        if after == before {
            return result.map(|rules| LoadedConfig {
                rules: Arc::new(rules),
                version: after,
            });
        }
        before = after;
    }
    // Still being written: take this load; the writer's next event triggers another reload.
    load(path).map(|rules| LoadedConfig {
        rules: Arc::new(rules),
        version: before,
    })
}

/// The content hash of the files [`load_path`] would read (unreadable ones hash their error,
/// so a vanished file changes the version too).
pub fn fingerprint(path: &Path) -> ConfigVersion {
    let mut hash = Fnv::new();
    let files = match fs::read_dir(path) {
        Ok(entries) => {
            let mut files: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|file| is_rule_file(file))
                .collect();
            files.sort();
            files
        }
        Err(_) => vec![path.to_path_buf()],
    };
    for file in files {
        hash.write(file.as_os_str().as_encoded_bytes());
        match fs::read(&file) {
            Ok(bytes) => {
                hash.write(&(bytes.len() as u64).to_le_bytes());
                hash.write(&bytes);
            }
            Err(error) => hash.write(error.to_string().as_bytes()),
        }
    }
    ConfigVersion(hash.0)
}

/// Visible `*.yaml`/`*.yml` entries, as the loader picks them (hidden ones like `..data` skipped).
fn is_rule_file(file: &Path) -> bool {
    let Some(name) = file.file_name().and_then(|name| name.to_str()) else {
        return false;
    };
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// What asked for a reload (for logs and the debug page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The watcher saw the files change.
    FileChange,
    /// The process received `SIGHUP`.
    Signal,
    /// A loopback client sent `POST /reload`.
    Http,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::FileChange => "file change",
            Trigger::Signal => "SIGHUP",
            Trigger::Http => "POST /reload",
        })
    }
}

/// A rejected reload: when, why it was attempted, and every error found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadFailure {
    /// When the attempt finished.
    pub at: Timestamp,
    /// What asked for it.
    pub trigger: Trigger,
    /// Every problem, located as `quotad check` prints them.
    pub errors: ConfigErrors,
}

/// Which configuration is serving, and how the last reloads went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadStatus {
    /// The configuration path being watched.
    pub path: PathBuf,
    /// The serving configuration's version.
    pub version: ConfigVersion,
    /// When the serving configuration was loaded.
    pub loaded_at: Timestamp,
    /// The most recent rejected reload, even if a later one succeeded.
    pub last_failure: Option<ReloadFailure>,
    /// Whether the most recent attempt was the rejected one (the files on disk are bad now).
    pub failing: bool,
}

/// What a successful reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// New rules were published.
    Applied(ConfigVersion),
    /// The files match the serving version; nothing was swapped.
    Unchanged(ConfigVersion),
}

/// Why a reload did not publish new rules; the previous rules keep serving either way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration has errors.
    #[error("configuration rejected with {} error(s); the previous rules keep serving:\n{}", .0.len(), .0)]
    Rejected(ConfigErrors),
    /// The loading task panicked or was cancelled.
    #[error("configuration load did not finish: {0}")]
    Interrupted(String),
}

/// Told about every reload outcome (implemented by the metrics registry).
pub trait ReloadObserver: Send + Sync + fmt::Debug + 'static {
    /// Readies whatever the observer keeps per rule for `rules`, before they serve. Runs on the
    /// reload's blocking thread, so the work stays off the request workers.
    fn prepare(&self, _rules: &Arc<RuleSet>) {}
    /// `rules` (of `version`) are now serving, loaded at `at`.
    fn applied(&self, rules: &Arc<RuleSet>, version: ConfigVersion, at: Timestamp);
    /// A reload found the serving files unchanged.
    fn unchanged(&self);
    /// A reload was rejected.
    fn rejected(&self, failure: &ReloadFailure);
}

struct Inner {
    rules: Arc<ArcSwap<RuleSet>>,
    status: ArcSwap<ReloadStatus>,
    /// Reloads run one at a time, so an older load can never be published after a newer one.
    serial: tokio::sync::Mutex<()>,
    clock: Arc<dyn Clock>,
    observer: Option<Arc<dyn ReloadObserver>>,
}

/// Reloads the configuration at one path into one rules handle; clones share everything.
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

impl fmt::Debug for Reloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloader")
            .field("status", &self.inner.status.load())
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// A reloader for `path`, whose `version` is already serving from `rules`.
    pub fn new(
        path: PathBuf,
        rules: Arc<ArcSwap<RuleSet>>,
        version: ConfigVersion,
        clock: Arc<dyn Clock>,
        observer: Option<Arc<dyn ReloadObserver>>,
    ) -> Self {
        let loaded_at = clock.now();
        if let Some(observer) = &observer {
            observer.applied(&rules.load_full(), version, loaded_at);
        }
        let status = ReloadStatus {
            path,
            version,
            loaded_at,
            last_failure: None,
            failing: false,
        };
        Self {
            inner: Arc::new(Inner {
                rules,
                status: ArcSwap::from_pointee(status),
                serial: tokio::sync::Mutex::new(()),
                clock,
                observer,
            }),
        }
    }

    /// The current status snapshot.
    pub fn status(&self) -> Arc<ReloadStatus> {
        self.inner.status.load_full()
    }

    /// Loads the files again and publishes them if they are valid and differ from what serves.
    pub async fn reload(&self, trigger: Trigger) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self.inner.serial.lock().await;
        let current = self.status();
        let path = current.path.clone();
        let serving = current.version;
        // Compiling walks every file and may recurse deeply: the blocking pool keeps it off the
        // request workers, and its threads get the runtime's 2 MiB stacks, which deep YAML needs.
        let preparer = self.inner.observer.clone();
        let loaded = tokio::task::spawn_blocking(move || -> Result<_, ConfigErrors> {
            if fingerprint(&path) == serving {
                return Ok(None);
            }
            // One thread: a reload shares the cores with live traffic (start-up does not).
            let config = load_versioned_with(&path, |path| load_path_on(path, 1))?;
            if config.version == serving {
                return Ok(None);
            }
            // Everything a new rule set needs besides the swap happens here, not on a request
            // worker: per-rule metric series (tens of ms for 10,000 rules) and the log summary.
            preparer.inspect(|observer| observer.prepare(&config.rules));
            let summaries = summarize(&config.rules);
            Ok(Some((config, summaries)))
        })
        .await
        .map_err(|error| ReloadError::Interrupted(error.to_string()))?;
        let now = self.inner.clock.now();
        let observer = self.inner.observer.as_deref();
        let mut status = ReloadStatus::clone(&current);
        let outcome = match loaded {
            Ok(None) => {
                status.failing = false;
                observer.inspect(|observer| observer.unchanged());
                tracing::debug!(%trigger, version = %serving, "configuration unchanged");
                Ok(Reloaded::Unchanged(serving))
            }
            Ok(Some((config, summaries))) => {
                let replaced = self.inner.rules.swap(config.rules.clone());
                // Freeing a large rule set takes milliseconds: not on a request worker. (A
                // request still holding it frees it instead, if it finishes last.)
                drop(tokio::task::spawn_blocking(move || drop(replaced)));
                status.version = config.version;
                status.loaded_at = now;
                status.failing = false;
                observer.inspect(|observer| observer.applied(&config.rules, config.version, now));
                tracing::info!(%trigger, version = %config.version, "configuration reloaded");
                for summary in summaries {
                    tracing::info!(%summary, "rules loaded");
                }
                Ok(Reloaded::Applied(config.version))
            }
            Err(errors) => {
                let failure = ReloadFailure {
                    at: now,
                    trigger,
                    errors: errors.clone(),
                };
                observer.inspect(|observer| observer.rejected(&failure));
                status.last_failure = Some(failure);
                status.failing = true;
                tracing::error!(
                    %trigger,
                    version = %serving,
                    "configuration rejected with {} error(s); the previous rules keep serving:\n{errors}",
                    errors.len()
                );
                Err(ReloadError::Rejected(errors))
            }
        };
        self.inner.status.store(Arc::new(status));
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_content_not_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("api.yaml");
        fs::write(&file, "domain: api\n").unwrap();
        let first = fingerprint(dir.path());
        assert_eq!(first, fingerprint(dir.path()));
        fs::write(dir.path().join(".hidden.yaml"), "ignored").unwrap();
        fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        assert_eq!(first, fingerprint(dir.path()), "only rule files count");
        fs::write(&file, "domain: web\n").unwrap();
        assert_ne!(first, fingerprint(dir.path()));
        assert_ne!(
            fingerprint(&file),
            fingerprint(&dir.path().join("gone.yaml"))
        );
    }
}
