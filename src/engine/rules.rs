//! The compiled rule set: one immutable tree of descriptor rules per domain, and the lookup
//! that finds the rule for a request descriptor with envoyproxy/ratelimit's exact semantics.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState;

use super::limit::Limit;
use super::quota::QuotaSettings;
use super::request::Entry;
use super::response::{BodyTemplate, ResponsePolicy};

type FastMap<K, V> = HashMap<K, V, RandomState>;

/// What a matched rule does with a descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Never limited and never counted (`unlimited: true`).
    Unlimited,
    /// Counted against every limit in the list; over limit when any one is exceeded.
    Limited(Box<[Limit]>),
}

/// A rule attached to a node of the descriptor tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The rule's path in the tree, e.g. `plan_pro.api_key` (exact values as `key_value`).
    pub key_path: Arc<str>,
    /// What happens to a descriptor that matches.
    pub policy: Policy,
    /// Counted and reported, but never rejects.
    pub shadow_mode: bool,
    /// Metrics for this rule may carry the request's values.
    pub detailed_metric: bool,
    /// Part of a quota group: the request fails only if every quota-mode descriptor in it is
    /// over its limit (or any ordinary one is).
    pub quota_mode: bool,
    /// This rule's own 429 body, used instead of the domain's when this rule decides.
    pub over_limit_body: Option<Arc<BodyTemplate>>,
}

impl Rule {
    /// A rule at `key_path` enforcing `limits`, with every flag off and no body of its own.
    pub fn limited(key_path: &str, limits: impl Into<Box<[Limit]>>) -> Self {
        Self {
            key_path: key_path.into(),
            policy: Policy::Limited(limits.into()),
            shadow_mode: false,
            detailed_metric: false,
            quota_mode: false,
            over_limit_body: None,
        }
    }
}

/// A `*` pattern on a descriptor value; `*` matches any run of characters, anywhere, several times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValuePattern {
    pattern: Box<str>,
}

impl ValuePattern {
    /// A pattern from its YAML text (which contains at least one `*`).
    pub fn new(pattern: &str) -> Self {
        Self {
            pattern: pattern.into(),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `value` matches the whole pattern.
    pub fn matches(&self, value: &str) -> bool {
        let mut parts = self.pattern.split('*');
        let first = parts.next().unwrap_or("");
        let Some(mut rest) = value.strip_prefix(first) else {
            return false;
        };
        let mut parts = parts.peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                // The last literal must sit at the very end of the value.
                return rest.len() >= part.len() && rest.ends_with(part);
            }
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        // No `*` at all: the prefix had to be the whole value.
        rest.is_empty()
    }
}

/// One node of a descriptor tree: an optional rule and the nodes one level deeper.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// The rule for descriptors that end at this node.
    pub rule: Option<Rule>,
    /// Rules for longer descriptors.
    pub children: Children,
}

impl Node {
    /// A node holding `rule`, with no deeper descriptors.
    pub fn leaf(rule: Rule) -> Self {
        Self {
            rule: Some(rule),
            children: Children::default(),
        }
    }
}

/// All nodes for one descriptor key at one level: exact values, patterns, then the key-only default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyBranch {
    exact: FastMap<Box<str>, Node>,
    patterns: Vec<(ValuePattern, Node)>,
    default: Option<Box<Node>>,
}

impl KeyBranch {
    /// Every node of the branch: exact values, patterns, then the default.
    fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.exact
            .values()
            .chain(self.patterns.iter().map(|(_, node)| node))
            .chain(self.default.as_deref())
    }

    /// Finds the node for `value`: exact first, then the first matching pattern, then the default.
    fn find(&self, value: &str) -> Option<&Node> {
        if let Some(node) = self.exact.get(value) {
            return Some(node);
        }
        if let Some((_, node)) = self
            .patterns
            .iter()
            .find(|(pattern, _)| pattern.matches(value))
        {
            return Some(node);
        }
        self.default.as_deref()
    }
}

/// The nodes one level down, grouped by descriptor key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Children {
    by_key: FastMap<Box<str>, KeyBranch>,
}

impl Children {
    /// Adds a node for `key` = `value` (exact), returning false when one already exists.
    pub fn insert_exact(&mut self, key: &str, value: &str, node: Node) -> bool {
        let branch = self.by_key.entry(key.into()).or_default();
        if branch.exact.contains_key(value) {
            return false;
        }
        branch.exact.insert(value.into(), node);
        true
    }

