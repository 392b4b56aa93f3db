//! The built `quotad` binary, as an operator runs it: `check` on good and bad rules, then
//! `serve` on free loopback ports, `query` against it, and SIGTERM for a clean exit.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use tokio::time::{Instant, sleep};

const QUOTAD: &str = env!("CARGO_BIN_EXE_quotad");

/// Long enough for a loaded CI machine; only reached when something is actually wrong.
const DEADLINE: Duration = Duration::from_secs(60);

/// How often to look again while waiting for the server.
const POLL: Duration = Duration::from_millis(25);

const GOOD_RULES: &str = "\
domain: api
descriptors:
  - key: api_key
    rate_limit:
      unit: day
      requests_per_unit: 1
      name: per_key
";

const BAD_RULES: &str = "\
domain: api
descriptors:
  - key: api_key
    rate_limit:
      unit: fortnight
      requests_per_unit: 1
";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write rules");
    path
}

fn quotad(args: &[&str]) -> Output {
    Command::new(QUOTAD)
        .args(args)
        .env("QUOTAD_LOG_LEVEL", "warn")
        .output()
        .expect("quotad runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_summarises_good_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "api.yaml", GOOD_RULES);
    let output = quotad(&["check", "--config", path.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(text(&output.stdout).trim(), "domain api: 1 rules, 1 limits");
}

#[test]
fn check_reports_bad_rules_with_their_location() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "bad.yaml", BAD_RULES);
    let output = quotad(&["check", "--config", path.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("bad.yaml:5"), "no file:line in {stderr}");
    assert!(
        stderr.contains("fortnight"),
        "no offending value in {stderr}"
    );
    assert!(text(&output.stdout).is_empty());
}

#[test]
fn query_rejects_malformed_descriptors() {
    let output = quotad(&["query", "--domain", "api", "--descriptor", "no-equals-sign"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(text(&output.stderr).contains("expected key=value"));
}

/// A port that was free a moment ago (the server may lose a race for it; callers retry).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

struct Served {
    child: Child,
    grpc: String,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        // Only reached when a test failed before the clean shutdown; don't leak the process.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `quotad <global_args> serve` and waits until `/healthcheck` says OK, retrying on lost
/// port races.
async fn serve(global_args: &[&str]) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = write(dir.path(), "api.yaml", GOOD_RULES);
    let http = reqwest::Client::new();
    for _attempt in 0..5 {
        let (grpc_port, http_port) = (free_port(), free_port());
        let log = std::fs::File::create(dir.path().join("serve.log")).expect("log file");
        let mut child = Command::new(QUOTAD)
            .args(global_args)
            .args(["serve", "--config", rules.to_str().expect("utf-8 path")])
            .args(["--grpc-addr", &format!("127.0.0.1:{grpc_port}")])
            .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
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
                    "serve exited with {status}:\n{log}"
                );
                break; // lost a port race: try other ports
            }
            if let Ok(response) = http.get(&health).send().await
                && response.status() == reqwest::StatusCode::OK
            {
                return Served {
                    child,
                    grpc: format!("http://127.0.0.1:{grpc_port}"),
                    _dir: dir,
                };
            }
            assert!(Instant::now() < deadline, "server not ready in time");
            sleep(POLL).await;
        }
    }
    panic!("no free ports after several attempts");
}

#[tokio::test]
async fn serve_answers_queries_and_stops_on_sigterm() {
    serves_queries_and_stops_on_sigterm(&[]).await;
}

#[tokio::test]
async fn one_worker_thread_serves_queries_and_stops_on_sigterm() {
    // A current-thread runtime: the signal handler, the blocking pool and every connection
    // share the thread that runs `main`.
    serves_queries_and_stops_on_sigterm(&["--worker-threads", "1"]).await;
}

#[test]
fn zero_worker_threads_is_a_usage_error() {
    let output = quotad(&["--worker-threads", "0", "check", "--config", "unused.yaml"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        text(&output.stderr).contains("--worker-threads"),
        "{output:?}"
    );
}

async fn serves_queries_and_stops_on_sigterm(global_args: &[&str]) {
    let mut served = serve(global_args).await;
    let addr = served.grpc.clone();
    let query = |extra: &[&str]| {
        let mut args = vec!["query", "--addr", &addr, "--domain", "api"];
        args.extend_from_slice(extra);
        quotad(&args)
    };

    let peek = query(&["--descriptor", "api_key=a", "--hits", "0", "--json"]);
    assert_eq!(peek.status.code(), Some(0), "{peek:?}");
    let answer: serde_json::Value = serde_json::from_slice(&peek.stdout).expect("JSON output");
    assert_eq!(answer["overall_code"], "OK");
    assert_eq!(answer["statuses"][0]["limit"]["name"], "per_key");
    assert_eq!(answer["statuses"][0]["limit"]["unit"], "day");
    assert_eq!(answer["statuses"][0]["remaining"], 1);

    // Both descriptors are counted at the same instant, so the second one is over the limit
    // whatever the wall clock says.
    let over = query(&["--descriptor", "api_key=b", "--descriptor", "api_key=b"]);
    assert_eq!(over.status.code(), Some(3), "{over:?}");
    let table = text(&over.stdout);
    assert!(table.starts_with("overall: OVER_LIMIT\n"), "{table}");
    assert!(table.contains("1/day per_key"), "{table}");

    let pid = served.child.id().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let deadline = Instant::now() + DEADLINE;
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
}
