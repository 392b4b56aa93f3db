//! Proof of one budget, at the server level: three quotad instances counting in one private
//! `redis-server` (and again in a private three-master Redis Cluster) admit exactly `limit`
//! hits of a concurrent burst spread across them — no more, no fewer, every remaining count
//! seen once. Then faults: Redis killed mid-traffic keeps answers coming fast, as
//! `--on-store-error` says (allow → OK, deny → OVER_LIMIT, error → UNAVAILABLE), readiness
//! drops, and after a restart readiness returns and enforcement resumes.
//!
//! Every instance shares one `ManualClock`, so windows never roll during a test; the breaker
//! runs on that clock too, which is why recovery advances it. Waits poll under generous
//! deadlines; nothing sleeps to make something happen.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use quotad::app::{self, RunningServer, ServerConfig, StoreSettings};
use quotad::clock::{ManualClock, Timestamp};
use quotad::engine::{Limit, RuleSet, TimeUnit, Window};
use quotad::service::{StoreErrorPolicy, shared_rules};
use quotad::store::redis::RedisStoreConfig;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::Channel;

use support::redis_server::{RedisCluster, RedisServer};

/// Midnight UTC: hour windows start exactly here, and advancing the breaker's clock by a few
/// minutes never rolls them.
const START: Timestamp = Timestamp::from_secs(86_400 * 20_000);
const DOMAIN: &str = "budget";
/// Long enough for a loaded CI machine; only reached when something is actually wrong.
const DEADLINE: Duration = Duration::from_secs(60);
/// Budget tests are about counts, not speed: a slow Redis call must not turn into fail-open.
const PATIENT: Duration = Duration::from_secs(2);
/// Fault tests keep a tight timeout so "answers keep coming within the timeout" means something.
const TIGHT: Duration = Duration::from_millis(200);
/// The slowest acceptable answer during an outage: the timeout plus a busy 2-core margin.
const FAST: Duration = Duration::from_millis(1_200);

type Client = RateLimitServiceClient<Channel>;

fn config(
    store: StoreSettings,
    policy: StoreErrorPolicy,
    clock: &ManualClock,
    limit: u32,
) -> ServerConfig<ManualClock> {
    let loopback = "127.0.0.1:0".parse().expect("loopback address");
    let rules = RuleSet::per_value(DOMAIN, "k", [Limit::new(limit, Window::of(TimeUnit::Hour))]);
    let mut config = ServerConfig::new(loopback, loopback, shared_rules(rules), clock.clone());
    config.store = store;
    config.on_store_error = policy;
    config
}

async fn client(server: &RunningServer) -> Client {
    RateLimitServiceClient::connect(format!("http://{}", server.grpc_addr()))
        .await
        .expect("gRPC connects")
}

fn request(value: &str) -> RateLimitRequest {
    RateLimitRequest {
        domain: DOMAIN.into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![rate_limit_descriptor::Entry {
                key: "k".into(),
                value: value.into(),
            }],
            ..RateLimitDescriptor::default()
        }],
        hits_addend: 0,
    }
}

async fn ask(client: &mut Client, value: &str) -> Result<RateLimitResponse, tonic::Status> {
    client
        .should_rate_limit(request(value))
        .await
        .map(tonic::Response::into_inner)
}

fn code(response: &RateLimitResponse) -> Code {
    Code::try_from(response.overall_code).expect("known code")
}

async fn http_get(server: &RunningServer, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{}{path}", server.http_addr()))
        .await
        .expect("HTTP answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("HTTP body"))
}

/// The value of one series in `/metrics`, e.g. `quotad_store_connected{store="redis"}`.
async fn sample(server: &RunningServer, series: &str) -> f64 {
    let (_, text) = http_get(server, "/metrics").await;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from /metrics:\n{text}"))
}

/// Polls `/ready` until it reports `ready`; `tick` runs between polls (to move the clock).
async fn wait_ready(server: &RunningServer, ready: bool, mut tick: impl FnMut()) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, body) = http_get(server, "/ready").await;
        if (status == 200) == ready {
            return;
        }
        assert!(Instant::now() < deadline, "/ready stayed {status} {body}");
        tick();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Three instances on `store`; returns once each reports ready (its store reachable).
