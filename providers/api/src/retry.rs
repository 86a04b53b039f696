//! Retries: the policy (exponential backoff with full jitter, bounded, honouring the
//! source's `Retry-After`) and [`Retrying`], the one layer that applies it to provider
//! calls.
//!
//! Only errors whose [`ProviderError::is_retryable`] is true (throttling, 5xx, timeouts)
//! are retried. Providers decide what is transient (their error mapping); this layer
//! decides how often. Providers themselves wait only inside `verify`, for a new key to
//! propagate ([`crate::Propagation`]).

use crate::{
    Capabilities, KeyId, KeyInfo, Minted, Provider, ProviderError, ProviderResult, Revoke, Revoked,
    Target,
};
use async_trait::async_trait;
use rand::Rng;
use std::future::Future;
use std::time::Duration;

/// How often and how long to retry one call.
///
/// With the defaults: at most 6 attempts; the delay before retry n is drawn uniformly from
/// `[0, 0.5 s * 2^(n-1)]`, capped at 8 s (at most 15.5 s of backoff in all, 7.75 s on
/// average); a `Retry-After` of up to 60 s replaces a shorter delay, a longer one ends the
/// call at once; never more than 90 s of waiting per call; a timeout is retried once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, including the first.
    pub max_attempts: u32,
    /// Delay cap of the first retry; doubles per attempt.
    pub base_delay: Duration,
    /// Upper bound of any computed delay.
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured; a source asking for more fails the call now
    /// (the next run retries) instead of holding the run.
    pub max_retry_after: Duration,
    /// Upper bound of all waiting between the attempts of one call.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::PROVIDER
    }
}

