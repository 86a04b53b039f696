//! Plain data exchanged between the engine and providers.

use crate::SecretValue;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// The identity of a key at its source, e.g. an AWS access key id. Not secret.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct KeyId(pub String);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a provider needs to find an identity: the source-specific annotations of a
/// SealedSecret (without the prefix), e.g. `account` and `username` for AWS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Provider name (`aws`, `azure`, `gcp` or a plugin name).
    pub source: String,
    /// Identity annotations, key without prefix.
    pub params: BTreeMap<String, String>,
    /// The key currently referenced by the manifest, if any.
    pub current_key: Option<KeyId>,
    /// Every key of this identity that any manifest in the repo references (or that a
    /// staged rotation still needs). A provider must never delete one of these to make
    /// room for a new key.
    pub referenced: Vec<KeyId>,
}

impl Target {
    /// A parameter by annotation name, or a [`ProviderError::MissingParameter`].
    pub fn param(&self, name: &'static str) -> ProviderResult<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| ProviderError::MissingParameter {
                provider: self.source.clone(),
                name,
            })
    }
}

/// Static facts about a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Keys an identity may hold at once (2 for AWS IAM users, 10 for GCP service accounts).
    pub max_keys_per_identity: Option<u32>,
    /// Whether a key can be disabled before it is deleted.
    pub can_disable: bool,
    /// Whether a new key needs time before it works everywhere.
    pub needs_propagation: bool,
    /// Whether `keys` reports each key's last use (`last_used: None` then means "never
    /// used"). A source that cannot tell makes `--require-old-key-unused` fall back to
    /// the grace period, and the revoke says so.
    pub reports_last_use: bool,
}

/// Status of a key at its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Exists but cannot authenticate.
    Inactive,
    /// Past its expiry date.
    Expired,
}

/// A key that exists at the source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    /// Key id.
    pub id: KeyId,
    /// Creation time reported by the source.
    pub created: Option<DateTime<Utc>>,
    /// Active or inactive at the source.
    pub status: KeyStatus,
    /// Last authentication with this key, where the source reports it.
    pub last_used: Option<DateTime<Utc>>,
    /// When the key stops working by itself, where the source sets an end date.
    pub expires: Option<DateTime<Utc>>,
}

/// A freshly minted credential. `fields` are the provider output fields that
/// `keyMappings` refers to (e.g. `AccessKeyId`, `SecretAccessKey`).
#[derive(Clone, Debug)]
pub struct Minted {
    /// The new key id.
    pub key_id: KeyId,
    /// Creation time reported by the source.
    pub created: DateTime<Utc>,
    /// Output fields by name; every value is secret-typed, even non-secret ones.
    pub fields: BTreeMap<String, SecretValue>,
    /// Who the source saw as the caller (for the audit trail), e.g. an STS ARN.
    pub operator: Option<String>,
}

/// How to revoke an old key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Revoke {
    /// Delete the key.
    Delete,
    /// Disable it (delete on a later run); falls back to delete where unsupported.
    Disable,
}

/// What a source can say about a key's use since a moment (the old key's use since
/// publish, for `--require-old-key-unused`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Usage {
    /// Used at this time, at or after the moment asked about.
    Used(DateTime<Utc>),
    /// Not used since the moment, as far as the source's records reach, and they reach far
    /// enough to say so.
    Idle,
    /// Nothing seen, but the source's records lag and do not reach far enough yet: ask
    /// again later. Says until when and why.
    Pending(String),
    /// The source keeps no record that can tell (none at all, or not for this tenant): the
    /// gate falls back to the grace period. Says why.
    Unknown(String),
}

/// What a revoke found: the key revoked now, or already gone (deleted by someone else or
/// by an earlier attempt). Both are success: revoke is idempotent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revoked {
    /// The key was deleted or disabled by this call.
    Done,
    /// The source had no such key.
    AlreadyGone,
}

