#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod clock;
mod key_id;
mod prefetch;
mod propagation;
mod retry;
mod secret;
#[cfg(feature = "testing")]
pub mod testing;
mod types;

pub use clock::{Clock, SystemClock};
pub use key_id::{Checked, MAX_KEY_ID_LEN, escape_for_display, is_valid_key_id, key_id_format};
pub use prefetch::Prefetched;
pub use propagation::{Attempt, Propagation};
pub use retry::{RetryPolicy, Retrying, retryable};
pub use secret::SecretValue;
pub use types::*;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A source of credentials that can be minted and revoked.
///
/// Implementations are picked at runtime from the `source` annotation of a SealedSecret.
/// The engine owns retries, ordering and state; a provider only talks to its source.
///
/// Contract for every method:
/// * no secret value may appear in an error, a log line or a `Debug` output;
/// * calls for different targets may run concurrently;
/// * a transient failure returns an error whose [`ProviderError::is_retryable`] is true.
#[async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// Stable id: the `source` annotation value, the audit field and the cargo feature name.
    fn name(&self) -> &'static str;

    /// Static limits of the source (for example two access keys per AWS IAM user).
    fn capabilities(&self) -> Capabilities;

    /// Checks configuration and permissions for `t`. MUST NOT have side effects.
    async fn preflight(&self, t: &Target) -> ProviderResult<()>;

    /// Lists the keys that currently exist for the identity of `t`. No side effects.
    ///
    /// A provider may leave `last_used` unknown for `t.current_key` (the key in use) when
    /// asking costs a call per key; callers that need it pass no current key.
    async fn keys(&self, t: &Target) -> ProviderResult<Vec<KeyInfo>>;

    /// Creates a new key for the identity of `t` without touching existing keys (phase 1).
    /// It never deletes a key to make room: when the identity is full it returns
    /// [`ProviderError::KeyLimit`], and the engine decides what may be freed. The one
    /// exception is an identity that holds a single key by design, chosen in its
    /// annotations (a database login with `strategy: single-user`): its mint replaces the
    /// key, and the engine runs it only when the operator accepts that gap.
    ///
    /// Not idempotent: every successful call creates a key, so the engine claims the
    /// credential before calling it and a later run cleans up after a run that died.
    async fn mint(&self, t: &Target) -> ProviderResult<Minted>;

    /// Proves that a freshly minted credential works, retrying internally while the
    /// source propagates it. No side effects besides the authentication itself.
    async fn verify(&self, m: &Minted) -> ProviderResult<()>;

    /// Disables or deletes `key` (phase 3). MUST be idempotent: an absent key is
    /// `Ok(Revoked::AlreadyGone)`.
    async fn revoke(&self, t: &Target, key: &KeyId, how: Revoke) -> ProviderResult<Revoked>;

    /// Whether `key` was used at or after `since`, asked at `now` (the run's clock). No
    /// side effects. By default from `keys`' `last_used` where the source reports it
    /// ([`Capabilities::reports_last_use`]), else [`Usage::Unknown`]; a source with its own
    /// usage records (sign-in logs, activity analysis) answers from them, saying
    /// [`Usage::Pending`] while they lag.
    async fn usage_since(
        &self,
        t: &Target,
        key: &KeyId,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> ProviderResult<Usage> {
        let _ = now;
        if !self.capabilities().reports_last_use {
            return Ok(Usage::Unknown(format!(
                "the {} source cannot tell whether the old key is still used",
                self.name()
            )));
        }
        let keys = self.keys(t).await?;
        Ok(
            match keys.iter().find(|k| &k.id == key).and_then(|k| k.last_used) {
                Some(at) if at >= since => Usage::Used(at),
                _ => Usage::Idle,
            },
        )
    }
}

/// A shared provider is a provider (so layers such as [`Retrying`] can wrap one).
#[async_trait]
impl<T: Provider + ?Sized> Provider for std::sync::Arc<T> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn preflight(&self, t: &Target) -> ProviderResult<()> {
        (**self).preflight(t).await
    }
    async fn keys(&self, t: &Target) -> ProviderResult<Vec<KeyInfo>> {
        (**self).keys(t).await
    }
    async fn mint(&self, t: &Target) -> ProviderResult<Minted> {
        (**self).mint(t).await
    }
    async fn verify(&self, m: &Minted) -> ProviderResult<()> {
        (**self).verify(m).await
    }
    async fn revoke(&self, t: &Target, key: &KeyId, how: Revoke) -> ProviderResult<Revoked> {
        (**self).revoke(t, key, how).await
    }
    async fn usage_since(
        &self,
        t: &Target,
        key: &KeyId,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> ProviderResult<Usage> {
        (**self).usage_since(t, key, since, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source whose keys report their last use (as AWS's do).
    #[derive(Debug)]
    struct LastUse(Option<DateTime<Utc>>, bool);

    #[async_trait]
    impl Provider for LastUse {
        fn name(&self) -> &'static str {
            "t"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                max_keys_per_identity: None,
                can_disable: false,
                needs_propagation: false,
                reports_last_use: self.1,
            }
        }
        async fn preflight(&self, _: &Target) -> ProviderResult<()> {
            Ok(())
        }
        async fn keys(&self, _: &Target) -> ProviderResult<Vec<KeyInfo>> {
            Ok(vec![KeyInfo {
                id: KeyId("old".into()),
                created: None,
                status: KeyStatus::Active,
                last_used: self.0,
                expires: None,
            }])
        }
        async fn mint(&self, _: &Target) -> ProviderResult<Minted> {
            unreachable!()
        }
        async fn verify(&self, _: &Minted) -> ProviderResult<()> {
            Ok(())
        }
        async fn revoke(&self, _: &Target, _: &KeyId, _: Revoke) -> ProviderResult<Revoked> {
            Ok(Revoked::Done)
        }
    }

    #[test]
    fn usage_by_default_compares_the_last_use_with_the_moment() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let published = t("2026-11-21T12:00:00Z");
        let target = Target {
            source: "t".into(),
            params: Default::default(),
            current_key: None,
            referenced: Vec::new(),
        };
        let ask = |p: LastUse| {
            let target = target.clone();
            block_on(async move {
                p.usage_since(&target, &KeyId("old".into()), published, published)
                    .await
                    .unwrap()
            })
        };
        assert_eq!(ask(LastUse(None, true)), Usage::Idle);
        assert_eq!(
            ask(LastUse(Some(t("2026-11-21T11:00:00Z")), true)),
            Usage::Idle
        );
        assert_eq!(
            ask(LastUse(Some(t("2026-11-21T12:30:00Z")), true)),
            Usage::Used(t("2026-11-21T12:30:00Z"))
        );
        // A source that does not report use says so, whatever its keys hold.
        assert!(matches!(
            ask(LastUse(Some(t("2026-11-21T12:30:00Z")), false)),
            Usage::Unknown(why) if why.contains("cannot tell")
        ));
    }

    /// Runs a future that never waits on I/O to completion.
    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }
}
