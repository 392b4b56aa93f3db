//! Text to raw model, with limits: one rules file is parsed under a size cap and a serde-saphyr
//! budget (so an alias bomb or a deeply nested file fails fast with a clear error), and a parser
//! error becomes a `ConfigError` naming the field and quoting what was written there.

use serde_saphyr::{Location, MessageFormatter, Options, Spanned, UserMessageFormatter};

use super::error::ConfigError;
use super::model::RawFile;
use super::tree::{self, Shape};

/// Largest rules file accepted, in bytes; real rule files are a few kilobytes.
pub(crate) const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;
/// Largest number of YAML nodes in one file (about 20,000 descriptors).
const MAX_NODES: usize = 200_000;
/// Deepest nesting of lists and mappings (11 levels of descriptors). Kept low because
/// parsing recurses per level (tens of KiB a level in debug builds) and must fit a 2 MiB
/// thread stack with room to spare.
const MAX_DEPTH: usize = 24;
/// Most alias uses (`*name`) in one file; rules rarely need more than a handful.
const MAX_ALIASES: usize = 1_000;
/// Most parser events that aliases may expand to in total: an alias bomb stops here, early,
/// instead of at the node limit after building hundreds of thousands of nodes.
const MAX_REPLAYED_EVENTS: usize = 50_000;

fn options() -> Options {
    serde_saphyr::options! {
        // Snippets would copy the source into every error; we quote the exact text ourselves.
        with_snippet: false,
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_REPLAYED_EVENTS,
            max_replay_stack_depth: 16,
        },
        budget: serde_saphyr::budget! {
            max_nodes: MAX_NODES,
            max_depth: MAX_DEPTH,
            max_aliases: MAX_ALIASES,
            max_anchors: MAX_ALIASES,
            max_total_scalar_bytes: MAX_FILE_BYTES,
        },
    }
}

/// Parses one file's text into the raw model and the location of the document's root.
pub(crate) fn parse(file: &str, yaml: &str) -> Result<(RawFile, Location), Box<ConfigError>> {
    if yaml.len() > MAX_FILE_BYTES {
        return Err(Box::new(ConfigError::whole_file(
            file,
            format!("a rules file of at most {MAX_FILE_BYTES} bytes"),
            format!("{} bytes", yaml.len()),
        )));
    }
    // The typed pass alone is all a valid file needs. The shape pass (as long again: each pass
    // is about half of loading 10,000 rules) only runs for a file the typed pass refused: it
    // maps the error's location to a field path, and a syntax error or budget breach fails it
    // too and is reported from there, as if it had run first.
    match serde_saphyr::from_str_with_options::<Spanned<RawFile>>(yaml, options()) {
        Ok(raw) => Ok((raw.value, raw.referenced)),
        Err(typed) => {
            let shape: Spanned<Shape> = serde_saphyr::from_str_with_options(yaml, options())
                .map_err(|error| Box::new(from_yaml_error(file, yaml, None, &error)))?;
            Err(Box::new(from_yaml_error(file, yaml, Some(&shape), &typed)))
        }
    }
}

/// Converts a serde-saphyr error into a located `ConfigError`.
fn from_yaml_error(
    file: &str,
    source: &str,
    shape: Option<&Spanned<Shape>>,
    error: &serde_saphyr::Error,
) -> ConfigError {
    let location = error.location().unwrap_or(Location::UNKNOWN);
    let (field, text) = shape
        .and_then(|root| tree::locate(source, root, location.line(), location.column()))
        .unwrap_or_default();
    let (expected, found) = explain(innermost(error), text);
    ConfigError::at(file, location, field, expected, found)
}

/// The error under alias and snippet wrappers, which only add context we report ourselves.
fn innermost(error: &serde_saphyr::Error) -> &serde_saphyr::Error {
    match error {
        serde_saphyr::Error::AliasError { error, .. }
        | serde_saphyr::Error::WithSnippet { error, .. } => innermost(error),
        other => other,
    }
}

/// The expected/found pair for a parser error; `text` is the source at its location.
fn explain(error: &serde_saphyr::Error, text: String) -> (String, String) {
    use serde_saphyr::Error as E;
    let or_text = |fallback: &str| {
        if text.is_empty() {
            fallback.to_owned()
        } else {
            text.clone()
        }
    };
    match error {
        E::SerdeUnknownField {
            field, expected, ..
        } => {
            let allowed = if expected.is_empty() {
                "no keys here".to_owned()
            } else {
                format!("one of {}", expected.join(", "))
            };
            (allowed, format!("unknown key {field:?}"))
        }
        E::InvalidScalar { ty, .. } => {
            let expected = match *ty {
                "u32" => "a whole number from 0 to 4294967295".to_owned(),
                "boolean" => "true or false".to_owned(),
                other => format!("a {other}"),
            };
            (expected, or_text("nothing"))
        }
        E::Unexpected { expected, .. } => {
            let expected = match *expected {
                "sequence start" => "a list".to_owned(),
                "mapping start" => "a mapping".to_owned(),
                "string scalar" => "a string".to_owned(),
                other => other.to_owned(),
            };
            (expected, or_text("something else"))
        }
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => (expected.clone(), unexpected.clone()),
        E::DuplicateMappingKey { key, .. } => (
            "each key at most once per mapping".to_owned(),
            match key {
                Some(key) => format!("key {key:?} again"),
                None => "a repeated key".to_owned(),
            },
        ),
        E::MultipleDocuments { .. } => (
            "a single YAML document".to_owned(),
            "several documents separated by ---".to_owned(),
        ),
        E::Budget { breach, .. } => (
            within_limits(),
            format!("a document over them ({breach:?})"),
        ),
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. } => (
            within_limits(),
            format!("aliases that expand to more than {MAX_REPLAYED_EVENTS} events"),
        ),
        other => (
            "valid YAML".to_owned(),
            UserMessageFormatter.format_message(other).into_owned(),
        ),
    }
}

fn within_limits() -> String {
    format!(
        "a document within the parser limits ({MAX_NODES} nodes, nesting depth {MAX_DEPTH}, \
         {MAX_ALIASES} aliases expanding to {MAX_REPLAYED_EVENTS} events)"
    )
}
