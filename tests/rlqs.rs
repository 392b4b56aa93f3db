//! The Rate Limit Quota Service over a real socket: a tonic client opens
//! `StreamRateLimitQuotas` against an in-process quotad (manual clock parked at midnight UTC),
//! reports usage like Envoy 1.40 does, and reads the assignments. Covers bucket matching via
//! the `rlqs` block, counters shared with `ShouldRateLimit`, the no-match default, the fair
//! split across streams, window rollover, reload re-send with abandon, metrics and shutdown.

#[allow(dead_code)] // the shared fixtures; this file uses a few of them
mod common;
mod rlqs_client;
mod support;

use std::time::Duration;

use envoy_types::pb::envoy::service::rate_limit_quota::v3::BucketId;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use quotad::app::StoreSettings;
use quotad::clock::ManualClock;
use quotad::config::compile_str;
use quotad::store::redis::RedisStoreConfig;

use common::{START, ask, client, descriptor_with_hits, request};
use rlqs_client::{Said, bucket, eventually, key, open, said, start, start_with};
use support::redis_server::RedisServer;

/// `api`: buckets `{name: edge-keyed, api_key: K}` limited to `limit` per minute per key;
/// `{name: open}` unlimited; anything else gets `no_match`.
fn rules(limit: u32, no_match: &str) -> String {
    format!(
        "domain: api
rlqs: {{ bucket_entries: [name, api_key], no_match: {no_match} }}
descriptors:
  - key: name
    value: edge-keyed
    descriptors:
      - key: api_key
        rate_limit: {{ unit: minute, requests_per_unit: {limit} }}
  - key: name
    value: open
    rate_limit: {{ unlimited: true }}
"
    )
}

