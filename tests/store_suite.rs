//! One behaviour suite for every counter store: the behaviours in `support/store_behaviours.rs`
//! run against the memory store, a private standalone `redis-server` and a private three-master
//! Redis Cluster. Then what only Redis has: key TTLs, `NOSCRIPT` recovery, and faults — a
//! killed server (fail fast, breaker opens, recovery after restart) and a stalled one (timeout).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use quotad::clock::{ManualClock, Timestamp};
use quotad::engine::{Limit, RuleSet, TimeUnit, Window};
use quotad::store::redis::{BreakerConfig, BreakerState, RedisStoreConfig};
use quotad::store::{MemoryStore, RedisStore, StoreError};
use tokio::time::Instant;

use support::redis_server::{RedisCluster, RedisServer, debug_sleep};
use support::store_behaviours::{self as behaviours, Harness, T0};

/// Behaviour tests are about answers, not speed: a loaded CI machine must not time them out.
const SUITE_TIMEOUT: Duration = Duration::from_secs(2);

fn clock() -> ManualClock {
    ManualClock::new(Timestamp::from_secs(T0))
}

fn memory(_test: &str) -> Option<(Harness<MemoryStore>, ())> {
    Some((Harness::new(MemoryStore::new(), clock()), ()))
}

fn redis_store(config: RedisStoreConfig, clock: &ManualClock) -> RedisStore {
    RedisStore::new(&config, clock.clone()).expect("redis store")
}

fn redis_standalone(test: &str) -> Option<(Harness<RedisStore>, RedisServer)> {
    let server = RedisServer::start(test)?;
    let clock = clock();
    let config = RedisStoreConfig::standalone(server.url()).with_timeout(SUITE_TIMEOUT);
    Some((Harness::new(redis_store(config, &clock), clock), server))
}

/// One cluster for the whole test binary (forming one takes seconds); tests use their own
/// domains, so they never share a counter. It lives in a static, so its watchdogs kill it.
fn redis_cluster(test: &str) -> Option<(Harness<RedisStore>, &'static RedisCluster)> {
    static CLUSTER: OnceLock<Option<RedisCluster>> = OnceLock::new();
    let cluster = CLUSTER.get_or_init(|| RedisCluster::start(test)).as_ref()?;
    let clock = clock();
    let config = RedisStoreConfig::cluster(cluster.urls()).with_timeout(SUITE_TIMEOUT);
    Some((Harness::new(redis_store(config, &clock), clock), cluster))
}

/// Expands the listed behaviours as tests in module `$backend`, built by the function of the
/// same name, which returns the harness and whatever keeps its servers alive.
macro_rules! suite_for {
    ($backend:ident { $($test:ident),* $(,)? }) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some((harness, _servers)) = super::$backend(stringify!($test)) else {
                        return;
                    };
                    super::behaviours::$test(&harness).await;
                }
            )*
        }
    };
}

macro_rules! every_store {
    ($($test:ident),* $(,)?) => {
        suite_for!(memory { $($test),* });
        suite_for!(redis_standalone { $($test),* });
        suite_for!(redis_cluster { $($test),* });
    };
}

every_store!(
    fixed_window_limit_is_exact,
    windows_roll_over_on_the_clock,
    sliding_window_weights_the_previous_window,
    multiplier_windows_count_together,
    zero_hits_read_without_counting,
    huge_hits_saturate,
    counts_survive_a_threshold_change,
    several_descriptors_in_one_request,
    concurrent_tasks_admit_exactly_the_limit,
    calendar_windows_follow_the_utc_calendar,
    refunds_return_rejected_hits_to_their_window,
    token_bucket_admits_the_burst_then_the_rate,
    token_bucket_reports_exactly_when_to_retry,
    token_bucket_refunds_a_rejected_request,
    token_bucket_is_exact_under_concurrency,
    concurrency_acquires_up_to_the_maximum_and_releases_exactly_one,
    concurrency_releases_never_go_below_zero,
    concurrency_leases_are_forgotten_after_two_generations,
    concurrency_admits_exactly_the_maximum_under_concurrency,
    negative_hits_refund_a_window,
    bans_start_on_strikes_and_end_on_the_clock,
    bans_are_listed_extended_and_lifted,
    distinct_values_are_exact_up_to_the_limit,
    distinct_values_past_the_exact_bound_are_estimated,
);