/// Errors a provider reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The annotation names a source this build does not include.
    #[error("source `{name}` is not compiled into this build (enable cargo feature `{feature}`)")]
    NotCompiledIn {
        /// Source name.
        name: String,
        /// Cargo feature that adds it.
        feature: &'static str,
    },
    /// The annotation names a source nobody provides.
    #[error(
        "unknown source `{name}`: not built in and no plugin `secret-manager-provider-{name}` on PATH"
    )]
    UnknownSource {
        /// Source name.
        name: String,
    },
    /// A required identity annotation is missing.
    #[error("{provider}: missing parameter `{name}`")]
    MissingParameter {
        /// The source that failed.
        provider: String,
        /// Annotation name without prefix.
        name: &'static str,
    },
    /// The identity already holds the maximum number of keys and none may be freed.
    #[error("{provider}: {identity} already has {count} keys (the limit); {hint}")]
    KeyLimit {
        /// The source that failed.
        provider: String,
        /// The identity label the source keys belong to (an IAM user, an application, a service account).
        identity: String,
        /// Keys present.
        count: usize,
        /// What the operator can do.
        hint: String,
    },
    /// The caller lacks a permission.
    #[error("{provider}: access denied for {operation}: {message}")]
    AccessDenied {
        /// The source that failed.
        provider: String,
        /// What it was asked to do (`mint`, `verify`, `keys`, `revoke`, ...).
        operation: &'static str,
        /// Message from the source (never contains secrets).
        message: String,
    },
    /// No credentials for the source could be found or loaded: a setup problem of the
    /// machine the tool runs on, reported once in one line and never retried.
    #[error("{provider}: {message}")]
    NoCredentials {
        /// The source that failed.
        provider: String,
        /// What is missing and how to provide it.
        message: String,
    },
    /// The identity does not exist at the source.
    #[error("{provider}: {what} not found")]
    NotFound {
        /// The source that failed.
        provider: String,
        /// What was missing.
        what: String,
    },
    /// The credentials act as someone other than the manifest names (e.g. another AWS
    /// account): nothing may change for this identity.
    #[error("{provider}: {message}")]
    IdentityMismatch {
        /// The source that failed.
        provider: String,
        /// Both identities and what to do.
        message: String,
    },
    /// Throttling, 5xx, timeouts, connection failures.
    #[error("{provider}: transient failure during {operation}: {message}")]
    Transient {
        /// The source that failed.
        provider: String,
        /// What it was asked to do (`mint`, `verify`, `keys`, `revoke`, ...).
        operation: &'static str,
        /// What the source said, cut and escaped (never a secret value).
        message: String,
    },
    /// The source asked the caller to slow down, possibly saying for how long
    /// (`Retry-After`, Google's `RetryInfo`).
    #[error("{provider}: throttled during {operation}: {message}")]
    Throttled {
        /// The source that failed.
        provider: String,
        /// What it was asked to do (`mint`, `verify`, `keys`, `revoke`, ...).
        operation: &'static str,
        /// What the source said, cut and escaped (never a secret value).
        message: String,
        /// How long the source asked to wait, when it said.
        retry_after: Option<std::time::Duration>,
    },
    /// The call did not finish in time. Retried once at most: a source that hangs once
    /// usually hangs again, and every attempt costs the whole timeout.
    #[error("{provider}: {operation} did not answer within {}s", after.as_secs())]
    TimedOut {
        /// The source that failed.
        provider: String,
        /// What it was asked to do (`mint`, `verify`, `keys`, `revoke`, ...).
        operation: &'static str,
        /// The timeout.
        after: std::time::Duration,
    },
    /// Anything else the source rejected.
    #[error("{provider}: {operation} failed: {message}")]
    Permanent {
        /// The source that failed.
        provider: String,
        /// What it was asked to do (`mint`, `verify`, `keys`, `revoke`, ...).
        operation: &'static str,
        /// What the source said, cut and escaped (never a secret value).
        message: String,
    },
}

impl ProviderError {
    /// Whether retrying the same call may succeed (throttling, 5xx, timeouts).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::Transient { .. }
                | ProviderError::Throttled { .. }
                | ProviderError::TimedOut { .. }
        )
    }

    /// How long the source asked to wait before the next call, when it said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ProviderError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// For `verify`: a source rejecting a brand-new key is propagation, not a verdict, so
    /// `AccessDenied` becomes retryable; every other error is unchanged.
    pub fn denied_as_propagation(self) -> Self {
        match self {
            ProviderError::AccessDenied {
                provider,
                operation,
                message,
            } => ProviderError::Transient {
                provider,
                operation,
                message,
            },
            other => other,
        }
    }
}

/// Result alias for provider calls.
pub type ProviderResult<T> = Result<T, ProviderError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_errors_are_retryable() {
        let t = ProviderError::Transient {
            provider: "aws".into(),
            operation: "CreateAccessKey",
            message: "Throttling".into(),
        };
        let p = ProviderError::AccessDenied {
            provider: "aws".into(),
            operation: "CreateAccessKey",
            message: "no".into(),
        };
        assert!(t.is_retryable());
        assert!(!p.is_retryable());
        assert!(p.denied_as_propagation().is_retryable());
    }

    #[test]
    fn missing_param_names_provider_and_param() {
        let t = Target {
            source: "aws".into(),
            params: BTreeMap::new(),
            current_key: None,
            referenced: Vec::new(),
        };
        let e = t.param("username").unwrap_err();
        assert_eq!(e.to_string(), "aws: missing parameter `username`");
    }
}
