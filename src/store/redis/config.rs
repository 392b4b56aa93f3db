//! What an operator chooses about the Redis store: where Redis is (one server or a cluster's
//! seed nodes, auth and TLS carried in the URLs), how long a call may take, and when the
//! circuit breaker gives up on a dead Redis. Parsed from one URL so the CLI stays one flag.
//!
//! TLS: `rediss://` (and `rediss+cluster://`) connect with rustls. The server certificate is
//! verified against the system trust store (which honours `SSL_CERT_FILE`/`SSL_CERT_DIR`), or
//! against a private CA given with [`RedisStoreConfig::with_tls_root_ca`]; the redis crate's
//! `#insecure` URL fragment skips verification altogether and is meant for tests only.

use std::num::NonZeroU32;
use std::time::Duration;

/// Where the counters live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis server (or a proxy in front of several), e.g. `redis://user:pass@host:6379/0`.
    Standalone(String),
    /// Seed nodes of a Redis Cluster, each a `redis://` (or `rediss://`) URL.
    Cluster(Vec<String>),
}

/// When the circuit breaker opens and how long it waits before probing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failed calls (timeouts, connection errors) that open the breaker.
    pub failure_threshold: NonZeroU32,
    /// Time the breaker stays open before it lets one probe call through.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
            cool_down: Duration::from_millis(500),
        }
    }
}

/// Everything needed to build a [`RedisStore`](super::RedisStore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStoreConfig {
    /// The server or cluster to use.
    pub target: RedisTarget,
    /// Upper bound on one store call, connecting included; past it the call fails as unavailable.
    pub timeout: Duration,
    /// Upper bound on opening one TCP (or TLS) connection, which runs on past a call's timeout.
    pub connect_timeout: Duration,
    /// Circuit breaker settings.
    pub breaker: BreakerConfig,
    /// PEM CA bundle that `rediss://` servers must chain to, in place of the system roots.
    pub tls_root_ca: Option<Vec<u8>>,
}

/// The default per-call timeout: a rate-limit answer must not wait longer on Redis.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

/// A Redis configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisConfigError {
    /// The URL's scheme is none of `redis`, `rediss`, `unix`, `redis+cluster`, `rediss+cluster`.
    #[error(
        "unsupported redis URL scheme in {url:?}: expected redis://, rediss://, unix://, redis+cluster:// or rediss+cluster://"
    )]
    Scheme {
        /// The URL, password redacted.
        url: String,
    },
    /// A cluster URL or node list names no node.
    #[error("redis cluster {url:?} names no node")]
    NoNodes {
        /// The URL, password redacted.
        url: String,
    },
    /// The timeout is zero, which would fail every call.
    #[error("redis timeout must be above 0, got {0:?}")]
    ZeroTimeout(Duration),
    /// The store was built outside a Tokio runtime, which its connections need.
    #[error("the redis store must be built inside a Tokio runtime")]
    OutsideRuntime,
    /// A TLS root CA was given where it cannot take effect.
    #[error("--redis-tls-ca cannot apply to {url:?}: {why}")]
    TlsRootCa {
        /// The URL, password redacted.
        url: String,
        /// Why the CA would be ignored.
        why: &'static str,
    },
    /// The redis client rejected the URL.
    #[error("invalid redis URL {url:?}: {reason}")]
    Invalid {
        /// The URL, password redacted.
        url: String,
        /// What the client found wrong.
        reason: String,
    },
}

impl RedisStoreConfig {
    /// One Redis server at `url`, with default timeouts and breaker.
    pub fn standalone(url: impl Into<String>) -> Self {
        Self::with_target(RedisTarget::Standalone(url.into()))
    }

    /// A Redis Cluster reached through these seed-node URLs, with default timeouts and breaker.
    pub fn cluster(nodes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self::with_target(RedisTarget::Cluster(
            nodes.into_iter().map(Into::into).collect(),
        ))
    }

    fn with_target(target: RedisTarget) -> Self {
        Self {
            target,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: Duration::from_secs(1),
            breaker: BreakerConfig::default(),
            tls_root_ca: None,
        }
    }

