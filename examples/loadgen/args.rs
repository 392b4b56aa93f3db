//! The command line: flags, their hard caps (a typo cannot turn a run into an unbounded flood
//! or point it off the machine), and the checks that enforce them.

use std::time::Duration;

use anyhow::{Context, ensure};
use clap::{Parser, ValueEnum};

/// Most connections.
const MAX_CONNECTIONS: usize = 256;
/// Most in-flight calls per connection (both loops).
pub(crate) const MAX_IN_FLIGHT: usize = 1_024;
/// Most measured (or warm-up) requests.
const MAX_REQUESTS: u64 = 100_000_000;
/// Longest measured phase, and longest warm-up.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(600);
/// Most distinct `{}` values.
const MAX_KEY_SPACE: u64 = 100_000_000;
/// Most descriptors per request.
pub(crate) const MAX_DESCRIPTORS: usize = 5;
/// Highest open-loop rate, requests per second.
const MAX_RATE: u64 = 1_000_000;

/// Drive an Envoy RateLimitService (ShouldRateLimit) with bounded load and report throughput
/// and latency percentiles.
#[derive(Debug, Parser)]
#[command(name = "loadgen", after_help = AFTER_HELP)]
pub(crate) struct Args {
    /// Server URI (loopback only unless --allow-remote).
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    pub(crate) addr: String,
    /// Allow a non-loopback --addr (off: a load test should never leave the machine by mistake).
    #[arg(long)]
    pub(crate) allow_remote: bool,
    /// HTTP/2 connections to open (max 256).
    #[arg(short = 'c', long, default_value_t = 1)]
    pub(crate) connections: usize,
    /// Concurrent in-flight requests per connection (max 1024). With --rate, the most calls a
    /// connection keeps outstanding: later ones wait, and the wait counts in their latency.
    #[arg(short = 'm', long, default_value_t = 1)]
    pub(crate) in_flight: usize,
    /// Requests to complete after the warm-up (max 100,000,000); the run stops at whichever of
    /// --requests and --duration comes first.
    #[arg(short = 'n', long, default_value_t = 200_000)]
    pub(crate) requests: u64,
    /// Longest the measured phase may run, e.g. `10s`, `500ms` (max 600s).
    #[arg(short = 'd', long, default_value = "60s", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Open loop: send this many requests per second in total, at fixed intervals spread over
    /// the connections, whatever the answers do; latency is measured from each request's
    /// scheduled send time (no coordinated omission). The client keeps its core busy while it
    /// paces. Absent: closed loop (each in-flight slot sends its next request when the previous
    /// one is answered).
    #[arg(long, value_name = "REQ_PER_S")]
    pub(crate) rate: Option<u64>,
    /// Requests sent and discarded before measuring (connections warm, counters created);
    /// always closed loop.
    #[arg(long, default_value_t = 0)]
    pub(crate) warmup: u64,
    /// Rate-limit domain sent with every request.
    #[arg(long, default_value = "bench")]
    pub(crate) domain: String,
    /// Descriptors per request when no --descriptor is given: `k0={}` … `k<N-1>={}` (1..=5).
    #[arg(long, default_value_t = 1)]
    pub(crate) descriptors: usize,
    /// A descriptor template `key=value[,key2=value2]`; `{}` in a value is replaced by the
    /// drawn key-space value. Repeat for several descriptors (max 5).
    #[arg(long = "descriptor")]
    pub(crate) templates: Vec<String>,
    /// Distinct values `{}` takes (1 = one hot key; max 100,000,000). One value is drawn per
    /// request and shared by its descriptors.
    #[arg(short = 'k', long, default_value_t = 1)]
    pub(crate) key_space: u64,
    /// How values are drawn: `random` (uniform) or `sequential` (every value once, in order,
    /// so N × key-space requests touch every counter exactly N times).
    #[arg(long, value_enum, default_value_t = Pattern::Random)]
    pub(crate) pattern: Pattern,
    /// Seed for --pattern random.
    #[arg(long, default_value_t = 0x5EED)]
    pub(crate) seed: u64,
    /// Request-level `hits_addend` (0 = unset, which the server reads as 1).
    #[arg(long, default_value_t = 0)]
    pub(crate) hits: u32,
    /// Per-request deadline; a call that exceeds it counts as DEADLINE_EXCEEDED.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Tokio worker threads for the client (1 = current-thread runtime, cheapest when the
    /// load generator is pinned to one core).
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// The server's process id: report its CPU time per request and its RSS (from `/proc`).
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
    /// Before the run, poll (connect + one ShouldRateLimit, every --ready-poll) until the
    /// server answers, for at most this long; print `READY ms=…`.
    #[arg(long, value_name = "DEADLINE", value_parser = parse_duration)]
    pub(crate) wait_ready: Option<Duration>,
    /// Pause between --wait-ready attempts.
    #[arg(long, default_value = "1ms", value_parser = parse_duration)]
    pub(crate) ready_poll: Duration,
    /// When the server was launched, in Unix nanoseconds (`date +%s%N`), or `@FILE` holding
    /// that number (read once the server answers): --wait-ready then reports the time from
    /// launch to the first answer instead of from its own start.
    #[arg(long, value_name = "UNIX_NS|@FILE")]
    pub(crate) launched_at: Option<String>,
    /// Exit after --wait-ready succeeds, without a load run.
    #[arg(long, requires = "wait_ready")]
    pub(crate) exit_when_ready: bool,
    /// Write one gRPC-framed request body (5-byte prefix + protobuf, key-space value 0) to this
    /// file and exit, for replaying with `h2load -d FILE`.
    #[arg(long, value_name = "FILE")]
    pub(crate) write_body: Option<std::path::PathBuf>,
}

