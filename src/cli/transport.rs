//! The `serve` flags for the gRPC listener's transport — TLS and mTLS, HTTP/2 keepalive,
//! connection age, request size, load shedding and the shutdown grace — kept apart from the
//! other flags because they map one to one onto [`GrpcSettings`].

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::parse_duration;
use crate::app::{GrpcSettings, TlsFiles};

/// gRPC transport flags of `quotad serve`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "gRPC transport")]
pub struct TransportArgs {
    /// PEM certificate chain for TLS on the gRPC port (reloaded when the file changes).
    #[arg(long, env = "QUOTAD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `--tls-cert` (reloaded when the file changes).
    #[arg(long, env = "QUOTAD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: require client certificates that chain to it (mTLS).
    #[arg(long, env = "QUOTAD_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Rate-limit calls served at once; more wait in the queue.
    #[arg(long, env = "QUOTAD_GRPC_CONCURRENCY_LIMIT", default_value_t = crate::app::DEFAULT_CONCURRENCY_LIMIT)]
    pub grpc_concurrency_limit: NonZeroUsize,
    /// Rate-limit calls that may wait for a slot; past this, calls get RESOURCE_EXHAUSTED.
    #[arg(long, env = "QUOTAD_GRPC_QUEUE_LIMIT", default_value_t = crate::app::DEFAULT_QUEUE_LIMIT)]
    pub grpc_queue_limit: usize,
    /// Largest request message in bytes; larger ones get OUT_OF_RANGE.
    #[arg(long, env = "QUOTAD_GRPC_MAX_REQUEST_BYTES", default_value_t = crate::app::DEFAULT_MAX_REQUEST_BYTES)]
    pub grpc_max_request_bytes: usize,
    /// Interval between HTTP/2 PINGs to each client (`0` sends none).
    #[arg(long, env = "QUOTAD_GRPC_KEEPALIVE_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub grpc_keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is closed.
    #[arg(long, env = "QUOTAD_GRPC_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub grpc_keepalive_timeout: Duration,
    /// Age after which a connection gets GOAWAY so the client reconnects (`0`: never).
    #[arg(long, env = "QUOTAD_GRPC_MAX_CONNECTION_AGE", default_value = "0", value_parser = parse_duration)]
    pub grpc_max_connection_age: Duration,
    /// After SIGTERM and the drain delay, how long in-flight calls may take to finish.
    #[arg(long, env = "QUOTAD_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

impl TransportArgs {
    /// The settings these flags describe.
    pub fn settings(&self) -> GrpcSettings {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            }),
            // clap's `requires` makes one without the other a usage error.
            _ => None,
        };
        let nonzero = |duration: Duration| (!duration.is_zero()).then_some(duration);
        GrpcSettings {
            tls,
            concurrency_limit: self.grpc_concurrency_limit,
            queue_limit: self.grpc_queue_limit,
            max_request_bytes: self.grpc_max_request_bytes,
            keepalive_interval: nonzero(self.grpc_keepalive_interval),
            keepalive_timeout: self.grpc_keepalive_timeout,
            max_connection_age: nonzero(self.grpc_max_connection_age),
            shutdown_grace: self.shutdown_grace,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn serve(extra: &[&str]) -> Result<crate::cli::ServeArgs, clap::Error> {
        let mut args = vec!["quotad", "serve", "--config", "c.yaml"];
        args.extend_from_slice(extra);
        match Cli::try_parse_from(args)?.command {
            Command::Serve(args) => Ok(args),
            other => panic!("expected serve, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_library_defaults() {
        let settings = serve(&[]).unwrap().transport.settings();
        let defaults = crate::app::GrpcSettings::default();
        assert_eq!(settings.tls, None);
        assert_eq!(settings.concurrency_limit, defaults.concurrency_limit);
        assert_eq!(settings.queue_limit, defaults.queue_limit);
        assert_eq!(settings.max_request_bytes, defaults.max_request_bytes);
        assert_eq!(settings.keepalive_interval, defaults.keepalive_interval);
        assert_eq!(settings.max_connection_age, None);
        assert_eq!(settings.shutdown_grace, defaults.shutdown_grace);
    }

    #[test]
    fn tls_flags_come_in_pairs() {
        assert!(serve(&["--tls-cert", "c.pem"]).is_err());
        assert!(serve(&["--tls-client-ca", "ca.pem"]).is_err());
        let args = serve(&[
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-client-ca",
            "ca.pem",
        ]);
        let tls = args.unwrap().transport.settings().tls.unwrap();
        assert_eq!(
            tls.client_ca.as_deref(),
            Some(std::path::Path::new("ca.pem"))
        );
    }

    #[test]
    fn zero_turns_keepalive_and_connection_age_off() {
        let args = serve(&[
            "--grpc-keepalive-interval",
            "0",
            "--grpc-max-connection-age",
            "5m",
        ]);
        let settings = args.unwrap().transport.settings();
        assert_eq!(settings.keepalive_interval, None);
        assert_eq!(settings.max_connection_age, Some(Duration::from_secs(300)));
    }
}
