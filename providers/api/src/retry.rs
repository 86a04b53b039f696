//! Retries: the policy (exponential backoff with full jitter, bounded) and
//! [`Retrying`], the one layer that applies it to provider calls.
//!
//! Only errors whose [`ProviderError::is_retryable`] is true (throttling, 5xx, timeouts)
//! are retried. Providers decide what is transient (their error mapping); this layer
//! decides how often. Providers themselves use a policy only inside `verify`, to wait for
//! a new key to propagate.

use crate::{
    Capabilities, KeyId, KeyInfo, Minted, Provider, ProviderError, ProviderResult, Revoke, Target,
};
use async_trait::async_trait;
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

/// A provider whose calls are retried by `policy` — the only place the engine's provider
/// calls are retried.
///
/// * `preflight`, `keys` and `revoke` are retried: they have no side effect or are
///   idempotent by contract (revoking an absent key is `Ok`).
/// * `mint` is **never** retried: every successful call creates a key, and a call that
///   timed out may have created one. The engine claims the credential before it mints, so
///   a key left by a failed attempt is found and cleaned up by a later run.
/// * `verify` is passed through: the provider already waits for propagation inside it.
#[derive(Debug)]
pub struct Retrying<P> {
    inner: P,
    policy: RetryPolicy,
}

impl<P: Provider> Retrying<P> {
    /// Wraps `inner`.
    pub fn new(inner: P, policy: RetryPolicy) -> Self {
        Retrying { inner, policy }
    }
}

#[async_trait]
impl<P: Provider> Provider for Retrying<P> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn preflight(&self, t: &Target) -> ProviderResult<()> {
        self.policy
            .run("preflight", || self.inner.preflight(t))
            .await
    }

    async fn keys(&self, t: &Target) -> ProviderResult<Vec<KeyInfo>> {
        self.policy.run("keys", || self.inner.keys(t)).await
    }

    async fn mint(&self, t: &Target) -> ProviderResult<Minted> {
        self.inner.mint(t).await
    }

    async fn verify(&self, m: &Minted) -> ProviderResult<()> {
        self.inner.verify(m).await
    }

    async fn revoke(&self, t: &Target, key: &KeyId, how: Revoke) -> ProviderResult<()> {
        self.policy
            .run("revoke", || self.inner.revoke(t, key, how))
            .await
    }
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

    #[derive(Debug, Default)]
    struct Flaky {
        calls: std::sync::Mutex<std::collections::BTreeMap<&'static str, u32>>,
    }

    impl Flaky {
        fn count(&self, op: &'static str) -> u32 {
            let mut c = self.calls.lock().unwrap();
            let n = c.entry(op).or_default();
            *n += 1;
            *n
        }
        fn calls(&self, op: &'static str) -> u32 {
            self.calls.lock().unwrap().get(op).copied().unwrap_or(0)
        }
    }

    #[async_trait]
    impl Provider for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                max_keys_per_identity: None,
                can_disable: false,
                needs_propagation: false,
            }
        }
        async fn preflight(&self, _: &Target) -> ProviderResult<()> {
            (self.count("preflight") > 2)
                .then_some(())
                .ok_or_else(transient)
        }
        async fn keys(&self, _: &Target) -> ProviderResult<Vec<KeyInfo>> {
            (self.count("keys") > 1)
                .then(Vec::new)
                .ok_or_else(transient)
        }
        async fn mint(&self, _: &Target) -> ProviderResult<Minted> {
            self.count("mint");
            Err(transient())
        }
        async fn verify(&self, _: &Minted) -> ProviderResult<()> {
            self.count("verify");
            Err(transient())
        }
        async fn revoke(&self, _: &Target, _: &KeyId, _: Revoke) -> ProviderResult<()> {
            (self.count("revoke") > 1)
                .then_some(())
                .ok_or_else(transient)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_layer_retries_idempotent_calls_and_never_mint() {
        let p = Retrying::new(Flaky::default(), RetryPolicy::default());
        let t = Target {
            source: "flaky".into(),
            params: Default::default(),
            current_key: None,
            referenced: Vec::new(),
        };
        p.preflight(&t).await.unwrap();
        p.keys(&t).await.unwrap();
        p.revoke(&t, &KeyId("k".into()), Revoke::Delete)
            .await
            .unwrap();
        assert!(p.mint(&t).await.unwrap_err().is_retryable());
        let m = Minted {
            key_id: KeyId("k".into()),
            created: chrono::Utc::now(),
            fields: Default::default(),
            operator: None,
        };
        assert!(p.verify(&m).await.is_err());
        let inner = &p.inner;
        assert_eq!(inner.calls("preflight"), 3);
        assert_eq!(inner.calls("keys"), 2);
        assert_eq!(inner.calls("revoke"), 2);
        assert_eq!(inner.calls("mint"), 1, "mint is never retried");
        assert_eq!(inner.calls("verify"), 1, "verify keeps its own loop");
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
