//! A bounded gRPC load generator for quotad (or any Envoy RateLimitService v3 server), so the
//! numbers in `docs/PERFORMANCE.md` can be reproduced with a tool that ships with the repo.
//!
//! It opens `--connections` HTTP/2 connections and keeps `--in-flight` ShouldRateLimit calls
//! outstanding on each, until `--requests` calls have completed or `--duration` has passed
//! (both are capped, so a typo cannot turn it into an unbounded flood). Descriptor values are
//! drawn from a key space of `--key-space` distinct values (1 = one hot key), so runs over
//! millions of counters are possible. It reports throughput, p50/p90/p99/p99.9/max latency
//! from an HDR histogram, gRPC errors by code and OK/OVER_LIMIT answers; with `--server-pid`
//! it also reads the server's CPU time and RSS from `/proc`, giving CPU per request.
//!
//! ```text
//! cargo run --release --example loadgen -- -c 16 -m 32 -n 500000 --descriptors 2 --key-space 1
//! cargo run --release --example loadgen -- --domain api \
//!     --descriptor 'plan=pro,api_key=k_{}' --key-space 1000000
//! ```
//!
//! The last line of the output is `RESULT key=value …` so scripts (`benches/run-load.sh`) can
//! parse it without scraping the human-readable table.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use clap::{Parser, ValueEnum};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor,
};
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code as RlsCode;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

/// Hard caps: the load generator refuses anything larger, whatever the flags say.
const MAX_CONNECTIONS: usize = 256;
const MAX_IN_FLIGHT: usize = 1_024;
const MAX_REQUESTS: u64 = 100_000_000;
const MAX_DURATION: Duration = Duration::from_secs(600);
const MAX_KEY_SPACE: u64 = 100_000_000;
const MAX_DESCRIPTORS: usize = 5;
/// Linux reports process CPU time in `/proc/<pid>/stat` in ticks of 1/100 s (`getconf CLK_TCK`).
const CLOCK_TICKS_PER_SEC: u64 = 100;

/// Drive an Envoy RateLimitService (ShouldRateLimit) with bounded load and report throughput
/// and latency percentiles.
#[derive(Debug, Parser)]
#[command(name = "loadgen", after_help = AFTER_HELP)]
struct Args {
    /// Server URI (loopback only unless --allow-remote).
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    addr: String,
    /// Allow a non-loopback --addr (off: a load test should never leave the machine by mistake).
    #[arg(long)]
    allow_remote: bool,
    /// HTTP/2 connections to open (max 256).
    #[arg(short = 'c', long, default_value_t = 1)]
    connections: usize,
    /// Concurrent in-flight requests per connection (max 1024).
    #[arg(short = 'm', long, default_value_t = 1)]
    in_flight: usize,
    /// Requests to complete after the warm-up (max 100,000,000); the run stops at whichever of
    /// --requests and --duration comes first.
    #[arg(short = 'n', long, default_value_t = 200_000)]
    requests: u64,
    /// Longest the measured phase may run, e.g. `10s`, `500ms` (max 600s).
    #[arg(short = 'd', long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Requests sent and discarded before measuring (connections warm, counters created).
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// Rate-limit domain sent with every request.
    #[arg(long, default_value = "bench")]
    domain: String,
    /// Descriptors per request when no --descriptor is given: `k0={}` … `k<N-1>={}` (1..=5).
    #[arg(long, default_value_t = 1)]
    descriptors: usize,
    /// A descriptor template `key=value[,key2=value2]`; `{}` in a value is replaced by the
    /// drawn key-space value. Repeat for several descriptors (max 5).
    #[arg(long = "descriptor")]
    templates: Vec<String>,
    /// Distinct values `{}` takes (1 = one hot key; max 100,000,000). One value is drawn per
    /// request and shared by its descriptors.
    #[arg(short = 'k', long, default_value_t = 1)]
    key_space: u64,
    /// How values are drawn: `random` (uniform) or `sequential` (every value once, in order,
    /// so N × key-space requests touch every counter exactly N times).
    #[arg(long, value_enum, default_value_t = Pattern::Random)]
    pattern: Pattern,
    /// Seed for --pattern random.
    #[arg(long, default_value_t = 0x5EED)]
    seed: u64,
    /// Request-level `hits_addend` (0 = unset, which the server reads as 1).
    #[arg(long, default_value_t = 0)]
    hits: u32,
    /// Per-request deadline; a call that exceeds it counts as DEADLINE_EXCEEDED.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Tokio worker threads for the client (1 = current-thread runtime, cheapest when the
    /// load generator is pinned to one core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The server's process id: report its CPU time per request and its RSS (from `/proc`).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write one gRPC-framed request body (5-byte prefix + protobuf, key-space value 0) to this
    /// file and exit, for replaying with `h2load -d FILE`.
    #[arg(long, value_name = "FILE")]
    write_body: Option<std::path::PathBuf>,
}

