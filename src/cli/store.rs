//! The `serve` flags that choose the counter store — memory (the default) or Redis, standalone
//! or Cluster — and what a request gets when the store fails. Kept apart from the other flags
//! because together they build one [`StoreSettings`] and one [`StoreErrorPolicy`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::parse_duration;
use crate::app::StoreSettings;
use crate::service::StoreErrorPolicy;
use crate::store::DEFAULT_MAX_KEYS;
use crate::store::redis::{RedisConfigError, RedisStoreConfig};

/// Which counter store `--store` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum StoreKind {
    /// In-process counters: one replica, one budget.
    #[default]
    Memory,
    /// Counters in Redis (standalone or Cluster): every replica shares one budget.
    Redis,
}

/// Counter store flags of `quotad serve`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Counter store")]
pub struct StoreArgs {
    /// Where counters live: `memory` (this process) or `redis` (shared by every replica).
    #[arg(long, env = "QUOTAD_STORE", value_enum, default_value_t = StoreKind::Memory)]
    pub store: StoreKind,
    /// Redis URL: `redis://[user:pass@]host:6379[/db]`, `unix:///path`, or
    /// `redis+cluster://[user:pass@]h1:p1,h2:p2` for Redis Cluster; `rediss://` and
    /// `rediss+cluster://` for TLS (`#insecure` at the end skips certificate checks: tests only).
    #[arg(long, env = "QUOTAD_REDIS_URL", conflicts_with = "redis_cluster_nodes")]
    pub redis_url: Option<String>,
    /// Redis Cluster seed nodes as `h1:p1,h2:p2` (an alternative to a `redis+cluster://` URL).
    #[arg(long, env = "QUOTAD_REDIS_CLUSTER_NODES")]
    pub redis_cluster_nodes: Option<String>,
    /// PEM CA bundle that `rediss://` servers must chain to, instead of the system trust store.
    #[arg(long, env = "QUOTAD_REDIS_TLS_CA")]
    pub redis_tls_ca: Option<PathBuf>,
    /// Longest one Redis call may take, connecting included (`50ms`); then `--on-store-error`.
    #[arg(long, env = "QUOTAD_REDIS_TIMEOUT", default_value = "50ms", value_parser = parse_duration)]
    pub redis_timeout: Duration,
    /// When the store fails: `allow` (OK, fail open), `deny` (OVER_LIMIT) or `error` (gRPC
    /// UNAVAILABLE, so Envoy's `failure_mode_deny` decides).
    #[arg(long, env = "QUOTAD_ON_STORE_ERROR", value_enum, default_value_t = StoreErrorPolicy::Allow)]
    pub on_store_error: StoreErrorPolicy,
    /// Most counters the memory store holds; past it, expired then least recently used go.
    #[arg(long, env = "QUOTAD_MAX_KEYS", default_value_t = DEFAULT_MAX_KEYS)]
    pub max_keys: usize,
}

/// Store flags that do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreArgsError {
    /// `--store redis` without a place to find Redis.
    #[error("--store redis needs --redis-url or --redis-cluster-nodes")]
    NoRedisTarget,
    /// Redis flags given while counting in memory: the replicas would not share a budget.
    #[error("{0} is set but --store is memory; add --store redis to count in Redis")]
    RedisFlagWithMemory(&'static str),
    /// The `--redis-tls-ca` file cannot be read.
    #[error("cannot read --redis-tls-ca {path:?}: {reason}")]
    TlsCa {
        /// The file named.
        path: PathBuf,
        /// What the read failed with.
        reason: String,
    },
    /// The URL or node list cannot work.
    #[error(transparent)]
    Redis(#[from] RedisConfigError),
}

impl StoreArgs {
    /// The store settings the flags describe.
    pub fn settings(&self) -> Result<StoreSettings, StoreArgsError> {
        if self.store == StoreKind::Memory {
            if self.redis_url.is_some() {
                return Err(StoreArgsError::RedisFlagWithMemory("--redis-url"));
            }
            if self.redis_cluster_nodes.is_some() {
                return Err(StoreArgsError::RedisFlagWithMemory("--redis-cluster-nodes"));
            }
            if self.redis_tls_ca.is_some() {
                return Err(StoreArgsError::RedisFlagWithMemory("--redis-tls-ca"));
            }
            return Ok(StoreSettings::Memory {
                max_keys: self.max_keys,
            });
        }
        let config = match (&self.redis_url, &self.redis_cluster_nodes) {
            (Some(url), _) => RedisStoreConfig::from_url(url)?,
            (None, Some(nodes)) => cluster_nodes(nodes)?,
            (None, None) => return Err(StoreArgsError::NoRedisTarget),
        };
        let config = match &self.redis_tls_ca {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|error| StoreArgsError::TlsCa {
                    path: path.clone(),
                    reason: error.to_string(),
                })?;
                config.with_tls_root_ca(pem)
            }
            None => config,
        };
        Ok(StoreSettings::redis(
            config.with_timeout(self.redis_timeout),
        ))
    }
}

