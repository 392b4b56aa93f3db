//! Unit tests for the wire ⇄ engine mapping: validation errors with their indexes, hit counts,
//! and how each kind of descriptor decision looks on the wire.

use std::num::NonZeroU32;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor;
use envoy_types::pb::google::protobuf::UInt64Value;
use smallvec::SmallVec;
use tonic::Code as GrpcCode;

use super::*;
use crate::engine::Window;

fn wire_descriptor(pairs: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: pairs
            .iter()
            .map(|(key, value)| rate_limit_descriptor::Entry {
                key: (*key).into(),
                value: (*value).into(),
            })
            .collect(),
        ..RateLimitDescriptor::default()
    }
}

fn wire_request(domain: &str, descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.into(),
        descriptors,
        hits_addend: 0,
    }
}

fn refusal(wire: &RateLimitRequest) -> InvalidRequest {
    Request::try_from(wire).expect_err("request should be refused")
}

#[test]
fn a_valid_request_borrows_its_strings() {
    let wire = wire_request(
        "api",
        vec![wire_descriptor(&[("plan", "pro"), ("key", "")])],
    );
    let request = Request::try_from(&wire).unwrap();
    assert_eq!(request.domain, "api");
    assert_eq!(
        request.descriptors[0],
        Descriptor::from_pairs(&[("plan", "pro"), ("key", "")])
    );
    assert!(std::ptr::eq(request.domain, wire.domain.as_str()));
}

#[test]
fn request_hits_zero_means_one() {
    let mut wire = wire_request("api", vec![wire_descriptor(&[("k", "v")])]);
    assert_eq!(Request::try_from(&wire).unwrap().hits, 1);
    wire.hits_addend = 7;
    assert_eq!(Request::try_from(&wire).unwrap().hits, 7);
}

#[test]
fn descriptor_hits_override_even_when_zero() {
    let mut counted = wire_descriptor(&[("k", "v")]);
    counted.hits_addend = Some(UInt64Value { value: 0 });
    let plain = wire_descriptor(&[("k", "w")]);
    let mut wire = wire_request("api", vec![counted, plain]);
    wire.hits_addend = 3;
    let request = Request::try_from(&wire).unwrap();
    assert_eq!(request.descriptors[0].hits, Some(0));
    assert_eq!(request.hits_for(&request.descriptors[0]), 0);
    assert_eq!(request.hits_for(&request.descriptors[1]), 3);
}

#[test]
fn invalid_requests_name_what_is_wrong() {
    let ok = || wire_descriptor(&[("k", "v")]);
    assert_eq!(
        refusal(&wire_request("", vec![ok()])),
        InvalidRequest::EmptyDomain
    );
    assert_eq!(
        refusal(&wire_request("api", vec![])),
        InvalidRequest::NoDescriptors
    );
    assert_eq!(
        refusal(&wire_request("api", vec![ok(), wire_descriptor(&[])])),
        InvalidRequest::EmptyDescriptor { descriptor: 1 }
    );
    let bad_key = wire_descriptor(&[("a", "1"), ("", "2")]);
    let error = refusal(&wire_request("api", vec![ok(), ok(), bad_key]));
    assert_eq!(
        error,
        InvalidRequest::EmptyKey {
            descriptor: 2,
            entry: 1
        }
    );
    assert_eq!(error.to_string(), "descriptor 2 entry 1 has an empty key");
    let status = Status::from(error);
    assert_eq!(status.code(), GrpcCode::InvalidArgument);
    assert_eq!(
        Status::from(InvalidRequest::EmptyDomain).message(),
        "domain must not be empty"
    );
}

#[test]
fn negative_hits_become_a_refunding_descriptor() {
    let mut refund = wire_descriptor(&[("k", "v")]);
    refund.is_negative_hits = true;
    let wire = wire_request("api", vec![refund, wire_descriptor(&[("k", "w")])]);
    let request = Request::try_from(&wire).expect("a refund is a valid request");
    assert!(request.descriptors[0].refund);
    assert!(
        !request.descriptors[1].refund,
        "only the flagged descriptor"
    );
}

/// The mapping reads only these fields, so the rule is left out.
fn decided(
    over_limit: bool,
    limit: Option<&Limit>,
    remaining: u32,
    reset: Option<Duration>,
) -> DescriptorDecision<'_> {
    DescriptorDecision {
        over_limit,
        rule: None,
        limit,
        remaining,
        reset,
        banned_until: None,
        shadow_over_limit: false,
        soft_over_limit: false,
        checked: SmallVec::new(),
    }
}

#[test]
fn decisions_map_to_statuses_in_order() {
    let named = Limit::new(50, Window::of(TimeUnit::Minute)).named("per_key");
    let per_second = Limit::new(1, Window::of(TimeUnit::Second));
    let shadow = DescriptorDecision {
        shadow_over_limit: true,
        ..decided(false, Some(&per_second), 0, Some(Duration::from_secs(1)))
    };
    let decision = Decision {
        over_limit: true,
        descriptors: [
            decided(false, Some(&named), 49, Some(Duration::from_millis(1_500))),
            decided(true, Some(&per_second), 0, Some(Duration::from_secs(1))),
            decided(false, None, 0, None),
            shadow,
        ]
        .into_iter()
        .collect(),
    };
    let response = response_from_decision(&decision);
    assert_eq!(response.overall_code, i32::from(Code::OverLimit));
    let codes: Vec<i32> = response.statuses.iter().map(|status| status.code).collect();
    let [ok, over] = [Code::Ok, Code::OverLimit].map(i32::from);
    assert_eq!(codes, [ok, over, ok, ok]);
    let [limited, rejected, unmatched, shadowed] = &response.statuses[..] else {
        panic!("expected four statuses, got {:?}", response.statuses);
    };
    let expected = RateLimit {
        name: "per_key".into(),
        requests_per_unit: 50,
        unit: Unit::Minute.into(),
    };
    assert_eq!(limited.current_limit, Some(expected));
    assert_eq!(limited.limit_remaining, 49);
    let reset = ProtoDuration {
        seconds: 1,
        nanos: 500_000_000,
    };
    assert_eq!(limited.duration_until_reset, Some(reset));
    assert_eq!(
        rejected.current_limit.as_ref().map(|l| l.name.as_str()),
        Some("")
    );
    assert_eq!(
        unmatched,
        &DescriptorStatus {
            code: ok,
            ..DescriptorStatus::default()
        }
    );
    assert_eq!(
        (shadowed.limit_remaining, shadowed.current_limit.is_some()),
        (0, true)
    );
}

