//! Open loop: requests are scheduled at fixed intervals (`--rate` in total, handed to the
//! connections in turn) whatever the server does, and each one's latency runs from its
//! *scheduled* send time, so a stall shows up in every request it delayed instead of being
//! hidden by a sender that waited (no coordinated omission).
//!
//! The schedule is kept by a dedicated OS thread sleeping to each send time (tokio's timer has
//! 1 ms granularity, coarser than the latencies measured); each connection's dispatcher task
//! sends what it is handed, keeping at most `--in-flight` calls outstanding. How late requests
//! reached their connection (timer wake-up, client backlog, the in-flight cap) is reported as
//! the send lag, which is already part of the latency; a large lag means the client, not the
//! server, fell behind.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::tally::{Outcome, Tally};
use crate::workload::Workload;

/// One scheduled request: its sequence number and when it should be sent.
type Tick = (u64, Instant);

/// Shape of one open-loop phase.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    /// Requests per second, all connections together.
    pub(crate) rate: u64,
    /// Requests to schedule.
    pub(crate) total: u64,
    /// Longest the phase may schedule for; requests still queued past it are dropped unsent.
    pub(crate) limit: Duration,
    /// Most calls outstanding per connection.
    pub(crate) in_flight: usize,
}

/// Runs one open-loop phase over `clients`; returns the merged tally and the elapsed time.
pub(crate) async fn run_open(
    clients: &[RateLimitServiceClient<Channel>],
    workload: &Arc<Workload>,
    schedule: Schedule,
    seed: u64,
) -> anyhow::Result<(Tally, Duration)> {
    let started = Instant::now();
    let deadline = started + schedule.limit;
    let mut senders = Vec::with_capacity(clients.len());
    let mut dispatchers = JoinSet::new();
    for (index, client) in clients.iter().enumerate() {
        let (sender, ticks) = unbounded_channel();
        senders.push(sender);
        let rng = seed ^ (index as u64).wrapping_mul(0x9E37);
        dispatchers.spawn(dispatch(
            client.clone(),
            workload.clone(),
            ticks,
            schedule.in_flight,
            deadline,
            rng,
        ));
    }
    let pacer = std::thread::Builder::new()
        .name("loadgen-pacer".into())
        .spawn(move || pace(started, schedule, deadline, &senders))
        .context("starting the pacer thread")?;
    let mut tally = Tally::new()?;
    while let Some(joined) = dispatchers.join_next().await {
        tally.merge(&joined.context("a dispatcher panicked")??)?;
    }
    // Every dispatcher ended, so every channel closed: the pacer has returned already.
    pacer
        .join()
        .map_err(|_| anyhow::anyhow!("the pacer thread panicked"))?;
    Ok((tally, started.elapsed()))
}

/// Hands out ticks at `rate` from `start`, round-robin over the connections, sleeping until
/// each is due; stops after `total`, at `deadline`, or when every dispatcher is gone.
fn pace(start: Instant, schedule: Schedule, deadline: Instant, senders: &[UnboundedSender<Tick>]) {
    let connections = senders.len() as u64;
    for ticket in 0..schedule.total {
        let offset = u128::from(ticket) * 1_000_000_000 / u128::from(schedule.rate);
        let due = start + Duration::from_nanos(u64::try_from(offset).unwrap_or(u64::MAX));
        if due >= deadline {
            return;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let sender = &senders[usize::try_from(ticket % connections).unwrap_or(0)];
        if sender.send((ticket, due)).is_err() {
            return;
        }
    }
}

/// One connection: sends each tick's request when it arrives (or when a call slot frees up),
/// records its latency from the scheduled time, and drains the outstanding calls at the end.
async fn dispatch(
    client: RateLimitServiceClient<Channel>,
    workload: Arc<Workload>,
    mut ticks: UnboundedReceiver<Tick>,
    in_flight: usize,
    deadline: Instant,
    mut rng: u64,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    let mut calls = JoinSet::new();
    let mut open = true;
    while open || !calls.is_empty() {
        tokio::select! {
            // Answers first: they free slots and their latency is already fixed.
            biased;
            Some(joined) = calls.join_next(), if !calls.is_empty() => {
                let (nanos, outcome) = joined.context("a call task panicked")?;
                tally.record(nanos, outcome);
            }
            tick = ticks.recv(), if open && calls.len() < in_flight => match tick {
                Some((ticket, due)) => {
                    let now = Instant::now();
                    if now >= deadline {
                        tally.unsent += 1;
                        continue;
                    }
                    tally.send_lag.saturating_record(nanos_between(due, now));
                    let request = workload.request(ticket, &mut rng);
                    let mut client = client.clone();
                    calls.spawn(async move {
                        let result = client.should_rate_limit(request).await;
                        (nanos_between(due, Instant::now()), Outcome::of(&result))
                    });
                }
                None => open = false,
            },
        }
    }
    Ok(tally)
}

/// Nanoseconds from `from` to `to` (0 if `to` is earlier).
fn nanos_between(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.saturating_duration_since(from).as_nanos()).unwrap_or(u64::MAX)
}
