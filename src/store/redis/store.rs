//! The Redis counter store: a request's counters go to Redis in one script call (one per
//! cluster slot, sent in parallel), over multiplexed connections shared by every request.
//! Every call is bounded by a timeout and guarded by a circuit breaker, so a slow or dead Redis
//! turns into a fast `StoreError::Unavailable`; what to answer then is the service's policy.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisError, TlsCertificates};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;

use crate::clock::Clock;
use crate::clock::Timestamp;
use crate::engine::{Ban, CounterReading, Plan, Readings};
use crate::store::{CounterStore, StoreError};

use super::breaker::{Admission, Breaker};
use super::config::{RedisConfigError, RedisStoreConfig, RedisTarget, redact};
use super::keys::counter_key;
use super::script::{Batch, CounterScript};
use super::status::{RedisErrorKind, RedisStoreStatus, Telemetry};

/// The connection(s) every request shares; both multiplex concurrent calls.
#[derive(Clone)]
enum Backend {
    /// Reconnects in the background after a dropped connection.
    Standalone(ConnectionManager),
    /// Routes by slot, follows MOVED/ASK and refreshes the slot map itself.
    Cluster(ClusterConnection),
}

/// Why a call failed before it is counted and turned into a `StoreError`.
enum Failure {
    Redis(RedisError),
    BadReply(String),
}

