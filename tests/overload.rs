//! Overload and oversized input at the gRPC transport. A store that holds every call until the
//! test opens a gate fills the load-shedding budget deterministically (no timing): past the
//! running and queued calls, calls are answered at once with RESOURCE_EXHAUSTED, health checks
//! still answer, and once the gate opens the held calls finish and new ones are served again.
//! A request larger than `max_request_bytes` gets OUT_OF_RANGE naming the limit.

#[allow(dead_code)] // this binary uses only the rules and request helpers
mod common;

use std::num::NonZeroUsize;
use std::sync::Arc;

use common::{descriptor, request};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use quotad::app::{self, GrpcSettings, ServerConfig};
use quotad::clock::{ManualClock, Timestamp};
use quotad::engine::{Ban, Plan, Readings};
use quotad::service::{RateLimiter, shared_rules};
use quotad::store::{CounterStore, MemoryStore, StoreError};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// A memory store whose calls report that they started, then wait until the gate closes.
struct GatedStore {
    inner: MemoryStore,
    entered: mpsc::UnboundedSender<()>,
    gate: Arc<Semaphore>,
}

impl CounterStore for GatedStore {
    async fn apply(&self, plan: &Plan<'_>) -> Result<Readings, StoreError> {
        let _ = self.entered.send(());
        // The gate never has permits: closing it is what lets every call through.
        let _ = self.gate.acquire().await;
        self.inner.apply(plan).await
    }

    async fn start_ban(&self, ban: &Ban, now: Timestamp) -> Result<(), StoreError> {
        self.inner.start_ban(ban, now).await
    }

    async fn bans(&self, now: Timestamp) -> Result<Vec<Ban>, StoreError> {
        self.inner.bans(now).await
    }

    async fn active_bans(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.inner.active_bans(now).await
    }

    async fn lift_ban(&self, identity: &[u8], now: Timestamp) -> Result<bool, StoreError> {
        self.inner.lift_ban(identity, now).await
    }
}

type Client = RateLimitServiceClient<Channel>;

/// Serves the RateLimitService (wrapped exactly as `app::start` wraps it) and gRPC health on
/// loopback; returns the address, the store's "entered" receiver and its gate.
async fn serve_gated(
    settings: GrpcSettings,
) -> (String, mpsc::UnboundedReceiver<()>, Arc<Semaphore>) {
    let (entered, entered_rx) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    let store = GatedStore {
        inner: MemoryStore::new(),
        entered,
        gate: gate.clone(),
    };
    let clock = ManualClock::new(common::START);
    let limiter = RateLimiter::new(shared_rules(common::rules()), Arc::new(store), clock);
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = format!("http://{}", listener.local_addr().expect("addr"));
    let router = settings.builder().add_service(health).add_service(
        settings
            .load_shedding()
            .wrap(RateLimitServiceServer::new(limiter)),
    );
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(router.serve_with_incoming(incoming));
    (addr, entered_rx, gate)
}

async fn client(addr: &str) -> Client {
    let channel = Channel::from_shared(addr.to_owned()).expect("uri");
    RateLimitServiceClient::new(channel.connect().await.expect("connects"))
}

async fn call(mut client: Client) -> Result<(), tonic::Status> {
    let hot = request(vec![descriptor(&[("hot", "x")])], 0);
    client.should_rate_limit(hot).await.map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excess_calls_are_shed_at_once_and_the_server_recovers() {
    let settings = GrpcSettings {
        concurrency_limit: NonZeroUsize::MIN,
        queue_limit: 1,
        ..GrpcSettings::default()
    };
    let (addr, mut entered, gate) = serve_gated(settings).await;
    let client = client(&addr).await;

    // One call runs (inside the store); the budget now has room for exactly one waiting call.
    let running = tokio::spawn(call(client.clone()));
    entered
        .recv()
        .await
        .expect("the first call reaches the store");

    // Of the next calls, one takes the queue slot and the rest are shed while the gate is shut.
    const EXTRA: usize = 6;
    let (done, mut finished) = mpsc::unbounded_channel();
    for _ in 0..EXTRA {
        let (client, done) = (client.clone(), done.clone());
        tokio::spawn(async move { done.send(call(client).await) });
    }
    for _ in 0..EXTRA - 1 {
        let outcome = finished.recv().await.expect("a call finishes");
        let status = outcome.expect_err("finished while the store is blocked, so it was shed");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("overloaded"), "{status:?}");
    }

    // Health is not behind the shedding budget: a busy quotad is not reported dead.
    let channel = Channel::from_shared(addr.clone()).expect("uri");
    let mut health = HealthClient::new(channel.connect().await.expect("connects"));
    let answer = health.check(HealthCheckRequest::default()).await;
    assert!(answer.is_ok(), "health check under overload: {answer:?}");

    // Opening the gate lets the running and the queued call finish successfully.
    gate.close();
    running
        .await
        .expect("task")
        .expect("the running call is served");
    let queued = finished.recv().await.expect("the queued call finishes");
    queued.expect("the queued call is served");

    // Recovered: the whole budget is free again, and more calls than it holds are served.
    for _ in 0..3 {
        call(client.clone()).await.expect("served after the surge");
    }
}

#[tokio::test]
async fn an_oversized_request_gets_out_of_range_naming_the_limit() {
    let loopback = "127.0.0.1:0".parse().expect("valid address");
    let rules = shared_rules(common::rules());
    let config = ServerConfig::new(loopback, loopback, rules, ManualClock::new(common::START));
    let limit = config.grpc.max_request_bytes;
    let server = app::start(config).await.expect("server starts");
    let mut client = client(&format!("http://{}", server.grpc_addr())).await;

    let huge = "v".repeat(limit + 1);
    let status = client
        .should_rate_limit(request(vec![descriptor(&[("hot", &huge)])], 0))
        .await
        .expect_err("too large");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains(&limit.to_string()), "{status:?}");

    // The connection survives the refusal; a normal request still goes through.
    let normal = request(vec![descriptor(&[("hot", "small")])], 0);
    client.should_rate_limit(normal).await.expect("served");
    server.shutdown().await.expect("clean shutdown");
}
