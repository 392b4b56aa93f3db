//! `--wait-ready`: how long a server takes from launch to its first answer. Connects and sends
//! one ShouldRateLimit every `--ready-poll` until one is answered (any answer: the server has
//! loaded its rules and serves), and reports the time since `--launched-at` (the launcher's
//! timestamp) or, without it, since this process started polling.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use tokio::time::Instant;
use tonic::transport::Endpoint;

use crate::workload::Workload;

/// The first answer: when it came (ms since launch) and how many attempts it took.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ready {
    pub(crate) millis: f64,
    pub(crate) attempts: u64,
    /// Whether `millis` counts from the launcher's timestamp (else from our own start).
    pub(crate) since_launch: bool,
}

/// Polls until the server answers or `within` has passed.
pub(crate) async fn wait_ready(
    endpoint: &Endpoint,
    workload: &Workload,
    within: Duration,
    poll: Duration,
    launched_at: Option<&str>,
) -> anyhow::Result<Ready> {
    let started = Instant::now();
    let deadline = started + within;
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        if answers(endpoint, workload).await {
            break;
        }
        if Instant::now() >= deadline {
            bail!("no answer from the server within {within:?} ({attempts} attempts)");
        }
        tokio::time::sleep(poll).await;
    }
    let ours = started.elapsed();
    let (elapsed, since_launch) = match launched_at {
        Some(text) => (since(text)?, true),
        None => (ours, false),
    };
    Ok(Ready {
        millis: elapsed.as_secs_f64() * 1e3,
        attempts,
        since_launch,
    })
}

/// One attempt on a fresh connection (the server may not have been listening before).
async fn answers(endpoint: &Endpoint, workload: &Workload) -> bool {
    let Ok(channel) = endpoint.connect().await else {
        return false;
    };
    let mut request = tonic::Request::new(workload.request_for(0));
    request.set_timeout(workload.timeout);
    RateLimitServiceClient::new(channel)
        .should_rate_limit(request)
        .await
        .is_ok()
}

/// Wall-clock time from `launched` (Unix nanoseconds, or `@FILE` holding them) to now.
fn since(launched: &str) -> anyhow::Result<Duration> {
    let text = match launched.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => launched.to_owned(),
    };
    let nanos: u64 = text
        .trim()
        .parse()
        .with_context(|| format!("--launched-at: {:?} is not Unix nanoseconds", text.trim()))?;
    // The launcher's timestamp is wall-clock (`date +%s%N`), so the comparison must be too;
    // this is a benchmark client, not the engine, so the Clock rule does not apply.
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    now.checked_sub(Duration::from_nanos(nanos))
        .context("--launched-at is in the future")
}
