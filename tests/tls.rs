//! TLS and mTLS on the gRPC listener with throwaway certificates (a CA, a server cert and a
//! client cert made by `rcgen` in a temp dir): TLS clients that trust the CA are served and
//! plain-text ones are not; under mTLS only a client with a CA-signed certificate is served;
//! rewriting the files rotates the certificate without a restart; unusable files fail the
//! start with an error naming the file.

#[allow(dead_code)] // this binary uses only the rules and request helpers
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{descriptor, request};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use quotad::app::{self, RunningServer, ServerConfig, TlsFiles};
use quotad::clock::ManualClock;
use quotad::service::shared_rules;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// Long enough for a loaded CI machine; only reached when something is actually wrong.
const DEADLINE: Duration = Duration::from_secs(60);

/// A CA that signs server and client certificates, and the files it wrote.
struct Pki {
    dir: tempfile::TempDir,
    ca: Issuer<'static, KeyPair>,
    ca_pem: String,
}

/// A certificate and its key, as PEM.
struct Leaf {
    cert: String,
    key: String,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "quotad test CA");
        let key = KeyPair::generate().expect("CA key");
        let ca_pem = params.self_signed(&key).expect("CA cert").pem();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), &ca_pem).expect("write CA");
        Self {
            dir,
            ca: Issuer::new(params, key),
            ca_pem,
        }
    }

    /// A certificate for `localhost` and 127.0.0.1 named `common_name`, signed by the CA.
    fn leaf(&self, common_name: &str) -> Leaf {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let mut params = CertificateParams::new(names).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("signed");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `leaf` as the server's cert.pem and key.pem.
    fn install(&self, leaf: &Leaf) {
        std::fs::write(self.path("key.pem"), &leaf.key).expect("write key");
        std::fs::write(self.path("cert.pem"), &leaf.cert).expect("write cert");
    }

    fn files(&self, mtls: bool) -> TlsFiles {
        TlsFiles {
            cert: self.path("cert.pem"),
            key: self.path("key.pem"),
            client_ca: mtls.then(|| self.path("ca.pem")),
        }
    }
}

fn config(files: TlsFiles) -> ServerConfig<ManualClock> {
    let loopback = "127.0.0.1:0".parse().expect("valid address");
    let rules = shared_rules(common::rules());
    let mut config = ServerConfig::new(loopback, loopback, rules, ManualClock::new(common::START));
    config.grpc.tls = Some(files);
    config
}

async fn serve(files: TlsFiles) -> RunningServer {
    app::start(config(files)).await.expect("server starts")
}

/// One ShouldRateLimit call over `channel`; Err carries the gRPC status.
async fn call(channel: Channel) -> Result<(), tonic::Status> {
    let mut client = RateLimitServiceClient::new(channel);
    client
        .should_rate_limit(request(vec![descriptor(&[("free", "x")])], 0))
        .await
        .map(drop)
}

/// A TLS channel trusting the test CA, optionally presenting `identity`.
async fn tls_channel(
    server: &RunningServer,
    pki: &Pki,
    identity: Option<&Leaf>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    if let Some(leaf) = identity {
        tls = tls.identity(Identity::from_pem(&leaf.cert, &leaf.key));
    }
    Channel::from_shared(format!("https://{}", server.grpc_addr()))
        .expect("valid uri")
        .tls_config(tls)?
        .connect()
        .await
}

#[tokio::test]
async fn tls_serves_clients_that_trust_the_ca_and_refuses_plain_text() {
    let pki = Pki::new();
    pki.install(&pki.leaf("quotad"));
    let server = serve(pki.files(false)).await;

    let channel = tls_channel(&server, &pki, None)
        .await
        .expect("TLS connects");
    call(channel).await.expect("served over TLS");

    let plain = Channel::from_shared(format!("http://{}", server.grpc_addr())).expect("uri");
    let refused = match plain.connect().await {
        Ok(channel) => call(channel).await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a plain-text client must not be served");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn mtls_serves_only_clients_with_a_ca_signed_certificate() {
    let pki = Pki::new();
    pki.install(&pki.leaf("quotad"));
    let server = serve(pki.files(true)).await;

    let anonymous = match tls_channel(&server, &pki, None).await {
        Ok(channel) => call(channel).await.is_err(),
        Err(_) => true,
    };
    assert!(anonymous, "a client without a certificate must be refused");

    let stranger_ca = Pki::new();
    let stranger = stranger_ca.leaf("envoy");
    let foreign = match tls_channel(&server, &pki, Some(&stranger)).await {
        Ok(channel) => call(channel).await.is_err(),
        Err(_) => true,
    };
    assert!(foreign, "a certificate from another CA must be refused");

    let envoy = pki.leaf("envoy");
    let channel = tls_channel(&server, &pki, Some(&envoy))
        .await
        .expect("mTLS connects");
    call(channel)
        .await
        .expect("served with a CA-signed client certificate");
    server.shutdown().await.expect("clean shutdown");
}

/// The leaf certificate the server presents in a fresh handshake.
async fn presented_certificate(server: &RunningServer, pki: &Pki) -> CertificateDer<'static> {
    let mut roots = RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).expect("PEM CA");
    roots.add(ca).expect("CA added");
    let config = ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(server.grpc_addr())
        .await
        .expect("connects");
    let name = ServerName::try_from("localhost").expect("name");
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake");
    let certs = tls
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certificate");
    certs[0].clone().into_owned()
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let pki = Pki::new();
    let first = pki.leaf("quotad-1");
    pki.install(&first);
    let server = serve(pki.files(false)).await;
    assert_eq!(presented_certificate(&server, &pki).await, first.der);

    let second = pki.leaf("quotad-2");
    pki.install(&second);
    let deadline = Instant::now() + DEADLINE;
    while presented_certificate(&server, &pki).await != second.der {
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await.expect("clean shutdown");
}

/// The start error's full chain, as an operator would read it.
async fn start_error(files: TlsFiles) -> String {
    let error = app::start(config(files)).await.expect_err("start fails");
    quotad::telemetry::error_chain(&error)
}

fn name(path: &Path) -> String {
    path.display().to_string()
}

#[tokio::test]
async fn unusable_tls_files_fail_the_start_naming_the_file() {
    let pki = Pki::new();
    pki.install(&pki.leaf("quotad"));

    let mut missing = pki.files(false);
    missing.cert = pki.path("nope.pem");
    let message = start_error(missing.clone()).await;
    assert!(message.contains(&name(&missing.cert)), "{message}");

    std::fs::write(pki.path("garbage.pem"), "not PEM at all").expect("write");
    let mut garbage = pki.files(false);
    garbage.key = pki.path("garbage.pem");
    let message = start_error(garbage.clone()).await;
    assert!(message.contains(&name(&garbage.key)), "{message}");
    assert!(message.contains("private key"), "{message}");

    let other = pki.leaf("other");
    std::fs::write(pki.path("other-key.pem"), &other.key).expect("write");
    let mut mismatch = pki.files(false);
    mismatch.key = pki.path("other-key.pem");
    let message = start_error(mismatch.clone()).await;
    assert!(message.contains(&name(&mismatch.key)), "{message}");
    assert!(
        message.contains("do not make a usable certificate and key"),
        "{message}"
    );

    let mut no_ca = pki.files(true);
    no_ca.client_ca = Some(pki.path("garbage.pem"));
    let message = start_error(no_ca).await;
    assert!(message.contains("garbage.pem"), "{message}");
}
