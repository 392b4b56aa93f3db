//! A domain's Rate Limit Quota settings: how a bucket's string map becomes ordered descriptor
//! entries (so a bucket matches the same rules a `ShouldRateLimit` descriptor does), and what
//! a bucket no rule matches is told.

use smallvec::SmallVec;

use super::super::request::Entry;

/// What a bucket that no rule matches is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoMatch {
    /// Admit everything (ALLOW_ALL), as `ShouldRateLimit` answers OK for unmatched descriptors.
    #[default]
    Allow,
    /// Refuse everything (DENY_ALL): only buckets with a rule get traffic through.
    Deny,
}

impl NoMatch {
    /// The spellings accepted in YAML.
    pub const NAMES: &'static str = "allow or deny";

    /// Parses `allow` or `deny`, case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("allow") {
            Some(Self::Allow)
        } else if name.eq_ignore_ascii_case("deny") {
            Some(Self::Deny)
        } else {
            None
        }
    }
}

/// A domain's RLQS settings (the `rlqs:` block of its rules file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaSettings {
    bucket_entries: Box<[Box<str>]>,
    no_match: NoMatch,
}

impl QuotaSettings {
    /// Settings that order bucket keys by `bucket_entries` (then the rest sorted) and answer
    /// unmatched buckets with `no_match`.
    pub fn new<K: Into<Box<str>>>(
        bucket_entries: impl IntoIterator<Item = K>,
        no_match: NoMatch,
    ) -> Self {
        Self {
            bucket_entries: bucket_entries.into_iter().map(Into::into).collect(),
            no_match,
        }
    }

    /// The keys that come first, in this order.
    pub fn bucket_entries(&self) -> &[Box<str>] {
        &self.bucket_entries
    }

    /// What an unmatched bucket is told.
    pub fn no_match(&self) -> NoMatch {
        self.no_match
    }

    /// A bucket map as descriptor entries: the keys listed in `bucket_entries` first, in list
    /// order (a listed key the bucket lacks is skipped), then every other key in byte order.
    /// Sorting makes the order independent of how the map was serialized.
    pub fn entries<'a>(
        &self,
        bucket: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> SmallVec<[Entry<'a>; 4]> {
        let mut entries: SmallVec<[Entry<'a>; 4]> = bucket
            .into_iter()
            .map(|(key, value)| Entry { key, value })
            .collect();
        let rank = |key: &str| {
            self.bucket_entries
                .iter()
                .position(|listed| &**listed == key)
                .unwrap_or(self.bucket_entries.len())
        };
        entries
            .sort_unstable_by(|a, b| rank(a.key).cmp(&rank(b.key)).then_with(|| a.key.cmp(b.key)));
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(settings: &QuotaSettings, pairs: &[(&'static str, &'static str)]) -> Vec<&'static str> {
        settings
            .entries(pairs.iter().copied())
            .iter()
            .map(|entry| entry.key)
            .collect()
    }

    #[test]
    fn listed_keys_come_first_then_the_rest_sorted() {
        let settings = QuotaSettings::new(["name", "api_key"], NoMatch::Allow);
        let pairs = [
            ("zone", "z"),
            ("api_key", "K"),
            ("b", "1"),
            ("name", "edge"),
        ];
        assert_eq!(keys(&settings, &pairs), ["name", "api_key", "b", "zone"]);
    }

    #[test]
    fn without_a_list_keys_are_sorted() {
        let settings = QuotaSettings::default();
        let pairs = [("name", "edge"), ("api_key", "K")];
        assert_eq!(keys(&settings, &pairs), ["api_key", "name"]);
        assert_eq!(settings.no_match(), NoMatch::Allow);
    }

    #[test]
    fn no_match_parses_both_spellings_only() {
        assert_eq!(NoMatch::parse("Deny"), Some(NoMatch::Deny));
        assert_eq!(NoMatch::parse("allow"), Some(NoMatch::Allow));
        assert_eq!(NoMatch::parse("block"), None);
    }
}
