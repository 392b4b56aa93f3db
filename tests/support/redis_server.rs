//! Private `redis-server` processes for tests: never the machine's shared Redis on 6379. Each
//! server gets a free loopback port and a temp dir, no persistence, and is killed on drop; a
//! watchdog shell also kills it when the test process dies without unwinding (or when the
//! server lives in a `static`, which is never dropped).
//!
//! When `redis-server` is missing, `start` fails loudly under `CI` and otherwise prints a skip
//! notice and returns `None`, so a developer without Redis still runs the rest of the suite.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::time::Instant;

/// How long a server may take to answer after spawning; generous for a loaded 2-core machine.
const STARTUP_DEADLINE: Duration = Duration::from_secs(20);

/// Whether Redis tests can run here; panics under `CI` when they cannot.
pub fn redis_available(test: &str) -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "redis-server is not installed, and CI is set: install redis-server (and redis-cli) to run {test}"
        );
        eprintln!(
            "\n!!!!!!!! SKIPPED {test}: redis-server not found on PATH (install it to run the Redis store tests) !!!!!!!!\n"
        );
    }
    found
}

/// A loopback port nobody uses right now, never handed out twice by this process.
///
/// Ports come from below the kernel's ephemeral range (32768 and up on Linux): a port from
/// that range can be taken by any outgoing connection while its server is down, and then a
/// restart on the same port fails. Walking the range from a random start (rather than drawing
/// at random) keeps one test from picking the port of another test's server while it is down.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    const FIRST: u64 = 20_000;
    const COUNT: u64 = 12_000;
    static NEXT: std::sync::OnceLock<AtomicU64> = std::sync::OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU64::new(RandomState::new().hash_one(0_u8) % COUNT));
    loop {
        let port = (FIRST + next.fetch_add(1, Ordering::Relaxed) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Kills one process when the test process exits, however it exits: the shell blocks reading
/// a pipe only this process holds, and the kernel closes it when this process dies.
struct Watchdog {
    shell: Child,
    _pipe: ChildStdin,
}

impl Watchdog {
    fn guard(pid: u32) -> Self {
        let mut shell = Command::new("sh")
            .args([
                "-c",
                "read _; kill -9 \"$1\" 2>/dev/null",
                "quotad-test-watchdog",
            ])
            .arg(pid.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the watchdog shell");
        let pipe = shell.stdin.take().expect("watchdog stdin");
        Self { shell, _pipe: pipe }
    }

    /// Stands the watchdog down (the server is being killed by hand, and its pid may be reused).
    fn dismiss(mut self) {
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}

/// One private `redis-server`.
pub struct RedisServer {
    port: u16,
    dir: TempDir,
    extra: Vec<String>,
    process: Option<(Child, Watchdog)>,
}

impl RedisServer {
    /// A standalone server, or `None` when Redis is not installed (outside CI).
    pub fn start(test: &str) -> Option<Self> {
        redis_available(test).then(|| Self::start_with(Vec::new()))
    }

    /// A server with extra `redis-server` arguments; panics if it does not come up.
    pub fn start_with(extra: Vec<String>) -> Self {
        let mut server = Self {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir for redis"),
            extra,
            process: None,
        };
        server.launch();
        server
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to clients, as in a crash).
    pub fn kill(&mut self) {
        if let Some((mut child, watchdog)) = self.process.take() {
            watchdog.dismiss();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and dir, empty (nothing was persisted).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// A blocking admin connection (for commands the test sends beside the store).
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("redis url")
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("admin connection to the test redis")
    }

    fn launch(&mut self) {
        let child = spawn(self.port, self.dir.path(), &self.extra);
        let watchdog = Watchdog::guard(child.id());
        self.process = Some((child, watchdog));
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if ping(self.port) {
                return;
            }
            if let Some((child, _)) = self.process.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log =
                    std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
                panic!(
                    "redis-server on port {} exited with {status}:\n{log}",
                    self.port
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within {STARTUP_DEADLINE:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(port: u16, dir: &Path, extra: &[String]) -> Child {
    let log = dir.join("redis.log");
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .args(["--enable-debug-command", "yes"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server")
}

/// Whether a server answers `PING` on `port` right now.
fn ping(port: u16) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}")) else {
        return false;
    };
    let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
        return false;
    };
    redis::cmd("PING")
        .query::<String>(&mut connection)
        .is_ok_and(|pong| pong == "PONG")
}

/// Three masters on loopback, formed with `redis-cli --cluster create`, no replicas.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// A formed cluster whose every node reports `cluster_state:ok`, or `None` when Redis is
    /// not installed (outside CI).
    pub fn start(test: &str) -> Option<Self> {
        if !redis_available(test) {
            return None;
        }
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "5000",
                        "--cluster-port",
                    ]
                    .into_iter()
                    .map(String::from)
                    .chain([free_port().to_string()])
                    .collect(),
                )
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        let output = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = Self { nodes };
        cluster.wait_until_ok();
        Some(cluster)
    }

    /// Every node's `redis://` URL, the seed list for a cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    fn wait_until_ok(&self) {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        for node in &self.nodes {
            let mut connection = node.connection();
            loop {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut connection)
                    .expect("CLUSTER INFO");
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "cluster node {} not ok within {STARTUP_DEADLINE:?}:\n{info}",
                    node.port()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Sends `DEBUG SLEEP <seconds>` from a thread of its own (it blocks the server, and so the
/// sender, for that long); returns once the command is on the wire.
pub fn debug_sleep(server: &RedisServer, seconds: f64) -> std::thread::JoinHandle<()> {
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", server.port())).expect("connect for DEBUG");
    let command = format!("DEBUG SLEEP {seconds}\r\n");
    stream
        .write_all(command.as_bytes())
        .expect("send DEBUG SLEEP");
    std::thread::spawn(move || {
        use std::io::Read;
        let mut reply = [0_u8; 16];
        let _ = stream.read(&mut reply);
    })
}
