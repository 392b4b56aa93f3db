//! Config for concurrency limits: a valid `algorithm: concurrency` limit compiles to the
//! engine's lease limit (default TTL five minutes), and every misuse is one located error.

use quotad::config::{ConfigError, compile_str};
use quotad::engine::{Algorithm, Entry, Policy, TimeUnit};

fn errors(yaml: &str) -> Vec<ConfigError> {
    match compile_str("api.yaml", yaml) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(errors) => errors.into_iter().collect(),
    }
}

fn at(line: usize, column: usize, field: &str, expected: &str, found: &str) -> ConfigError {
    ConfigError {
        file: "api.yaml".into(),
        line: Some(line),
        column: Some(column),
        field: field.into(),
        expected: expected.into(),
        found: found.into(),
    }
}

fn with_limit(body: &str) -> String {
    format!("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {body}\n")
}

#[test]
fn a_concurrency_limit_compiles_with_its_lease_window() {
    for (body, seconds, unit) in [
        (
            "{algorithm: concurrency, max_in_flight: 5}",
            300,
            TimeUnit::Minute,
        ),
        (
            "{algorithm: concurrency, max_in_flight: 5, lease_ttl: 90s, name: jobs, soft: true}",
            90,
            TimeUnit::Second,
        ),
    ] {
        let rules = compile_str("api.yaml", &with_limit(body)).expect("valid");
        let entries = [Entry {
            key: "k",
            value: "v",
        }];
        let rule = rules
            .domain("d")
            .and_then(|d| d.find(&entries))
            .expect("rule");
        let Policy::Limited(limits) = &rule.policy else {
            panic!("{body}: limited");
        };
        let limit = &limits[0];
        assert_eq!(limit.algorithm, Algorithm::Concurrency);
        assert_eq!(limit.requests_per_unit, 5, "max_in_flight is the threshold");
        assert_eq!(limit.window.nanos(), seconds * 1_000_000_000);
        assert_eq!(limit.window.unit(), unit);
    }
}

#[test]
fn window_fields_are_refused_on_a_concurrency_limit() {
    let yaml = with_limit(
        "{algorithm: concurrency, max_in_flight: 5, unit: minute, requests_per_unit: 5, burst: 2}",
    );
    let expected =
        |key: &str| format!("no {key} with algorithm concurrency (use max_in_flight, lease_ttl)");
    assert_eq!(
        errors(&yaml),
        [
            at(
                4,
                66,
                "descriptors[0].rate_limit.unit",
                &expected("unit"),
                "\"minute\""
            ),
            at(
                4,
                93,
                "descriptors[0].rate_limit.requests_per_unit",
                &expected("requests_per_unit"),
                "5"
            ),
            at(
                4,
                103,
                "descriptors[0].rate_limit.burst",
                &expected("burst"),
                "2"
            ),
        ]
    );
}

#[test]
fn max_in_flight_is_required_and_the_ttl_must_be_a_duration() {
    let yaml = with_limit("{algorithm: concurrency, lease_ttl: 5 minutes}");
    assert_eq!(
        errors(&yaml),
        [
            at(
                4,
                17,
                "descriptors[0].rate_limit.max_in_flight",
                "a number of requests in flight from 0 to 4294967295",
                "nothing"
            ),
            at(
                4,
                53,
                "descriptors[0].rate_limit.lease_ttl",
                "a duration such as 30s, 5m, 1h or 1d (at least 1)",
                "\"5 minutes\""
            ),
        ]
    );
}

#[test]
fn lease_fields_are_refused_elsewhere() {
    let yaml = with_limit("{unit: minute, requests_per_unit: 5, max_in_flight: 3}");
    assert_eq!(
        errors(&yaml),
        [at(
            4,
            69,
            "descriptors[0].rate_limit.max_in_flight",
            "max_in_flight only with algorithm concurrency",
            "max_in_flight: 3 with algorithm fixed_window"
        )]
    );
    let domain_wide = "domain: d\nalgorithm: concurrency\ndescriptors: []\n";
    assert_eq!(
        errors(domain_wide),
        [at(
            2,
            12,
            "algorithm",
            "a domain default of fixed_window, sliding_window or token_bucket (set concurrency or distinct on the limit)",
            "\"concurrency\""
        )]
    );
}