/// Counters in Redis (standalone or cluster), shared by every quotad replica.
pub struct RedisStore {
    backend: Backend,
    script: CounterScript,
    breaker: Breaker,
    telemetry: Telemetry,
    clock: Box<dyn Clock>,
    timeout: Duration,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &matches!(self.backend, Backend::Cluster(_)))
            .field("timeout", &self.timeout)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Builds the store without waiting for Redis: connections open on first use and reopen
    /// after failures, so quotad starts (and fails open or closed by policy) while Redis is down.
    /// Must run inside a Tokio runtime; `clock` drives the circuit breaker.
    pub fn new(config: &RedisStoreConfig, clock: impl Clock) -> Result<Self, RedisConfigError> {
        config.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RedisConfigError::OutsideRuntime);
        }
        // The redis crate builds its rustls configs from the process-default provider (and
        // `#insecure` needs one installed); make it ring, the provider the gRPC listener uses,
        // so a second provider compiled in by some dependency can never make rustls panic.
        // An Err only means a default is already installed, which is what we need.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certificates = config
            .tls_root_ca
            .as_deref()
            .map(|pem| root_ca(config, pem))
            .transpose()?;
        let backend = match &config.target {
            RedisTarget::Standalone(url) => {
                let client = match certificates {
                    Some(certificates) => redis::Client::build_with_tls(url.as_str(), certificates),
                    None => redis::Client::open(url.as_str()),
                }
                .map_err(|error| invalid(url, &error))?;
                let manager = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout))
                    // The call timeout is ours and covers waiting for a connection too; a
                    // second, client-side one would only race it with another error.
                    .set_response_timeout(None)
                    .set_min_delay(Duration::from_millis(20))
                    .set_max_delay(Duration::from_millis(500))
                    .set_number_of_retries(6);
                let manager = ConnectionManager::new_lazy_with_config(client, manager)
                    .map_err(|error| invalid(url, &error))?;
                Backend::Standalone(manager)
            }
            RedisTarget::Cluster(nodes) => {
                let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(config.connect_timeout)
                    .retries(2);
                if let Some(certificates) = certificates {
                    builder = builder.certs(certificates);
                }
                let client = builder
                    .build()
                    .map_err(|error| invalid(&nodes.join(","), &error))?;
                let settings = ClusterConfig::new().set_connection_timeout(config.connect_timeout);
                Backend::Cluster(client.get_pending_async_connection_with_config(settings))
            }
        };
        Ok(Self {
            backend,
            script: CounterScript::new(),
            breaker: Breaker::new(config.breaker),
            telemetry: Telemetry::default(),
            clock: Box::new(clock),
            timeout: config.timeout,
        })
    }

    /// A snapshot for health checks and metrics; reads atomics only, never calls Redis.
    pub fn status(&self) -> RedisStoreStatus {
        let (breaker, failures) = self.breaker.state();
        self.telemetry.snapshot(breaker, failures)
    }

    /// Sends `PING` through the same timeout and breaker as counter calls: a readiness check,
    /// or a background probe that closes the breaker without waiting for traffic.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut backend = self.backend.clone();
        self.guarded(async move {
            let ping = redis::cmd("PING");
            let result: Result<String, RedisError> = match &mut backend {
                Backend::Standalone(connection) => ping.query_async(connection).await,
                Backend::Cluster(connection) => ping.query_async(connection).await,
            };
            result.map(drop).map_err(Failure::Redis)
        })
        .await
    }

    /// Groups the plan's counters into script calls: one on a standalone server, one per slot
    /// on a cluster (a script's keys must share a slot there).
    fn batches(&self, plan: &Plan<'_>) -> Vec<Batch> {
        if !matches!(self.backend, Backend::Cluster(_)) {
            let mut batch = Batch::new(plan.now());
            for (position, (identity, update)) in plan.counters().enumerate() {
                batch.push(
                    position,
                    counter_key(identity),
                    update,
                    plan.distinct_value(update),
                );
            }
            return vec![batch];
        }
        let mut batches: Vec<(Slot, Batch)> = Vec::with_capacity(1);
        for (position, (identity, update)) in plan.counters().enumerate() {
            let key = counter_key(identity);
            let slot = Slot::for_key(&key);
            let index = match batches.iter().position(|(seen, _)| *seen == slot) {
                Some(index) => index,
                None => {
                    batches.push((slot, Batch::new(plan.now())));
                    batches.len() - 1
                }
            };
            if let Some((_, batch)) = batches.get_mut(index) {
                batch.push(position, key, update, plan.distinct_value(update));
            }
        }
        batches.into_iter().map(|(_, batch)| batch).collect()
    }

    /// Runs every batch (in parallel when there are several) and reassembles plan order.
    async fn run(&self, batches: Vec<Batch>, len: usize) -> Result<Readings, Failure> {
        let replies = match batches.as_slice() {
            [only] => vec![self.run_batch(only).await],
            _ => join_all(batches.iter().map(|batch| self.run_batch(batch)).collect()).await,
        };
        let mut readings = Readings::from_elem(CounterReading::default(), len);
        for (batch, reply) in batches.iter().zip(replies) {
            let reply = reply.map_err(Failure::Redis)?;
            batch
                .scatter(&reply, &mut readings)
                .map_err(Failure::BadReply)?;
        }
        Ok(readings)
    }

    /// Runs one command (routed by its first key on a cluster) through the same timeout and
    /// breaker as counter calls.
    pub(super) async fn query<T: FromRedisValue + Send>(
        &self,
        command: Cmd,
    ) -> Result<T, StoreError> {
        let mut backend = self.backend.clone();
        self.guarded(async move {
            let result = match &mut backend {
                Backend::Standalone(connection) => command.query_async(connection).await,
                Backend::Cluster(connection) => command.query_async(connection).await,
            };
            result.map_err(Failure::Redis)
        })
        .await
    }

    async fn run_batch(&self, batch: &Batch) -> Result<Vec<u64>, RedisError> {
        match self.backend.clone() {
            Backend::Standalone(mut connection) => self.script.run(&mut connection, batch).await,
            Backend::Cluster(mut connection) => self.script.run(&mut connection, batch).await,
        }
    }

    /// Runs `call` if the breaker allows, within the timeout, and records how it went.
    async fn guarded<T>(
        &self,
        call: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T, StoreError> {
        let admission = self.breaker.admit(self.clock.now());
        if admission == Admission::Reject {
            self.telemetry.record_error(RedisErrorKind::BreakerOpen);
            let (_, failures) = self.breaker.state();
            return Err(StoreError::Unavailable(format!(
                "redis circuit breaker open after {failures} consecutive failures"
            )));
        }
        let failure = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => {
                self.breaker.record_success();
                self.telemetry.record_success();
                return Ok(value);
            }
            Ok(Err(Failure::Redis(error))) => (classify(&error), error.to_string()),
            Ok(Err(Failure::BadReply(reason))) => (RedisErrorKind::Reply, reason),
            Err(_elapsed) => (
                RedisErrorKind::Timeout,
                format!("no answer within {:?}", self.timeout),
            ),
        };
        let (kind, cause) = failure;
        self.telemetry.record_error(kind);
        if kind == RedisErrorKind::Reply {
            // Redis answered, so it is up: an error reply must not open the breaker.
            self.breaker.record_success();
        } else {
            self.breaker.record_failure(self.clock.now(), admission);
        }
        Err(StoreError::Unavailable(format!(
            "redis {}: {cause}",
            kind.name()
        )))
    }
}