async fn three_instances(
    store: StoreSettings,
    clock: &ManualClock,
    limit: u32,
) -> Vec<RunningServer> {
    let mut servers = Vec::new();
    for _ in 0..3 {
        let config = config(store.clone(), StoreErrorPolicy::Error, clock, limit);
        let server = app::start(config).await.expect("server starts");
        wait_ready(&server, true, || {}).await;
        servers.push(server);
    }
    servers
}

/// Sends `count` concurrent requests for one key, spread round-robin across `servers`, and
/// checks that exactly `limit` are admitted, each with a distinct remaining count.
async fn burst_admits_exactly_the_limit(servers: &[RunningServer], limit: u32, count: usize) {
    let mut clients = Vec::new();
    for server in servers {
        clients.push(client(server).await);
    }
    let mut calls = JoinSet::new();
    for index in 0..count {
        let mut client = clients[index % clients.len()].clone();
        calls.spawn(async move { ask(&mut client, "shared").await });
    }
    let mut remaining = Vec::new();
    let mut over = 0;
    while let Some(answer) = calls.join_next().await {
        let response = answer.expect("call task").expect("no call may fail");
        match code(&response) {
            Code::Ok => remaining.push(response.statuses[0].limit_remaining),
            Code::OverLimit => over += 1,
            other => panic!("unexpected code {other:?}"),
        }
    }
    remaining.sort_unstable();
    let expected: Vec<u32> = (0..limit).collect();
    assert_eq!(
        remaining,
        expected,
        "admitted {} of {count}",
        remaining.len()
    );
    assert_eq!(over, count - limit as usize);
    for client in &mut clients {
        let after = ask(client, "shared").await.expect("answer");
        assert_eq!(
            code(&after),
            Code::OverLimit,
            "every instance sees the spent budget"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_redis_admit_exactly_the_limit() {
    let Some(redis) = RedisServer::start("three_instances_on_one_redis") else {
        return;
    };
    let clock = ManualClock::new(START);
    let store =
        StoreSettings::redis(RedisStoreConfig::standalone(redis.url()).with_timeout(PATIENT));
    let servers = three_instances(store, &clock, 40).await;
    burst_admits_exactly_the_limit(&servers, 40, 150).await;
    for server in servers {
        server.shutdown().await.expect("clean shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_a_redis_cluster_admit_exactly_the_limit() {
    let Some(cluster) = RedisCluster::start("three_instances_on_a_redis_cluster") else {
        return;
    };
    let clock = ManualClock::new(START);
    let store =
        StoreSettings::redis(RedisStoreConfig::cluster(cluster.urls()).with_timeout(PATIENT));
    let servers = three_instances(store, &clock, 40).await;
    burst_admits_exactly_the_limit(&servers, 40, 150).await;
    for server in servers {
        server.shutdown().await.expect("clean shutdown");
    }
}

/// What the traffic task saw: answers by outcome, and the slowest call.
#[derive(Debug, Default)]
struct Seen {
    ok: usize,
    over_limit: usize,
    unavailable: usize,
    slowest: Duration,
}

/// Sends requests for fresh values until `stop`, counting what comes back.
async fn traffic(mut client: Client, stop: Arc<AtomicBool>, answered: Arc<AtomicUsize>) -> Seen {
    let mut seen = Seen::default();
    for index in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let started = Instant::now();
        match ask(&mut client, &format!("flow-{index}")).await {
            Ok(response) if code(&response) == Code::Ok => seen.ok += 1,
            Ok(_) => seen.over_limit += 1,
            Err(status) if status.code() == tonic::Code::Unavailable => seen.unavailable += 1,
            Err(status) => panic!("unexpected failure {status:?}"),
        }
        seen.slowest = seen.slowest.max(started.elapsed());
        answered.fetch_add(1, Ordering::Relaxed);
    }
    seen
}

/// Kills Redis under traffic, checks the policy's answers and readiness, restarts it, and
/// checks that readiness and enforcement come back.
async fn outage(policy: StoreErrorPolicy, test: &str) {
    let Some(mut redis) = RedisServer::start(test) else {
        return;
    };
    let clock = ManualClock::new(START);
    let store = StoreSettings::Redis {
        config: RedisStoreConfig::standalone(redis.url()).with_timeout(TIGHT),
        probe_interval: Duration::from_millis(50),
    };
    let server = app::start(config(store, policy, &clock, 3))
        .await
        .expect("server starts");
    wait_ready(&server, true, || {}).await;
    let mut client = client(&server).await;
    for expected in [Code::Ok, Code::Ok, Code::Ok, Code::OverLimit] {
        assert_eq!(
            code(&ask(&mut client, "before").await.expect("answer")),
            expected
        );
    }

    let (stop, answered) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let flow = tokio::spawn(traffic(client.clone(), stop.clone(), answered.clone()));
    redis.kill();
    wait_ready(&server, false, || {}).await;
    let breaker = "quotad_store_breaker_open{store=\"redis\"}";
    let deadline = Instant::now() + DEADLINE;
    while sample(&server, breaker).await != 1.0 {
        assert!(Instant::now() < deadline, "the breaker never opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Answers keep coming with the breaker open: wait for a good number more.
    let target = answered.load(Ordering::Relaxed) + 50;
    while answered.load(Ordering::Relaxed) < target {
        assert!(
            Instant::now() < deadline,
            "traffic stalled during the outage"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let seen = flow.await.expect("traffic task");
    eprintln!("{policy} outage: {seen:?}");
    assert!(seen.slowest < FAST, "a call took {:?}", seen.slowest);
    let during = ask(&mut client, "during").await;
    match policy {
        StoreErrorPolicy::Allow => {
            assert_eq!((seen.over_limit, seen.unavailable), (0, 0), "{seen:?}");
            assert_eq!(code(&during.expect("allowed")), Code::Ok);
        }
        StoreErrorPolicy::Deny => {
            assert!(seen.over_limit >= 50 && seen.unavailable == 0, "{seen:?}");
            assert_eq!(code(&during.expect("denied")), Code::OverLimit);
        }
        StoreErrorPolicy::Error => {
            assert!(seen.unavailable >= 50 && seen.over_limit == 0, "{seen:?}");
            assert_eq!(
                during.expect_err("unavailable").code(),
                tonic::Code::Unavailable
            );
        }
    }
    assert!(sample(&server, "quotad_store_errors_total{store=\"redis\"}").await >= 50.0);
    assert_eq!(
        sample(&server, "quotad_store_connected{store=\"redis\"}").await,
        0.0
    );

    redis.restart();
    // The breaker counts its cool-down on the shared clock: move it so a probe goes through.
    wait_ready(&server, true, || clock.advance(Duration::from_secs(1))).await;
    for expected in [Code::Ok, Code::Ok, Code::Ok, Code::OverLimit] {
        assert_eq!(
            code(&ask(&mut client, "after").await.expect("answer")),
            expected
        );
    }
    assert_eq!(sample(&server, breaker).await, 0.0);
    assert_eq!(
        sample(&server, "quotad_store_connected{store=\"redis\"}").await,
        1.0
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_fails_open_with_allow() {
    outage(
        StoreErrorPolicy::Allow,
        "killed_redis_fails_open_with_allow",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_fails_closed_with_deny() {
    outage(
        StoreErrorPolicy::Deny,
        "killed_redis_fails_closed_with_deny",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_is_unavailable_with_error() {
    outage(
        StoreErrorPolicy::Error,
        "killed_redis_is_unavailable_with_error",
    )
    .await;
}
