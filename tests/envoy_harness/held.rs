//! An upstream that holds every request open until the test lets it finish, so a test can
//! keep an exact number of requests in flight behind Envoy (concurrency limits).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

/// The held upstream: how many requests reached it, and the gate that lets them finish.
#[derive(Debug, Clone)]
pub struct HeldUpstream {
    /// Where it listens (loopback).
    pub addr: SocketAddr,
    arrived: Arc<AtomicUsize>,
    arrival: Arc<Notify>,
    gate: Arc<Semaphore>,
}

impl HeldUpstream {
    /// Starts it on a loopback port; every request waits for [`HeldUpstream::finish`].
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind held upstream");
        let upstream = Self {
            addr: listener.local_addr().expect("held upstream addr"),
            arrived: Arc::new(AtomicUsize::new(0)),
            arrival: Arc::new(Notify::new()),
            gate: Arc::new(Semaphore::new(0)),
        };
        let state = upstream.clone();
        let app = axum::Router::new().fallback(move || {
            let state = state.clone();
            async move {
                state.arrived.fetch_add(1, Ordering::SeqCst);
                state.arrival.notify_waiters();
                // Each request consumes one permit, so `finish(n)` ends exactly n of them.
                if let Ok(permit) = state.gate.acquire().await {
                    permit.forget();
                }
                "finished"
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        upstream
    }

    /// Requests that have reached the upstream so far.
    pub fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }

    /// Waits (bounded by the harness deadline) until at least `count` requests have arrived.
    pub async fn wait_for_arrivals(&self, count: usize) {
        let wait = async {
            loop {
                let notified = self.arrival.notified();
                if self.arrived() >= count {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(super::process::DEADLINE, wait)
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} requests arrived", self.arrived()));
    }

    /// Lets `count` held (or future) requests finish.
    pub fn finish(&self, count: usize) {
        self.gate.add_permits(count);
    }
}