impl CounterStore for RedisStore {
    fn apply(&self, plan: &Plan<'_>) -> impl Future<Output = Result<Readings, StoreError>> + Send {
        // Keys and arguments are built before the first await, so the future owns its data and
        // does not borrow the plan.
        let len = plan.len();
        let batches = self.batches(plan);
        async move {
            if len == 0 {
                return Ok(Readings::new());
            }
            self.guarded(self.run(batches, len)).await
        }
    }

    fn start_ban(
        &self,
        ban: &Ban,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let commands = super::bans::start(ban, now);
        async move {
            for command in commands {
                self.query::<redis::Value>(command).await?;
            }
            Ok(())
        }
    }

    fn bans(&self, now: Timestamp) -> impl Future<Output = Result<Vec<Ban>, StoreError>> + Send {
        super::bans::list(self, now)
    }

    fn active_bans(&self, now: Timestamp) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.query(super::bans::count(now))
    }

    fn lift_ban(
        &self,
        identity: &[u8],
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        super::bans::lift(self, identity.to_vec(), now)
    }
}

/// Which counter a failure lands in: unreachable, slow, or answered with an error.
fn classify(error: &RedisError) -> RedisErrorKind {
    if error.is_timeout() {
        RedisErrorKind::Timeout
    } else if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
        || error.is_cluster_error()
        || error.kind() == ErrorKind::ClusterConnectionNotFound
    {
        RedisErrorKind::Connection
    } else {
        RedisErrorKind::Reply
    }
}

/// The configured CA bundle as the redis crate takes it; fails when `pem` holds no usable
/// certificate, because an empty trust store would refuse every server only at first use.
fn root_ca(config: &RedisStoreConfig, pem: &[u8]) -> Result<TlsCertificates, RedisConfigError> {
    let fail = |reason: String| RedisConfigError::Invalid {
        url: match &config.target {
            RedisTarget::Standalone(url) => redact(url),
            RedisTarget::Cluster(nodes) => nodes
                .iter()
                .map(|n| redact(n))
                .collect::<Vec<_>>()
                .join(","),
        },
        reason,
    };
    let mut count = 0;
    for certificate in CertificateDer::pem_slice_iter(pem) {
        certificate.map_err(|error| fail(format!("TLS root CA is not valid PEM: {error}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(fail("TLS root CA holds no PEM certificate".into()));
    }
    Ok(TlsCertificates {
        client_tls: None,
        root_cert: Some(pem.to_vec()),
    })
}

fn invalid(url: &str, error: &RedisError) -> RedisConfigError {
    RedisConfigError::Invalid {
        url: url.split(',').map(redact).collect::<Vec<_>>().join(","),
        reason: error.to_string(),
    }
}

/// Polls every future to completion concurrently; outputs in input order. (The crate has no
/// futures-util dependency, and the few slots of one request do not justify spawning tasks.)
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    poll_fn(|context| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(context) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
