//! Concurrency limits through a real Envoy 1.40: an acquire on the request path, a release from
//! an `apply_on_stream_done` action with `is_negative_hits`, and an upstream that holds each
//! request open. Envoy sends the release for requests it answered with 429 too, so quotad keeps
//! a rejected acquire counted until that release arrives and the count stays exact.

mod envoy_harness;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::google::protobuf::UInt64Value;

use envoy_harness::{HeldUpstream, Listener, Stack, envoy_or_skip, eventually};

const MAX_IN_FLIGHT: u32 = 5;

const RULES: &str = r#"
domain: jobs
descriptors:
  - key: tenant
    rate_limit: { algorithm: concurrency, max_in_flight: 5, lease_ttl: 5m }
"#;

/// Acquire when the request starts; release (`is_negative_hits`) when its stream is done.
const ACTIONS: &str = r#"
- actions:
  - request_headers: { header_name: x-tenant, descriptor_key: tenant }
- actions:
  - request_headers: { header_name: x-tenant, descriptor_key: tenant }
  apply_on_stream_done: true
  hits_addend: { number: 1, is_negative_hits: true }
"#;

const TENANT: [(&str, &str); 1] = [("x-tenant", "acme")];

/// Slots free for tenant `acme`, asked straight from quotad without consuming (`hits_addend` 0).
async fn free_slots(stack: &Stack) -> u32 {
    let url = format!("http://{}", stack.quotad.grpc_addr());
    let mut client = RateLimitServiceClient::connect(url)
        .await
        .expect("grpc connect");
    let request = RateLimitRequest {
        domain: "jobs".into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![Entry {
                key: "tenant".into(),
                value: "acme".into(),
            }],
            hits_addend: Some(UInt64Value { value: 0 }),
            ..RateLimitDescriptor::default()
        }],
        hits_addend: 0,
    };
    let response = client.should_rate_limit(request).await.expect("query");
    response.into_inner().statuses[0].limit_remaining
}

/// Waits until every release Envoy owes has reached quotad: no request in flight.
async fn until_idle(stack: &Stack) {
    eventually("every lease released", || async {
        (free_slots(stack).await == MAX_IN_FLIGHT).then_some(())
    })
    .await;
}

/// Sends `count` requests at once while the upstream holds the admitted ones; returns the
/// admitted count once every rejected one has its 429 and every admitted one reached the
/// upstream, then lets the admitted ones finish and checks they end with 200.
async fn burst(stack: &Stack, upstream: &HeldUpstream, count: usize) -> (usize, usize) {
    let before = upstream.arrived();
    let requests: Vec<_> = (0..count)
        .map(|_| {
            let client = stack.client.clone();
            let url = stack.envoy.url("jobs", "/run");
            tokio::spawn(async move { envoy_harness::send(&client, "GET", &url, &TENANT).await })
        })
        .collect();
    let admitted = MAX_IN_FLIGHT as usize;
    upstream
        .wait_for_arrivals(before + admitted.min(count))
        .await;
    upstream.finish(admitted.min(count));
    let mut statuses = Vec::with_capacity(count);
    for request in requests {
        statuses.push(request.await.expect("task").status);
    }
    assert_eq!(
        upstream.arrived(),
        before + admitted.min(count),
        "no extra request got through"
    );
    let ok = statuses.iter().filter(|&&status| status == 200).count();
    let rejected = statuses.iter().filter(|&&status| status == 429).count();
    assert_eq!(ok + rejected, count, "only 200s and 429s: {statuses:?}");
    (ok, rejected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn envoy_admits_exactly_max_in_flight_and_releases_every_lease() {
    let Some(envoy) = envoy_or_skip("envoy_admits_exactly_max_in_flight") else {
        return;
    };
    let upstream = HeldUpstream::start().await;
    let listener = Listener::new("jobs", "jobs")
        .route("/", "")
        .filter_rate_limits(ACTIONS);
    let stack = Stack::start_with_upstream(&envoy, RULES, upstream.addr, vec![listener]).await;

    assert_eq!(
        burst(&stack, &upstream, 8).await,
        (5, 3),
        "8 at once: 5 run, 3 refused"
    );
    until_idle(&stack).await;
    assert_eq!(
        burst(&stack, &upstream, 8).await,
        (5, 3),
        "when they finish, 5 more run"
    );
    until_idle(&stack).await;

    // 50 refused while 5 run: each refusal's own release comes back from Envoy.
    assert_eq!(upstream.arrived(), 10);
    let running: Vec<_> = (0..5)
        .map(|_| {
            let client = stack.client.clone();
            let url = stack.envoy.url("jobs", "/run");
            tokio::spawn(async move { envoy_harness::send(&client, "GET", &url, &TENANT).await })
        })
        .collect();
    upstream.wait_for_arrivals(15).await;
    assert_eq!(free_slots(&stack).await, 0, "five running hold every slot");
    let refused = stack.statuses("jobs", "GET", "/run", &TENANT, 50).await;
    assert_eq!(refused, [429; 50], "no slot while 5 run");
    upstream.finish(5);
    for reply in running {
        assert_eq!(reply.await.expect("task").status, 200);
    }
    until_idle(&stack).await;

    // 50 completed, 5 at a time.
    let mut completed = 0;
    for _ in 0..10 {
        let (ok, rejected) = burst(&stack, &upstream, 5).await;
        assert_eq!((ok, rejected), (5, 0));
        completed += ok;
        until_idle(&stack).await;
    }
    assert_eq!(completed, 50);
    assert_eq!(free_slots(&stack).await, MAX_IN_FLIGHT, "nothing leaked");
    stack.stop().await;
}