    /// Adds a node for `key` with a `*` value pattern, returning false when the same pattern exists.
    pub fn insert_pattern(&mut self, key: &str, pattern: ValuePattern, node: Node) -> bool {
        let branch = self.by_key.entry(key.into()).or_default();
        if branch
            .patterns
            .iter()
            .any(|(existing, _)| *existing == pattern)
        {
            return false;
        }
        branch.patterns.push((pattern, node));
        true
    }

    /// Adds the key-only default node for `key`, returning false when one already exists.
    pub fn insert_default(&mut self, key: &str, node: Node) -> bool {
        let branch = self.by_key.entry(key.into()).or_default();
        if branch.default.is_some() {
            return false;
        }
        branch.default = Some(Box::new(node));
        true
    }

    /// Whether this level holds no nodes.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Every node at this level with the key and the value text (`None` for the key-only default).
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>, &Node)> {
        self.by_key.iter().flat_map(|(key, branch)| {
            let exact = branch
                .exact
                .iter()
                .map(move |(value, node)| (&**key, Some(&**value), node));
            let patterns = branch
                .patterns
                .iter()
                .map(move |(pattern, node)| (&**key, Some(pattern.as_str()), node));
            let default = branch
                .default
                .iter()
                .map(move |node| (&**key, None, &**node));
            exact.chain(patterns).chain(default)
        })
    }
}

/// A key some limit of the domain bans values of, and the rule and limit a banned descriptor
/// reports (the first such limit in the tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanTarget {
    /// The banned descriptor key.
    pub key: Arc<str>,
    /// The rule holding the banning limit.
    pub rule: Rule,
    /// Index of the banning limit among the rule's limits.
    limit: usize,
}

impl BanTarget {
    /// The limit whose `ban` targets this key.
    pub fn limit(&self) -> Option<&Limit> {
        match &self.rule.policy {
            Policy::Limited(limits) => limits.get(self.limit),
            Policy::Unlimited => None,
        }
    }
}

/// Every key banned by some limit under `level`, first occurrence first.
fn collect_ban_targets(level: &Children, targets: &mut Vec<BanTarget>) {
    let mut nodes: Vec<&Node> = level.by_key.values().flat_map(KeyBranch::nodes).collect();
    // Map order is random; a stable order keeps which rule a banned descriptor reports stable.
    nodes.sort_by(|a, b| {
        let path = |node: &Node| node.rule.as_ref().map(|rule| rule.key_path.clone());
        path(a).cmp(&path(b))
    });
    for node in nodes {
        if let Some(rule) = &node.rule
            && let Policy::Limited(limits) = &rule.policy
        {
            for (index, limit) in limits.iter().enumerate() {
                let Some(ban) = &limit.ban else { continue };
                if targets.iter().all(|target| target.key != ban.key) {
                    targets.push(BanTarget {
                        key: Arc::clone(&ban.key),
                        rule: rule.clone(),
                        limit: index,
                    });
                }
            }
        }
        collect_ban_targets(&node.children, targets);
    }
}

/// The rules of one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRules {
    name: Arc<str>,
    root: Children,
    count_rejected_hits: bool,
    allow_limit_overrides: bool,
    response: Option<Arc<ResponsePolicy>>,
    ban_targets: Box<[BanTarget]>,
    quota: QuotaSettings,
}

impl DomainRules {
    /// A domain with the given top-level descriptor nodes, counting rejected hits and honouring
    /// caller-supplied limits, as envoyproxy/ratelimit does.
    pub fn new(name: &str, root: Children) -> Self {
        let mut ban_targets = Vec::new();
        collect_ban_targets(&root, &mut ban_targets);
        Self {
            name: name.into(),
            root,
            count_rejected_hits: true,
            allow_limit_overrides: true,
            response: None,
            ban_targets: ban_targets.into(),
            quota: QuotaSettings::default(),
        }
    }

    /// Sets how Rate Limit Quota buckets map onto this domain's rules (the `rlqs:` block).
    pub fn with_quota_settings(mut self, quota: QuotaSettings) -> Self {
        self.quota = quota;
        self
    }

