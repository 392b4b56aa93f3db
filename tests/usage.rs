//! `GET /usage` over a real socket: hits consumed over gRPC show up exactly (used, remaining,
//! reset on the server's manual clock) for every limit of a rule, for concurrency leases and
//! token buckets; looking never changes a count; unlimited, unmatched and unknown descriptors
//! say so; malformed queries get a 400 naming the descriptor and entry; and the same answers
//! come from a private `redis-server`, with 503 once it is gone.

mod ops;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use ops::{DEADLINE, MANUAL, START, client, descriptor, eventually, get, request, sample, url};
use quotad::app::{self, RunningServer, ServerConfig, StoreSettings};
use quotad::clock::ManualClock;
use quotad::store::redis::RedisStoreConfig;
use serde_json::Value;
use support::redis_server::RedisServer;
use tonic::transport::Channel;

const RULES: &str = "\
domain: api
descriptors:
  - key: plan
    value: pro
    descriptors:
      - key: api_key
        rate_limits:
          - {name: pro_per_minute, unit: minute, requests_per_unit: 5}
          - {name: pro_per_month, unit: month, requests_per_unit: 100, calendar: true}
  - key: tenant
    rate_limit: {algorithm: concurrency, max_in_flight: 3, lease_ttl: 5m}
  - key: tokens
    rate_limit: {unit: minute, requests_per_unit: 60, algorithm: token_bucket, burst: 10}
  - key: free
    rate_limit: {unlimited: true}
";

const PRO: &[(&str, &str)] = &[("plan", "pro"), ("api_key", "K")];
const PRO_USAGE: &str = "/usage?domain=api&descriptor=plan=pro,api_key=K";

type Client = RateLimitServiceClient<Channel>;

fn rules_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("api.yaml"), RULES).expect("write rules");
    dir
}

/// Sends `times` one-hit requests for `pairs` (released instead when `release`).
async fn send(client: &mut Client, pairs: &[(&str, &str)], times: usize, release: bool) {
    for _ in 0..times {
        let descriptor = RateLimitDescriptor {
            is_negative_hits: release,
            ..descriptor(pairs)
        };
        client
            .should_rate_limit(request(vec![descriptor], 1))
            .await
            .expect("call succeeds");
    }
}

/// `GET path`, expecting 200 and JSON.
async fn usage(server: &RunningServer, path: &str) -> Value {
    let (status, body) = get(&url(server, path)).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON body")
}

/// The `index`th limit of the first descriptor.
fn limit(report: &Value, index: usize) -> &Value {
    &report["descriptors"][0]["limits"][index]
}

/// `(used, remaining, reset_seconds)` of a limit.
fn numbers(limit: &Value) -> (u64, u64, f64) {
    (
        limit["used"].as_u64().expect("used"),
        limit["remaining"].as_u64().expect("remaining"),
        limit["reset_seconds"].as_f64().expect("reset_seconds"),
    )
}

