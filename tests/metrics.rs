//! `GET /metrics` over a real socket: per-rule counters exactly as envoyproxy/ratelimit counts
//! them (total, within, near, over, shadow), request counts and latency by method and
//! outcome, store keys — and a label set that stays the same size whatever values arrive.

mod ops;

use ops::{
    MANUAL, client, descriptor, get, hit_user, post, request, sample, series_count, start_from, url,
};

const RULES: &str = "\
domain: api
descriptors:
  - key: user
    rate_limit:
      unit: minute
      requests_per_unit: 10
  - key: trial
    shadow_mode: true
    rate_limit:
      unit: minute
      requests_per_unit: 1
  - key: tenant
    detailed_metric: true
    rate_limit:
      unit: minute
      requests_per_unit: 5
  - key: remote_address
    rate_limit:
      unit: second
      requests_per_unit: 5
";

fn rule(name: &str, key_path: &str) -> String {
    format!("{name}{{domain=\"api\",key_path=\"{key_path}\"}}")
}

async fn scrape(server: &quotad::app::RunningServer) -> String {
    let (status, body) = get(&url(server, "/metrics")).await;
    assert_eq!(status, 200);
    body
}

#[tokio::test]
async fn rules_are_counted_like_envoyproxy_ratelimit() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("api.yaml"), RULES).expect("write");
    let (server, _clock) = start_from(dir.path(), MANUAL).await;
    let mut client = client(&server).await;
    for _ in 0..12 {
        hit_user(&mut client, "alice", 1).await;
    }
    for _ in 0..3 {
        let descriptors = vec![descriptor(&[("trial", "t")])];
        client
            .should_rate_limit(request(descriptors, 1))
            .await
            .expect("call succeeds");
    }
    for tenant in ["acme", "globex"] {
        let descriptors = vec![descriptor(&[("tenant", tenant)])];
        client
            .should_rate_limit(request(descriptors, 2))
            .await
            .expect("call succeeds");
    }
    let metrics = scrape(&server).await;
    let count = |name: &str, key_path: &str| sample(&metrics, &rule(name, key_path));
    // 10/minute: hits 1-10 allowed, 8-10 at or above 80%, 11-12 over.
    assert_eq!(
        count("quotad_rule_hits_total", "user"),
        Some(12.0),
        "{metrics}"
    );
    assert_eq!(count("quotad_rule_within_limit_total", "user"), Some(10.0));
    assert_eq!(count("quotad_rule_near_limit_total", "user"), Some(3.0));
    assert_eq!(count("quotad_rule_over_limit_total", "user"), Some(2.0));
    assert_eq!(count("quotad_rule_shadow_mode_total", "user"), Some(0.0));
    // Shadow mode: over-limit hits are allowed, and counted as both over limit and shadow.
    assert_eq!(count("quotad_rule_hits_total", "trial"), Some(3.0));
    assert_eq!(count("quotad_rule_over_limit_total", "trial"), Some(2.0));
    assert_eq!(count("quotad_rule_shadow_mode_total", "trial"), Some(2.0));
    // detailed_metric: the operator asked for values, so each tenant is its own series.
    assert_eq!(count("quotad_rule_hits_total", "tenant_acme"), Some(2.0));
    assert_eq!(count("quotad_rule_hits_total", "tenant_globex"), Some(2.0));
    assert_eq!(count("quotad_rule_hits_total", "tenant"), None);

    let ok = "quotad_requests_total{method=\"should_rate_limit\",outcome=\"ok\"}";
    let over = "quotad_requests_total{method=\"should_rate_limit\",outcome=\"over_limit\"}";
    assert_eq!(sample(&metrics, ok), Some(15.0));
    assert_eq!(sample(&metrics, over), Some(2.0));
    let latency =
        "quotad_request_duration_seconds_count{method=\"should_rate_limit\",outcome=\"ok\"}";
    assert_eq!(sample(&metrics, latency), Some(15.0), "{metrics}");
    assert!(metrics.contains("# TYPE quotad_request_duration_seconds histogram"));
    // One counter each for alice, t, acme and globex.
    assert_eq!(
        sample(&metrics, "quotad_store_keys{store=\"memory\"}"),
        Some(4.0)
    );
    assert_eq!(
        sample(&metrics, "quotad_config_reloads_total{result=\"success\"}"),
        Some(1.0)
    );
    assert!(metrics.contains("# HELP quotad_rule_hits_total "));

    // POST /json is the same decision path, counted under its own method.
    let body = r#"{"domain":"api","descriptors":[{"entries":[{"key":"user","value":"bob"}]}]}"#;
    assert_eq!(post(&url(&server, "/json"), body).await.0, 200);
    let metrics = scrape(&server).await;
    let json_ok = "quotad_requests_total{method=\"json\",outcome=\"ok\"}";
    assert_eq!(sample(&metrics, json_ok), Some(1.0));
    server.shutdown().await.expect("clean shutdown");
}

/// 100,000 distinct client IPs must not add a single series: values never become labels.
#[tokio::test]
async fn distinct_ips_do_not_grow_the_label_set() {
    const PER_REQUEST: usize = 50;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("api.yaml"), RULES).expect("write");
    let (server, _clock) = start_from(dir.path(), MANUAL).await;
    let mut client = client(&server).await;
    let mut send = async |batch: usize| {
        let ips: Vec<String> = (0..PER_REQUEST)
            .map(|i| {
                let n = batch * PER_REQUEST + i;
                format!("10.{}.{}.{}", n >> 16, (n >> 8) & 0xff, n & 0xff)
            })
            .collect();
        let descriptors = ips
            .iter()
            .map(|ip| descriptor(&[("remote_address", ip)]))
            .collect();
        client
            .should_rate_limit(request(descriptors, 1))
            .await
            .expect("call succeeds");
    };
    send(0).await;
    let before = series_count(&scrape(&server).await);
    for batch in 1..100_000 / PER_REQUEST {
        send(batch).await;
    }
    let metrics = scrape(&server).await;
    assert_eq!(
        series_count(&metrics),
        before,
        "series grew with traffic values"
    );
    assert_eq!(
        sample(&metrics, &rule("quotad_rule_hits_total", "remote_address")),
        Some(100_000.0)
    );
    assert_eq!(
        sample(&metrics, "quotad_store_keys{store=\"memory\"}"),
        Some(100_000.0)
    );
    server.shutdown().await.expect("clean shutdown");
}
