//! The shared retry policy: exponential backoff with full jitter, bounded.
//!
//! Only errors whose [`ProviderError::is_retryable`] is true (throttling, 5xx, timeouts)
//! are retried. The engine wraps provider calls in it; providers use it only inside
//! `verify`, to wait for propagation.

use crate::{ProviderError, ProviderResult};
use rand::Rng;
use std::future::Future;
use std::time::Duration;

/// How often and how long to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, including the first.
    pub max_attempts: u32,
    /// Delay cap of the first retry; doubles per attempt.
    pub base_delay: Duration,
    /// Upper bound of any single delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1-based): uniform in
    /// `[0, min(max_delay, base_delay * 2^(attempt-1))]` ("full jitter").
    pub fn delay(&self, attempt: u32) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(
                1u32.checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max_delay);
        let millis = cap.as_millis() as u64;
        Duration::from_millis(if millis == 0 {
            0
        } else {
            rand::thread_rng().gen_range(0..=millis)
        })
    }

    /// Runs `f` until it succeeds, fails permanently, or attempts run out.
    pub async fn run<T, F, Fut>(&self, operation: &str, mut f: F) -> ProviderResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ProviderResult<T>>,
    {
        let mut attempt = 1;
        loop {
            match f().await {
                Err(e) if e.is_retryable() && attempt < self.max_attempts => {
                    let d = self.delay(attempt);
                    tracing::info!(operation, attempt, delay_ms = d.as_millis() as u64, error = %e, "retrying");
                    tokio::time::sleep(d).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// Convenience: whether an error is worth retrying (for callers outside `run`).
pub fn retryable(e: &ProviderError) -> bool {
    e.is_retryable()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn transient() -> ProviderError {
        ProviderError::Transient {
            provider: "t".into(),
            operation: "op",
            message: "Throttling".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_then_succeeds() {
        let calls = AtomicU32::new(0);
        let p = RetryPolicy::default();
        let r = p
            .run("op", || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                    Err(transient())
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts_and_never_retries_permanent_errors() {
        let calls = AtomicU32::new(0);
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let r: ProviderResult<()> = p
            .run("op", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(transient())
            })
            .await;
        assert!(r.unwrap_err().is_retryable());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        calls.store(0, Ordering::SeqCst);
        let r: ProviderResult<()> = p
            .run("op", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(ProviderError::AccessDenied {
                    provider: "t".into(),
                    operation: "op",
                    message: "no".into(),
                })
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn delays_are_bounded_and_grow() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for attempt in 1..40 {
            assert!(p.delay(attempt) <= Duration::from_secs(1));
        }
        assert!(p.delay(1) <= Duration::from_millis(100));
    }
}