/// `h1:p1,h2:p2` (or full `redis://`/`rediss://` node URLs) as a cluster config.
fn cluster_nodes(nodes: &str) -> Result<RedisStoreConfig, RedisConfigError> {
    if nodes.contains("://") {
        let urls: Vec<&str> = nodes.split(',').filter(|node| !node.is_empty()).collect();
        if urls.is_empty() {
            return Err(RedisConfigError::NoNodes { url: nodes.into() });
        }
        return Ok(RedisStoreConfig::cluster(urls));
    }
    RedisStoreConfig::from_url(&format!("redis+cluster://{nodes}"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::store::redis::RedisTarget;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        store: StoreArgs,
    }

    fn parse(args: &[&str]) -> Result<StoreSettings, StoreArgsError> {
        let flags = Flags::try_parse_from(std::iter::once("quotad").chain(args.iter().copied()))
            .expect("flags parse");
        flags.store.settings()
    }

    #[test]
    fn memory_is_the_default_with_its_key_bound() {
        assert_eq!(
            parse(&[]),
            Ok(StoreSettings::Memory {
                max_keys: DEFAULT_MAX_KEYS
            })
        );
        assert_eq!(
            parse(&["--max-keys", "10"]),
            Ok(StoreSettings::Memory { max_keys: 10 })
        );
        let flags = Flags::try_parse_from(["quotad"]).unwrap();
        assert_eq!(flags.store.on_store_error, StoreErrorPolicy::Allow);
    }

    #[test]
    fn redis_urls_and_node_lists_build_the_target() {
        let Ok(StoreSettings::Redis { config, .. }) = parse(&[
            "--store",
            "redis",
            "--redis-url",
            "redis://redis:6379",
            "--redis-timeout",
            "20ms",
        ]) else {
            panic!("expected a redis store");
        };
        assert_eq!(
            config.target,
            RedisTarget::Standalone("redis://redis:6379".into())
        );
        assert_eq!(config.timeout, Duration::from_millis(20));
        let Ok(StoreSettings::Redis { config, .. }) =
            parse(&["--store", "redis", "--redis-cluster-nodes", "a:1,b:2"])
        else {
            panic!("expected a redis store");
        };
        assert_eq!(
            config.target,
            RedisTarget::Cluster(vec!["redis://a:1".into(), "redis://b:2".into()])
        );
        assert_eq!(config.timeout, Duration::from_millis(50));
    }

    #[test]
    fn contradictory_flags_are_refused() {
        assert_eq!(
            parse(&["--store", "redis"]),
            Err(StoreArgsError::NoRedisTarget)
        );
        assert_eq!(
            parse(&["--redis-url", "redis://h:1"]),
            Err(StoreArgsError::RedisFlagWithMemory("--redis-url"))
        );
        assert!(matches!(
            parse(&["--store", "redis", "--redis-url", "http://h:1"]),
            Err(StoreArgsError::Redis(RedisConfigError::Scheme { .. }))
        ));
        assert!(
            Flags::try_parse_from([
                "quotad",
                "--redis-url",
                "redis://h:1",
                "--redis-cluster-nodes",
                "a:1"
            ])
            .is_err()
        );
        assert!(Flags::try_parse_from(["quotad", "--on-store-error", "maybe"]).is_err());
    }
}
