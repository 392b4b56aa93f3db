//! Raw model to engine model: builds one domain's descriptor tree and collects every semantic
//! problem on the way instead of stopping at the first, so one run tells the operator everything
//! that is wrong with a file. The per-limit checks live in `limits`.

use std::sync::Arc;

use serde_saphyr::{Location, Spanned};

use super::error::{ConfigError, ConfigErrors};
use super::limits;
use super::model::RawDescriptor;
use super::parse;
use super::response;
use super::rlqs;
use crate::engine::{Algorithm, Children, DomainRules, Node, Rule, RuleSet, ValuePattern};

/// Errors found so far in one file, and the file's name for each of them.
pub(crate) struct Ctx<'a> {
    file: &'a str,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    /// Records one problem and lets compilation carry on.
    pub(crate) fn report(
        &mut self,
        at: Location,
        field: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) {
        self.errors
            .push(ConfigError::at(self.file, at, field, expected, found));
    }

    /// How many problems have been recorded, to tell whether a check added one.
    pub(crate) fn error_count(&self) -> usize {
        self.errors.len()
    }
}

/// One file's compiled domain and where its name is written (for duplicate-domain errors).
#[derive(Debug)]
pub(crate) struct CompiledFile {
    pub(crate) rules: DomainRules,
    pub(crate) domain_at: Location,
}

/// Compiles one file's text (`file` names it in errors) into a rule set of its one domain.
pub fn compile_str(file: &str, yaml: &str) -> Result<RuleSet, ConfigErrors> {
    compile_file(file, yaml)
        .map(|compiled| RuleSet::new([compiled.rules]))
        .map_err(ConfigErrors::new)
}

/// Compiles one file's text into its domain, or every problem found in it.
pub(crate) fn compile_file(file: &str, yaml: &str) -> Result<CompiledFile, Vec<ConfigError>> {
    let (raw, root_at) = parse::parse(file, yaml).map_err(|error| vec![*error])?;
    let mut ctx = Ctx {
        file,
        errors: Vec::new(),
    };
    let (name, domain_at) = match &raw.domain {
        Some(domain) if !domain.value.trim().is_empty() => {
            (domain.value.as_str(), domain.referenced)
        }
        Some(domain) => {
            ctx.report(
                domain.referenced,
                "domain",
                "a non-empty domain name",
                format!("{:?}", domain.value),
            );
            ("", domain.referenced)
        }
        None => {
            ctx.report(root_at, "domain", "a non-empty domain name", "nothing");
            ("", root_at)
        }
    };
    let algorithm = match &raw.algorithm {
        Some(written) => {
            let algorithm = limits::algorithm(&mut ctx, written, "algorithm").unwrap_or_default();
            if matches!(algorithm, Algorithm::Concurrency | Algorithm::Distinct) {
                // Concurrency needs max_in_flight and distinct a nested rule: limit by limit.
                let expected = "a domain default of fixed_window, sliding_window or token_bucket \
                                (set concurrency or distinct on the limit)";
                let found = format!("{:?}", algorithm.name());
                ctx.report(written.referenced, "algorithm", expected, found);
            }
            algorithm
        }
        None => Algorithm::default(),
    };
    let root = match &raw.descriptors {
        Some(list) => compile_level(&mut ctx, list, "descriptors", "", algorithm, &[]),
        None => Children::default(),
    };
    let chose_response = raw.response_headers.is_some() || raw.over_limit_body.is_some();
    let response = response::policy(&mut ctx, &raw);
    let quota = rlqs::settings(&mut ctx, raw.rlqs.as_ref());
    if ctx.errors.is_empty() {
        let rules = DomainRules::new(name, root)
            .with_count_rejected_hits(raw.count_rejected_hits.unwrap_or(true))
            .with_limit_overrides(raw.allow_limit_overrides.unwrap_or(true))
            .with_quota_settings(quota);
        // A domain that says nothing about responses follows the server-wide default.
        let rules = if chose_response {
            rules.with_response(response)
        } else {
            rules
        };
        Ok(CompiledFile { rules, domain_at })
    } else {
        Err(ctx.errors)
    }
}

/// Where a key/value pair was first defined at a level, to name it in a duplicate error.
struct Seen<'a> {
    key: &'a str,
    value: Option<&'a str>,
    field: String,
    at: Location,
}