    /// Parses `redis://`, `rediss://` and `unix://` URLs as one server, and
    /// `redis+cluster://[user:pass@]host:port,host:port[/db]` (or `rediss+cluster://`) as a
    /// cluster whose seed nodes share the credentials (and a `#insecure` fragment, if any).
    pub fn from_url(url: &str) -> Result<Self, RedisConfigError> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(RedisConfigError::Scheme { url: redact(url) });
        };
        let node_scheme = match scheme {
            "redis" | "rediss" | "unix" | "redis+unix" => return Ok(Self::standalone(url)),
            "redis+cluster" => "redis",
            "rediss+cluster" => "rediss",
            _ => return Err(RedisConfigError::Scheme { url: redact(url) }),
        };
        // The fragment (`#insecure`) belongs to every node: the cluster client takes its TLS
        // mode from them. A '#' inside the password comes before the '@', so split after it.
        let (rest, fragment) = match rest.rsplit_once('@') {
            Some((_, hosts)) => match hosts.split_once('#') {
                Some((_, fragment)) => (&rest[..rest.len() - fragment.len() - 1], Some(fragment)),
                None => (rest, None),
            },
            None => match rest.split_once('#') {
                Some((rest, fragment)) => (rest, Some(fragment)),
                None => (rest, None),
            },
        };
        // Credentials sit before the last '@' (a password may itself contain '@').
        let (userinfo, hosts) = match rest.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, rest),
        };
        let (hosts, path) = match hosts.split_once('/') {
            Some((hosts, path)) => (hosts, Some(path)),
            None => (hosts, None),
        };
        let nodes: Vec<String> = hosts
            .split(',')
            .filter(|host| !host.is_empty())
            .map(|host| {
                let mut node = format!("{node_scheme}://");
                if let Some(userinfo) = userinfo {
                    node.push_str(userinfo);
                    node.push('@');
                }
                node.push_str(host);
                if let Some(path) = path {
                    node.push('/');
                    node.push_str(path);
                }
                if let Some(fragment) = fragment {
                    node.push('#');
                    node.push_str(fragment);
                }
                node
            })
            .collect();
        if nodes.is_empty() {
            return Err(RedisConfigError::NoNodes { url: redact(url) });
        }
        Ok(Self::cluster(nodes))
    }

    /// This config with another per-call timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// This config with other breaker settings.
    pub fn with_breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// This config verifying `rediss://` servers against the CAs in `pem` (not the system's).
    pub fn with_tls_root_ca(mut self, pem: Vec<u8>) -> Self {
        self.tls_root_ca = Some(pem);
        self
    }

    /// The target's URLs: the one server, or every seed node.
    fn urls(&self) -> &[String] {
        match &self.target {
            RedisTarget::Standalone(url) => std::slice::from_ref(url),
            RedisTarget::Cluster(nodes) => nodes,
        }
    }

    /// Rejects settings that cannot work, before any connection is tried.
    pub(crate) fn validate(&self) -> Result<(), RedisConfigError> {
        if self.timeout.is_zero() {
            return Err(RedisConfigError::ZeroTimeout(self.timeout));
        }
        if self.tls_root_ca.is_some() {
            // A silently ignored CA would look like verification that is not happening.
            for url in self.urls() {
                let why = if !url.starts_with("rediss://") && !url.starts_with("valkeys://") {
                    "the connection is not TLS (use rediss://)"
                } else if url.ends_with("#insecure") {
                    "#insecure turns certificate verification off"
                } else {
                    continue;
                };
                return Err(RedisConfigError::TlsRootCa {
                    url: redact(url),
                    why,
                });
            }
        }
        if let RedisTarget::Cluster(nodes) = &self.target
            && nodes.is_empty()
        {
            return Err(RedisConfigError::NoNodes {
                url: String::from("(empty node list)"),
            });
        }
        Ok(())
    }
}

/// `url` with any password replaced by `***`, safe for logs and error messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, hosts)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{hosts}"),
        // A lone userinfo is a password for Redis (`redis://secret@host`).
        None => format!("{scheme}://***@{hosts}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_urls_pass_through() {
        let config = RedisStoreConfig::from_url("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(
            config.target,
            RedisTarget::Standalone("redis://127.0.0.1:6380/2".into())
        );
        assert_eq!(config.timeout, Duration::from_millis(50));
    }

    #[test]
    fn cluster_urls_split_into_nodes_sharing_credentials() {
        let config =
            RedisStoreConfig::from_url("redis+cluster://u:p@ss@10.0.0.1:7000,10.0.0.2:7001/0")
                .unwrap();
        assert_eq!(
            config.target,
            RedisTarget::Cluster(vec![
                "redis://u:p@ss@10.0.0.1:7000/0".into(),
                "redis://u:p@ss@10.0.0.2:7001/0".into(),
            ])
        );
        let tls = RedisStoreConfig::from_url("rediss+cluster://h:1").unwrap();
        assert_eq!(
            tls.target,
            RedisTarget::Cluster(vec!["rediss://h:1".into()])
        );
    }

    #[test]
    fn cluster_fragments_reach_every_node() {
        let config =
            RedisStoreConfig::from_url("rediss+cluster://u:p#w@h:1,h:2/0#insecure").unwrap();
        assert_eq!(
            config.target,
            RedisTarget::Cluster(vec![
                "rediss://u:p#w@h:1/0#insecure".into(),
                "rediss://u:p#w@h:2/0#insecure".into(),
            ])
        );
        let config = RedisStoreConfig::from_url("rediss+cluster://h:1,h:2#insecure").unwrap();
        assert_eq!(
            config.target,
            RedisTarget::Cluster(vec![
                "rediss://h:1#insecure".into(),
                "rediss://h:2#insecure".into(),
            ])
        );
    }

    #[test]
    fn a_root_ca_needs_verified_tls() {
        let ca = b"-----BEGIN CERTIFICATE-----".to_vec();
        let ok = RedisStoreConfig::from_url("rediss+cluster://h:1,h:2").unwrap();
        assert_eq!(ok.with_tls_root_ca(ca.clone()).validate(), Ok(()));
        for url in [
            "redis://h:1",
            "rediss://h:1/#insecure",
            "redis+cluster://h:1",
        ] {
            let config = RedisStoreConfig::from_url(url)
                .unwrap()
                .with_tls_root_ca(ca.clone());
            assert!(
                matches!(config.validate(), Err(RedisConfigError::TlsRootCa { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn bad_urls_are_rejected_without_leaking_passwords() {
        let error = RedisStoreConfig::from_url("memcached://u:secret@h:1").unwrap_err();
        assert_eq!(
            error,
            RedisConfigError::Scheme {
                url: "memcached://u:***@h:1".into()
            }
        );
        assert!(!error.to_string().contains("secret"));
        assert!(matches!(
            RedisStoreConfig::from_url("redis+cluster://secret@"),
            Err(RedisConfigError::NoNodes { url }) if url == "redis+cluster://***@"
        ));
    }

    #[test]
    fn zero_timeout_is_invalid() {
        let config = RedisStoreConfig::standalone("redis://h").with_timeout(Duration::ZERO);
        assert_eq!(
            config.validate(),
            Err(RedisConfigError::ZeroTimeout(Duration::ZERO))
        );
    }
}
