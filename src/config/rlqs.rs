//! The domain's `rlqs:` block (quotad extension): how Envoy's Rate Limit Quota buckets map onto
//! the domain's descriptor rules. `bucket_entries` lists the bucket keys that come first, in
//! descriptor order (the others follow, sorted); `no_match` is what an unmatched bucket gets.
//!
//! ```yaml
//! rlqs:
//!   bucket_entries: [name, api_key]
//!   no_match: allow      # or deny
//! ```

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::compile::Ctx;
use crate::engine::quota::{NoMatch, QuotaSettings};

/// `rlqs:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRlqs {
    pub(crate) bucket_entries: Option<Vec<Spanned<String>>>,
    pub(crate) no_match: Option<Spanned<String>>,
}

/// The domain's quota settings; problems are reported and the defaults kept in their place.
pub(crate) fn settings(ctx: &mut Ctx<'_>, raw: Option<&Spanned<RawRlqs>>) -> QuotaSettings {
    let Some(raw) = raw.map(|raw| &raw.value) else {
        return QuotaSettings::default();
    };
    let mut keys: Vec<&str> = Vec::new();
    for (index, key) in raw.bucket_entries.iter().flatten().enumerate() {
        let field = format!("rlqs.bucket_entries[{index}]");
        if key.value.is_empty() {
            ctx.report(key.referenced, field, "a non-empty bucket key", "\"\"");
        } else if keys.contains(&key.value.as_str()) {
            let found = format!("{:?} again", key.value);
            ctx.report(key.referenced, field, "each bucket key once", found);
        } else {
            keys.push(&key.value);
        }
    }
    let no_match = match &raw.no_match {
        None => NoMatch::default(),
        Some(written) => NoMatch::parse(&written.value).unwrap_or_else(|| {
            let found = format!("{:?}", written.value);
            ctx.report(written.referenced, "rlqs.no_match", NoMatch::NAMES, found);
            NoMatch::default()
        }),
    };
    QuotaSettings::new(keys, no_match)
}

#[cfg(test)]
mod tests {
    use super::super::compile_str;
    use super::super::error::ConfigError;
    use crate::engine::quota::{NoMatch, QuotaSettings};

    fn errors(yaml: &str) -> Vec<ConfigError> {
        match compile_str("api.yaml", yaml) {
            Ok(_) => panic!("expected errors for:\n{yaml}"),
            Err(errors) => errors.into_iter().collect(),
        }
    }

    #[test]
    fn the_block_reaches_the_domain() {
        let yaml = "domain: api\nrlqs:\n  bucket_entries: [name, api_key]\n  no_match: deny\n";
        let rules = compile_str("api.yaml", yaml).expect("valid");
        let domain = rules.domain("api").expect("domain");
        let expected = QuotaSettings::new(["name", "api_key"], NoMatch::Deny);
        assert_eq!(domain.quota_settings(), &expected);
        let plain = compile_str("api.yaml", "domain: api\n").expect("valid");
        assert_eq!(
            plain.domain("api").expect("domain").quota_settings(),
            &QuotaSettings::default()
        );
    }

    #[test]
    fn every_problem_is_located() {
        let yaml = "domain: api\nrlqs:\n  bucket_entries: [name, \"\", name]\n  no_match: block\n";
        let found: Vec<(Option<usize>, String, String, String)> = errors(yaml)
            .into_iter()
            .map(|error| (error.line, error.field, error.expected, error.found))
            .collect();
        let at = |field: &str, expected: &str, value: &str| {
            (
                Some(3),
                field.to_owned(),
                expected.to_owned(),
                value.to_owned(),
            )
        };
        assert_eq!(
            found,
            [
                at("rlqs.bucket_entries[1]", "a non-empty bucket key", "\"\""),
                at(
                    "rlqs.bucket_entries[2]",
                    "each bucket key once",
                    "\"name\" again"
                ),
                (
                    Some(4),
                    "rlqs.no_match".to_owned(),
                    "allow or deny".to_owned(),
                    "\"block\"".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let found = errors("domain: api\nrlqs:\n  entries: [name]\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].line, Some(3), "{found:?}");
        assert!(found[0].found.contains("entries"), "{found:?}");
    }
}
