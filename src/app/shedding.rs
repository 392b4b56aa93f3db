//! Load shedding for the RateLimitService: at most `concurrency` calls run at once, at most
//! `queue` more wait for a slot, and every call past that is answered at once with
//! `RESOURCE_EXHAUSTED` — never queued without bound, so an overloaded quotad keeps its
//! latency for the calls it admits and recovers by itself when the surge passes. Envoy reads
//! the error as a failed check and applies `failure_mode_deny`.
//!
//! The limit is one budget for the whole process (all connections share it), unlike tonic's
//! `concurrency_limit_per_connection`, because Envoy multiplexes its load over a few
//! connections. Only the rate-limit service is wrapped: health checks and reflection keep
//! answering under overload, so an orchestrator does not restart a busy but healthy process.

use std::convert::Infallible;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::{Request, Response};
use tonic::server::NamedService;

/// How many calls may run and wait; cheap to clone, clones share one budget.
#[derive(Debug, Clone)]
pub struct LoadShedding {
    /// One permit per call admitted (running or waiting): `concurrency + queue`.
    admitted: Arc<Semaphore>,
    /// One permit per call running: `concurrency`.
    running: Arc<Semaphore>,
    concurrency: usize,
    queue: usize,
}

impl LoadShedding {
    /// At most `concurrency` calls running and `queue` waiting.
    pub fn new(concurrency: NonZeroUsize, queue: usize) -> Self {
        let concurrency = concurrency.get().min(Semaphore::MAX_PERMITS);
        let queue = queue.min(Semaphore::MAX_PERMITS - concurrency);
        Self {
            admitted: Arc::new(Semaphore::new(concurrency + queue)),
            running: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            queue,
        }
    }

    /// Wraps `service` so its calls draw from this budget.
    pub fn wrap<S>(&self, service: S) -> Shed<S> {
        Shed {
            inner: service,
            budget: self.clone(),
        }
    }
}

/// A service whose calls are admitted, queued or shed by a [`LoadShedding`] budget.
#[derive(Debug, Clone)]
pub struct Shed<S> {
    inner: S,
    budget: LoadShedding,
}

impl<S: NamedService> NamedService for Shed<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<Request<B>> for Shed<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let Ok(admitted) = self.budget.admitted.clone().try_acquire_owned() else {
            let budget = &self.budget;
            let status = tonic::Status::resource_exhausted(format!(
                "quotad is overloaded: {} calls running and {} waiting; retry later",
                budget.concurrency, budget.queue
            ));
            return Box::pin(std::future::ready(Ok(status.into_http())));
        };
        // The readied service answers this call; a fresh clone waits for the next one.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let running = self.budget.running.clone();
        Box::pin(async move {
            // The semaphore is never closed, so this only fails if that ever changes; then the
            // call runs unbounded rather than failing.
            let slot = running.acquire_owned().await.ok();
            let response = inner.call(request).await;
            drop((slot, admitted));
            response
        })
    }
}