const AFTER_HELP: &str = "\
Examples (server pinned with `taskset -c 0 quotad serve --config benches/bench-rules.yaml`):
  loadgen -c 1 -m 1 -n 100000 --warmup 10000                 # latency at one in flight
  loadgen -c 16 -m 32 -n 500000 --descriptors 2 --key-space 1000000
  loadgen -c 4 -m 64 --rate 20000 -d 10s -n 1000000          # open loop, 20k req/s
  loadgen --domain api --descriptor 'plan=pro,api_key=k_{}' --key-space 100
  loadgen --wait-ready 10s --exit-when-ready --launched-at @/tmp/t0   # start-up time

The last output line is `RESULT key=value ...` for scripts (benches/run-load.sh).";

/// How key-space values are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Pattern {
    Random,
    Sequential,
}

/// `10s`, `500ms`, `2m` or a bare number of seconds; positive and finite.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else if let Some(m) = text.strip_suffix('m') {
        (m, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("expected a duration like 10s or 500ms, got {text:?}"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("duration must be positive, got {text:?}"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// Refuses flags beyond the caps, and a non-loopback address unless --allow-remote.
pub(crate) fn check_bounds(args: &Args) -> anyhow::Result<()> {
    ensure!(
        (1..=MAX_CONNECTIONS).contains(&args.connections),
        "--connections must be 1..={MAX_CONNECTIONS}"
    );
    ensure!(
        (1..=MAX_IN_FLIGHT).contains(&args.in_flight),
        "--in-flight must be 1..={MAX_IN_FLIGHT}"
    );
    ensure!(
        (1..=MAX_REQUESTS).contains(&args.requests) && args.warmup <= MAX_REQUESTS,
        "--requests must be 1..={MAX_REQUESTS} and --warmup at most that"
    );
    ensure!(
        args.duration <= MAX_DURATION,
        "--duration must be at most {MAX_DURATION:?}"
    );
    ensure!(
        args.wait_ready.is_none_or(|limit| limit <= MAX_DURATION),
        "--wait-ready must be at most {MAX_DURATION:?}"
    );
    ensure!(
        args.rate.is_none_or(|rate| (1..=MAX_RATE).contains(&rate)),
        "--rate must be 1..={MAX_RATE}"
    );
    ensure!(
        (1..=MAX_KEY_SPACE).contains(&args.key_space),
        "--key-space must be 1..={MAX_KEY_SPACE}"
    );
    ensure!((1..=64).contains(&args.threads), "--threads must be 1..=64");
    if !args.allow_remote {
        let uri: tonic::codegen::http::Uri = args.addr.parse().context("--addr is not a URI")?;
        let host = uri.host().unwrap_or_default();
        ensure!(
            matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1"),
            "--addr {host} is not loopback; pass --allow-remote if you mean it"
        );
    }
    Ok(())
}
