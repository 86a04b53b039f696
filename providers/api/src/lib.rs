#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod retry;
mod secret;
#[cfg(feature = "testing")]
pub mod testing;
mod types;

pub use retry::{RetryPolicy, retryable};
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
    async fn keys(&self, t: &Target) -> ProviderResult<Vec<KeyInfo>>;

    /// Creates a new key for the identity of `t` without touching existing keys (phase 1).
    ///
    /// Not idempotent: every successful call creates a key, so the engine records an intent
    /// before calling it and cleans up orphans on the next run.
    async fn mint(&self, t: &Target) -> ProviderResult<Minted>;

    /// Proves that a freshly minted credential works, retrying internally while the
    /// source propagates it. No side effects besides the authentication itself.
    async fn verify(&self, m: &Minted) -> ProviderResult<()>;

    /// Disables or deletes `key` (phase 3). MUST be idempotent: an absent key is `Ok`.
    async fn revoke(&self, t: &Target, key: &KeyId, how: Revoke) -> ProviderResult<()>;
}