/// Three hits on the Pro rule at 00:00:15 show on both its limits, and looking (five times,
/// then a gRPC peek) changes nothing: the next real hit still sees exactly four used.
async fn pro_plan_shows_both_limits_exactly(server: &RunningServer, clock: &ManualClock) {
    let mut client = client(server).await;
    clock.advance(Duration::from_secs(15));
    send(&mut client, PRO, 3, false).await;
    let report = usage(server, PRO_USAGE).await;
    assert_eq!(report["known_domain"], true);
    assert_eq!(report["at"], "2024-10-04T00:00:15Z");
    let described = &report["descriptors"][0];
    assert_eq!(described["status"], "limited");
    assert_eq!(described["rule"], "plan_pro.api_key");
    assert_eq!(described["exhausted"], false);
    assert_eq!(
        described["entries"],
        serde_json::json!([{"key": "plan", "value": "pro"}, {"key": "api_key", "value": "K"}])
    );
    let minute = limit(&report, 0);
    assert_eq!(minute["name"], "pro_per_minute");
    assert_eq!(minute["algorithm"], "fixed_window");
    assert_eq!(minute["limit"], 5);
    assert_eq!(numbers(minute), (3, 2, 45.0));
    assert_eq!(minute["reset_at"], "2024-10-04T00:01:00Z");
    assert_eq!(
        minute["window"],
        serde_json::json!({"unit": "minute", "multiplier": 1, "calendar": false, "seconds": 60})
    );
    let month = limit(&report, 1);
    assert_eq!(month["name"], "pro_per_month");
    assert_eq!(numbers(month), (3, 97, (28 * 86_400 - 15) as f64));
    assert_eq!(month["reset_at"], "2024-11-01T00:00:00Z");
    assert_eq!(month["window"]["calendar"], true);
    assert_eq!(month["window"]["seconds"], 31 * 86_400);
    assert_eq!(month["soft"], false);
    assert_eq!(month["shadow"], false);

    let raw = get(&url(server, PRO_USAGE)).await.1;
    for _ in 0..5 {
        assert_eq!(
            get(&url(server, PRO_USAGE)).await.1,
            raw,
            "a lookup changed"
        );
    }
    let peek = RateLimitDescriptor {
        hits_addend: Some(envoy_types::pb::google::protobuf::UInt64Value { value: 0 }),
        ..descriptor(PRO)
    };
    let peeked = client
        .should_rate_limit(request(vec![peek], 0))
        .await
        .expect("peek")
        .into_inner();
    assert_eq!(peeked.statuses[0].limit_remaining, 2, "gRPC peek agrees");
    send(&mut client, PRO, 1, false).await;
    assert_eq!(numbers(limit(&usage(server, PRO_USAGE).await, 0)).0, 4);
    send(&mut client, PRO, 1, false).await;
    let spent = usage(server, PRO_USAGE).await;
    assert_eq!(numbers(limit(&spent, 0)), (5, 0, 45.0));
    assert_eq!(spent["descriptors"][0]["exhausted"], true);
}

/// Ten tokens taken from a full bucket of ten, one a second: empty, the next token in 1 s;
/// four seconds later, four are back.
async fn token_bucket_shows_what_is_left(server: &RunningServer, clock: &ManualClock) {
    let mut client = client(server).await;
    send(&mut client, &[("tokens", "t")], 10, false).await;
    let path = "/usage?domain=api&descriptor=tokens=t";
    let bucket = usage(server, path).await;
    let bucket = limit(&bucket, 0);
    assert_eq!(bucket["algorithm"], "token_bucket");
    assert_eq!(bucket["limit"], 60);
    assert_eq!(bucket["burst"], 10);
    assert_eq!(numbers(bucket), (10, 0, 1.0));
    clock.advance(Duration::from_secs(4));
    assert_eq!(numbers(limit(&usage(server, path).await, 0)), (6, 4, 1.0));
}

