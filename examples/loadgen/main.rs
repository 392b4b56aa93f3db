//! A bounded gRPC load generator for quotad (or any Envoy RateLimitService v3 server), so the
//! numbers in `docs/PERFORMANCE.md` can be reproduced with a tool that ships with the repo.
//!
//! It opens `--connections` HTTP/2 connections and, by default, keeps `--in-flight`
//! ShouldRateLimit calls outstanding on each (closed loop, `closed`); with `--rate` it sends at
//! a fixed rate instead and measures latency from each request's scheduled time (open loop,
//! `open`, which calls through its own HTTP/2 client, `wire`, and keeps its core busy while it
//! paces). Either way it stops once `--requests` calls have completed or `--duration` has
//! passed (both capped, so a typo cannot turn it into an unbounded flood). Descriptor values
//! are drawn from a key space of `--key-space` distinct values (1 = one hot key), so runs over
//! millions of counters are possible. It reports throughput, p50/p90/p99/p99.9/max latency
//! from an HDR histogram, gRPC errors by code and OK/OVER_LIMIT answers; with `--server-pid`
//! it also reads the server's CPU time and RSS from `/proc`, giving CPU per request. With
//! `--wait-ready` it first measures how long the server took to answer at all (`ready`).
//!
//! ```text
//! cargo run --release --example loadgen -- -c 16 -m 32 -n 500000 --descriptors 2 --key-space 1
//! cargo run --release --example loadgen -- -c 2 -m 64 --rate 20000 -d 10s -n 1000000
//! cargo run --release --example loadgen -- --domain api \
//!     --descriptor 'plan=pro,api_key=k_{}' --key-space 1000000
//! ```
//!
//! The last line of the output is `RESULT key=value …` so scripts (`benches/run-load.sh`) can
//! parse it without scraping the human-readable table.

mod args;
mod closed;
mod open;
mod plan;
mod process;
mod ready;
mod tally;
mod wire;
mod workload;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use tonic::transport::Endpoint;

use crate::args::{Args, MAX_DURATION, check_bounds};
use crate::process::{CLOCK_TICKS_PER_SEC, cpu_micros_per_request, sample_process};
use crate::tally::{Tally, micros};
use crate::workload::{Workload, grpc_frame, templates};

// The same allocator as the server: per-request allocations (request, HTTP/2 frames, tasks)
// were a tenth of the client's CPU with glibc's, and the open loop has one core for everything.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn run(args: Args) -> anyhow::Result<()> {
    check_bounds(&args)?;
    let workload = Arc::new(Workload {
        domain: args.domain.clone(),
        templates: templates(&args)?,
        key_space: args.key_space,
        pattern: args.pattern,
        hits: args.hits,
        timeout: args.timeout,
    });
    if let Some(path) = &args.write_body {
        let framed = grpc_frame(&workload.request_for(0))?;
        std::fs::write(path, &framed).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {} bytes to {}", framed.len(), path.display());
        return Ok(());
    }
    let endpoint = Endpoint::from_shared(args.addr.clone())
        .context("--addr is not a valid endpoint")?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    if let Some(within) = args.wait_ready {
        let ready = ready::wait_ready(
            &endpoint,
            &workload,
            within,
            args.ready_poll,
            args.launched_at.as_deref(),
        )
        .await?;
        let since = if ready.since_launch {
            "launch"
        } else {
            "first poll"
        };
        println!(
            "READY ms={:.1} attempts={} since={since}",
            ready.millis, ready.attempts
        );
        if args.exit_when_ready {
            return Ok(());
        }
    }
    // The open loop calls through its own lean HTTP/2 client (`wire`), on connections of its own.
    let open = match args.rate {
        Some(rate) => {
            let target = Arc::new(wire::Target::new(&args.addr, args.timeout)?);
            let mut connections = Vec::with_capacity(args.connections);
            for _ in 0..args.connections {
                connections.push(target.connect().await?);
            }
            Some((rate, target, connections))
        }
        None => None,
    };
    // tonic clients serve the closed loop and the warm-up; an open loop without a warm-up
    // would only hold them open, idle, beside its own connections.
    let tonic_connections = if open.is_none() || args.warmup > 0 {
        args.connections
    } else {
        0
    };
    let mut clients = Vec::with_capacity(tonic_connections);
    for _ in 0..tonic_connections {
        // One `connect` per client: each is its own HTTP/2 connection.
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("connecting to {}", args.addr))?;
        clients.push(RateLimitServiceClient::new(channel));
    }

    if args.warmup > 0 {
        let (warm, _) = closed::run_phase(
            &clients,
            args.in_flight,
            &workload,
            args.warmup,
            MAX_DURATION,
            args.seed.rotate_left(17),
        )
        .await?;
        eprintln!("warm-up: {} requests", warm.completed());
    }
    let before = args.server_pid.map(sample_process).transpose()?;
    let client_before = sample_process(std::process::id())?;
    let (tally, elapsed) = match &open {
        Some((rate, target, connections)) => {
            let schedule = open::Schedule {
                rate: *rate,
                total: args.requests,
                limit: args.duration,
                in_flight: args.in_flight,
            };
            open::run_open(target, connections, &workload, schedule, args.seed).await?
        }
        None => {
            closed::run_phase(
                &clients,
                args.in_flight,
                &workload,
                args.requests,
                args.duration,
                args.seed,
            )
            .await?
        }
    };
    let after = args.server_pid.map(sample_process).transpose()?;
    let client_after = sample_process(std::process::id())?;
    report(
        &args,
        &tally,
        elapsed,
        (client_before, client_after),
        before.zip(after),
    );
    Ok(())
}

