//! The "block an IP that keeps failing to sign in" pattern through a real Envoy 1.40, run from
//! the shipped example (examples/envoy/auth-failures.yaml and its rules): Envoy reports each
//! response's status code per client IP when the stream is done (`%RESPONSE_CODE%` in a
//! `generic_key`, `apply_on_stream_done`), quotad counts the 401s, and once the IP is over the
//! limit every next request from it is refused before it reaches the API.

mod envoy_harness;

use std::net::SocketAddr;

use axum::http::{HeaderMap, StatusCode};
use envoy_harness::{
    Envoy, envoy_or_skip, eventually, examples_dir, http_client, localize, send, start_quotad,
    yaml_documents,
};
use tokio::net::TcpListener;

/// An API whose `/login` answers 401 unless `x-password: secret`; everything else 200.
async fn start_api() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind api");
    let addr = listener.local_addr().expect("api addr");
    let app = axum::Router::new().fallback(|uri: axum::http::Uri, headers: HeaderMap| async move {
        let password = headers
            .get("x-password")
            .and_then(|value| value.to_str().ok());
        if uri.path() == "/login" && password != Some("secret") {
            (StatusCode::UNAUTHORIZED, "wrong password")
        } else {
            (StatusCode::OK, "welcome")
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

const WRONG: [(&str, &str); 1] = [("x-password", "guess")];
const RIGHT: [(&str, &str); 1] = [("x-password", "secret")];

async fn http(method: reqwest::Method, url: &str) -> (u16, String) {
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .request(method, url)
        .send()
        .await
        .expect("quotad admin call");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_bans_an_ip_after_repeated_401s() {
    let Some(envoy_bin) = envoy_or_skip("envoy_bans_an_ip_after_repeated_401s") else {
        return;
    };
    let rules = std::fs::read_to_string(examples_dir().join("envoy/auth-failures-rules.yaml"))
        .expect("example rules");
    let (quotad, _clock) = start_quotad(&rules).await;
    let api = start_api().await;
    let mut bootstrap = yaml_documents(&examples_dir().join("envoy/auth-failures.yaml")).remove(0);
    localize(
        &mut bootstrap,
        &[("app", api), ("quotad", quotad.grpc_addr())],
    );
    let envoy = Envoy::start(&envoy_bin, &bootstrap.to_string()).await;
    let client = http_client();
    let login = |headers: &'static [(&'static str, &'static str)]| {
        let (client, url) = (client.clone(), envoy.url("ingress", "/login"));
        async move { send(&client, "POST", &url, headers).await }
    };
    let bans_url = format!("http://{}/bans", quotad.http_addr());

    // Successful logins report 200 at stream done: no rule, nothing counted.
    for _ in 0..20 {
        assert_eq!(login(&RIGHT).await.status, 200, "{}", envoy.log());
    }
    // Five failures are within the limit; the sixth 401 is the excess that starts the ban.
    for attempt in 1..=6 {
        assert_eq!(login(&WRONG).await.status, 401, "attempt {attempt}");
        if attempt < 6 {
            let (_, listed) = http(reqwest::Method::GET, &bans_url).await;
            assert_eq!(listed, r#"{"bans":[]}"#, "no ban after {attempt} failures");
        }
    }
    // The stream-done report is asynchronous: wait until it has banned the address.
    let refused = eventually("the ban refuses a correct password", || async {
        let reply = login(&RIGHT).await;
        (reply.status == 429).then_some(reply)
    })
    .await;
    assert_eq!(refused.header("retry-after"), Some("3600"), "{refused:?}");
    assert_eq!(
        refused.body,
        r#"{"error":{"code":"TOO_MANY_FAILED_LOGINS","retry_after":3600}}"#
    );
    let other_path = send(&client, "GET", &envoy.url("ingress", "/orders"), &[]).await;
    assert_eq!(
        other_path.status, 429,
        "the whole domain refuses a banned IP"
    );

    let (status, listed) = http(reqwest::Method::GET, &bans_url).await;
    assert_eq!(status, 200);
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("JSON");
    let ban = &listed["bans"][0];
    assert_eq!(ban["key"], "remote_address");
    assert_eq!(ban["value"], "127.0.0.1", "{listed}");
    assert_eq!(ban["expires_in_seconds"], 3_600);

    let lift = format!("{bans_url}/auth/remote_address/127.0.0.1");
    assert_eq!(http(reqwest::Method::DELETE, &lift).await.0, 200);
    assert_eq!(login(&RIGHT).await.status, 200, "lifted");
}
