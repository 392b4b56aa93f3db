//! Hostile and random input never crashes quotad and never gets an inconsistent answer:
//! property tests over random wire requests (any sizes, any bytes, any hit counts, unknown
//! units) and over random rule files (valid and broken), run straight against the service.

use std::sync::Arc;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
    Entry, RateLimitOverride,
};
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::google::protobuf::UInt64Value;
use proptest::prelude::*;
use quotad::clock::{ManualClock, Timestamp};
use quotad::config::compile_str;
use quotad::service::{RateLimiter, shared_rules};
use quotad::store::MemoryStore;

fn service(yaml: &str) -> RateLimiter<MemoryStore, ManualClock> {
    let rules = compile_str("fuzz.yaml", yaml).expect("fixture rules compile");
    RateLimiter::new(
        shared_rules(rules),
        Arc::new(MemoryStore::with_max_keys(10_000)),
        ManualClock::new(Timestamp::from_secs(1_800_000_000)),
    )
}

const RULES: &str = "domain: api\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: 5}\n  - key: b\n    rate_limit: {unit: second, requests_per_unit: 3, algorithm: token_bucket, burst: 2}\n  - key: s\n    rate_limit: {unit: hour, requests_per_unit: 4294967295, algorithm: sliding_window}\n  - key: p\n    value: '*x*'\n    descriptors:\n      - key: q\n        rate_limit: {unit: day, requests_per_unit: 0}\n";

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(String::new()),
        12 => prop::sample::select(vec!["k", "b", "s", "p", "q", "api", "x", "axb"])
            .prop_map(String::from),
        6 => ".{0,12}",
        4 => "[\\x00-\\x1f\\u{7f}\\u{fffd}é漢]{0,8}",
        // Around the default 4 KiB value limit, on both sides of it, in multi-byte characters too.
        1 => (4_090usize..4_100).prop_map(|len| "v".repeat(len)),
        1 => (1_360usize..1_370).prop_map(|len| "漢".repeat(len)),
    ]
}

fn descriptor() -> impl Strategy<Value = RateLimitDescriptor> {
    (
        prop::collection::vec((text(), text()), 0..4),
        prop::option::of(any::<u64>()),
        prop::option::of((any::<u32>(), -2i32..10)),
        any::<bool>(),
    )
        .prop_map(|(entries, hits, limit, negative)| RateLimitDescriptor {
            entries: entries
                .into_iter()
                .map(|(key, value)| Entry { key, value })
                .collect(),
            hits_addend: hits.map(|value| UInt64Value { value }),
            limit: limit.map(|(requests_per_unit, unit)| RateLimitOverride {
                requests_per_unit,
                unit,
            }),
            is_negative_hits: negative && hits.is_some_and(|hits| hits % 7 == 0),
        })
}

