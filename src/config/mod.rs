//! Rules configuration: envoyproxy/ratelimit-format YAML (plus quotad's extensions) compiled into
//! the engine's immutable `RuleSet`, with every problem collected and located.

mod compile;
mod error;
mod limits;
mod load;
mod model;
mod parse;
mod response;
mod summary;
mod tree;

#[cfg(test)]
mod tests;

pub use compile::compile_str;
pub use error::{ConfigError, ConfigErrors};
pub use load::load_path;
pub use summary::{DomainSummary, summarize};
