//! SIGTERM under load, on the built binary: traffic keeps flowing on long-lived connections
//! (as from Envoy) while the signal arrives; `/healthcheck` turns 503 first while gRPC still
//! answers, then the listener closes, the calls already accepted finish, and the process exits
//! 0. The only errors clients may see are for calls the server never accepted (refused after
//! GOAWAY, no listener any more, or cancelled by the client before sending because its
//! connection had closed) — never a call cut short.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor,
};
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use tokio::time::{Instant, sleep};
use tonic::Code;
use tonic::transport::Channel;

const QUOTAD: &str = env!("CARGO_BIN_EXE_quotad");

/// Long enough for a loaded CI machine; only reached when something is actually wrong.
const DEADLINE: Duration = Duration::from_secs(60);

const POLL: Duration = Duration::from_millis(20);

const RULES: &str = "\
domain: api
descriptors:
  - key: api_key
    rate_limit: {unit: second, requests_per_unit: 1000000}
";

/// Connections held open like Envoy's, and concurrent callers on each.
const CONNECTIONS: usize = 3;
const CALLERS_PER_CONNECTION: usize = 4;

struct Served {
    child: Child,
    grpc: String,
    health: String,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        // Only reached when a test failed before the clean exit; don't leak the process.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

async fn health_status(http: &reqwest::Client, url: &str) -> Option<u16> {
    let response = http.get(url).send().await.ok()?;
    Some(response.status().as_u16())
}

/// Starts `quotad serve` with a short drain delay and waits for readiness (retrying on lost
/// port races).
async fn serve(http: &reqwest::Client) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("api.yaml");
    std::fs::write(&rules, RULES).expect("write rules");
    for _attempt in 0..5 {
        let (grpc_port, http_port) = (free_port(), free_port());
        let log = std::fs::File::create(dir.path().join("serve.log")).expect("log file");
        let mut child = Command::new(QUOTAD)
            .args(["serve", "--config", rules.to_str().expect("utf-8 path")])
            .args(["--grpc-addr", &format!("127.0.0.1:{grpc_port}")])
            .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
            .args(["--drain-delay", "500ms", "--shutdown-grace", "10s"])
            .env("QUOTAD_LOG_LEVEL", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("quotad serve starts");
        let health = format!("http://127.0.0.1:{http_port}/healthcheck");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("child status") {
                let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
                assert!(
                    log.contains("cannot listen"),
                    "exited with {status}:\n{log}"
                );
                break; // lost a port race: try other ports
            }
            if health_status(http, &health).await == Some(200) {
                let grpc = format!("http://127.0.0.1:{grpc_port}");
                return Served {
                    child,
                    grpc,
                    health,
                    _dir: dir,
                };
            }
            assert!(Instant::now() < deadline, "server not ready in time");
            sleep(POLL).await;
        }
    }
    panic!("no free ports after several attempts");
}

fn request(caller: usize) -> RateLimitRequest {
    let entry = rate_limit_descriptor::Entry {
        key: "api_key".into(),
        value: format!("caller-{caller}"),
    };
    RateLimitRequest {
        domain: "api".into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![entry],
            ..RateLimitDescriptor::default()
        }],
        hits_addend: 0,
    }
}

/// What the callers saw, shared between them and the test.
#[derive(Default)]
struct Tally {
    served: AtomicUsize,
    served_while_draining: AtomicUsize,
    draining: AtomicBool,
}

