//! Waiting for a new key to start working: a window per source that the backoff really
//! spans, and an early stop for every error that is not propagation.
//!
//! A freshly minted key is often rejected for a while (IAM ~10–15 s, Entra ID 4–18 s with
//! no SLA, Google "60 seconds or more"). `verify` retries while the source answers "not
//! yet", sleeping 1 s, 2 s, 4 s, ... (capped, with jitter), and makes its last attempt when
//! the window has passed — so the documented window is the time it really waits, not an
//! average of random delays.

use crate::clock::Clock;
use crate::{ProviderError, ProviderResult};
use rand::Rng;
use std::future::Future;
use std::time::Duration;

/// What one attempt found.
#[derive(Debug)]
pub enum Attempt<T> {
    /// The key works.
    Done(T),
    /// The source does not accept the key yet (or throttled the check): try again.
    Pending(ProviderError),
    /// A verdict that waiting cannot change (wrong tenant, expired, policy): stop now.
    Failed(ProviderError),
}

/// How long a source may take to accept a new key, and how to poll it meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Propagation {
    /// The longest the source may take; the last attempt happens when it has passed.
    pub window: Duration,
    /// The first delay; doubles after every attempt.
    pub first_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
}

impl Propagation {
    /// A window with the default polling (1 s, doubling, at most 10 s between attempts).
    pub const fn new(window: Duration) -> Self {
        Propagation {
            window,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
        }
    }

    /// Runs `attempt` until it is done, fails, or the window is over.
    pub async fn wait<T, F, Fut>(
        &self,
        clock: &dyn Clock,
        what: &str,
        mut attempt: F,
    ) -> ProviderResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let start = clock.elapsed();
        let mut delay = self.first_delay;
        let mut tries = 0u32;
        loop {
            tries += 1;
            let err = match attempt().await {
                Attempt::Done(v) => return Ok(v),
                Attempt::Failed(e) => return Err(e),
                Attempt::Pending(e) => e,
            };
            let waited = clock.elapsed().saturating_sub(start);
            if waited >= self.window {
                return Err(not_propagated(err, what, self.window, tries));
            }
            // Equal jitter keeps several verifies apart without shrinking the delays much.
            let half = delay / 2;
            let jitter =
                Duration::from_millis(rand::thread_rng().gen_range(0..=half.as_millis() as u64));
            let mut d = half + jitter;
            if let Some(hint) = err.retry_after() {
                d = d.max(hint);
            }
            // Never sleep past the end of the window: the last attempt lands on it.
            d = d.min(self.window - waited);
            tracing::info!(what, attempt = tries, delay_ms = d.as_millis() as u64, error = %err, "not propagated yet");
            clock.sleep(d).await;
            delay = (delay * 2).min(self.max_delay);
        }
    }
}

fn not_propagated(last: ProviderError, what: &str, window: Duration, tries: u32) -> ProviderError {
    let message = format!(
        "{what}: still rejected after the {}s propagation window ({tries} attempts); last error: {last}",
        window.as_secs()
    );
    match last {
        ProviderError::Transient {
            provider,
            operation,
            ..
        }
        | ProviderError::Throttled {
            provider,
            operation,
            ..
        }
        | ProviderError::AccessDenied {
            provider,
            operation,
            ..
        }
        | ProviderError::Permanent {
            provider,
            operation,
            ..
        } => ProviderError::Permanent {
            provider,
            operation,
            message,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Virtual time: sleeping advances it at once.
    #[derive(Debug, Default)]
    struct Fake(Mutex<Duration>);

    impl Clock for Fake {
        fn elapsed(&self) -> Duration {
            *self.0.lock().unwrap()
        }
        fn sleep(&self, d: Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            *self.0.lock().unwrap() += d;
            Box::pin(async {})
        }
    }

    fn pending() -> ProviderError {
        ProviderError::AccessDenied {
            provider: "t".into(),
            operation: "verify",
            message: "InvalidClientTokenId".into(),
        }
    }

    #[tokio::test]
    async fn the_wait_spans_exactly_the_window_then_gives_up() {
        for window in [5, 30, 60, 120] {
            let clock = Fake::default();
            let p = Propagation::new(Duration::from_secs(window));
            let calls = AtomicU32::new(0);
            let r: ProviderResult<()> = p
                .wait(&clock, "sign-in", || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Attempt::Pending(pending())
                })
                .await;
            assert_eq!(clock.elapsed(), Duration::from_secs(window), "{window}");
            let e = r.unwrap_err();
            assert!(!e.is_retryable(), "{e}");
            assert!(
                e.to_string()
                    .contains(&format!("{window}s propagation window")),
                "{e}"
            );
            // 1, 2, 4, 8, 10, 10 ... seconds (halved at worst by the jitter).
            assert!(calls.load(Ordering::SeqCst) >= 2, "{window}");
        }
    }

    #[tokio::test]
    async fn a_key_that_starts_working_inside_the_window_is_accepted() {
        let clock = Fake::default();
        let p = Propagation::new(Duration::from_secs(60));
        let r = p
            .wait(&clock, "sign-in", || async {
                if clock.elapsed() >= Duration::from_secs(45) {
                    Attempt::Done(7)
                } else {
                    Attempt::Pending(pending())
                }
            })
            .await;
        assert_eq!(r.unwrap(), 7);
        assert!(clock.elapsed() >= Duration::from_secs(45));
        assert!(clock.elapsed() <= Duration::from_secs(60));
    }

    #[tokio::test]
    async fn a_verdict_stops_at_once_and_retry_after_is_honoured() {
        let clock = Fake::default();
        let p = Propagation::new(Duration::from_secs(60));
        let r: ProviderResult<()> = p
            .wait(&clock, "sign-in", || async {
                Attempt::Failed(ProviderError::Permanent {
                    provider: "t".into(),
                    operation: "verify",
                    message: "AADSTS90002: tenant not found".into(),
                })
            })
            .await;
        assert!(r.unwrap_err().to_string().contains("AADSTS90002"));
        assert_eq!(clock.elapsed(), Duration::ZERO);
        let calls = AtomicU32::new(0);
        let r = p
            .wait(&clock, "sign-in", || async {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Attempt::Pending(ProviderError::Throttled {
                        provider: "t".into(),
                        operation: "verify",
                        message: "429".into(),
                        retry_after: Some(Duration::from_secs(20)),
                    })
                } else {
                    Attempt::Done(())
                }
            })
            .await;
        r.unwrap();
        assert_eq!(clock.elapsed(), Duration::from_secs(20), "waited as asked");
    }
}
