//! The tokio runtime the binary runs on, built from `--worker-threads`: tokio's multi-thread
//! runtime by default, and a current-thread runtime for one thread. Pinned to one core, a
//! multi-thread runtime still pays for work-stealing queues and cross-thread wake-ups; the
//! current-thread runtime polls I/O and every task on the thread that calls `block_on`, and
//! measured fewer instructions per request than a one-worker multi-thread runtime
//! (docs/PERFORMANCE.md, ranked item 1c). Blocking work (`spawn_blocking`: rule reloads,
//! sweeps) still gets its own threads either way.

use std::io;
use std::num::NonZeroUsize;

use tokio::runtime::{Builder, Runtime};

/// A runtime with `worker_threads` workers (`None`: tokio's default, one per core); with one,
/// a current-thread runtime.
pub fn build_runtime(worker_threads: Option<NonZeroUsize>) -> io::Result<Runtime> {
    let mut builder = match worker_threads {
        Some(threads) if threads.get() == 1 => Builder::new_current_thread(),
        Some(threads) => {
            let mut builder = Builder::new_multi_thread();
            builder.worker_threads(threads.get());
            builder
        }
        None => Builder::new_multi_thread(),
    };
    builder.enable_all().build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_thread_runs_on_the_calling_thread() {
        let runtime = build_runtime(NonZeroUsize::new(1)).unwrap();
        let caller = std::thread::current().id();
        let ran_on = runtime.block_on(async {
            tokio::spawn(async { std::thread::current().id() })
                .await
                .unwrap()
        });
        assert_eq!(
            ran_on, caller,
            "a current-thread runtime runs spawned tasks in block_on"
        );
    }

    #[test]
    fn several_or_default_worker_threads_build_a_multi_thread_runtime() {
        for threads in [None, NonZeroUsize::new(2)] {
            let runtime = build_runtime(threads).unwrap();
            let flavor = runtime.handle().runtime_flavor();
            assert_eq!(
                flavor,
                tokio::runtime::RuntimeFlavor::MultiThread,
                "{threads:?}"
            );
        }
    }
}