/// Calls until the first error and returns it (or `None` when the server is gone for good).
async fn caller(channel: Channel, id: usize, tally: Arc<Tally>) -> Option<tonic::Status> {
    let mut client = RateLimitServiceClient::new(channel);
    loop {
        match client.should_rate_limit(request(id)).await {
            Ok(_) => {
                tally.served.fetch_add(1, Ordering::Relaxed);
                if tally.draining.load(Ordering::Relaxed) {
                    tally.served_while_draining.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(status) => return Some(status),
        }
    }
}

/// Whether the call failed without the server ever accepting it: refused (UNAVAILABLE: a
/// refused stream after GOAWAY, or no listener any more), still queued in the client when its
/// connection closed (hyper cancels those before sending them), or opened after the last
/// stream a graceful GOAWAY (NO_ERROR) said the server would process — by RFC 9113 §6.8 the
/// server never processed it, which h2 reports as a GOAWAY error on that stream.
fn never_sent(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    let causes: Vec<&(dyn std::error::Error + 'static)> = std::iter::from_fn(|| {
        let current = source?;
        source = current.source();
        Some(current)
    })
    .collect();
    let canceled_before_sending = causes.iter().any(|error| {
        error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
    });
    let beyond_graceful_goaway = causes.iter().any(|error| {
        error.downcast_ref::<h2::Error>().is_some_and(|error| {
            error.is_go_away() && error.is_remote() && error.reason() == Some(h2::Reason::NO_ERROR)
        })
    });
    status.code() == Code::Unavailable
        || (status.code() == Code::Cancelled && canceled_before_sending)
        || beyond_graceful_goaway
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_fails_health_first_then_finishes_accepted_calls_and_exits_0() {
    let http = reqwest::Client::new();
    let mut served = serve(&http).await;
    let tally = Arc::new(Tally::default());
    let mut callers = tokio::task::JoinSet::new();
    for connection in 0..CONNECTIONS {
        let endpoint = Channel::from_shared(served.grpc.clone()).expect("uri");
        let channel = endpoint.connect().await.expect("connects");
        for index in 0..CALLERS_PER_CONNECTION {
            let id = connection * CALLERS_PER_CONNECTION + index;
            callers.spawn(caller(channel.clone(), id, tally.clone()));
        }
    }
    let deadline = Instant::now() + DEADLINE;
    while tally.served.load(Ordering::Relaxed) < 100 {
        assert!(Instant::now() < deadline, "no traffic before SIGTERM");
        sleep(POLL).await;
    }

    let pid = served.child.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(kill.expect("kill runs").success());
    loop {
        match health_status(&http, &served.health).await {
            Some(503) => break,
            Some(200) => {}
            other => panic!("healthcheck answered {other:?} before turning 503"),
        }
        assert!(Instant::now() < deadline, "healthcheck never turned 503");
        sleep(POLL).await;
    }
    tally.draining.store(true, Ordering::Relaxed);

    let status = loop {
        if let Some(status) = served.child.try_wait().expect("child status") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "server did not stop after SIGTERM"
        );
        sleep(POLL).await;
    };
    assert_eq!(status.code(), Some(0), "exit after SIGTERM: {status}");

    let mut errors = Vec::new();
    while let Some(ended) = callers.join_next().await {
        errors.extend(ended.expect("caller task"));
    }
    let cut_short: Vec<_> = errors.iter().filter(|status| !never_sent(status)).collect();
    assert!(
        cut_short.is_empty(),
        "calls failed other than by refusal: {cut_short:?}"
    );
    assert!(
        tally.served_while_draining.load(Ordering::Relaxed) > 0,
        "gRPC must keep answering while the healthcheck reports 503"
    );
}

/// Reads HTTP/2 frames from `tcp` until a GOAWAY arrives; false if the connection ends first.
async fn goaway_arrives(tcp: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    const GOAWAY: u8 = 0x7;
    let mut header = [0u8; 9];
    while tcp.read_exact(&mut header).await.is_ok() {
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]);
        if header[3] == GOAWAY {
            return true;
        }
        let mut payload = vec![0u8; length as usize];
        if tcp.read_exact(&mut payload).await.is_err() {
            return false;
        }
    }
    false
}

#[tokio::test]
async fn connections_past_their_max_age_are_sent_goaway() {
    use tokio::io::AsyncWriteExt;
    let loopback = "127.0.0.1:0".parse().expect("valid address");
    let rules = quotad::service::shared_rules(quotad::engine::RuleSet::default());
    let clock = quotad::clock::ManualClock::new(quotad::clock::Timestamp::from_secs(0));
    let mut config = quotad::app::ServerConfig::new(loopback, loopback, rules, clock);
    config.grpc.max_connection_age = Some(Duration::from_millis(100));
    let server = quotad::app::start(config).await.expect("server starts");

    // An idle HTTP/2 client: the preface and an empty SETTINGS frame, then only listening.
    let mut tcp = tokio::net::TcpStream::connect(server.grpc_addr())
        .await
        .expect("connects");
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    tcp.write_all(&hello).await.expect("preface sent");
    let goaway = tokio::time::timeout(DEADLINE, goaway_arrives(&mut tcp)).await;
    assert_eq!(
        goaway,
        Ok(true),
        "no GOAWAY once the connection was past its age"
    );
    // This client never answers the server's closing PING, so it must hang up itself.
    drop(tcp);
    server.shutdown().await.expect("clean shutdown");
}