fn request() -> impl Strategy<Value = RateLimitRequest> {
    (
        prop_oneof![Just("api".to_owned()), text()],
        prop_oneof![
            8 => prop::collection::vec(descriptor(), 0..6),
            1 => prop::collection::vec(descriptor(), 60..70),
        ],
        any::<u32>(),
    )
        .prop_map(|(domain, descriptors, hits_addend)| RateLimitRequest {
            domain,
            descriptors,
            hits_addend,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Any request gets either one status per descriptor or a clear refusal, never a panic.
    #[test]
    fn any_request_gets_an_answer_or_a_clear_refusal(requests in prop::collection::vec(request(), 1..4)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let service = service(RULES);
        for request in requests {
            match runtime.block_on(service.decide(&request)) {
                Ok(response) => {
                    prop_assert_eq!(response.statuses.len(), request.descriptors.len());
                    let any_over = response.statuses.iter().any(|status| status.code == Code::OverLimit as i32);
                    let overall_over = response.overall_code == Code::OverLimit as i32;
                    prop_assert!(!overall_over || any_over, "OVER_LIMIT overall needs an over-limit descriptor");
                    for status in &response.statuses {
                        prop_assert!(status.code == Code::Ok as i32 || status.code == Code::OverLimit as i32);
                    }
                }
                Err(status) => {
                    prop_assert!(
                        matches!(status.code(), tonic::Code::InvalidArgument | tonic::Code::Unimplemented),
                        "unexpected status {:?}", status
                    );
                    prop_assert!(!status.message().is_empty());
                }
            }
        }
    }

    /// A zero-hit check is idempotent: asking twice gives the same answer and consumes nothing.
    #[test]
    fn zero_hit_checks_change_nothing(key in "[a-z]{1,4}", spent in 0u64..8) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let service = service(RULES);
        let ask = |hits: u64| RateLimitRequest {
            domain: "api".into(),
            descriptors: vec![RateLimitDescriptor {
                entries: vec![Entry { key: "k".into(), value: key.clone() }],
                hits_addend: Some(UInt64Value { value: hits }),
                ..RateLimitDescriptor::default()
            }],
            hits_addend: 0,
        };
        runtime.block_on(service.decide(&ask(spent))).expect("answer");
        let first = runtime.block_on(service.decide(&ask(0))).expect("answer");
        let second = runtime.block_on(service.decide(&ask(0))).expect("answer");
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(first.statuses[0].limit_remaining, 5u32.saturating_sub(spent as u32));
    }

    /// Any rules text either compiles or is refused with located errors — never a panic — and
    /// rules that compile answer requests.
    #[test]
    fn any_rules_text_compiles_or_is_refused(yaml in rules_text()) {
        match compile_str("random.yaml", &yaml) {
            Ok(rules) => {
                let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
                let service = RateLimiter::new(
                    shared_rules(rules),
                    Arc::new(MemoryStore::new()),
                    ManualClock::new(Timestamp::from_secs(1_800_000_000)),
                );
                let request = RateLimitRequest {
                    domain: "d".into(),
                    descriptors: vec![RateLimitDescriptor {
                        entries: vec![Entry { key: "k".into(), value: "v".into() }],
                        ..RateLimitDescriptor::default()
                    }],
                    hits_addend: 1,
                };
                prop_assert!(runtime.block_on(service.decide(&request)).is_ok());
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for error in errors.errors() {
                    prop_assert!(!error.to_string().is_empty());
                    prop_assert!(!error.expected.is_empty() || !error.found.is_empty());
                }
            }
        }
    }
}

/// Rules files built from plausible and implausible pieces, so both paths are exercised.
fn rules_text() -> impl Strategy<Value = String> {
    let unit = prop::sample::select(vec![
        "second",
        "MINUTE",
        "hour",
        "day",
        "week",
        "month",
        "year",
        "fortnight",
        "",
    ]);
    let algorithm = prop::sample::select(vec![
        "fixed_window",
        "sliding_window",
        "token_bucket",
        "leaky",
    ]);
    let limit = (unit, -2i64..100, 0u32..3, algorithm, any::<bool>(), any::<bool>()).prop_map(
        |(unit, requests, multiplier, algorithm, calendar, soft)| {
            format!(
                "{{unit: '{unit}', requests_per_unit: {requests}, unit_multiplier: {multiplier}, algorithm: {algorithm}, calendar: {calendar}, soft: {soft}}}"
            )
        },
    );
    let descriptor = (
        prop::sample::select(vec!["k", "", "k"]),
        prop::option::of(prop::sample::select(vec!["v", "*", "a*b", ""])),
        prop::option::of(limit),
        any::<bool>(),
    )
        .prop_map(|(key, value, limit, shadow)| {
            let mut text = format!("  - key: '{key}'\n");
            if let Some(value) = value {
                text.push_str(&format!("    value: '{value}'\n"));
            }
            if let Some(limit) = limit {
                text.push_str(&format!("    rate_limit: {limit}\n"));
            }
            text.push_str(&format!("    shadow_mode: {shadow}\n"));
            text
        });
    (
        prop::sample::select(vec!["d", ""]),
        prop::collection::vec(descriptor, 0..5),
        prop::sample::select(vec![
            "",
            "bogus: 1\n",
            "descriptors: [\n",
            "algorithm: sliding_window\n",
        ]),
    )
        .prop_map(|(domain, descriptors, extra)| {
            format!(
                "domain: '{domain}'\n{extra}descriptors:\n{}",
                descriptors.concat()
            )
        })
}
