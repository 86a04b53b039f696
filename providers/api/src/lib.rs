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
}
