//! A do-nothing Envoy RateLimitService on tonic 0.14 with default settings: every
//! ShouldRateLimit is answered OK without looking at it. It is issue 9's reference server
//! ("p99 at one connection with one request in flight within 10% of the do-nothing server's"),
//! built here so the comparison is made on the same machine, client and tonic version as
//! quotad's numbers. Loopback only.
//!
//! ```text
//! cargo build --release --example noop_rls
//! target/release/examples/noop_rls --addr 127.0.0.1:18091 &
//! target/release/examples/loadgen --addr http://127.0.0.1:18091 -c 1 -m 1 -n 30000
//! ```

use std::net::SocketAddr;

use anyhow::{Context, ensure};
use clap::Parser;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use tonic::{Request, Response, Status};

/// Serve a RateLimitService that answers OK to everything (a transport-only reference).
#[derive(Debug, Parser)]
struct Args {
    /// Loopback address to listen on.
    #[arg(long, default_value = "127.0.0.1:18091")]
    addr: SocketAddr,
    /// Tokio worker threads (1 = current-thread runtime, like `quotad --worker-threads 1`);
    /// tokio's default (one per core) when absent.
    #[arg(long)]
    worker_threads: Option<usize>,
}

/// The service: no state, no work.
#[derive(Debug, Default)]
struct Noop;

#[tonic::async_trait]
impl RateLimitService for Noop {
    async fn should_rate_limit(
        &self,
        _request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        Ok(Response::new(RateLimitResponse {
            overall_code: Code::Ok.into(),
            ..RateLimitResponse::default()
        }))
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.addr.ip().is_loopback(),
        "--addr {} is not loopback",
        args.addr
    );
    let runtime = match args.worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(threads) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
    .context("building the tokio runtime")?;
    runtime.block_on(async {
        eprintln!("noop_rls listening on {}", args.addr);
        tonic::transport::Server::builder()
            .add_service(RateLimitServiceServer::new(Noop))
            .serve(args.addr)
            .await
            .context("serving")
    })
}
