//! Compile-rule tests: the YAML semantics quotad shares with envoyproxy/ratelimit (units, wildcards,
//! nesting, unlimited, key paths) and its extensions (rate_limits, multipliers, algorithms).

use std::num::NonZeroU32;

use super::compile_str;
use crate::engine::{
    Algorithm, DomainRules, Entry, Limit, Policy, Rule, RuleSet, TimeUnit, Window,
};

fn compile(yaml: &str) -> RuleSet {
    match compile_str("test.yaml", yaml) {
        Ok(rules) => rules,
        Err(errors) => panic!("expected the rules to compile:\n{errors}"),
    }
}

fn domain<'a>(rules: &'a RuleSet, name: &str) -> &'a DomainRules {
    rules.domain(name).expect("domain is configured")
}

fn find<'a>(domain: &'a DomainRules, pairs: &[(&'a str, &'a str)]) -> Option<&'a Rule> {
    let entries: Vec<Entry<'_>> = pairs
        .iter()
        .map(|(key, value)| Entry { key, value })
        .collect();
    domain.find(&entries)
}

fn limits(rule: &Rule) -> &[Limit] {
    match &rule.policy {
        Policy::Limited(limits) => limits,
        Policy::Unlimited => panic!("expected a limited rule"),
    }
}

fn window(unit: TimeUnit, multiplier: u32) -> Window {
    Window::new(unit, NonZeroU32::new(multiplier).expect("non-zero"))
}

#[test]
fn units_are_case_insensitive_and_values_keep_their_text() {
    let rules = compile(
        "domain: d\ndescriptors:\n  - key: k\n    value: 007\n    rate_limit: {unit: MiNuTe, requests_per_unit: 5}\n",
    );
    let rule = find(domain(&rules, "d"), &[("k", "007")]).expect("rule");
    assert_eq!(limits(rule), &[Limit::new(5, Window::of(TimeUnit::Minute))]);
    assert_eq!(&*rule.key_path, "k_007");
    // Values are strings whatever they look like: `true` and `1.0` are matched as written.
    let rules =
        compile("domain: d\ndescriptors:\n  - {key: k, value: true}\n  - {key: k, value: 1.0}\n");
    let paths: Vec<_> = domain(&rules, "d")
        .root()
        .iter()
        .map(|(_, value, _)| value)
        .collect();
    assert!(
        paths.contains(&Some("true")) && paths.contains(&Some("1.0")),
        "{paths:?}"
    );
}

#[test]
fn nested_descriptors_build_dotted_key_paths() {
    let yaml = "
domain: api
descriptors:
  - key: plan
    value: pro
    descriptors:
      - key: api_key
        rate_limit: {unit: second, requests_per_unit: 1}
";
    let rules = compile(yaml);
    let api = domain(&rules, "api");
    let rule = find(api, &[("plan", "pro"), ("api_key", "k1")]).expect("rule");
    assert_eq!(&*rule.key_path, "plan_pro.api_key");
    // The parent has children but no limit of its own.
    assert_eq!(find(api, &[("plan", "pro")]), None);
}