    /// How Rate Limit Quota buckets map onto this domain's rules.
    pub fn quota_settings(&self) -> &QuotaSettings {
        &self.quota
    }

    /// The ban on values of `key` in this domain, if any limit bans them.
    pub fn ban_target(&self, key: &str) -> Option<&BanTarget> {
        self.ban_targets.iter().find(|target| &*target.key == key)
    }

    /// Whether any limit in this domain bans callers.
    pub fn has_bans(&self) -> bool {
        !self.ban_targets.is_empty()
    }

    /// Sets the headers and body this domain's answers carry.
    pub fn with_response(mut self, response: ResponsePolicy) -> Self {
        self.response = Some(Arc::new(response));
        self
    }

    /// The headers and body this domain's answers carry, when the domain chose them (else the
    /// server-wide default applies).
    pub fn response(&self) -> Option<&ResponsePolicy> {
        self.response.as_deref()
    }

    /// Sets whether a rejected request still consumes its hits (`count_rejected_hits`).
    pub fn with_count_rejected_hits(mut self, count: bool) -> Self {
        self.count_rejected_hits = count;
        self
    }

    /// Sets whether a descriptor's own `limit` replaces the configured one.
    pub fn with_limit_overrides(mut self, allow: bool) -> Self {
        self.allow_limit_overrides = allow;
        self
    }

    /// Whether a rejected request still consumes its hits.
    pub fn counts_rejected_hits(&self) -> bool {
        self.count_rejected_hits
    }

    /// Whether a descriptor's own `limit` replaces the configured one.
    pub fn allows_limit_overrides(&self) -> bool {
        self.allow_limit_overrides
    }

    /// The domain's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The top-level descriptor nodes.
    pub fn root(&self) -> &Children {
        &self.root
    }

    /// The rule for a request descriptor, following envoyproxy/ratelimit: at each level the exact
    /// value wins over a pattern, a pattern over the key-only default; an exact match stops the
    /// fallback (so an exact value without limit or children whitelists it); and only a node at
    /// exactly the descriptor's depth applies.
    pub fn find(&self, entries: &[Entry<'_>]) -> Option<&Rule> {
        let mut level = &self.root;
        let last = entries.len().checked_sub(1)?;
        for (depth, entry) in entries.iter().enumerate() {
            let node = level.by_key.get(entry.key)?.find(entry.value)?;
            if depth == last {
                return node.rule.as_ref();
            }
            if node.children.is_empty() {
                return None;
            }
            level = &node.children;
        }
        None
    }
}

/// Up to this many domains, [`RuleSet::domain`] compares names instead of hashing.
const FEW_DOMAINS: usize = 4;

/// Every domain's rules: the immutable snapshot each request decides against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    domains: FastMap<Box<str>, DomainRules>,
}

impl RuleSet {
    /// A rule set from domains with distinct names (a later duplicate replaces an earlier one;
    /// the config compiler reports duplicates before it gets here).
    pub fn new(domains: impl IntoIterator<Item = DomainRules>) -> Self {
        Self {
            domains: domains
                .into_iter()
                .map(|domain| (Box::from(domain.name()), domain))
                .collect(),
        }
    }

    /// One domain in which every value of `key` is held to `limits`, one counter per value.
    pub fn per_value(domain: &str, key: &str, limits: impl Into<Box<[Limit]>>) -> Self {
        let mut root = Children::default();
        root.insert_default(key, Node::leaf(Rule::limited(key, limits)));
        Self::new([DomainRules::new(domain, root)])
    }

    /// One domain in which every value of `inner` under any value of `outer` follows `rule`
    /// (one counter per pair; `outer` alone has no rule).
    pub fn per_value_pair(domain: &str, outer: &str, inner: &str, rule: Rule) -> Self {
        let mut children = Children::default();
        children.insert_default(inner, Node::leaf(rule));
        let mut root = Children::default();
        root.insert_default(
            outer,
            Node {
                rule: None,
                children,
            },
        );
        Self::new([DomainRules::new(domain, root)])
    }

    /// The rules of `domain`, if it is configured.
    pub fn domain(&self, domain: &str) -> Option<&DomainRules> {
        // With a handful of domains (the usual deployment), comparing names is cheaper than
        // hashing the request's domain: this lookup runs once per request.
        if self.domains.len() <= FEW_DOMAINS {
            return self.domains.values().find(|rules| rules.name() == domain);
        }
        self.domains.get(domain)
    }

