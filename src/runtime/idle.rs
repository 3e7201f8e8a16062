//! Whether a tokio worker went idle between requests: the gate that keeps
//! run to completion on the caller ([`super::pool`]) from taking over a
//! saturated server.
//!
//! "Alone in the pool" is not enough. A worker that goes from request to
//! request without running out of work (one core at c=64, say) finds the
//! pool empty at every request, because it holds only one at a time, and
//! running them all on the caller cost 40% of the throughput there
//! (BENCHMARKS.md, "Run to completion on the caller"; our reading: each
//! run keeps the worker from the network, where the staged hand-off keeps
//! every stage busy). So a worker runs a request on the caller only when it
//! has gone idle since its last such run: at low concurrency it idles
//! between requests; saturated, it rarely does. Whether that wins the
//! throughput back is not measured yet (BENCHMARKS.md, "The 'run out of
//! work' gate").
//!
//! `podium serve`'s runtime calls [`worker_idle`] each time a worker runs
//! out of work (`on_thread_park`). On a thread whose runtime does not, the
//! gate is open: alone in the pool is enough, as before.

use std::cell::Cell;

thread_local! {
    /// Times this worker ran out of work; `None` until its runtime first says so.
    static IDLES: Cell<Option<u64>> = const { Cell::new(None) };
    /// [`IDLES`] when this thread last ran a request on the caller.
    static IDLES_AT_CALLER_RUN: Cell<Option<u64>> = const { Cell::new(None) };
}

/// For a runtime's `on_thread_park`: this worker has run out of work.
pub fn worker_idle() {
    IDLES.with(|n| n.set(Some(n.get().map_or(1, |n| n + 1))));
}

/// Whether this thread may run a request on the caller: it went idle since
/// its last run there, or its runtime does not report idling.
pub fn idle_since_caller_run() -> bool {
    let idles = IDLES.with(Cell::get);
    idles.is_none() || IDLES_AT_CALLER_RUN.with(Cell::get) != idles
}

/// Records that this thread ran a request on the caller.
pub fn ran_on_caller() {
    let idles = IDLES.with(Cell::get);
    IDLES_AT_CALLER_RUN.with(|at| at.set(idles));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_without_reports_then_once_per_idle() {
        std::thread::spawn(|| {
            // A runtime that does not report idling: always open.
            assert!(idle_since_caller_run());
            ran_on_caller();
            assert!(idle_since_caller_run());

            worker_idle();
            assert!(idle_since_caller_run());
            ran_on_caller();
            // Busy since: closed, however many requests come.
            assert!(!idle_since_caller_run());
            assert!(!idle_since_caller_run());
            worker_idle();
            assert!(idle_since_caller_run());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_runtime_reports_its_worker_going_idle() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .on_thread_park(worker_idle)
            .build()
            .unwrap();
        let idles = || {
            runtime
                .block_on(runtime.spawn(async { IDLES.with(Cell::get) }))
                .unwrap()
        };
        let before = idles();
        // Between two tasks the worker has nothing to do, so it parks.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut after = idles();
        while after.unwrap_or(0) <= before.unwrap_or(0) && std::time::Instant::now() < deadline {
            std::thread::yield_now();
            after = idles();
        }
        assert!(
            after.unwrap_or(0) > before.unwrap_or(0),
            "{before:?} → {after:?}"
        );
    }
}
