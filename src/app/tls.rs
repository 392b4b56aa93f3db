//! TLS (and mTLS) for the gRPC listener, with certificates that reload without a restart.
//! tonic's own `ServerTlsConfig` is fixed at startup, so quotad terminates TLS itself: the
//! current rustls config sits in an `ArcSwap`, every handshake takes the one current at that
//! moment, and a watcher on the certificate files swaps in a new config once the files parse
//! and match. A bad rotation (half-written files, a key that does not match) is logged and the
//! old certificate keeps serving; at startup the same errors fail the start, naming the file.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig, crypto};
use tokio_rustls::server::TlsStream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;

use crate::config::ConfigWatcher;

/// A client that has not finished its handshake by then is dropped, so idle sockets cannot
/// pile up in front of the service.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many handshakes run at once; past it, accepting waits (the kernel backlog
/// queues, then refuses) instead of spending unbounded memory on half-open clients.
const MAX_HANDSHAKES: usize = 1024;

/// How long the certificate files must stay quiet before they are reloaded, so a cert and
/// key written one after the other are read together.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(200);

/// The PEM files TLS is served from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, leaf first.
    pub cert: PathBuf,
    /// The server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate that chains to one of these CAs (mTLS).
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// A file is not valid PEM of the expected kind.
    #[error("{} holds no valid PEM {what}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What it should hold ("certificate", "private key").
        what: &'static str,
        /// What the PEM parser said, when it said something.
        source: Option<pem::Error>,
    },
    /// The certificate and key do not belong together, or the key is unusable.
    #[error("{} and {} do not make a usable certificate and key", cert.display(), key.display())]
    KeyPair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
    /// The client CA file does not make a certificate verifier.
    #[error("{} cannot verify client certificates", path.display())]
    ClientCa {
        /// The CA file.
        path: PathBuf,
        /// What rustls said.
        source: rustls::server::VerifierBuilderError,
    },
    /// The certificate files could not be watched for rotation.
    #[error(transparent)]
    Watch(#[from] crate::config::WatchError),
}

/// The rustls config every new handshake uses; swapped whole when the files change.
pub(super) type CurrentConfig = Arc<ArcSwap<ServerConfig>>;

/// Reads and checks the files and builds the server config (ALPN `h2`, as gRPC needs).
pub fn load(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| key_pair_error(files, source))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path, "CA certificate")? {
                roots
                    .add(cert)
                    .map_err(|_| pem_error(path, "CA certificate", None))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|source| TlsError::ClientCa {
                    path: path.clone(),
                    source,
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let chain = certificates(&files.cert, "certificate")?;
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?)
        .map_err(|source| pem_error(&files.key, "private key", Some(source)))?;
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|source| key_pair_error(files, source))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Swaps in a freshly loaded config after every debounced change to the files until `stop`
/// resolves; a failed load keeps the old config and logs why.
pub(super) async fn reload_on_changes(
    files: TlsFiles,
    current: CurrentConfig,
    stop: impl Future<Output = ()>,
) -> Result<(), TlsError> {
    let paths = [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ];
    let watchers = paths
        .into_iter()
        .flatten()
        .map(|path| ConfigWatcher::new(path))
        .collect::<Result<Vec<_>, _>>()?;
    let (changed, mut changes) = mpsc::channel::<()>(1);
    let mut stop = std::pin::pin!(stop);
    let watching = watchers.into_iter().map(|watcher| {
        let changed = changed.clone();
        async move {
            loop {
                watcher.changed(RELOAD_DEBOUNCE).await;
                // A full channel already holds a pending reload, which will read these files.
                let _ = changed.try_send(());
            }
        }
    });
    let watching: Vec<_> = watching.map(tokio::spawn).collect();
    while tokio::select! {
        () = &mut stop => false,
        received = changes.recv() => received.is_some(),
    } {
        match load(&files) {
            Ok(config) => {
                current.store(config);
                tracing::info!(cert = %files.cert.display(), "TLS certificates reloaded");
            }
            Err(error) => {
                let error = crate::telemetry::error_chain(&error);
                tracing::error!(%error, "TLS reload failed; the previous certificate stays");
            }
        }
    }
    watching.iter().for_each(tokio::task::JoinHandle::abort);
    Ok(())
}

/// TLS connections from `tcp`: each handshake runs in its own task (a slow client cannot hold
/// up the others) with the config current when it began. Dropping the stream stops accepting
/// and closes the listener.
pub(super) fn incoming(
    mut tcp: TcpIncoming,
    current: CurrentConfig,
) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
    let (accepted, stream) = mpsc::channel(64);
    tokio::spawn(async move {
        let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        loop {
            let Ok(permit) = handshakes.clone().acquire_owned().await else {
                return;
            };
            let connection = tokio::select! {
                () = accepted.closed() => return,
                next = tcp.next() => match next {
                    Some(Ok(connection)) => connection,
                    Some(Err(error)) => {
                        tracing::debug!(%error, "cannot accept a gRPC connection");
                        continue;
                    }
                    None => return,
                },
            };
            let (acceptor, accepted) = (TlsAcceptor::from(current.load_full()), accepted.clone());
            tokio::spawn(async move {
                let peer = connection.peer_addr().ok();
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(connection)).await {
                    Ok(Ok(tls)) => {
                        // The server stopped meanwhile: the connection just closes.
                        let _ = accepted.send(Ok(tls)).await;
                    }
                    Ok(Err(error)) => tracing::debug!(?peer, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(?peer, "TLS handshake timed out"),
                }
                drop(permit);
            });
        }
    });
    ReceiverStream::new(stream)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in the PEM file at `path`; none at all is an error.
fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| pem_error(path, what, Some(source)))?;
    if chain.is_empty() {
        return Err(pem_error(path, what, None));
    }
    Ok(chain)
}

fn pem_error(path: &Path, what: &'static str, source: Option<pem::Error>) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        what,
        source,
    }
}

fn key_pair_error(files: &TlsFiles, source: rustls::Error) -> TlsError {
    TlsError::KeyPair {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    }
}
