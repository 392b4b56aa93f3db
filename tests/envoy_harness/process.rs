//! Runs one Envoy process for a test: writes and validates the bootstrap, starts Envoy with one
//! worker and hot restart disabled, waits (generously) for `/ready`, reads the ephemeral ports
//! from the admin API, and kills the process on drop so no test leaves an Envoy behind.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use super::binary::validate;

/// Long enough for a loaded CI machine; only reached when something is actually wrong.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A running Envoy; killed on drop.
#[derive(Debug)]
pub struct Envoy {
    child: Child,
    /// Envoy's admin address.
    pub admin: SocketAddr,
    listeners: HashMap<String, SocketAddr>,
    dir: tempfile::TempDir,
}

impl Envoy {
    /// Starts Envoy with the bootstrap `text` (YAML or JSON) and waits until it is ready.
    pub async fn start(envoy: &Path, text: &str) -> Envoy {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, text).expect("write bootstrap");
        validate(envoy, &config)
            .unwrap_or_else(|error| panic!("bootstrap is invalid:\n{error}\n{text}"));
        let admin_path = dir.path().join("admin.txt");
        let log = std::fs::File::create(dir.path().join("envoy.log")).expect("log file");
        let child = Command::new(envoy)
            .args(["--disable-hot-restart", "--concurrency", "1"])
            .args(["-l", "warning", "-c"])
            .arg(&config)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start envoy");
        let mut envoy = Envoy {
            child,
            admin: "127.0.0.1:0".parse().expect("addr"),
            listeners: HashMap::new(),
            dir,
        };
        let deadline = Instant::now() + DEADLINE;
        envoy.admin = loop {
            let written = std::fs::read_to_string(&admin_path).ok();
            if let Some(addr) = written.and_then(|text| text.trim().parse().ok()) {
                break addr;
            }
            envoy.check_progress(deadline, "wrote no admin address");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let client = reqwest::Client::new();
        loop {
            let ready = client
                .get(format!("http://{}/ready", envoy.admin))
                .send()
                .await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                break;
            }
            envoy.check_progress(deadline, "did not become ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let listeners = client
            .get(format!("http://{}/listeners?format=json", envoy.admin))
            .send()
            .await
            .expect("admin /listeners")
            .text()
            .await
            .expect("listeners body");
        envoy.listeners = parse_listeners(&listeners);
        assert!(!envoy.listeners.is_empty(), "no listener in {listeners}");
        envoy
    }

    /// The bound address of the listener called `name`.
    pub fn listener(&self, name: &str) -> SocketAddr {
        *self
            .listeners
            .get(name)
            .unwrap_or_else(|| panic!("no listener {name}: {:?}", self.listeners))
    }

    /// The URL of `path` on the listener called `listener`.
    pub fn url(&self, listener: &str, path: &str) -> String {
        format!("http://{}{path}", self.listener(listener))
    }

    /// Envoy's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// One counter or gauge from the admin `/stats`, or 0 when Envoy has not created it yet.
    pub async fn stat(&self, name: &str) -> u64 {
        let text = reqwest::get(format!("http://{}/stats?filter=^{name}$", self.admin))
            .await
            .expect("admin /stats")
            .text()
            .await
            .expect("stats body");
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(": ")?.parse().ok())
            .unwrap_or(0)
    }

    fn check_progress(&mut self, deadline: Instant, what: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("Envoy exited early ({status}):\n{}", self.log());
        }
        assert!(
            Instant::now() < deadline,
            "Envoy {what} in time:\n{}",
            self.log()
        );
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Listener names and bound addresses from Envoy's `/listeners?format=json`.
fn parse_listeners(json: &str) -> HashMap<String, SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let statuses = value["listener_statuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    statuses
        .iter()
        .filter_map(|status| {
            let name = status["name"].as_str()?;
            let socket = &status["local_address"]["socket_address"];
            let ip = socket["address"].as_str()?;
            let port = socket["port_value"].as_u64()?;
            Some((name.to_owned(), format!("{ip}:{port}").parse().ok()?))
        })
        .collect()
}
