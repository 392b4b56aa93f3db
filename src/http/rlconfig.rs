//! The text of `GET /rlconfig`: which configuration is serving (version, load time, last reload
//! error) and every limit on one line, sorted, so operators can diff two instances or grep
//! for a rule. Rendering is separate from the handler so it is tested without a server.

use std::fmt::Write as _;

use crate::clock::Timestamp;
use crate::config::ReloadStatus;
use crate::engine::{Children, Limit, Policy, Rule, RuleSet, Window};

/// The whole page for `rules`, with the reload `status` when the rules came from a file.
pub(super) fn render(rules: &RuleSet, status: Option<&ReloadStatus>) -> String {
    let mut page = String::new();
    match status {
        None => page.push_str("# version: rules built in code (no config path)\n"),
        Some(status) => header(&mut page, status),
    }
    let mut lines = Vec::new();
    for domain in rules.domains() {
        walk(domain.name(), domain.root(), &mut lines);
    }
    lines.sort();
    for line in lines {
        page.push_str(&line);
        page.push('\n');
    }
    page
}

fn header(page: &mut String, status: &ReloadStatus) {
    let _ = writeln!(
        page,
        "# version {} loaded {} from {}",
        status.version,
        rfc3339(status.loaded_at),
        status.path.display()
    );
    match &status.last_failure {
        None => page.push_str("# last reload error: none\n"),
        Some(failure) => {
            let state = if status.failing {
                "the files on disk are still invalid; the version above keeps serving"
            } else {
                "a later reload succeeded"
            };
            let _ = writeln!(
                page,
                "# last reload error at {} ({}), {} error(s); {state}:",
                rfc3339(failure.at),
                failure.trigger,
                failure.errors.len()
            );
            for error in failure.errors.errors() {
                let _ = writeln!(page, "#   {error}");
            }
        }
    }
}

fn walk(domain: &str, level: &Children, lines: &mut Vec<String>) {
    for (_, _, node) in level.iter() {
        if let Some(rule) = &node.rule {
            rule_lines(domain, rule, lines);
        }
        walk(domain, &node.children, lines);
    }
}

fn rule_lines(domain: &str, rule: &Rule, lines: &mut Vec<String>) {
    let mut flags = String::new();
    if rule.shadow_mode {
        flags.push_str(", shadow_mode");
    }
    if rule.detailed_metric {
        flags.push_str(", detailed_metric");
    }
    match &rule.policy {
        Policy::Limited(limits) => {
            for limit in limits.iter() {
                lines.push(format!(
                    "{domain} {}: {}{flags}",
                    rule.key_path,
                    describe(limit)
                ));
            }
        }
        Policy::Unlimited => lines.push(format!("{domain} {}: unlimited{flags}", rule.key_path)),
    }
}

/// `50 per minute, fixed_window[, name=…][, replaces=…][, soft]`.
fn describe(limit: &Limit) -> String {
    let mut text = format!(
        "{} per {}, {}",
        limit.requests_per_unit,
        window(limit.window),
        limit.algorithm.name()
    );
    if let Some(name) = &limit.name {
        let _ = write!(text, ", name={name}");
    }
    if !limit.replaces.is_empty() {
        let _ = write!(text, ", replaces={}", limit.replaces.join(","));
    }
    if limit.soft {
        text.push_str(", soft");
    }
    text
}

fn window(window: Window) -> String {
    let unit = window.unit().name();
    match window.multiplier().get() {
        _ if window.is_calendar() => format!("calendar {unit}"),
        1 => unit.to_owned(),
        many => format!("{many} {unit}s"),
    }
}

/// `2024-06-01T12:00:00Z`, to the second.
pub(super) fn rfc3339(at: Timestamp) -> String {
    let seconds = i64::try_from(at.as_secs()).unwrap_or(i64::MAX);
    match time::OffsetDateTime::from_unix_timestamp(seconds) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("@{seconds}"),
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::engine::{Algorithm, DomainRules, Node, TimeUnit};

    fn node(policy: Policy, shadow_mode: bool, key_path: &str) -> Node {
        Node {
            rule: Some(Rule {
                key_path: key_path.into(),
                policy,
                shadow_mode,
                detailed_metric: false,
                quota_mode: false,
                over_limit_body: None,
            }),
            children: Children::default(),
        }
    }

    #[test]
    fn one_sorted_line_per_limit() {
        let ten_minutes = Window::new(TimeUnit::Minute, NonZeroU32::new(10).unwrap());
        let limits = Box::new([
            Limit::new(5, ten_minutes).named("burst"),
            Limit::new(1_000, Window::calendar(TimeUnit::Month).unwrap())
                .with_algorithm(Algorithm::SlidingWindow)
                .soft(),
        ]);
        let mut root = Children::default();
        root.insert_default("ip", node(Policy::Limited(limits), true, "ip"));
        root.insert_exact(
            "path",
            "/health",
            node(Policy::Unlimited, false, "path_/health"),
        );
        let page = render(&RuleSet::new([DomainRules::new("api", root)]), None);
        assert_eq!(
            page,
            "# version: rules built in code (no config path)\n\
             api ip: 1000 per calendar month, sliding_window, soft, shadow_mode\n\
             api ip: 5 per 10 minutes, fixed_window, name=burst, shadow_mode\n\
             api path_/health: unlimited\n"
        );
    }

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(
            rfc3339(Timestamp::from_secs(86_400 * 20_000 + 3_661)),
            "2024-10-04T01:01:01Z"
        );
    }
}
