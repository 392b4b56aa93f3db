//! Bans over the real transports: a rules file with a `ban`, strikes earned over gRPC, a banned
//! address refused (with `Retry-After`) on every descriptor that carries it, `GET /bans`,
//! `DELETE /bans/...`, the ban series on `/metrics`, and located config errors.

mod ops;

use std::time::Duration;

use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use ops::{
    DEADLINE, MANUAL, client, descriptor, eventually, get, request, sample, start_from, url,
};
use quotad::config;
use tonic::transport::Channel;

const RULES: &str = r#"
domain: auth
response_headers: { style: ietf }
descriptors:
  - key: path
    value: /signin
    descriptors:
      - key: remote_address
        rate_limit:
          unit: minute
          requests_per_unit: 2
          ban: { after: 2, within: 10m, for: 1h }
  - key: remote_address
    rate_limit: { unit: second, requests_per_unit: 1000 }
"#;

const ADDRESS: &str = "192.0.2.7";

/// One call in domain `auth` with one descriptor of `entries`.
async fn ask_auth(
    client: &mut RateLimitServiceClient<Channel>,
    entries: &[(&str, &str)],
) -> RateLimitResponse {
    let mut request = request(vec![descriptor(entries)], 1);
    request.domain = "auth".into();
    client
        .should_rate_limit(request)
        .await
        .expect("call")
        .into_inner()
}

async fn sign_in(client: &mut RateLimitServiceClient<Channel>, address: &str) -> RateLimitResponse {
    ask_auth(client, &[("path", "/signin"), ("remote_address", address)]).await
}

async fn browse(client: &mut RateLimitServiceClient<Channel>, address: &str) -> RateLimitResponse {
    ask_auth(client, &[("remote_address", address)]).await
}

fn header<'a>(response: &'a RateLimitResponse, name: &str) -> Option<&'a str> {
    response
        .response_headers_to_add
        .iter()
        .find(|header| header.key.eq_ignore_ascii_case(name))
        .map(|header| header.value.as_str())
}

async fn delete(url: &str) -> (u16, String) {
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .delete(url)
        .send()
        .await
        .expect("DELETE succeeds");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test]
async fn repeated_sign_in_excesses_ban_the_address_until_lifted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("auth.yaml");
    std::fs::write(&path, RULES).expect("write rules");
    let (server, clock) = start_from(&path, MANUAL).await;
    let mut client = client(&server).await;

    for minute in 0..2 {
        for attempt in 0..2 {
            let answer = sign_in(&mut client, ADDRESS).await;
            assert_eq!(
                answer.overall_code,
                Code::Ok as i32,
                "minute {minute} #{attempt}"
            );
        }
        let excess = sign_in(&mut client, ADDRESS).await;
        assert_eq!(
            excess.overall_code,
            Code::OverLimit as i32,
            "minute {minute}"
        );
        clock.advance(Duration::from_secs(60));
    }

    // Banned everywhere in the domain, well under the address's own 1000/second.
    let banned = browse(&mut client, ADDRESS).await;
    assert_eq!(banned.overall_code, Code::OverLimit as i32);
    let reset = banned.statuses[0].duration_until_reset.expect("reset");
    assert_eq!(reset.seconds, 3_600 - 60, "an hour from the second excess");
    assert_eq!(header(&banned, "retry-after"), Some("3540"));
    assert_eq!(
        browse(&mut client, "192.0.2.8").await.overall_code,
        Code::Ok as i32,
        "other addresses are not banned"
    );

    let (status, body) = get(&url(&server, "/bans")).await;
    assert_eq!(status, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let bans = listed["bans"].as_array().expect("bans array");
    assert_eq!(bans.len(), 1, "{body}");
    assert_eq!(bans[0]["domain"], "auth");
    assert_eq!(bans[0]["key"], "remote_address");
    assert_eq!(bans[0]["value"], ADDRESS);
    assert_eq!(bans[0]["expires_in_seconds"], 3_540);
    let reason = bans[0]["reason"].as_str().expect("reason");
    assert!(
        reason.contains("path_/signin.remote_address") && reason.contains("2 times within 10m"),
        "{reason}"
    );

    let metrics_url = url(&server, "/metrics");
    eventually("the ban series", DEADLINE, || async {
        let (_, metrics) = get(&metrics_url).await;
        let started = sample(&metrics, "quotad_bans_started_total{domain=\"auth\"}");
        let refused = sample(&metrics, "quotad_banned_requests_total{domain=\"auth\"}");
        let active = sample(&metrics, "quotad_bans_active");
        (started == Some(1.0) && refused == Some(1.0) && active == Some(1.0)).then_some(())
    })
    .await;

    let lift = url(&server, &format!("/bans/auth/remote_address/{ADDRESS}"));
    assert_eq!(delete(&lift).await, (200, r#"{"lifted":true}"#.to_owned()));
    assert_eq!(
        browse(&mut client, ADDRESS).await.overall_code,
        Code::Ok as i32
    );
    assert_eq!(delete(&lift).await.0, 404, "nothing left to lift");
    let (_, body) = get(&url(&server, "/bans")).await;
    assert_eq!(body, r#"{"bans":[]}"#);
    server.shutdown().await.expect("clean shutdown");
}

#[test]
fn ban_mistakes_are_located() {
    let yaml = "domain: auth\ndescriptors:\n  - key: remote_address\n    rate_limit:\n      \
                unit: minute\n      requests_per_unit: 5\n      ban: { after: 0, within: 10 \
                minutes, for: 1h, key: api_key }\n  - key: ip\n    rate_limit:\n      \
                unlimited: true\n      ban: { after: 1, within: 1m, for: 1h }\n";
    let errors = config::compile_str("auth.yaml", yaml).expect_err("invalid");
    let text = errors.to_string();
    for expected in [
        "descriptors[0].rate_limit.ban.after",
        "descriptors[0].rate_limit.ban.within",
        "\"10 minutes\"",
        "descriptors[0].rate_limit.ban.key",
        "one of the descriptor keys on this rule's path (remote_address)",
        "descriptors[1].rate_limit.ban",
        "no ban when unlimited is true",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(text.contains("auth.yaml:7"), "located on line 7:\n{text}");
}