#[test]
fn allowed_requests_are_ok_overall() {
    let unlimited = decided(false, None, u32::MAX, None);
    let decision = Decision {
        over_limit: false,
        descriptors: [unlimited].into_iter().collect(),
    };
    let response = response_from_decision(&decision);
    assert_eq!(response.overall_code, i32::from(Code::Ok));
    assert_eq!(response.statuses[0].limit_remaining, u32::MAX);
}

#[test]
fn windows_report_the_unit_they_equal() {
    let window = |unit, times| Window::new(unit, NonZeroU32::new(times).unwrap());
    let unit_of = |window| wire_unit(&Limit::new(1, window));
    assert_eq!(unit_of(window(TimeUnit::Second, 60)), Unit::Minute);
    assert_eq!(unit_of(window(TimeUnit::Hour, 24)), Unit::Day);
    assert_eq!(unit_of(window(TimeUnit::Day, 7)), Unit::Week);
    assert_eq!(unit_of(window(TimeUnit::Minute, 10)), Unit::Minute);
    assert_eq!(unit_of(window(TimeUnit::Day, 365)), Unit::Year);
    for unit in TimeUnit::ALL {
        assert_eq!(unit_of(Window::of(unit)), unit_to_wire(unit));
        assert_eq!(
            unit_to_wire(unit).as_str_name(),
            unit.name().to_ascii_uppercase()
        );
    }
}

#[test]
fn limit_overrides_convert_and_unknown_units_are_refused() {
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::RateLimitOverride;
    let mut descriptor = wire_descriptor(&[("k", "v")]);
    descriptor.limit = Some(RateLimitOverride {
        requests_per_unit: 42,
        unit: 7,
    });
    let wire = wire_request("api", vec![wire_descriptor(&[("a", "b")]), descriptor]);
    let request = Request::try_from(&wire).unwrap();
    assert_eq!(
        request.descriptors[1].limit_override,
        Some(LimitOverride {
            requests_per_unit: 42,
            unit: TimeUnit::Week
        })
    );
    for unit in [0, 8, -1] {
        let mut bad = wire.clone();
        bad.descriptors[1].limit.as_mut().unwrap().unit = unit;
        let refused = refusal(&bad);
        assert_eq!(
            refused,
            InvalidRequest::UnknownOverrideUnit {
                descriptor: 1,
                unit
            }
        );
        assert_eq!(Status::from(refused).code(), GrpcCode::InvalidArgument);
    }
}

#[test]
fn oversized_requests_are_refused_with_the_limit_named() {
    let limits = RequestLimits {
        max_domain_bytes: 8,
        max_descriptors: 2,
        max_entries: 2,
        max_key_bytes: 4,
        max_value_bytes: 6,
    };
    let refused = |wire: &RateLimitRequest| {
        request_from_wire(wire, &limits).expect_err("request should be refused")
    };
    let long_domain = wire_request("a-long-domain", vec![wire_descriptor(&[("k", "v")])]);
    assert_eq!(
        refused(&long_domain),
        InvalidRequest::DomainTooLong { len: 13, max: 8 }
    );
    let three = vec![wire_descriptor(&[("k", "v")]); 3];
    assert_eq!(
        refused(&wire_request("api", three)),
        InvalidRequest::TooManyDescriptors { count: 3, max: 2 }
    );
    let deep = wire_descriptor(&[("a", "1"), ("b", "2"), ("c", "3")]);
    assert_eq!(
        refused(&wire_request("api", vec![deep])),
        InvalidRequest::TooManyEntries {
            descriptor: 0,
            count: 3,
            max: 2
        }
    );
    let long_value = wire_descriptor(&[("k", "v"), ("path", "/a/long/path")]);
    let error = refused(&wire_request(
        "api",
        vec![wire_descriptor(&[("k", "v")]), long_value],
    ));
    assert_eq!(
        error,
        InvalidRequest::EntryTooLong {
            descriptor: 1,
            entry: 1,
            part: "value",
            len: 12,
            max: 6
        }
    );
    let status = Status::from(error);
    assert_eq!(status.code(), GrpcCode::InvalidArgument);
    assert_eq!(
        status.message(),
        "descriptor 1 entry 1: value is 12 bytes long; at most 6 are accepted"
    );
    let long_key = wire_descriptor(&[("api_key", "v")]);
    assert!(matches!(
        refused(&wire_request("api", vec![long_key])),
        InvalidRequest::EntryTooLong { part: "key", .. }
    ));
    let fits = wire_request("api", vec![wire_descriptor(&[("k", "\u{0}\u{7f}é")])]);
    assert!(
        request_from_wire(&fits, &limits).is_ok(),
        "control characters are just bytes"
    );
}