const AFTER_HELP: &str = "\
Examples (server pinned with `taskset -c 0 quotad serve --config benches/bench-rules.yaml`):
  loadgen -c 1 -m 1 -n 100000 --warmup 10000                 # latency at one in flight
  loadgen -c 16 -m 32 -n 500000 --descriptors 2 --key-space 1000000
  loadgen --domain api --descriptor 'plan=pro,api_key=k_{}' --key-space 100

The last output line is `RESULT key=value ...` for scripts (benches/run-load.sh).";

/// How key-space values are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Pattern {
    Random,
    Sequential,
}

/// One descriptor entry value: fixed, or a template around the drawn key-space value.
#[derive(Debug, Clone)]
enum Value {
    Fixed(String),
    Keyed { before: String, after: String },
}

/// A parsed `--descriptor`: its entries in order.
#[derive(Debug, Clone)]
struct Template {
    entries: Vec<(String, Value)>,
}

impl Template {
    fn parse(text: &str) -> anyhow::Result<Self> {
        let entries = text
            .split(',')
            .map(|pair| {
                let (key, value) = pair
                    .split_once('=')
                    .with_context(|| format!("descriptor entry {pair:?} is not key=value"))?;
                ensure!(
                    !key.is_empty(),
                    "descriptor entry {pair:?} has an empty key"
                );
                let value = match value.split_once("{}") {
                    Some((before, after)) => Value::Keyed {
                        before: before.into(),
                        after: after.into(),
                    },
                    None => Value::Fixed(value.into()),
                };
                Ok((key.to_owned(), value))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { entries })
    }

    fn render(&self, key: u64) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: self
                .entries
                .iter()
                .map(|(name, value)| rate_limit_descriptor::Entry {
                    key: name.clone(),
                    value: match value {
                        Value::Fixed(text) => text.clone(),
                        Value::Keyed { before, after } => {
                            let mut text = String::with_capacity(before.len() + after.len() + 20);
                            // Writing into a String cannot fail.
                            let _ = write!(text, "{before}{key}{after}");
                            text
                        }
                    },
                })
                .collect(),
            ..RateLimitDescriptor::default()
        }
    }
}

/// Everything a worker needs to build requests; shared read-only.
#[derive(Debug)]
struct Workload {
    domain: String,
    templates: Vec<Template>,
    key_space: u64,
    pattern: Pattern,
    hits: u32,
    timeout: Duration,
}

impl Workload {
    fn request(&self, ticket: u64, rng: &mut u64) -> RateLimitRequest {
        let key = match self.pattern {
            Pattern::Sequential => ticket % self.key_space,
            Pattern::Random => next_random(rng) % self.key_space,
        };
        self.request_for(key)
    }

    /// The request whose `{}` values are `key`.
    fn request_for(&self, key: u64) -> RateLimitRequest {
        RateLimitRequest {
            domain: self.domain.clone(),
            descriptors: self.templates.iter().map(|t| t.render(key)).collect(),
            hits_addend: self.hits,
        }
    }
}

/// splitmix64: fast, good enough to spread keys, and avoids a `rand` dependency.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What one worker saw; merged at the end.
struct Tally {
    latency: Histogram<u64>,
    /// Failed calls by gRPC status code (0..=16).
    errors: [u64; 17],
    ok: u64,
    over_limit: u64,
    /// Answers whose overall code was neither OK nor OVER_LIMIT (UNKNOWN).
    other: u64,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            // 1 µs .. 60 s in nanoseconds, 3 significant digits (0.1% resolution).
            latency: Histogram::new_with_bounds(1_000, 60_000_000_000, 3)
                .context("building the latency histogram")?,
            errors: [0; 17],
            ok: 0,
            over_limit: 0,
            other: 0,
        })
    }

    fn merge(&mut self, other: &Tally) -> anyhow::Result<()> {
        self.latency
            .add(&other.latency)
            .context("merging latency histograms")?;
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        self.ok += other.ok;
        self.over_limit += other.over_limit;
        self.other += other.other;
        Ok(())
    }

    fn completed(&self) -> u64 {
        self.ok + self.over_limit + self.other + self.errors.iter().sum::<u64>()
    }
}

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
        let mut request = tonic::Request::new(workload.request(ticket, &mut rng));
        request.set_timeout(workload.timeout);
        let started = Instant::now();
        let result = client.should_rate_limit(request).await;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        tally.latency.saturating_record(nanos);
        match result {
            Ok(response) => match RlsCode::try_from(response.get_ref().overall_code) {
                Ok(RlsCode::Ok) => tally.ok += 1,
                Ok(RlsCode::OverLimit) => tally.over_limit += 1,
                _ => tally.other += 1,
            },
            Err(status) => {
                let code = usize::try_from(i32::from(status.code())).unwrap_or(2);
                tally.errors[code.min(16)] += 1;
            }
        }
    }
}