/// An admin connection beside the store, of whichever kind the backend is.
enum Admin {
    Standalone(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Admin {
    async fn connect(urls: Vec<String>) -> Self {
        if let [url] = urls.as_slice() {
            let client = redis::Client::open(url.as_str()).expect("url");
            Admin::Standalone(
                client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("admin"),
            )
        } else {
            let client = redis::cluster::ClusterClient::new(urls).expect("urls");
            Admin::Cluster(client.get_async_connection().await.expect("admin"))
        }
    }

    async fn query<T: redis::FromRedisValue>(&mut self, command: &redis::Cmd) -> T {
        let result = match self {
            Admin::Standalone(connection) => command.query_async(connection).await,
            Admin::Cluster(connection) => command.query_async(connection).await,
        };
        result.expect("admin command")
    }
}

/// Keys expire two windows after their last write; reads create nothing.
async fn keys_carry_a_ttl(harness: &Harness<RedisStore>, urls: Vec<String>) {
    let mut admin = Admin::connect(urls).await;
    let rules = harness.rules(vec![Limit::new(5, Window::of(TimeUnit::Minute))]);
    harness.hit(&rules, "unread", 0).await;
    let unread = harness.keys(&rules, &[("unread", 0)]).remove(0);
    let exists: u32 = admin.query(redis::cmd("EXISTS").arg(&unread)).await;
    assert_eq!(exists, 0, "a 0-hit read writes nothing");
    harness.hit(&rules, "a", 1).await;
    let key = harness.keys(&rules, &[("a", 1)]).remove(0);
    let ttl: i64 = admin.query(redis::cmd("PTTL").arg(&key)).await;
    assert!((1..=120_000).contains(&ttl), "PTTL {ttl} ms");
}

/// After `SCRIPT FLUSH` (as after a restart or failover) the script is reloaded transparently.
async fn script_survives_a_flush(harness: &Harness<RedisStore>, urls: Vec<String>) {
    let mut admin = Admin::connect(urls).await;
    let rules = harness.rules(vec![Limit::new(5, Window::of(TimeUnit::Minute))]);
    assert_eq!(harness.hit(&rules, "a", 1).await, (false, 4));
    let _: () = admin.query(redis::cmd("SCRIPT").arg("FLUSH")).await;
    assert_eq!(harness.hit(&rules, "a", 1).await, (false, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_keys_carry_a_ttl() {
    let Some((harness, server)) = redis_standalone("standalone_keys_carry_a_ttl") else {
        return;
    };
    keys_carry_a_ttl(&harness, vec![server.url()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_keys_carry_a_ttl() {
    let Some((harness, cluster)) = redis_cluster("cluster_keys_carry_a_ttl") else {
        return;
    };
    keys_carry_a_ttl(&harness, cluster.urls()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_script_survives_a_flush() {
    let Some((harness, server)) = redis_standalone("standalone_script_survives_a_flush") else {
        return;
    };
    script_survives_a_flush(&harness, vec![server.url()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_script_survives_a_flush() {
    let Some((harness, cluster)) = redis_cluster("cluster_script_survives_a_flush") else {
        return;
    };
    script_survives_a_flush(&harness, cluster.urls()).await;
}

/// A store with the production timeout (50 ms) and a breaker that opens after 3 failures.
fn faulty_setup(test: &str) -> Option<(Harness<RedisStore>, RedisServer)> {
    let server = RedisServer::start(test)?;
    Some((faulty_store(&server), server))
}

fn faulty_store(server: &RedisServer) -> Harness<RedisStore> {
    let clock = clock();
    let breaker = BreakerConfig {
        failure_threshold: 3.try_into().unwrap(),
        cool_down: Duration::from_secs(1),
    };
    let config = RedisStoreConfig::standalone(server.url()).with_breaker(breaker);
    Harness::new(redis_store(config, &clock), clock)
}

/// "Well under a second": the timeout is 50 ms, the margin absorbs a busy 2-core machine.
const FAST: Duration = Duration::from_millis(800);

/// Calls until one succeeds, moving the breaker's clock past each cool-down; panics after 15 s.
async fn wait_for_recovery(harness: &Harness<RedisStore>, rules: &RuleSet) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        harness.clock.advance(Duration::from_secs(1));
        if harness.store.ping().await.is_ok() {
            assert!(!harness.hit(rules, "probe", 1).await.0);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery: {:?}",
            harness.store.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What one traffic task saw: answers, failures, and its slowest call.
#[derive(Debug, Default)]
struct Traffic {
    answered: u32,
    unavailable: u32,
    slowest: Duration,
}

/// Sends requests until `stop`; every failure must be `Unavailable`.
async fn traffic(harness: Arc<Harness<RedisStore>>, stop: Arc<AtomicBool>) -> Traffic {
    let rules = harness.rules(vec![Limit::new(1_000_000, Window::of(TimeUnit::Hour))]);
    let mut seen = Traffic::default();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        match try_hit(&harness, &rules).await {
            Ok(_) => seen.answered += 1,
            Err(StoreError::Unavailable(_)) => seen.unavailable += 1,
        }
        seen.slowest = seen.slowest.max(started.elapsed());
        // Yield so the test's own task gets the runtime between calls.
        tokio::task::yield_now().await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_fails_fast_opens_the_breaker_and_recovers() {
    let Some((harness, mut server)) = faulty_setup("killed_redis_fails_fast") else {
        return;
    };
    let harness = Arc::new(harness);
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..4)
        .map(|_| tokio::spawn(traffic(harness.clone(), stop.clone())))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while harness.store.status().successes < 50 {
        assert!(Instant::now() < deadline, "no traffic got through");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    // Traffic keeps flowing while Redis is dead: every call answers fast; the breaker opens.
    while harness.store.status().breaker != BreakerState::Open {
        assert!(Instant::now() < deadline, "breaker never opened");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let fail_fast_before = harness.store.status().errors.breaker_open;
    while harness.store.status().errors.breaker_open < fail_fast_before + 100 {
        assert!(
            Instant::now() < deadline,
            "open breaker is not failing fast"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut slowest = Duration::ZERO;
    for task in tasks {
        let seen = task.await.expect("traffic task");
        assert!(seen.answered > 0 && seen.unavailable > 0, "{seen:?}");
        slowest = slowest.max(seen.slowest);
    }
    let status = harness.store.status();
    eprintln!("killed redis: slowest call {slowest:?}; {status:?}");
    assert!(slowest < FAST, "a call took {slowest:?}");
    assert!(!status.connected);
    assert!(
        status.errors.timeout + status.errors.connection >= 3,
        "{status:?}"
    );
    let open = try_hit(
        &harness,
        &harness.rules(vec![Limit::new(1, Window::of(TimeUnit::Hour))]),
    )
    .await;
    assert!(
        matches!(&open, Err(StoreError::Unavailable(cause)) if cause.contains("breaker open")),
        "{open:?}"
    );

    server.restart();
    let restarted = Instant::now();
    let rules = harness.rules(vec![Limit::new(1_000, Window::of(TimeUnit::Hour))]);
    wait_for_recovery(&harness, &rules).await;
    eprintln!(
        "killed redis: recovered {:?} after restart",
        restarted.elapsed()
    );
    let status = harness.store.status();
    assert_eq!(status.breaker, BreakerState::Closed);
    assert!(status.connected);
    // Enforcement resumed (the restarted Redis kept nothing: it persists nothing).
    let limited = harness.rules(vec![Limit::new(2, Window::of(TimeUnit::Hour))]);
    assert_eq!(harness.hit(&limited, "after", 1).await, (false, 1));
    assert_eq!(harness.hit(&limited, "after", 1).await, (false, 0));
    assert_eq!(harness.hit(&limited, "after", 1).await, (true, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_redis_times_out_at_the_call_timeout() {
    let Some((harness, server)) = faulty_setup("stalled_redis_times_out") else {
        return;
    };
    let rules = harness.rules(vec![Limit::new(1_000, Window::of(TimeUnit::Hour))]);
    try_hit(&harness, &rules).await.expect("redis is up");
    let sleeper = debug_sleep(&server, 1.5);
    // The first call queued behind DEBUG SLEEP must give up at the timeout, not after 1.5 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (took, error) = loop {
        let started = Instant::now();
        if let Err(error) = try_hit(&harness, &rules).await {
            break (started.elapsed(), error);
        }
        assert!(
            Instant::now() < deadline,
            "no call ever waited on DEBUG SLEEP"
        );
    };
    eprintln!("stalled redis: call gave up after {took:?}: {error}");
    assert!(error.to_string().contains("timeout"), "{error}");
    assert!(took >= Duration::from_millis(45), "gave up early: {took:?}");
    assert!(took < FAST, "waited out the stall: {took:?}");
    sleeper.join().expect("DEBUG SLEEP thread");
    assert!(harness.store.status().errors.timeout >= 1);
    wait_for_recovery(&harness, &rules).await;
}

/// One hit on descriptor `k=v`; the store's error when it fails.
async fn try_hit(
    harness: &Harness<RedisStore>,
    rules: &RuleSet,
) -> Result<(bool, u32), StoreError> {
    Ok(harness.try_send(rules, &[("v", 1)]).await?[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_built_while_redis_is_down_connects_later() {
    let Some(mut server) = RedisServer::start("built_while_redis_is_down") else {
        return;
    };
    server.kill();
    let harness = faulty_store(&server);
    let started = Instant::now();
    let rules = harness.rules(vec![Limit::new(10, Window::of(TimeUnit::Hour))]);
    assert!(matches!(
        try_hit(&harness, &rules).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(started.elapsed() < FAST, "took {:?}", started.elapsed());
    server.restart();
    wait_for_recovery(&harness, &rules).await;
    assert_eq!(try_hit(&harness, &rules).await, Ok((false, 9)));
}
