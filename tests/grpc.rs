//! ShouldRateLimit over a real socket: the library's server on loopback port 0, a manual clock
//! so windows are deterministic, and Envoy's own generated client.

mod common;

use std::time::Duration;

use common::{
    ask, channel, client, code, descriptor, descriptor_with_hits, hit, outcome, request, start,
};
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;
use quotad::app::RATE_LIMIT_SERVICE_NAME;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Long enough for a loaded CI machine; only reached when something is actually wrong.
const DEADLINE: Duration = Duration::from_secs(60);

fn seconds(secs: i64) -> Option<ProtoDuration> {
    Some(ProtoDuration {
        seconds: secs,
        nanos: 0,
    })
}

#[tokio::test]
async fn admits_up_to_the_limit_then_rejects() {
    let (server, clock) = start().await;
    let mut client = client(&server).await;
    for remaining in [2, 1, 0] {
        let status = hit(&mut client, &[("k", "a")]).await;
        assert_eq!(code(&status), Code::Ok, "exactly on the limit is still OK");
        assert_eq!(status.limit_remaining, remaining);
        let limit = status.current_limit.expect("limit reported");
        assert_eq!(
            (limit.requests_per_unit, limit.unit),
            (3, Unit::Minute.into())
        );
        assert_eq!(limit.name, "");
        assert_eq!(status.duration_until_reset, seconds(60));
    }
    clock.advance(Duration::from_secs(15));
    let (overall, statuses) = ask(&mut client, request(vec![descriptor(&[("k", "a")])], 0)).await;
    assert_eq!(overall, Code::OverLimit);
    assert_eq!(code(&statuses[0]), Code::OverLimit);
    assert_eq!(statuses[0].limit_remaining, 0);
    assert_eq!(statuses[0].duration_until_reset, seconds(45));
    let other_value = hit(&mut client, &[("k", "b")]).await;
    assert_eq!(outcome(&other_value), (Code::Ok, 2));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn windows_roll_over_when_the_clock_moves() {
    let (server, clock) = start().await;
    let mut client = client(&server).await;
    for _ in 0..4 {
        hit(&mut client, &[("k", "a")]).await;
    }
    assert_eq!(
        code(&hit(&mut client, &[("k", "a")]).await),
        Code::OverLimit
    );
    clock.advance(Duration::from_secs(60));
    let fresh = hit(&mut client, &[("k", "a")]).await;
    assert_eq!(outcome(&fresh), (Code::Ok, 2));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn statuses_follow_descriptor_order() {
    let (server, _clock) = start().await;
    let mut client = client(&server).await;
    for _ in 0..3 {
        hit(&mut client, &[("k", "full")]).await;
    }
    let descriptors = vec![
        descriptor(&[("free", "x")]),
        descriptor(&[("k", "full")]),
        descriptor(&[("nothing", "matches")]),
        descriptor(&[("k", "empty")]),
    ];
    let (overall, statuses) = ask(&mut client, request(descriptors, 0)).await;
    assert_eq!(overall, Code::OverLimit);
    let summary: Vec<(Code, u32, bool)> = statuses
        .iter()
        .map(|status| {
            (
                code(status),
                status.limit_remaining,
                status.current_limit.is_some(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Code::Ok, u32::MAX, false),
            (Code::OverLimit, 0, true),
            (Code::Ok, 0, false),
            (Code::Ok, 2, true),
        ]
    );
    assert_eq!(statuses[2].duration_until_reset, None);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn unknown_domains_and_unlimited_rules_always_allow() {
    let (server, _clock) = start().await;
    let mut client = client(&server).await;
    let unknown = RateLimitRequest {
        domain: "elsewhere".into(),
        ..request(
            vec![descriptor(&[("k", "a")]), descriptor(&[("hot", "b")])],
            0,
        )
    };
    let (overall, statuses) = ask(&mut client, unknown).await;
    assert_eq!(overall, Code::Ok);
    assert_eq!(statuses.len(), 2);
    for status in &statuses {
        assert_eq!(code(status), Code::Ok);
        assert_eq!(
            (status.current_limit.as_ref(), status.limit_remaining),
            (None, 0)
        );
    }
    for _ in 0..5 {
        let free = hit(&mut client, &[("free", "x")]).await;
        assert_eq!(outcome(&free), (Code::Ok, u32::MAX));
        assert_eq!(
            (free.current_limit, free.duration_until_reset),
            (None, None)
        );
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shadow_rules_report_but_never_reject() {
    let (server, _clock) = start().await;
    let mut client = client(&server).await;
    for _ in 0..3 {
        let (overall, statuses) = ask(
            &mut client,
            request(vec![descriptor(&[("shadow", "s")])], 0),
        )
        .await;
        assert_eq!(overall, Code::Ok);
        assert_eq!(code(&statuses[0]), Code::Ok);
        assert_eq!(statuses[0].limit_remaining, 0);
        assert_eq!(
            statuses[0]
                .current_limit
                .as_ref()
                .map(|l| l.requests_per_unit),
            Some(1)
        );
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_replacing_limit_takes_over_the_named_one() {
    let (server, _clock) = start().await;
    let mut client = client(&server).await;
    for _ in 0..3 {
        let descriptors = vec![descriptor(&[("user", "u")]), descriptor(&[("vip", "v")])];
        let (overall, statuses) = ask(&mut client, request(descriptors, 0)).await;
        assert_eq!(overall, Code::Ok, "per_user (2/minute) is replaced");
        assert_eq!(statuses[0].current_limit, None);
        let vip = statuses[1].current_limit.as_ref().expect("vip limit");
        assert_eq!((vip.requests_per_unit, vip.unit), (5, Unit::Hour.into()));
    }
    let alone = hit(&mut client, &[("user", "u")]).await;
    assert_eq!(alone.current_limit.map(|l| l.name), Some("per_user".into()));
    assert_eq!(alone.limit_remaining, 1, "replaced hits were not counted");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn descriptor_hits_override_and_zero_only_checks() {
    let (server, _clock) = start().await;
    let mut client = client(&server).await;
    let check = || request(vec![descriptor_with_hits(&[("k", "a")], 0)], 5);
    for _ in 0..3 {
        let (overall, statuses) = ask(&mut client, check()).await;
        assert_eq!((overall, statuses[0].limit_remaining), (Code::Ok, 3));
    }
    let (_, statuses) = ask(
        &mut client,
        request(vec![descriptor_with_hits(&[("k", "a")], 2)], 9),
    )
    .await;
    assert_eq!(outcome(&statuses[0]), (Code::Ok, 1));
    let (_, statuses) = ask(&mut client, check()).await;
    assert_eq!(statuses[0].limit_remaining, 1);
    let mixed = vec![
        descriptor(&[("k", "b")]),
        descriptor_with_hits(&[("k", "c")], 1),
    ];
    let (overall, statuses) = ask(&mut client, request(mixed, 4)).await;
    assert_eq!(
        overall,
        Code::OverLimit,
        "request hits apply where no override is set"
    );
    assert_eq!(code(&statuses[0]), Code::OverLimit);
    assert_eq!(outcome(&statuses[1]), (Code::Ok, 2));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn request_hits_zero_counts_as_one() {
    let (server, _clock) = start().await;
    let mut client = client(&server).await;
    let (_, statuses) = ask(&mut client, request(vec![descriptor(&[("k", "a")])], 0)).await;
    assert_eq!(statuses[0].limit_remaining, 2);
    let (_, statuses) = ask(&mut client, request(vec![descriptor(&[("k", "a")])], 2)).await;
    assert_eq!(outcome(&statuses[0]), (Code::Ok, 0));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn multiplied_windows_report_their_unit_and_exact_reset() {
    let (server, clock) = start().await;
    let mut client = client(&server).await;
    clock.advance(Duration::from_millis(2_500));
    let status = hit(&mut client, &[("burst", "x")]).await;
    let limit = status.current_limit.expect("limit");
    assert_eq!(
        (limit.requests_per_unit, limit.unit),
        (10, Unit::Second.into())
    );
    let reset = ProtoDuration {
        seconds: 7,
        nanos: 500_000_000,
    };
    assert_eq!(status.duration_until_reset, Some(reset));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn malformed_requests_are_invalid_arguments() {
    let (server, _clock) = start().await;
    let mut client = client(&server).await;
    let ok = || descriptor(&[("k", "a")]);
    let cases = [
        (
            RateLimitRequest {
                domain: String::new(),
                ..request(vec![ok()], 0)
            },
            "domain must not be empty",
        ),
        (request(vec![], 0), "at least one descriptor"),
        (
            request(vec![ok(), descriptor(&[])], 0),
            "descriptor 1 has no entries",
        ),
        (
            request(vec![descriptor(&[("a", "1"), ("", "2")])], 0),
            "descriptor 0 entry 1 has an empty key",
        ),
    ];
    for (request, message) in cases {
        let status = client
            .should_rate_limit(request)
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(message),
            "{status:?} should mention {message:?}"
        );
    }
    let after = hit(&mut client, &[("k", "a")]).await;
    assert_eq!(
        after.limit_remaining, 2,
        "refused requests consumed nothing"
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_get_exactly_the_limit() {
    const TASKS: usize = 16;
    const CALLS_PER_TASK: usize = 20;
    let (server, _clock) = start().await;
    let mut connections = Vec::new();
    for _ in 0..4 {
        connections.push(channel(&server).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let mut client = RateLimitServiceClient::new(connections[task % connections.len()].clone());
        tasks.spawn(async move {
            let mut admitted = 0;
            for _ in 0..CALLS_PER_TASK {
                if code(&hit(&mut client, &[("hot", "shared")]).await) == Code::Ok {
                    admitted += 1;
                }
            }
            admitted
        });
    }
    let mut admitted = 0;
    while let Some(result) = tokio::time::timeout(DEADLINE, tasks.join_next())
        .await
        .expect("in time")
    {
        admitted += result.expect("task finished");
    }
    assert_eq!(admitted, 100);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn health_endpoints_report_serving() {
    let (server, _clock) = start().await;
    let mut health = HealthClient::new(channel(&server).await);
    for service in [RATE_LIMIT_SERVICE_NAME, ""] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health answers")
            .into_inner();
        assert_eq!(
            answer.status,
            ServingStatus::Serving as i32,
            "service {service:?}"
        );
    }
    let url = format!("http://{}/healthcheck", server.http_addr());
    let response = reqwest::get(&url).await.expect("HTTP answers");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(response.text().await.expect("body"), "OK");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_completes_while_clients_hold_connections_open() {
    let (server, _clock) = start().await;
    let mut client = client(&server).await;
    hit(&mut client, &[("k", "a")]).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/healthcheck", server.http_addr());
    let kept_alive = http.get(&url).send().await.expect("HTTP answers");
    assert_eq!(kept_alive.status(), reqwest::StatusCode::OK);
    // Both connections stay open and idle: draining must close them, not wait on them.
    tokio::time::timeout(DEADLINE, server.shutdown())
        .await
        .expect("shutdown finishes in time")
        .expect("clean shutdown");
}
