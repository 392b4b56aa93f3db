//! Rules configuration: envoyproxy/ratelimit-format YAML (plus quotad's extensions) compiled into
//! the engine's immutable `RuleSet`, with every problem collected and located.

mod ban;
mod compile;
mod concurrency;
mod error;
mod limits;
mod load;
mod model;
mod parse;
mod reload;
mod response;
mod rlqs;
mod summary;
mod tree;
mod watch;

#[cfg(test)]
mod tests;

pub use compile::compile_str;
pub use error::{ConfigError, ConfigErrors};
pub use load::load_path;
pub use reload::{
    ConfigVersion, LoadedConfig, ReloadError, ReloadFailure, ReloadObserver, ReloadStatus,
    Reloaded, Reloader, Trigger, fingerprint, load_versioned,
};
pub use summary::{DomainSummary, summarize};
pub use watch::{ConfigWatcher, DEFAULT_DEBOUNCE, WatchError, reload_on_changes, reload_on_sighup};
