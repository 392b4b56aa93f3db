//! Open loop: requests are scheduled at fixed intervals (`--rate` in total, handed to the
//! connections in turn) whatever the server does, and each one's latency runs from its
//! *scheduled* send time, so a stall shows up in every request it delayed instead of being
//! hidden by a sender that waited (no coordinated omission).
//!
//! One dispatcher task sends every request due by the time it runs (`plan`), over the lean
//! HTTP/2 client in `wire`, keeping at most `--in-flight` calls outstanding per connection.
//! It paces by spinning: when nothing is due and no answer is waiting it yields to the runtime,
//! which polls the sockets without blocking, and looks again, so it runs within one runtime
//! turn of each due time. Tokio's timer (1 ms) is too coarse, and a pacer thread sleeping once
//! per request on the client's core cost more CPU in thread switches and wake-ups than the
//! requests themselves. Only waits longer than `SLEEP_ABOVE` sleep on the timer. The price:
//! the client keeps its core busy for the whole run, so its CPU per request is an upper bound.
//!
//! How late requests went out is reported three ways, all already part of the latency: the
//! send lag of every request; how many waited for a call slot (the server was slow to answer);
//! and the client's own lag, over the requests that found a slot free. A large own lag means
//! the client, not the server, fell behind.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use h2::client::SendRequest;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::codegen::Bytes;

use crate::plan::Plan;
use crate::tally::{Outcome, Tally};
use crate::wire::Target;
use crate::workload::Workload;

/// A wait for the next due request longer than this sleeps on tokio's timer (1 ms granularity,
/// so it wakes `SLEEP_MARGIN` early and spins the rest) instead of spinning throughout.
const SLEEP_ABOVE: Duration = Duration::from_millis(3);
/// How early a timer sleep ends before the next due time.
const SLEEP_MARGIN: Duration = Duration::from_millis(2);

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

/// Runs one open-loop phase over `connections` (to `target`); returns the tally and the
/// elapsed time.
pub(crate) async fn run_open(
    target: &Arc<Target>,
    connections: &[SendRequest<Bytes>],
    workload: &Arc<Workload>,
    schedule: Schedule,
    seed: u64,
) -> anyhow::Result<(Tally, Duration)> {
    let started = Instant::now();
    let mut dispatcher = Dispatcher {
        target,
        connections,
        workload,
        plan: Plan::new(started, schedule.rate, schedule.total, schedule.limit),
        deadline: started + schedule.limit,
        in_flight: schedule.in_flight,
        busy: vec![0; connections.len()],
        waiting: vec![VecDeque::new(); connections.len()],
        calls: JoinSet::new(),
        tally: Tally::new()?,
        rng: seed,
    };
    dispatcher.run().await?;
    Ok((dispatcher.tally, started.elapsed()))
}

/// The phase's state, all on one task: outstanding calls, requests waiting for a slot, counts.
struct Dispatcher<'a> {
    target: &'a Arc<Target>,
    connections: &'a [SendRequest<Bytes>],
    workload: &'a Arc<Workload>,
    plan: Plan,
    deadline: Instant,
    in_flight: usize,
    /// Calls outstanding, per connection.
    busy: Vec<usize>,
    /// Due requests (tickets) waiting for a free call slot, per connection, oldest first.
    waiting: Vec<VecDeque<u64>>,
    /// Each call's connection, latency in nanoseconds and outcome.
    calls: JoinSet<(usize, u64, Outcome)>,
    tally: Tally,
    rng: u64,
}

impl Dispatcher<'_> {
    /// Sends every request as it falls due, records every answer, until the schedule is done
    /// (or dropped at the deadline) and no call is outstanding.
    async fn run(&mut self) -> anyhow::Result<()> {
        let scheduled = self.plan.scheduled();
        let mut taken = 0;
        loop {
            let now = Instant::now();
            if now >= self.deadline {
                // Every scheduled request is due by now: whatever has not gone out never will.
                let waiting: usize = self.waiting.iter().map(VecDeque::len).sum();
                self.tally.unsent += scheduled - taken + waiting as u64;
                self.waiting.iter_mut().for_each(VecDeque::clear);
                taken = scheduled;
            } else {
                let due = self.plan.due_by(now);
                for ticket in taken..due {
                    self.offer(ticket, now)?;
                }
                taken = taken.max(due);
            }
            if taken == scheduled && self.calls.is_empty() {
                return Ok(());
            }
            // Until the next request is due: one runtime turn, or a timer sleep if it is far.
            let next_due = self.plan.due(taken);
            let pause = async move {
                if next_due > now + SLEEP_ABOVE {
                    tokio::time::sleep_until(next_due - SLEEP_MARGIN).await;
                } else {
                    tokio::task::yield_now().await;
                }
            };
            tokio::select! {
                // Answers first: they free slots and their latency is already fixed.
                biased;
                Some(joined) = self.calls.join_next(), if !self.calls.is_empty() => {
                    let (connection, nanos, outcome) = joined.context("a call task panicked")?;
                    self.answered(connection, nanos, outcome)?;
                }
                () = pause, if taken < scheduled => {}
            }
        }
    }

    /// Sends `ticket` on its connection now if a call slot is free, else queues it there.
    fn offer(&mut self, ticket: u64, now: Instant) -> anyhow::Result<()> {
        let connection = usize::try_from(ticket % self.connections.len() as u64).unwrap_or(0);
        if self.busy[connection] < self.in_flight {
            let lag = self.send(connection, ticket, now)?;
            self.tally.own_lag.saturating_record(lag);
        } else {
            self.waiting[connection].push_back(ticket);
            self.tally.capped += 1;
        }
        Ok(())
    }

    /// Records an answer and gives its slot to the oldest request waiting on that connection.
    fn answered(&mut self, connection: usize, nanos: u64, outcome: Outcome) -> anyhow::Result<()> {
        self.tally.record(nanos, outcome);
        self.busy[connection] -= 1;
        if let Some(ticket) = self.waiting[connection].pop_front() {
            let now = Instant::now();
            if now < self.deadline {
                return self.send(connection, ticket, now).map(|_| ());
            }
            self.tally.unsent += 1;
        }
        Ok(())
    }

    /// Starts the call for `ticket` on `connection`; records and returns how late it goes out.
    fn send(&mut self, connection: usize, ticket: u64, now: Instant) -> anyhow::Result<u64> {
        let due = self.plan.due(ticket);
        let lag = nanos_between(due, now);
        self.tally.send_lag.saturating_record(lag);
        let body = self.workload.body(ticket, &mut self.rng)?;
        let send = self.connections[connection].clone();
        let target = self.target.clone();
        self.busy[connection] += 1;
        self.calls.spawn(async move {
            let outcome = target.call(send, body).await;
            (connection, nanos_between(due, Instant::now()), outcome)
        });
        Ok(lag)
    }
}