/// One phase (warm-up or measured): every connection × in-flight worker until done.
async fn run_phase(
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

/// CPU seconds (user + system, all threads) and resident set of a process, from `/proc`.
#[derive(Debug, Clone, Copy)]
struct ProcessSample {
    cpu_ticks: u64,
    /// On-CPU nanoseconds summed over the live threads (`/proc/<pid>/task/*/schedstat`): exact,
    /// unlike the tick-sampled `cpu_ticks`, which can misattribute short, frequent wake-ups.
    cpu_nanos: Option<u64>,
    rss_kib: u64,
}

fn sample_process(pid: u32) -> anyhow::Result<ProcessSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected /proc/<pid>/stat format")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index - 3)
            .context("short /proc/<pid>/stat")?
            .parse()
            .context("non-numeric /proc/<pid>/stat field")
    };
    let cpu_ticks = field(14)? + field(15)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .context("no VmRSS in /proc/<pid>/status")?;
    Ok(ProcessSample {
        cpu_ticks,
        cpu_nanos: scheduled_nanos(pid),
        rss_kib,
    })
}

/// Sum of every live thread's on-CPU time; `None` when the kernel does not expose schedstat.
fn scheduled_nanos(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// CPU microseconds spent between two samples of one process, per completed request.
/// Prefers the exact schedstat time; falls back to clock ticks.
fn cpu_micros_per_request(before: ProcessSample, after: ProcessSample, completed: u64) -> f64 {
    let micros = match (before.cpu_nanos, after.cpu_nanos) {
        (Some(start), Some(end)) if end > start => (end - start) as f64 / 1e3,
        _ => {
            let ticks = after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64;
            ticks * 1e6 / CLOCK_TICKS_PER_SEC as f64
        }
    };
    micros / completed.max(1) as f64
}

fn parse_duration(text: &str) -> Result<Duration, String> {
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

fn check_bounds(args: &Args) -> anyhow::Result<()> {
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

fn templates(args: &Args) -> anyhow::Result<Vec<Template>> {
    let templates: Vec<Template> = if args.templates.is_empty() {
        ensure!(
            (1..=MAX_DESCRIPTORS).contains(&args.descriptors),
            "--descriptors must be 1..={MAX_DESCRIPTORS}"
        );
        (0..args.descriptors)
            .map(|index| Template::parse(&format!("k{index}={{}}")))
            .collect::<anyhow::Result<_>>()?
    } else {
        args.templates
            .iter()
            .map(|text| Template::parse(text))
            .collect::<anyhow::Result<_>>()?
    };
    if templates.len() > MAX_DESCRIPTORS {
        bail!("at most {MAX_DESCRIPTORS} descriptors per request");
    }
    Ok(templates)
}

fn micros(tally: &Tally, quantile: f64) -> f64 {
    tally.latency.value_at_quantile(quantile) as f64 / 1_000.0
}

/// The gRPC message framing h2load must send: flag 0 (uncompressed), big-endian length, body.
fn grpc_frame(request: &RateLimitRequest) -> anyhow::Result<Vec<u8>> {
    let body = prost::Message::encode_to_vec(request);
    let length = u32::try_from(body.len()).context("request larger than 4 GiB")?;
    let mut framed = Vec::with_capacity(5 + body.len());
    framed.push(0);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(&body);
    Ok(framed)
}

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
    let mut clients = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        // One `connect` per client: each is its own HTTP/2 connection.
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("connecting to {}", args.addr))?;
        clients.push(RateLimitServiceClient::new(channel));
    }

    if args.warmup > 0 {
        let (warm, _) = run_phase(
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
    let (tally, elapsed) = run_phase(
        &clients,
        args.in_flight,
        &workload,
        args.requests,
        args.duration,
        args.seed,
    )
    .await?;
    let after = args.server_pid.map(sample_process).transpose()?;
    let client_after = sample_process(std::process::id())?;

    let completed = tally.completed();
    let rps = completed as f64 / elapsed.as_secs_f64();
    println!(
        "{completed} requests in {:.3} s over {} connections x {} in flight: {rps:.0} req/s",
        elapsed.as_secs_f64(),
        args.connections,
        args.in_flight
    );
    println!(
        "latency µs: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
        micros(&tally, 0.5),
        micros(&tally, 0.9),
        micros(&tally, 0.99),
        micros(&tally, 0.999),
        tally.latency.max() as f64 / 1_000.0,
        tally.latency.mean() / 1_000.0
    );
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
        micros(&tally, 0.5),
        micros(&tally, 0.9),
        micros(&tally, 0.99),
        micros(&tally, 0.999),
        tally.latency.max() as f64 / 1_000.0,
        tally.ok,
        tally.over_limit,
        tally.errors.iter().sum::<u64>()
    );
    // The load generator's own CPU per request: when it times the rate comes near one core,
    // the client, not the server, is the bottleneck.
    let client_us = cpu_micros_per_request(client_before, client_after, completed);
    println!("client: {client_us:.2} µs CPU/request");
    let _ = write!(result, " client_cpu_us={client_us:.2}");
    if let (Some(before), Some(after)) = (before, after) {
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
    Ok(())
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
