//! `algorithm: distinct` over gRPC from a rules file: one API key used from more addresses in
//! an hour than its limit is refused for new addresses, then banned with the `ban` it carries;
//! and the config mistakes a user can make with it are reported with their place.

mod ops;

use std::time::Duration;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use ops::{MANUAL, client, descriptor, request, start_from};
use quotad::config;
use tonic::transport::Channel;

const RULES: &str = r#"
domain: api
descriptors:
  - key: api_key
    descriptors:
      - key: remote_address
        rate_limit:
          unit: hour
          requests_per_unit: 3
          algorithm: distinct
          ban: { after: 2, within: 1h, for: 1d, key: api_key }
"#;

async fn call(client: &mut RateLimitServiceClient<Channel>, key: &str, address: &str) -> Code {
    let descriptors = vec![descriptor(&[("api_key", key), ("remote_address", address)])];
    let answer = client
        .should_rate_limit(request(descriptors, 1))
        .await
        .expect("call")
        .into_inner();
    Code::try_from(answer.overall_code).expect("known code")
}

#[tokio::test]
async fn a_key_shared_too_widely_is_refused_then_banned() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("api.yaml");
    std::fs::write(&path, RULES).expect("write rules");
    let (server, clock) = start_from(&path, MANUAL).await;
    let mut client = client(&server).await;
    for address in ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1"] {
        assert_eq!(
            call(&mut client, "k_live", address).await,
            Code::Ok,
            "{address}"
        );
    }
    assert_eq!(
        call(&mut client, "k_live", "10.0.0.4").await,
        Code::OverLimit,
        "4th address"
    );
    assert_eq!(
        call(&mut client, "k_live", "10.0.0.2").await,
        Code::Ok,
        "known addresses pass"
    );
    assert_eq!(
        call(&mut client, "k_other", "10.0.0.4").await,
        Code::Ok,
        "other keys"
    );
    assert_eq!(
        call(&mut client, "k_live", "10.0.0.5").await,
        Code::OverLimit,
        "2nd strike"
    );
    assert_eq!(
        call(&mut client, "k_live", "10.0.0.1").await,
        Code::OverLimit,
        "banned: even a known address is refused"
    );
    clock.advance(Duration::from_secs(86_400));
    assert_eq!(
        call(&mut client, "k_live", "10.0.0.9").await,
        Code::Ok,
        "a day later"
    );
    server.shutdown().await.expect("clean shutdown");
}

#[test]
fn distinct_mistakes_are_located() {
    let yaml = "domain: api\nalgorithm: distinct\ndescriptors:\n  - key: api_key\n    \
                rate_limit: { unit: hour, requests_per_unit: 3, algorithm: distinct }\n";
    let text = config::compile_str("api.yaml", yaml)
        .expect_err("invalid")
        .to_string();
    for expected in [
        "api.yaml:2",
        "(set concurrency or distinct on the limit)",
        "api.yaml:5",
        "descriptors[0].rate_limit.algorithm",
        "algorithm distinct on a nested descriptor",
        "a top-level descriptor (api_key)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
