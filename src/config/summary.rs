//! A one-line-per-domain account of what was loaded ("domain api: 14 rules, 19 limits"), for the
//! startup and reload logs, so an operator can see at a glance that the rules they meant loaded.

use std::fmt;

use crate::engine::{Children, Policy, RuleSet};

/// How many rules and limits one domain has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSummary {
    /// The domain's name.
    pub domain: String,
    /// Descriptor nodes that carry a rule (limited or unlimited).
    pub rules: usize,
    /// Limits across those rules (an unlimited rule has none).
    pub limits: usize,
}

impl fmt::Display for DomainSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "domain {}: {} rules, {} limits",
            self.domain, self.rules, self.limits
        )
    }
}

/// One summary per domain, sorted by domain name.
pub fn summarize(rules: &RuleSet) -> Vec<DomainSummary> {
    let mut summaries: Vec<DomainSummary> = rules
        .domains()
        .map(|domain| {
            let mut summary = DomainSummary {
                domain: domain.name().to_owned(),
                rules: 0,
                limits: 0,
            };
            count(domain.root(), &mut summary);
            summary
        })
        .collect();
    summaries.sort_by(|a, b| a.domain.cmp(&b.domain));
    summaries
}

fn count(level: &Children, summary: &mut DomainSummary) {
    for (_, _, node) in level.iter() {
        if let Some(rule) = &node.rule {
            summary.rules += 1;
            if let Policy::Limited(limits) = &rule.policy {
                summary.limits += limits.len();
            }
        }
        count(&node.children, summary);
    }
}