/// Compiles one list of descriptors into the nodes of one level.
fn compile_level(
    ctx: &mut Ctx<'_>,
    list: &[Spanned<RawDescriptor>],
    field_prefix: &str,
    key_path_prefix: &str,
    algorithm: Algorithm,
    path_keys: &[&str],
) -> Children {
    let mut children = Children::default();
    let mut seen: Vec<Seen<'_>> = Vec::new();
    for (index, descriptor) in list.iter().enumerate() {
        let field = format!("{field_prefix}[{index}]");
        let raw = &descriptor.value;
        let key = match &raw.key {
            Some(key) if !key.value.is_empty() => Some(key),
            Some(key) => {
                let found = format!("{:?}", key.value);
                ctx.report(
                    key.referenced,
                    format!("{field}.key"),
                    "a non-empty descriptor key",
                    found,
                );
                None
            }
            None => {
                let at = descriptor.referenced;
                ctx.report(
                    at,
                    format!("{field}.key"),
                    "a non-empty descriptor key",
                    "nothing",
                );
                None
            }
        };
        // envoyproxy/ratelimit reads an empty value as no value: a key-only default.
        let value = raw.value.as_ref().filter(|value| !value.value.is_empty());
        let key_text = key.map_or("", |key| key.value.as_str());
        let segment = match value {
            Some(value) => format!("{key_text}_{}", value.value),
            None => key_text.to_owned(),
        };
        let key_path = if key_path_prefix.is_empty() {
            segment
        } else {
            format!("{key_path_prefix}.{segment}")
        };
        let mut keys = path_keys.to_vec();
        keys.push(key_text);
        let node = compile_descriptor(ctx, raw, &field, &key_path, algorithm, &keys);
        let Some(key) = key else { continue };
        let inserted = match value {
            None => children.insert_default(&key.value, node),
            Some(value) if value.value.contains('*') => {
                children.insert_pattern(&key.value, ValuePattern::new(&value.value), node)
            }
            Some(value) => children.insert_exact(&key.value, &value.value, node),
        };
        let value_text = value.map(|value| value.value.as_str());
        if !inserted {
            let first = seen
                .iter()
                .find(|seen| seen.key == key.value && seen.value == value_text);
            let first = first.map_or_else(String::new, |first| {
                format!(
                    ", first defined at {} (line {})",
                    first.field,
                    first.at.line()
                )
            });
            let (at, field, what) = match value {
                Some(value) => (
                    value.referenced,
                    format!("{field}.value"),
                    format!("{}={} again{first}", key.value, value.value),
                ),
                None => (
                    key.referenced,
                    format!("{field}.key"),
                    format!("{} with no value again{first}", key.value),
                ),
            };
            let expected = "a key and value not already defined at this level";
            ctx.report(at, field, expected, what);
        }
        seen.push(Seen {
            key: &key.value,
            value: value_text,
            field,
            at: value.map_or(key.referenced, |value| value.referenced),
        });
    }
    children
}

/// Compiles one descriptor: its own rule (if it has limits) and its nested descriptors.
fn compile_descriptor(
    ctx: &mut Ctx<'_>,
    raw: &RawDescriptor,
    field: &str,
    key_path: &str,
    algorithm: Algorithm,
    path_keys: &[&str],
) -> Node {
    // A node without limits gets no rule even when shadow_mode or detailed_metric is set:
    // both only qualify a limit, so there is nothing for them to change.
    let context = limits::Context {
        algorithm,
        path_keys,
    };
    let rule = limits::policy(ctx, raw, field, context).map(|policy| Rule {
        key_path: key_path.into(),
        policy,
        shadow_mode: raw.shadow_mode.unwrap_or(false),
        detailed_metric: raw.detailed_metric.unwrap_or(false),
        quota_mode: raw.quota_mode.unwrap_or(false),
        over_limit_body: raw.over_limit_body.as_ref().and_then(|body| {
            let field = format!("{field}.over_limit_body.template");
            response::body_from(ctx, &body.value, &field).map(Arc::new)
        }),
    });
    let children = match &raw.descriptors {
        Some(list) => {
            let prefix = format!("{field}.descriptors");
            compile_level(ctx, list, &prefix, key_path, algorithm, path_keys)
        }
        None => Children::default(),
    };
    Node { rule, children }
}