/// Prints the human-readable summary, then the `RESULT` line.
fn report(
    args: &Args,
    tally: &Tally,
    elapsed: Duration,
    client: (process::ProcessSample, process::ProcessSample),
    server: Option<(process::ProcessSample, process::ProcessSample)>,
) {
    let completed = tally.completed();
    let rps = completed as f64 / elapsed.as_secs_f64();
    let mode = match args.rate {
        Some(rate) => format!(
            "open loop at {rate} req/s, at most {} in flight",
            args.in_flight
        ),
        None => format!("{} in flight", args.in_flight),
    };
    println!(
        "{completed} requests in {:.3} s over {} connections x {mode}: {rps:.0} req/s",
        elapsed.as_secs_f64(),
        args.connections,
    );
    let latency = &tally.latency;
    let from = if args.rate.is_some() {
        " (from scheduled send time)"
    } else {
        ""
    };
    println!(
        "latency µs{from}: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
        micros(latency, 0.5),
        micros(latency, 0.9),
        micros(latency, 0.99),
        micros(latency, 0.999),
        latency.max() as f64 / 1_000.0,
        latency.mean() / 1_000.0
    );
    if args.rate.is_some() {
        let lag = &tally.send_lag;
        println!(
            "send lag µs (client side, included above): p50 {:.1}  p99 {:.1}  max {:.1}; \
             waited for a call slot (-m): {}; unsent at the deadline: {}",
            micros(lag, 0.5),
            micros(lag, 0.99),
            lag.max() as f64 / 1_000.0,
            tally.capped,
            tally.unsent
        );
        let own = &tally.own_lag;
        println!(
            "client's own lag µs (requests that found a free slot): p50 {:.1}  p99 {:.1}  max {:.1}",
            micros(own, 0.5),
            micros(own, 0.99),
            own.max() as f64 / 1_000.0
        );
    }
    println!(
        "answers: OK {}  OVER_LIMIT {}  other {}",
        tally.ok, tally.over_limit, tally.other
    );
    let mut errors = String::new();
    for (code, count) in tally.errors.iter().enumerate() {
        if *count > 0 {
            let name = tonic::Code::from(code as i32);
            let _ = write!(errors, " {name:?}={count}");
        }
    }
    println!(
        "errors:{}",
        if errors.is_empty() { " none" } else { &errors }
    );
    let mut result = format!(
        "RESULT requests={completed} seconds={:.3} rps={rps:.0} p50_us={:.1} p90_us={:.1} \
         p99_us={:.1} p999_us={:.1} max_us={:.1} ok={} over_limit={} errors={}",
        elapsed.as_secs_f64(),
        micros(latency, 0.5),
        micros(latency, 0.9),
        micros(latency, 0.99),
        micros(latency, 0.999),
        latency.max() as f64 / 1_000.0,
        tally.ok,
        tally.over_limit,
        tally.errors.iter().sum::<u64>()
    );
    if let Some(rate) = args.rate {
        let _ = write!(
            result,
            " rate={rate} send_lag_p99_us={:.1} send_lag_max_us={:.1} own_lag_p99_us={:.1} \
             unsent={} capped={}",
            micros(&tally.send_lag, 0.99),
            tally.send_lag.max() as f64 / 1_000.0,
            micros(&tally.own_lag, 0.99),
            tally.unsent,
            tally.capped
        );
    }
    // The load generator's own CPU per request: when it times the rate comes near one core,
    // the client, not the server, is the bottleneck.
    let client_us = cpu_micros_per_request(client.0, client.1, completed);
    // The open loop spins while it waits for the next due time, so there the figure is about
    // one core / rate whatever the requests cost; its own lag is the signal instead.
    let spins = if args.rate.is_some() {
        " (open loop: spins between sends, so an upper bound)"
    } else {
        ""
    };
    println!("client: {client_us:.2} µs CPU/request{spins}");
    let _ = write!(result, " client_cpu_us={client_us:.2}");
    if let Some((before, after)) = server {
        let cpu_us_per_request = cpu_micros_per_request(before, after, completed);
        let cpu_secs = cpu_us_per_request * completed as f64 / 1e6;
        let tick_us = after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 * 1e6
            / CLOCK_TICKS_PER_SEC as f64
            / completed.max(1) as f64;
        println!(
            "server: {cpu_secs:.2} s CPU = {cpu_us_per_request:.2} µs/request; \
             RSS {} KiB -> {} KiB",
            before.rss_kib, after.rss_kib
        );
        let _ = write!(
            result,
            " server_cpu_us={cpu_us_per_request:.2} server_tick_cpu_us={tick_us:.2} \
             rss_before_kib={} rss_after_kib={}",
            before.rss_kib, after.rss_kib
        );
    }
    println!("{result}");
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .context("building the tokio runtime")?;
    runtime.block_on(run(args))
}
