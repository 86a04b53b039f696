//! Blocking work — git children, the waits between their retries — called from the async
//! engine.
//!
//! The engine's phases are async (provider calls run many at once) and drive git
//! synchronously in between. A blocking call on a tokio worker thread would stall every
//! other task scheduled on it (the signal handler, provider calls of a batch), so each
//! one runs through [`run`]: on a multi-threaded runtime the worker hands its other tasks
//! to another thread first (`block_in_place`); elsewhere (a current-thread runtime in
//! tests, no runtime at all) it just runs.

use std::time::Duration;
use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f`, which blocks (waits for a child process, sleeps), without stalling the
/// runtime's other tasks.
pub fn run<T>(f: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Waits `d` from synchronous code (a backoff between retries).
pub fn sleep(d: Duration) {
    if !d.is_zero() {
        run(|| std::thread::sleep(d));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    /// A task that ticks every 10 ms keeps ticking while another task on the runtime's
    /// only worker sleeps through `sleep` (a `std::thread::sleep` there would stall it).
    #[test]
    fn a_blocking_wait_does_not_stall_the_runtime() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        let ticks = Arc::new(AtomicU32::new(0));
        rt.block_on(async {
            let t = ticks.clone();
            let ticker = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    t.fetch_add(1, Ordering::SeqCst);
                }
            });
            tokio::time::sleep(Duration::from_millis(30)).await;
            let t = ticks.clone();
            let sleeper = tokio::spawn(async move {
                let before = t.load(Ordering::SeqCst);
                super::sleep(Duration::from_millis(300));
                t.load(Ordering::SeqCst) - before
            });
            let ticked_meanwhile = sleeper.await.unwrap();
            ticker.abort();
            assert!(
                ticked_meanwhile >= 10,
                "the other task ticked {ticked_meanwhile} times in 300 ms"
            );
        });
    }
}
