//! A private TLS-only `redis-server` for the `rediss://` tests: a throwaway CA and a server
//! certificate for `127.0.0.1`/`localhost` made with `rcgen` in a temp dir, the plain-text port
//! closed (`--port 0`) so only TLS can reach it, no persistence, killed on drop.
//!
//! Availability follows `redis_server`: missing `redis-server` fails under `CI` and otherwise
//! skips loudly. Debian's `redis-server` is built with TLS; one built without it fails to start
//! here with its log in the panic message, rather than skipping silently.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use redis::TlsCertificates;
use tempfile::TempDir;
use tokio::time::Instant;

use super::redis_server::{free_port, redis_available};

/// How long the server may take to answer over TLS; generous for a loaded 2-core machine.
const STARTUP_DEADLINE: Duration = Duration::from_secs(20);

/// One private `redis-server` that speaks only TLS, on a free loopback port.
pub struct TlsRedisServer {
    port: u16,
    ca_pem: String,
    child: Child,
    // Removed only after `drop` has killed the server, so it never runs without its files.
    dir: TempDir,
}

impl TlsRedisServer {
    /// A running server, or `None` when Redis is not installed (outside CI).
    pub fn start(test: &str) -> Option<Self> {
        redis_available(test).then(Self::launch)
    }

    /// The TLS port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rediss://127.0.0.1:<port>`: verified, so it needs the CA from [`Self::ca_pem`].
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }

    /// `rediss://127.0.0.1:<port>/#insecure`: the redis crate skips certificate verification.
    pub fn insecure_url(&self) -> String {
        format!("{}/#insecure", self.url())
    }

    /// The throwaway CA that signed the server certificate, as PEM.
    pub fn ca_pem(&self) -> &[u8] {
        self.ca_pem.as_bytes()
    }

    fn launch() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for redis");
        let ca_pem = write_certificates(dir.path());
        let port = free_port();
        let child = spawn(port, dir.path());
        let mut server = Self {
            port,
            ca_pem,
            child,
            dir,
        };
        server.wait_until_ready();
        server
    }

    /// Polls with a verified TLS `PING` until it answers, the server dies, or the deadline.
    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if self.ping() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log =
                    std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
                panic!(
                    "TLS redis-server on port {} exited with {status} (built without TLS?):\n{log}",
                    self.port
                );
            }
            assert!(
                Instant::now() < deadline,
                "TLS redis-server on port {} did not answer PING within {STARTUP_DEADLINE:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        let certificates = TlsCertificates {
            client_tls: None,
            root_cert: Some(self.ca_pem.clone().into_bytes()),
        };
        let Ok(client) = redis::Client::build_with_tls(self.url(), certificates) else {
            return false;
        };
        let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_millis(500))
        else {
            return false;
        };
        redis::cmd("PING")
            .query::<String>(&mut connection)
            .is_ok_and(|pong| pong == "PONG")
    }
}

impl Drop for TlsRedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `ca.pem`, `server.pem` and `server.key` into `dir`; returns the CA's PEM.
fn write_certificates(dir: &Path) -> String {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "quotad test redis CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_pem = ca_params.self_signed(&ca_key).expect("CA cert").pem();
    let ca = Issuer::new(ca_params, ca_key);

    // rcgen turns "127.0.0.1" into an IP SAN, which is what a client dialing the IP checks.
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "quotad test redis");
    let key = KeyPair::generate().expect("server key");
    let cert = params.signed_by(&key, &ca).expect("server cert");

    std::fs::write(dir.join("ca.pem"), &ca_pem).expect("write ca.pem");
    std::fs::write(dir.join("server.pem"), cert.pem()).expect("write server.pem");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write server.key");
    ca_pem
}

fn spawn(tls_port: u16, dir: &Path) -> Child {
    Command::new("redis-server")
        // No plain-text port: a store that reaches this server has spoken TLS.
        .args(["--port", "0", "--tls-port", &tls_port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .arg("--tls-cert-file")
        .arg(dir.join("server.pem"))
        .arg("--tls-key-file")
        .arg(dir.join("server.key"))
        .arg("--tls-ca-cert-file")
        .arg(dir.join("ca.pem"))
        .args(["--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server")
}
