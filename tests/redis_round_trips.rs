//! Issue 9's Redis cost rule, proved at the server level: a request costs one Redis call
//! however many counters it touches, and concurrent requests share quotad's connection
//! (pipelined on it) instead of opening their own. Counted by the private `redis-server`
//! itself (`INFO commandstats` / `INFO stats`), not by quotad.

mod support;

use std::time::Duration;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor,
};
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use quotad::app::{self, ServerConfig, StoreSettings};
use quotad::clock::{ManualClock, Timestamp};
use quotad::engine::{Limit, RuleSet, TimeUnit, Window};
use quotad::service::shared_rules;
use quotad::store::redis::RedisStoreConfig;
use tokio::task::JoinSet;

use support::redis_server::RedisServer;

const DOMAIN: &str = "calls";
/// Midnight UTC: the hour window never rolls during the test.
const START: Timestamp = Timestamp::from_secs(86_400 * 20_000);
/// Requests in the measured burst, all in flight at once.
const REQUESTS: usize = 200;
/// Counters each request touches (one per descriptor).
const DESCRIPTORS: usize = 3;

fn descriptor(value: String) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: vec![rate_limit_descriptor::Entry {
            key: "k".into(),
            value,
        }],
        ..RateLimitDescriptor::default()
    }
}

fn request(index: usize) -> RateLimitRequest {
    RateLimitRequest {
        domain: DOMAIN.into(),
        descriptors: (0..DESCRIPTORS)
            .map(|position| descriptor(format!("v{index}-{position}")))
            .collect(),
        hits_addend: 0,
    }
}

/// The value part of the `name:value` line of an `INFO` reply, if the line is there.
fn info_line<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
}

/// A plain number of an `INFO` reply (`total_connections_received`, say).
fn info_number(info: &str, name: &str) -> u64 {
    info_line(info, name)
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing or not a number in:\n{info}"))
}

/// `field` of a command's `INFO commandstats` line (`calls` of `evalsha`, say); 0 when the
/// command has no line (never called since the stats were reset).
fn command_stat(info: &str, command: &str, field: &str) -> u64 {
    let Some(line) = info_line(info, &format!("cmdstat_{command}")) else {
        return 0;
    };
    line.split(',')
        .find_map(|pair| pair.strip_prefix(field)?.strip_prefix('='))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} missing or not a number in cmdstat_{command}:{line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_one_redis_call_on_a_shared_connection() {
    let Some(redis) = RedisServer::start("every_request_is_one_redis_call") else {
        return;
    };
    let loopback = "127.0.0.1:0".parse().expect("loopback address");
    let rules = RuleSet::per_value(DOMAIN, "k", [Limit::new(1_000, Window::of(TimeUnit::Hour))]);
    let mut config = ServerConfig::new(
        loopback,
        loopback,
        shared_rules(rules),
        ManualClock::new(START),
    );
    // A probe far apart keeps its PINGs out of the count (they are not counter calls anyway).
    config.store = StoreSettings::Redis {
        config: RedisStoreConfig::standalone(redis.url()).with_timeout(Duration::from_secs(5)),
        probe_interval: Duration::from_secs(3_600),
    };
    let server = app::start(config).await.expect("server starts");
    let mut client = RateLimitServiceClient::connect(format!("http://{}", server.grpc_addr()))
        .await
        .expect("gRPC connects");
    // The first call caches the script in Redis (NOSCRIPT, then EVAL with the source).
    let warm_up = client
        .should_rate_limit(request(REQUESTS))
        .await
        .expect("warm-up answer");
    assert_eq!(warm_up.get_ref().overall_code, Code::Ok as i32);

    let mut admin = redis.connection();
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query::<()>(&mut admin)
        .expect("CONFIG RESETSTAT");
    let mut calls = JoinSet::new();
    for index in 0..REQUESTS {
        let mut client = client.clone();
        calls.spawn(async move { client.should_rate_limit(request(index)).await });
    }
    while let Some(answer) = calls.join_next().await {
        let response = answer.expect("call task").expect("no call may fail");
        let response = response.into_inner();
        assert_eq!(response.overall_code, Code::Ok as i32);
        assert_eq!(response.statuses.len(), DESCRIPTORS);
    }

    let commands: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut admin)
        .expect("INFO commandstats");
    let stats: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut admin)
        .expect("INFO stats");
    // Commands a script runs count in `commandstats` too: each counter is one GET and one SET
    // inside the EVALSHA. Anything more (a top-level GET, a second EVALSHA) shows as extra calls.
    let counters = (REQUESTS * DESCRIPTORS) as u64;
    let mut seen: Vec<(String, u64)> = commands
        .lines()
        .filter_map(|line| line.strip_prefix("cmdstat_")?.split_once(':'))
        .map(|(name, _)| (name.to_owned(), command_stat(&commands, name, "calls")))
        .filter(|(name, _)| !name.starts_with("config") && name != "info")
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("evalsha".to_owned(), REQUESTS as u64),
            ("get".to_owned(), counters),
            ("set".to_owned(), counters),
        ],
        "one EVALSHA per request, its counters inside it:\n{commands}"
    );
    assert_eq!(
        info_number(&stats, "total_connections_received"),
        0,
        "the burst opened no connection (all pipelined on quotad's):\n{stats}"
    );
    server.shutdown().await.expect("clean shutdown");
}