#[tokio::test]
async fn usage_counts_in_the_same_counters_as_should_rate_limit() {
    let (server, clock) = start(&rules(10, "allow")).await;
    let mut stream = open(&server).await;
    let k = key("K");
    // Envoy's first report for a bucket carries the request that created it.
    assert_eq!(
        stream.ask("api", &k, 1).await,
        Said::Tokens { max: 9, ttl: 60 }
    );
    // Three hits through ShouldRateLimit spend the same budget.
    let mut rls = client(&server).await;
    let pairs = [("name", "edge-keyed"), ("api_key", "K")];
    let (code, statuses) = ask(&mut rls, request(vec![descriptor_with_hits(&pairs, 3)], 0)).await;
    assert_eq!((code, statuses[0].limit_remaining), (Code::Ok, 6));
    assert_eq!(
        stream.ask("api", &k, 2).await,
        Said::Tokens { max: 4, ttl: 60 }
    );
    // Spent: DENY_ALL until the window resets, and ShouldRateLimit agrees.
    assert_eq!(stream.ask("api", &k, 4).await, Said::Deny { ttl: 60 });
    let (code, _) = ask(&mut rls, request(vec![descriptor_with_hits(&pairs, 1)], 0)).await;
    assert_eq!(code, Code::OverLimit);
    // Other keys have their own budget.
    assert_eq!(
        stream.ask("api", &key("other"), 0).await,
        Said::Tokens { max: 10, ttl: 60 }
    );
    // The next window admits again.
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        stream.ask("api", &k, 0).await,
        Said::Tokens { max: 10, ttl: 60 }
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn replicas_on_one_redis_share_the_budget_between_rlqs_and_should_rate_limit() {
    let Some(redis) = RedisServer::start("rlqs_replicas_share_redis") else {
        return;
    };
    let clock = ManualClock::new(START);
    let store = || StoreSettings::Redis {
        config: RedisStoreConfig::standalone(redis.url()),
        probe_interval: Duration::from_millis(50),
    };
    let yaml = rules(10, "allow");
    let (one, two) = (
        start_with(&yaml, store(), &clock).await,
        start_with(&yaml, store(), &clock).await,
    );
    let mut stream = open(&one).await;
    let k = key("K");
    assert_eq!(
        stream.ask("api", &k, 3).await,
        Said::Tokens { max: 7, ttl: 60 }
    );
    let mut rls = client(&two).await;
    let pairs = [("name", "edge-keyed"), ("api_key", "K")];
    let (code, statuses) = ask(&mut rls, request(vec![descriptor_with_hits(&pairs, 2)], 0)).await;
    assert_eq!((code, statuses[0].limit_remaining), (Code::Ok, 5));
    let mut other_replica = open(&two).await;
    assert_eq!(
        other_replica.ask("api", &k, 5).await,
        Said::Deny { ttl: 60 }
    );
    assert_eq!(stream.ask("api", &k, 0).await, Said::Deny { ttl: 60 });
    one.shutdown().await.expect("clean shutdown");
    two.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_failed_store_leaves_the_bucket_unanswered_and_the_stream_open() {
    let Some(mut redis) = RedisServer::start("rlqs_failed_store") else {
        return;
    };
    let clock = ManualClock::new(START);
    let store = StoreSettings::Redis {
        config: RedisStoreConfig::standalone(redis.url()).with_timeout(Duration::from_millis(200)),
        probe_interval: Duration::from_millis(50),
    };
    let server = start_with(&rules(10, "allow"), store, &clock).await;
    let mut stream = open(&server).await;
    let k = key("K");
    assert_eq!(
        stream.ask("api", &k, 1).await,
        Said::Tokens { max: 9, ttl: 60 }
    );
    redis.kill();
    stream.report("api", &[(&k, 2)]).await;
    let metrics = server.metrics();
    eventually("the store error to be counted", || {
        metrics.render().lines().any(|line| {
            line.starts_with("quotad_store_errors_total")
                && line.rsplit(' ').next().is_some_and(|count| count != "0")
        })
    })
    .await;
    // Nothing was sent for K (Envoy keeps its assignment until the TTL); the stream still
    // answers buckets that need no counter.
    let open_bucket = bucket(&[("name", "open")]);
    assert_eq!(
        stream.ask("api", &open_bucket, 1).await,
        Said::Allow { ttl: 10 }
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn unmatched_buckets_get_the_domain_default() {
    let (server, _clock) = start(&rules(10, "deny")).await;
    let mut stream = open(&server).await;
    let stranger = bucket(&[("name", "stranger")]);
    assert_eq!(
        stream.ask("api", &stranger, 1).await,
        Said::Deny { ttl: 10 }
    );
    let open_bucket = bucket(&[("name", "open")]);
    assert_eq!(
        stream.ask("api", &open_bucket, 5).await,
        Said::Allow { ttl: 10 }
    );
    // A domain quotad has no rules for is allowed, as ShouldRateLimit allows it.
    assert_eq!(
        stream.ask("elsewhere", &stranger, 1).await,
        Said::Allow { ttl: 10 }
    );
    // Without an rlqs block keys are sorted: [api_key, name] matches nothing here.
    let (server2, _clock) = start(&rules(10, "allow").replace(
        "rlqs: { bucket_entries: [name, api_key], no_match: allow }\n",
        "",
    ))
    .await;
    let mut sorted = open(&server2).await;
    assert_eq!(
        sorted.ask("api", &key("K"), 1).await,
        Said::Allow { ttl: 10 }
    );
    server.shutdown().await.expect("clean shutdown");
    server2.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn streams_split_a_bucket_and_a_closed_stream_frees_its_share() {
    let (server, _clock) = start(&rules(10, "allow")).await;
    let (mut a, mut b) = (open(&server).await, open(&server).await);
    let k = key("K");
    assert_eq!(a.ask("api", &k, 0).await, Said::Tokens { max: 10, ttl: 60 });
    // B arrives while A holds everything: it waits for A's next report.
    assert_eq!(b.ask("api", &k, 0).await, Said::Deny { ttl: 10 });
    assert_eq!(a.ask("api", &k, 0).await, Said::Tokens { max: 5, ttl: 60 });
    assert_eq!(b.ask("api", &k, 0).await, Said::Tokens { max: 5, ttl: 60 });
    drop(a);
    let metrics = server.metrics();
    eventually("the closed stream to be forgotten", || {
        metrics.render().contains("quotad_rlqs_streams 1")
    })
    .await;
    assert_eq!(b.ask("api", &k, 0).await, Said::Tokens { max: 10, ttl: 60 });
    let text = metrics.render();
    for line in [
        "quotad_rlqs_buckets 1",
        "quotad_rlqs_reports_total 5",
        "quotad_rlqs_assignments_total{kind=\"token_bucket\"} 4",
        "quotad_rlqs_assignments_total{kind=\"deny_all\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_reload_resends_assignments_and_abandons_buckets_whose_rule_is_gone() {
    let (server, _clock) = start(&rules(10, "allow")).await;
    let mut stream = open(&server).await;
    let (k, open_bucket) = (key("K"), bucket(&[("name", "open")]));
    stream.report("api", &[(&k, 4), (&open_bucket, 1)]).await;
    let first: Vec<Said> = stream.next().await.iter().map(said).collect();
    assert_eq!(
        first,
        [Said::Tokens { max: 6, ttl: 60 }, Said::Allow { ttl: 10 }]
    );
    // The limit drops to 5 and the `open` rule disappears; nothing is reported.
    let lowered = rules(5, "allow").replace(
        "  - key: name\n    value: open\n    rate_limit: { unlimited: true }\n",
        "",
    );
    let lowered = compile_str("rules.yaml", &lowered).expect("valid rules");
    server.rules().store(lowered.into());
    let mut resent = stream.next().await;
    resent.sort_by_key(|action| action.bucket_id.as_ref().map(|id| id.bucket.len()));
    let resent: Vec<(Option<&BucketId>, Said)> = resent
        .iter()
        .map(|action| (action.bucket_id.as_ref(), said(action)))
        .collect();
    assert_eq!(
        resent,
        [
            (Some(&open_bucket), Said::Abandon),
            // Only 1 remains, and the stream may already have spent its whole grant of 6:
            // nothing more until its next report says otherwise.
            (Some(&k), Said::Deny { ttl: 10 }),
        ]
    );
    assert_eq!(
        stream.ask("api", &k, 0).await,
        Said::Tokens { max: 1, ttl: 60 }
    );
    // Raising the limit is re-sent the same way: 100 - 4 used - the 1 just granted.
    let raised = compile_str("rules.yaml", &rules(100, "allow")).expect("valid rules");
    server.rules().store(raised.into());
    let resent: Vec<Said> = stream.next().await.iter().map(said).collect();
    assert_eq!(resent, [Said::Tokens { max: 95, ttl: 60 }]);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_ends_open_streams_instead_of_waiting_for_them() {
    let (server, _clock) = start(&rules(10, "allow")).await;
    let mut stream = open(&server).await;
    assert_eq!(
        stream.ask("api", &key("K"), 0).await,
        Said::Tokens { max: 10, ttl: 60 }
    );
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown does not wait out the grace period")
        .expect("clean shutdown");
    let end = tokio::time::timeout(Duration::from_secs(10), stream.answers.message()).await;
    assert!(matches!(end, Ok(Ok(None)) | Ok(Err(_))), "{end:?}");
}