    /// Every configured domain, in no particular order.
    pub fn domains(&self) -> impl Iterator<Item = &DomainRules> {
        self.domains.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::limit::{TimeUnit, Window};

    fn limited(path: &str, per_minute: u32) -> Node {
        Node::leaf(Rule::limited(
            path,
            [Limit::new(per_minute, Window::of(TimeUnit::Minute))],
        ))
    }

    fn entries<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<Entry<'a>> {
        pairs
            .iter()
            .map(|(key, value)| Entry { key, value })
            .collect()
    }

    fn path_of<'a>(domain: &'a DomainRules, pairs: &[(&str, &str)]) -> Option<&'a str> {
        domain.find(&entries(pairs)).map(|rule| &*rule.key_path)
    }

    #[test]
    fn patterns_match_stars_anywhere() {
        let pattern = ValuePattern::new("/api/*/users/*");
        assert!(pattern.matches("/api/v1/users/42"));
        assert!(!pattern.matches("/api/v1/teams/42"));
        assert!(ValuePattern::new("*").matches(""));
        assert!(ValuePattern::new("a*b*c").matches("abc"));
        assert!(!ValuePattern::new("a*b*c").matches("acb"));
        assert!(ValuePattern::new("*.example.com").matches("x.example.com"));
        assert!(!ValuePattern::new("ab*ba").matches("aba"));
    }

    #[test]
    fn exact_beats_pattern_beats_default_and_first_pattern_wins() {
        let mut root = Children::default();
        root.insert_exact("path", "/login", limited("path_/login", 1));
        root.insert_pattern("path", ValuePattern::new("/log*"), limited("path_/log*", 2));
        root.insert_pattern("path", ValuePattern::new("/lo*"), limited("path_/lo*", 3));
        root.insert_default("path", limited("path", 4));
        let domain = DomainRules::new("d", root);
        assert_eq!(path_of(&domain, &[("path", "/login")]), Some("path_/login"));
        assert_eq!(path_of(&domain, &[("path", "/logout")]), Some("path_/log*"));
        assert_eq!(path_of(&domain, &[("path", "/lost")]), Some("path_/lo*"));
        assert_eq!(path_of(&domain, &[("path", "/x")]), Some("path"));
        assert_eq!(path_of(&domain, &[("other", "/x")]), None);
    }

    #[test]
    fn exact_value_without_rule_or_children_whitelists() {
        let mut root = Children::default();
        root.insert_exact("path", "/health", Node::default());
        root.insert_default("path", limited("path", 4));
        let domain = DomainRules::new("d", root);
        assert_eq!(path_of(&domain, &[("path", "/health")]), None);
        assert_eq!(path_of(&domain, &[("path", "/other")]), Some("path"));
    }

    #[test]
    fn depth_must_match_exactly() {
        let mut plan = limited("plan_pro", 10);
        plan.children
            .insert_default("api_key", limited("plan_pro.api_key", 5));
        let mut root = Children::default();
        root.insert_exact("plan", "pro", plan);
        let domain = DomainRules::new("d", root);
        assert_eq!(path_of(&domain, &[("plan", "pro")]), Some("plan_pro"));
        assert_eq!(
            path_of(&domain, &[("plan", "pro"), ("api_key", "k")]),
            Some("plan_pro.api_key")
        );
        assert_eq!(
            path_of(&domain, &[("plan", "pro"), ("api_key", "k"), ("x", "y")]),
            None
        );
        assert_eq!(path_of(&domain, &[("plan", "pro"), ("user", "u")]), None);
        assert_eq!(path_of(&domain, &[]), None);
    }

    #[test]
    fn duplicate_inserts_are_refused() {
        let mut root = Children::default();
        assert!(root.insert_exact("k", "v", Node::default()));
        assert!(!root.insert_exact("k", "v", Node::default()));
        assert!(root.insert_default("k", Node::default()));
        assert!(!root.insert_default("k", Node::default()));
        assert!(root.insert_pattern("k", ValuePattern::new("a*"), Node::default()));
        assert!(!root.insert_pattern("k", ValuePattern::new("a*"), Node::default()));
    }
}