/// Nanoseconds from `from` to `to` (0 if `to` is earlier).
fn nanos_between(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.saturating_duration_since(from).as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
        RateLimitService, RateLimitServiceServer,
    };
    use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::{Request, Response, Status};

    use super::*;
    use crate::args::Pattern;

    /// Answers after `delay` (a latency with a known floor): OK, or UNAVAILABLE if `fail`.
    struct Slow {
        delay: Duration,
        fail: bool,
    }

    #[tonic::async_trait]
    impl RateLimitService for Slow {
        async fn should_rate_limit(
            &self,
            _request: Request<RateLimitRequest>,
        ) -> Result<Response<RateLimitResponse>, Status> {
            tokio::time::sleep(self.delay).await;
            if self.fail {
                return Err(Status::unavailable("told to fail"));
            }
            Ok(Response::new(RateLimitResponse {
                overall_code: Code::Ok.into(),
                ..RateLimitResponse::default()
            }))
        }
    }

    /// Serves `Slow` on a loopback port; returns its target and `count` connections to it.
    async fn serve(
        delay: Duration,
        fail: bool,
        count: usize,
    ) -> (Arc<Target>, Vec<SendRequest<Bytes>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(RateLimitServiceServer::new(Slow { delay, fail }))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let target = Target::new(&format!("http://{addr}"), Duration::from_secs(5)).unwrap();
        let mut connections = Vec::new();
        for _ in 0..count {
            connections.push(target.connect().await.unwrap());
        }
        (Arc::new(target), connections)
    }

    /// Runs one open-loop phase against `Slow { delay, fail }` over `count` connections.
    async fn run_against(
        (delay, fail, count): (Duration, bool, usize),
        (rate, total, limit, in_flight): (u64, u64, Duration, usize),
    ) -> Tally {
        let (target, connections) = serve(delay, fail, count).await;
        let workload = Arc::new(Workload {
            domain: "test".into(),
            templates: Vec::new(),
            key_space: 1,
            pattern: Pattern::Random,
            hits: 0,
            timeout: Duration::from_secs(5),
        });
        let schedule = Schedule {
            rate,
            total,
            limit,
            in_flight,
        };
        let (tally, _) = run_open(&target, &connections, &workload, schedule, 1)
            .await
            .unwrap();
        tally
    }

    #[tokio::test]
    async fn sends_every_scheduled_request_once() {
        let tally = run_against(
            (Duration::ZERO, false, 2),
            (2_000, 40, Duration::from_secs(30), 4),
        )
        .await;
        assert_eq!((tally.ok, tally.completed(), tally.unsent), (40, 40, 0));
        assert_eq!(tally.send_lag.len(), 40);
        assert_eq!(tally.latency.len(), 40);
    }

    #[tokio::test]
    async fn latency_runs_from_the_scheduled_time_through_the_in_flight_cap() {
        // One slot, 20 ms answers, requests due at 0, 1 and 2 ms: the third goes out after
        // the first two are answered (>= 40 ms) and is answered >= 60 ms after start, so its
        // latency from its scheduled time (2 ms) is at least 58 ms, its send lag at least 38.
        let tally = run_against(
            (Duration::from_millis(20), false, 1),
            (1_000, 3, Duration::from_secs(30), 1),
        )
        .await;
        assert_eq!(tally.completed(), 3);
        assert!(tally.latency.max() >= 58_000_000, "{}", tally.latency.max());
        assert!(
            tally.send_lag.max() >= 38_000_000,
            "{}",
            tally.send_lag.max()
        );
    }

    #[tokio::test]
    async fn requests_still_waiting_at_the_deadline_are_unsent() {
        // 50 requests due within the 50 ms limit, one slot, answers after 500 ms: at most the
        // first goes out; every other one is still waiting for the slot at the deadline.
        let tally = run_against(
            (Duration::from_millis(500), false, 1),
            (1_000, 1_000, Duration::from_millis(50), 1),
        )
        .await;
        assert!(tally.completed() <= 1, "{}", tally.completed());
        assert_eq!(tally.completed() + tally.unsent, 50);
    }

    #[tokio::test]
    async fn failed_calls_are_counted_by_grpc_code() {
        let tally = run_against(
            (Duration::ZERO, true, 1),
            (1_000, 5, Duration::from_secs(30), 2),
        )
        .await;
        assert_eq!(tally.completed(), 5);
        assert_eq!(tally.errors[tonic::Code::Unavailable as usize], 5);
    }
}