impl RetryPolicy {
    /// Calls to a credential source (the default): 6 attempts, 0.5 s doubling to 8 s,
    /// `Retry-After` up to 60 s, 90 s of waiting per call.
    pub const PROVIDER: RetryPolicy = RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(8),
        max_retry_after: Duration::from_secs(60),
        budget: Duration::from_secs(90),
    };

    /// A push that lost a race to another writer (main, a cluster pointer, the events
    /// ref): re-read and push again, 11 attempts, 50 ms doubling to 2 s, so pods that
    /// collided spread out; at most 20 s of waiting. Races are the only retried git
    /// errors: hooks and permissions are final.
    pub const GIT_RACE: RetryPolicy = RetryPolicy {
        max_attempts: 11,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_secs(2),
        max_retry_after: Duration::ZERO,
        budget: Duration::from_secs(20),
    };

    /// Requests to a forge (GitHub, GitLab): 4 attempts on server errors and unreachable
    /// hosts, 0.5 s doubling to 4 s; a rate limit's `Retry-After` (or reset time) up to
    /// 60 s; at most 60 s of waiting per request.
    pub const FORGE: RetryPolicy = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(4),
        max_retry_after: Duration::from_secs(60),
        budget: Duration::from_secs(60),
    };

    /// Deliveries that must not hold a run (webhooks, the Pushgateway): 3 attempts,
    /// 0.5 s doubling, at most 5 s of waiting.
    pub const DELIVERY: RetryPolicy = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(2),
        max_retry_after: Duration::from_secs(2),
        budget: Duration::from_secs(5),
    };

    /// The wait before attempt `attempt + 1` after a retryable failure of attempt
    /// `attempt` (1-based), when `waited` has been spent waiting already and the other
    /// side asked for `retry_after`; `None` when the caller should stop: attempts or
    /// budget used up, or the other side asked for more than [`Self::max_retry_after`].
    /// Whether an error is retryable at all is decided where the error is understood.
    pub fn backoff(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        waited: Duration,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let mut d = self.delay(attempt);
        if let Some(asked) = retry_after {
            if asked > self.max_retry_after {
                return None;
            }
            d = d.max(asked);
        }
        (waited + d <= self.budget).then_some(d)
    }

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

    /// The wait before the next attempt after `e`, or `None` when the call should stop.
    fn next_wait(
        &self,
        e: &ProviderError,
        attempt: u32,
        timeouts: u32,
        waited: Duration,
    ) -> Option<Duration> {
        if !e.is_retryable() {
            return None;
        }
        if matches!(e, ProviderError::TimedOut { .. }) && timeouts > 1 {
            return None;
        }
        self.backoff(attempt, e.retry_after(), waited)
    }

    /// Runs `f` until it succeeds, fails permanently, or attempts or budget run out.
    pub async fn run<T, F, Fut>(&self, operation: &str, f: F) -> ProviderResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ProviderResult<T>>,
    {
        self.run_on(&crate::SystemClock::new(), operation, f).await
    }

    /// [`RetryPolicy::run`], sleeping on `clock` (tests share a virtual one with a fake).
    pub async fn run_on<T, F, Fut>(
        &self,
        clock: &dyn crate::Clock,
        operation: &str,
        mut f: F,
    ) -> ProviderResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ProviderResult<T>>,
    {
        let mut attempt = 1;
        let mut timeouts = 0;
        let mut waited = Duration::ZERO;
        loop {
            match f().await {
                Err(e) => {
                    if matches!(e, ProviderError::TimedOut { .. }) {
                        timeouts += 1;
                    }
                    let Some(d) = self.next_wait(&e, attempt, timeouts, waited) else {
                        return Err(self.explain(e));
                    };
                    tracing::info!(operation, attempt, delay_ms = d.as_millis() as u64, error = %e, "retrying");
                    clock.sleep(d).await;
                    waited += d;
                    attempt += 1;
                }
                ok => return ok,
            }
        }
    }

    /// A throttling error whose `Retry-After` is beyond the bound says so.
    fn explain(&self, e: ProviderError) -> ProviderError {
        match e {
            ProviderError::Throttled {
                provider,
                operation,
                message,
                retry_after: Some(asked),
            } if asked > self.max_retry_after => ProviderError::Throttled {
                provider,
                operation,
                message: format!(
                    "{message} (the source asked to wait {}s, more than the {}s this tool waits within a run; the next run retries)",
                    asked.as_secs(),
                    self.max_retry_after.as_secs()
                ),
                retry_after: Some(asked),
            },
            other => other,
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

    async fn revoke(&self, t: &Target, key: &KeyId, how: Revoke) -> ProviderResult<Revoked> {
        self.policy
            .run("revoke", || self.inner.revoke(t, key, how))
            .await
    }

    async fn usage_since(
        &self,
        t: &Target,
        key: &KeyId,
        since: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> ProviderResult<crate::Usage> {
        self.policy
            .run("usage", || self.inner.usage_since(t, key, since, now))
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

    #[test]
    fn every_named_policy_stops_within_its_attempts_and_budget() {
        for (name, p) in [
            ("provider", RetryPolicy::PROVIDER),
            ("git race", RetryPolicy::GIT_RACE),
            ("forge", RetryPolicy::FORGE),
            ("delivery", RetryPolicy::DELIVERY),
        ] {
            for _ in 0..50 {
                let (mut attempt, mut waited) = (1, Duration::ZERO);
                while let Some(d) = p.backoff(attempt, None, waited) {
                    assert!(d <= p.max_delay, "{name}: {d:?}");
                    waited += d;
                    attempt += 1;
                }
                assert!(attempt <= p.max_attempts, "{name}: {attempt} attempts");
                assert!(waited <= p.budget, "{name}: waited {waited:?}");
            }
            // Asking for more than the policy honours stops at once; less is honoured.
            let too_long = p.max_retry_after + Duration::from_secs(1);
            assert_eq!(p.backoff(1, Some(too_long), Duration::ZERO), None, "{name}");
            if !p.max_retry_after.is_zero() {
                let d = p.backoff(1, Some(p.max_retry_after), Duration::ZERO);
                assert_eq!(d, Some(p.max_retry_after), "{name}");
            }
        }
        // Ten retries of a lost git race before the run gives the credential up.
        let mut attempts = 1;
        while RetryPolicy::GIT_RACE
            .backoff(attempts, None, Duration::ZERO)
            .is_some()
        {
            attempts += 1;
        }
        assert_eq!(attempts, 11);
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
                reports_last_use: false,
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
        async fn revoke(&self, _: &Target, _: &KeyId, _: Revoke) -> ProviderResult<Revoked> {
            (self.count("revoke") > 1)
                .then_some(Revoked::Done)
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

    fn throttled(after: u64) -> ProviderError {
        ProviderError::Throttled {
            provider: "t".into(),
            operation: "op",
            message: "TooManyRequests".into(),
            retry_after: Some(Duration::from_secs(after)),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_within_the_bound_and_ends_the_call_beyond_it() {
        let p = RetryPolicy::default();
        let calls = AtomicU32::new(0);
        let t0 = tokio::time::Instant::now();
        let r = p
            .run("op", || async {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(throttled(41))
                } else {
                    Ok(())
                }
            })
            .await;
        r.unwrap();
        assert!(
            t0.elapsed() >= Duration::from_secs(41),
            "{:?}",
            t0.elapsed()
        );
        assert!(t0.elapsed() < Duration::from_secs(42));
        // 315 s is beyond the 60 s bound: one call, and the error says why it stopped.
        calls.store(0, Ordering::SeqCst);
        let t0 = tokio::time::Instant::now();
        let e = p
            .run("op", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(throttled(315))
            })
            .await
            .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(t0.elapsed(), Duration::ZERO);
        assert!(e.to_string().contains("asked to wait 315s"), "{e}");
        // Repeated long Retry-Afters stop at the 90 s budget.
        calls.store(0, Ordering::SeqCst);
        let t0 = tokio::time::Instant::now();
        p.run("op", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(throttled(50))
        })
        .await
        .unwrap_err();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "50 s once, not twice (100 s > 90 s)"
        );
        assert!(t0.elapsed() <= p.budget);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_is_retried_once_and_backoff_stays_within_its_documented_total() {
        let p = RetryPolicy::default();
        let calls = AtomicU32::new(0);
        p.run("op", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(ProviderError::TimedOut {
                provider: "t".into(),
                operation: "op",
                after: Duration::from_secs(30),
            })
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Transient errors: 6 attempts, at most 0.5+1+2+4+8 = 15.5 s of waiting.
        for _ in 0..20 {
            calls.store(0, Ordering::SeqCst);
            let t0 = tokio::time::Instant::now();
            p.run("op", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(transient())
            })
            .await
            .unwrap_err();
            assert_eq!(calls.load(Ordering::SeqCst), 6);
            assert!(
                t0.elapsed() <= Duration::from_millis(15_500),
                "{:?}",
                t0.elapsed()
            );
        }
    }

    #[test]
    fn delays_are_bounded_and_grow() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for attempt in 1..40 {
            assert!(p.delay(attempt) <= Duration::from_secs(1));
        }
        assert!(p.delay(1) <= Duration::from_millis(100));
    }
}
