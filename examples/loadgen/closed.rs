//! Closed loop: every in-flight slot of every connection sends its next request as soon as the
//! previous one is answered, until the shared ticket count or the deadline runs out. Measures
//! peak throughput; its latencies hide queueing the server causes (coordinated omission), which
//! is what the open loop in `open` is for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::args::MAX_IN_FLIGHT;
use crate::tally::{Outcome, Tally};
use crate::workload::Workload;

/// Sends requests on `client` until the shared ticket counter passes `total` or `deadline`.
async fn worker(
    mut client: RateLimitServiceClient<Channel>,
    workload: Arc<Workload>,
    tickets: Arc<AtomicU64>,
    total: u64,
    deadline: Instant,
    mut rng: u64,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    loop {
        let ticket = tickets.fetch_add(1, Ordering::Relaxed);
        if ticket >= total || Instant::now() >= deadline {
            return Ok(tally);
        }
        let request = workload.request(ticket, &mut rng);
        let started = Instant::now();
        let result = client.should_rate_limit(request).await;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        tally.record(nanos, Outcome::of(&result));
    }
}

/// One phase (warm-up or measured): every connection × in-flight worker until done.
pub(crate) async fn run_phase(
    clients: &[RateLimitServiceClient<Channel>],
    in_flight: usize,
    workload: &Arc<Workload>,
    total: u64,
    limit: Duration,
    seed: u64,
) -> anyhow::Result<(Tally, Duration)> {
    let tickets = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + limit;
    let mut workers = JoinSet::new();
    for (connection, client) in clients.iter().enumerate() {
        for slot in 0..in_flight {
            let rng = seed ^ ((connection * MAX_IN_FLIGHT + slot) as u64).wrapping_mul(0x9E37);
            workers.spawn(worker(
                client.clone(),
                workload.clone(),
                tickets.clone(),
                total,
                deadline,
                rng,
            ));
        }
    }
    let mut tally = Tally::new()?;
    while let Some(joined) = workers.join_next().await {
        tally.merge(&joined.context("a load worker panicked")??)?;
    }
    Ok((tally, started.elapsed()))
}