#[tokio::test]
async fn usage_shows_what_grpc_consumed_and_looking_consumes_nothing() {
    let dir = rules_dir();
    let (server, clock) = ops::start_from(dir.path(), MANUAL).await;
    pro_plan_shows_both_limits_exactly(&server, &clock).await;
    token_bucket_shows_what_is_left(&server, &clock).await;
    let metrics = get(&url(&server, "/metrics")).await.1;
    let lookups = "quotad_requests_total{method=\"usage\",outcome=\"ok\"}";
    assert_eq!(sample(&metrics, lookups), Some(11.0), "lookups are counted");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn concurrency_limits_show_leases_in_flight() {
    let dir = rules_dir();
    let (server, _clock) = ops::start_from(dir.path(), MANUAL).await;
    let mut client = client(&server).await;
    let tenant = &[("tenant", "acme")];
    send(&mut client, tenant, 2, false).await;
    let path = "/usage?domain=api&descriptor=tenant=acme";
    let leases = usage(&server, path).await;
    let leases = limit(&leases, 0);
    assert_eq!(leases["algorithm"], "concurrency");
    assert_eq!(leases["limit"], 3);
    assert_eq!(leases["window"]["seconds"], 300, "the lease TTL");
    assert_eq!(numbers(leases), (2, 1, 300.0));
    send(&mut client, tenant, 1, true).await;
    assert_eq!(numbers(limit(&usage(&server, path).await, 0)).0, 1);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn unlimited_unmatched_and_unknown_descriptors_say_so() {
    let dir = rules_dir();
    let (server, _clock) = ops::start_from(dir.path(), MANUAL).await;
    let path = "/usage?domain=api&descriptor=free=x&descriptor=nothing=x\
                &descriptor=plan=pro,api_key=a%2Cb%3Dc";
    let report = usage(&server, path).await;
    let descriptors = report["descriptors"].as_array().expect("array");
    let statuses: Vec<(&str, &Value)> = descriptors
        .iter()
        .map(|described| (described["status"].as_str().unwrap(), &described["rule"]))
        .collect();
    assert_eq!(
        statuses,
        [
            ("unlimited", &Value::from("free")),
            ("no_rule", &Value::Null),
            ("limited", &Value::from("plan_pro.api_key")),
        ]
    );
    assert_eq!(descriptors[0]["limits"], serde_json::json!([]));
    assert_eq!(descriptors[2]["entries"][1]["value"], "a,b=c");
    let unknown = usage(&server, "/usage?domain=web&descriptor=plan=pro,api_key=K").await;
    assert_eq!(unknown["known_domain"], false);
    assert_eq!(unknown["descriptors"][0]["status"], "no_rule");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn malformed_queries_are_refused_naming_the_problem() {
    let dir = rules_dir();
    let (server, _clock) = ops::start_from(dir.path(), MANUAL).await;
    let long = "v".repeat(5_000);
    let many = "&descriptor=k=v".repeat(65);
    let cases = [
        ("/usage", None, None, "missing domain"),
        ("/usage?domain=api", None, None, "missing descriptor"),
        (
            "/usage?domain=api&descriptor=k=v,plan",
            Some(0),
            Some(1),
            "expected KEY=VALUE",
        ),
        (
            "/usage?domain=api&descriptor=k=v&descriptor=k=%g1",
            Some(1),
            Some(0),
            "two hex",
        ),
        (
            "/usage?domain=&descriptor=k=v",
            None,
            None,
            "domain must not be empty",
        ),
        (
            &format!("/usage?domain=api&descriptor=k={long}"),
            Some(0),
            Some(0),
            "at most 4096",
        ),
        (
            &format!("/usage?domain=api{many}"),
            None,
            None,
            "at most 64 are accepted",
        ),
    ];
    for (path, descriptor, entry, says) in cases {
        let (status, body) = get(&url(&server, path)).await;
        assert_eq!(status, 400, "{path}: {body}");
        let error: Value = serde_json::from_str(&body).expect("JSON error");
        assert_eq!(error["code"], "INVALID_ARGUMENT");
        let message = error["message"].as_str().expect("message");
        assert!(message.contains(says), "{path}: {message}");
        assert_eq!(
            error["descriptor"].as_u64(),
            descriptor.map(|d| d as u64),
            "{body}"
        );
        assert_eq!(error["entry"].as_u64(), entry.map(|e| e as u64), "{body}");
    }
    server.shutdown().await.expect("clean shutdown");
}

/// A server on loopback port 0 counting in the Redis at `url`, with a manual clock.
async fn start_on_redis(dir: &Path, url: String) -> (RunningServer, ManualClock) {
    let loaded = quotad::config::load_versioned(dir).expect("rules are valid");
    let clock = ManualClock::new(START);
    let loopback = "127.0.0.1:0".parse().expect("valid address");
    let rules = Arc::new(ArcSwap::new(loaded.rules));
    let mut config = ServerConfig::new(loopback, loopback, rules, clock.clone());
    let redis = RedisStoreConfig::standalone(url).with_timeout(Duration::from_secs(2));
    config.store = StoreSettings::redis(redis);
    let server = app::start(config).await.expect("server starts");
    (server, clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_counts_read_the_same_and_a_lost_store_is_503() {
    let Some(mut redis) = RedisServer::start("redis_counts_read_the_same") else {
        return;
    };
    let dir = rules_dir();
    let (server, clock) = start_on_redis(dir.path(), redis.url()).await;
    pro_plan_shows_both_limits_exactly(&server, &clock).await;
    token_bucket_shows_what_is_left(&server, &clock).await;
    redis.kill();
    let body = eventually("/usage to answer 503", DEADLINE, || async {
        let (status, body) = get(&url(&server, PRO_USAGE)).await;
        (status == 503).then_some(body)
    })
    .await;
    let error: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(error["code"], "UNAVAILABLE", "{body}");
    server.shutdown().await.expect("clean shutdown");
}