#[test]
fn wildcard_values_become_patterns_and_keep_their_text_in_the_path() {
    let yaml = "
domain: d
descriptors:
  - key: path
    value: /api/*
    rate_limit: {unit: hour, requests_per_unit: 3}
  - key: path
    rate_limit: {unit: hour, requests_per_unit: 9}
";
    let rules = compile(yaml);
    let d = domain(&rules, "d");
    let matched = find(d, &[("path", "/api/users")]).expect("pattern rule");
    assert_eq!(&*matched.key_path, "path_/api/*");
    assert_eq!(limits(matched)[0].requests_per_unit, 3);
    let fallback = find(d, &[("path", "/other")]).expect("default rule");
    assert_eq!(&*fallback.key_path, "path");
}

#[test]
fn unlimited_compiles_to_the_unlimited_policy() {
    let yaml = "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unlimited: true}\n";
    let rules = compile(yaml);
    let rule = find(domain(&rules, "d"), &[("k", "x")]).expect("rule");
    assert_eq!(rule.policy, Policy::Unlimited);
}

#[test]
fn rate_limits_multiplier_algorithm_and_replaces_compile() {
    let yaml = "
domain: d
algorithm: sliding_window
descriptors:
  - key: k
    shadow_mode: true
    detailed_metric: true
    rate_limits:
      - {unit: minute, requests_per_unit: 50, name: per_minute, replaces: [{name: old}]}
      - {unit: minute, unit_multiplier: 10, requests_per_unit: 300}
      - {unit: minute, requests_per_unit: 60, algorithm: fixed_window}
";
    let rules = compile(yaml);
    let rule = find(domain(&rules, "d"), &[("k", "v")]).expect("rule");
    assert!(rule.shadow_mode && rule.detailed_metric);
    let expected = [
        Limit::new(50, Window::of(TimeUnit::Minute))
            .with_algorithm(Algorithm::SlidingWindow)
            .named("per_minute")
            .replacing(&["old"]),
        Limit::new(300, window(TimeUnit::Minute, 10)).with_algorithm(Algorithm::SlidingWindow),
        Limit::new(60, Window::of(TimeUnit::Minute)),
    ];
    assert_eq!(limits(rule), &expected);
}

#[test]
fn an_exact_value_without_limit_whitelists_it() {
    let yaml = "
domain: d
descriptors:
  - key: path
    value: /healthz
  - key: path
    rate_limit: {unit: second, requests_per_unit: 10}
";
    let rules = compile(yaml);
    let d = domain(&rules, "d");
    assert_eq!(find(d, &[("path", "/healthz")]), None);
    assert!(find(d, &[("path", "/x")]).is_some());
}

#[test]
fn shadow_mode_without_a_limit_adds_no_rule() {
    let yaml = "domain: d\ndescriptors:\n  - key: k\n    shadow_mode: true\n";
    let rules = compile(yaml);
    assert_eq!(find(domain(&rules, "d"), &[("k", "v")]), None);
}

#[test]
fn an_empty_value_is_a_key_only_default_as_in_envoyproxy() {
    let yaml = "domain: d\ndescriptors:\n  - key: k\n    value: ''\n    rate_limit: {unit: day, requests_per_unit: 1}\n";
    let rules = compile(yaml);
    let rule = find(domain(&rules, "d"), &[("k", "anything")]).expect("rule");
    assert_eq!(&*rule.key_path, "k");
}

#[test]
fn a_domain_without_descriptors_is_valid() {
    let rules = compile("domain: empty\n");
    assert!(domain(&rules, "empty").root().is_empty());
}

#[test]
fn zero_requests_per_unit_is_a_valid_block_everything_limit() {
    let yaml = "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 0}\n";
    let rules = compile(yaml);
    let rule = find(domain(&rules, "d"), &[("k", "v")]).expect("rule");
    assert_eq!(limits(rule)[0].requests_per_unit, 0);
}

#[test]
fn extensions_soft_calendar_and_domain_switches_compile() {
    let rules = compile(
        "domain: d\ncount_rejected_hits: false\nallow_limit_overrides: false\ndescriptors:\n  - key: plan\n    rate_limits:\n      - {unit: month, requests_per_unit: 5000, calendar: true}\n      - {unit: minute, requests_per_unit: 10, soft: true}\n",
    );
    let domain = domain(&rules, "d");
    assert!(!domain.counts_rejected_hits());
    assert!(!domain.allows_limit_overrides());
    let rule = find(domain, &[("plan", "x")]).expect("rule");
    let calendar_month = Window::calendar(TimeUnit::Month).expect("months have a calendar");
    assert_eq!(
        limits(rule),
        &[
            Limit::new(5000, calendar_month),
            Limit::new(10, Window::of(TimeUnit::Minute)).soft(),
        ]
    );
    let defaults = compile("domain: e\n");
    assert!(domain_defaults_match_envoyproxy(self::domain(
        &defaults, "e"
    )));
}

fn domain_defaults_match_envoyproxy(domain: &DomainRules) -> bool {
    domain.counts_rejected_hits() && domain.allows_limit_overrides()
}

#[test]
fn calendar_needs_a_calendar_unit_one_unit_and_fixed_windows() {
    let cases = [
        (
            "{unit: minute, requests_per_unit: 1, calendar: true}",
            "calendar: true only with unit week, month or year",
        ),
        (
            "{unit: month, unit_multiplier: 2, requests_per_unit: 1, calendar: true}",
            "calendar windows without unit_multiplier",
        ),
        (
            "{unit: month, requests_per_unit: 1, calendar: true, algorithm: sliding_window}",
            "calendar windows with algorithm fixed_window",
        ),
    ];
    for (limit, expected) in cases {
        let yaml = format!("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {limit}\n");
        let errors = compile_str("c.yaml", &yaml).expect_err("invalid calendar limit");
        let error = &errors.errors()[0];
        assert_eq!(
            (error.field.as_str(), error.expected.as_str()),
            ("descriptors[0].rate_limit.calendar", expected)
        );
        assert_eq!(error.line, Some(4));
    }
}

#[test]
fn token_buckets_take_a_burst_and_only_they_do() {
    let rules = compile(
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: 900, algorithm: token_bucket, burst: 20}\n",
    );
    let rule = find(domain(&rules, "d"), &[("k", "v")]).expect("rule");
    let expected = Limit::new(900, Window::of(TimeUnit::Minute))
        .with_burst(NonZeroU32::new(20).expect("non-zero"));
    assert_eq!(limits(rule), &[expected]);
    for (limit, expected) in [
        (
            "{unit: minute, requests_per_unit: 9, burst: 2}",
            "burst only with algorithm token_bucket",
        ),
        (
            "{unit: minute, requests_per_unit: 9, algorithm: token_bucket, burst: 0}",
            "a burst of at least 1",
        ),
    ] {
        let yaml = format!("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {limit}\n");
        let errors = compile_str("b.yaml", &yaml).expect_err("invalid burst");
        let error = &errors.errors()[0];
        assert_eq!(
            (error.field.as_str(), error.expected.as_str()),
            ("descriptors[0].rate_limit.burst", expected)
        );
    }
}

#[test]
fn response_policies_compile_and_bad_ones_are_located() {
    use crate::engine::{HeaderStyle, Segment};
    let rules = compile(
        "domain: d\nresponse_headers:\n  style: envoy_ratelimit\n  names: {limit: X-Limit}\n  quota: {limit: x-q-limit, remaining: x-q-remaining, min_window: month}\nover_limit_body:\n  template: 'slow down, {descriptor.api_key}'\n  content_type: text/plain\n",
    );
    let policy = domain(&rules, "d")
        .response()
        .expect("the domain chose its response");
    assert_eq!(policy.style, HeaderStyle::EnvoyRatelimit);
    assert_eq!(
        policy.names.as_ref().map(|names| &*names.limit),
        Some("X-Limit")
    );
    assert_eq!(
        policy.names.as_ref().map(|names| &*names.reset),
        Some("RateLimit-Reset")
    );
    assert_eq!(
        policy.quota.as_ref().map(|quota| quota.min_window_secs),
        Some(30 * 86_400)
    );
    let body = policy.body.as_ref().expect("body");
    assert_eq!(body.segments[1], Segment::Value("api_key".into()));
    let errors = compile_str(
        "r.yaml",
        "domain: d\nresponse_headers:\n  style: fancy\nover_limit_body:\n  template: 'wait {retry_in}s'\n",
    )
    .expect_err("bad policy");
    let found: Vec<_> = errors
        .errors()
        .iter()
        .map(|error| (error.line, error.field.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (Some(3), "response_headers.style"),
            (Some(5), "over_limit_body.template")
        ]
    );
    assert!(errors.errors()[1].found.contains("{retry_in}"), "{errors}");
}

#[test]
fn rules_can_carry_quota_mode_and_their_own_body() {
    use crate::engine::Segment;
    let rules = compile(
        "domain: d\ndescriptors:\n  - key: job\n    quota_mode: true\n    rate_limit: {unit: minute, requests_per_unit: 5}\n    over_limit_body:\n      template: '{\"code\":\"CONCURRENT_LIMIT_EXCEEDED\",\"message\":\"{limit}/{limit} running\"}'\n",
    );
    let rule = find(domain(&rules, "d"), &[("job", "x")]).expect("rule");
    assert!(rule.quota_mode);
    let body = rule.over_limit_body.as_ref().expect("rule body");
    assert_eq!(body.segments[1], Segment::Limit);
    assert_eq!(&*body.content_type, "application/json");
    let errors = compile_str(
        "q.yaml",
        "domain: d\ndescriptors:\n  - key: job\n    rate_limit: {unit: minute, requests_per_unit: 5}\n    over_limit_body: {template: 'x {nope}'}\n",
    )
    .expect_err("unknown placeholder");
    assert_eq!(
        errors.errors()[0].field,
        "descriptors[0].over_limit_body.template"
    );
    assert_eq!(errors.errors()[0].line, Some(5));
}
