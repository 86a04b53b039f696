//! The forge REST client of the credential sources that live on a forge
//! (`github-deploy-key`, `gitlab-deploy-token`): the operator's API URL and credentials
//! (never the repo's), made on first use; the operator's list of repositories a source
//! may create credentials on; and the statuses a source cannot act on, said as provider
//! errors with what the credentials need.

use crate::config::{Forge as ForgeConfig, ForgeKind};
use crate::forge::{Auth, Forge, ForgeError};
use crate::provider::{KeyId, ProviderError, ProviderResult};

/// A forge client for source `provider`.
pub struct ForgeApi {
    provider: &'static str,
    kind: ForgeKind,
    client: tokio::sync::OnceCell<Forge>,
    /// What to check when the forge refuses the credentials (401).
    credentials_hint: &'static str,
    /// What the credentials need when the forge denies a request (403).
    access_hint: &'static str,
}

impl std::fmt::Debug for ForgeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForgeApi")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl ForgeApi {
    /// A client made from the environment on first use.
    pub fn new(
        provider: &'static str,
        kind: ForgeKind,
        credentials_hint: &'static str,
        access_hint: &'static str,
    ) -> ForgeApi {
        ForgeApi {
            provider,
            kind,
            client: tokio::sync::OnceCell::new(),
            credentials_hint,
            access_hint,
        }
    }

    /// The same, talking to `api_url` with `auth` (tests, embedding).
    pub fn at(mut self, api_url: &str, auth: Auth) -> ForgeApi {
        self.client = tokio::sync::OnceCell::new_with(Some(Forge::new(
            &forge_config(self.kind),
            api_url.to_owned(),
            auth,
        )));
        self
    }

    async fn client(&self) -> ProviderResult<&Forge> {
        self.client
            .get_or_try_init(|| async {
                let cfg = forge_config(self.kind);
                let operator = std::env::var(crate::forge::API_URL_ENV)
                    .ok()
                    .filter(|v| !v.is_empty());
                let api = crate::forge::trusted_api_url(&cfg, operator.as_deref())
                    .map_err(|e| forge_error_of(self.provider, "preflight", e))?;
                let auth = Auth::from_env(self.kind, &api)
                    .map_err(|e| forge_error_of(self.provider, "preflight", e))?;
                Ok(Forge::new(&cfg, api, auth))
            })
            .await
    }

    /// One request to `path` (rate limits waited out, server errors retried by the forge
    /// client); the status and body for 2xx and 404, an error otherwise.
    pub async fn call(
        &self,
        operation: &'static str,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> ProviderResult<(u16, serde_json::Value)> {
        let r = self
            .client()
            .await?
            .send(method, path, body)
            .await
            .map_err(|e| forge_error_of(self.provider, operation, e))?;
        let said = crate::forge::message_of(&r.json);
        match r.status {
            200..=299 | 404 => Ok((r.status, r.json)),
            401 => Err(ProviderError::NoCredentials {
                provider: self.provider.into(),
                message: format!(
                    "the forge refused the credentials ({said}); {}",
                    self.credentials_hint
                ),
            }),
            403 => Err(ProviderError::AccessDenied {
                provider: self.provider.into(),
                operation,
                message: format!("{said} ({})", self.access_hint),
            }),
            status => Err(ProviderError::Permanent {
                provider: self.provider.into(),
                operation,
                message: format!("HTTP {status}: {said}"),
            }),
        }
    }
}

/// The forge settings of a credential source's client: the API URL is the operator's
/// (the repo's `forge:` block plays no part here).
pub(crate) fn forge_config(kind: ForgeKind) -> ForgeConfig {
    ForgeConfig {
        kind,
        api_url: None,
        repository: String::new(),
        branch_prefix: String::new(),
        labels: Vec::new(),
        auto_merge: false,
        max_open_age: None,
    }
}

/// A forge client's error as source `provider`'s: rate limits are throttling, an
/// unreachable forge or a 5xx is transient, missing credentials are said once.
pub(crate) fn forge_error_of(
    provider: &str,
    operation: &'static str,
    e: ForgeError,
) -> ProviderError {
    match e {
        ForgeError::NoCredentials { forge, hint } => ProviderError::NoCredentials {
            provider: provider.into(),
            message: format!("no {forge} credentials: {hint}"),
        },
        ForgeError::RateLimited { .. } => ProviderError::Throttled {
            provider: provider.into(),
            operation,
            message: e.to_string(),
            retry_after: None,
        },
        ForgeError::Failed { status, .. } if status == 0 || status >= 500 => {
            ProviderError::Transient {
                provider: provider.into(),
                operation,
                message: e.to_string(),
            }
        }
        other => ProviderError::Permanent {
            provider: provider.into(),
            operation,
            message: other.to_string(),
        },
    }
}

/// Whether `allowed` (`owner/name` or `owner/*`, comma-separated) lists `path`;
/// `owner/*` covers everything under `owner/` (GitLab's subgroups too). Forge paths are
/// case-insensitive, and so is the match.
pub fn is_allowed(allowed: &str, path: &str) -> bool {
    let path = path.to_ascii_lowercase();
    allowed
        .split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .any(|e| match e.strip_suffix("/*") {
            Some(owner) => !owner.is_empty() && path.starts_with(&format!("{owner}/")),
            None => e == path,
        })
}

/// Refuses `path` unless the operator lists it in `env` (or `given`, which replaces the
/// environment in tests): a manifest must not make the rotator create credentials on a
/// repository its token happens to administer.
pub(crate) fn check_listed(
    provider: &str,
    operation: &'static str,
    env: &str,
    given: Option<&str>,
    path: &str,
    what: &str,
) -> ProviderResult<()> {
    let allowed = given
        .map(str::to_owned)
        .or_else(|| std::env::var(env).ok())
        .unwrap_or_default();
    if is_allowed(&allowed, path) {
        return Ok(());
    }
    Err(ProviderError::AccessDenied {
        provider: provider.into(),
        operation,
        message: format!(
            "{what} {path} is not in {env}: the rotator creates credentials only where its operator says (owner/name or owner/*, comma-separated)"
        ),
    })
}

/// A forge credential's id from a record, before it goes into a request path: digits
/// only.
pub(crate) fn numeric_id(provider: &str, key: &KeyId, what: &str) -> ProviderResult<()> {
    if !key.0.is_empty() && key.0.len() <= 20 && key.0.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    Err(ProviderError::Permanent {
        provider: provider.into(),
        operation: "revoke",
        message: format!("`{}` is not a {what} id", crate::text::escape(&key.0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_paths_are_allowed() {
        let list = "acme/config, Other/*";
        assert!(is_allowed(list, "acme/config"));
        assert!(is_allowed(list, "ACME/Config"));
        assert!(is_allowed(list, "other/anything"));
        assert!(is_allowed(list, "other/sub/project"));
        assert!(!is_allowed(list, "acme/secrets"));
        assert!(!is_allowed(list, "otherx/anything"));
        assert!(!is_allowed("", "acme/config"));
        assert!(!is_allowed("*", "acme/config"));
        assert!(!is_allowed("/*", "acme/config"));
    }

    #[test]
    fn a_key_id_is_digits() {
        for ok in ["1", "71000002"] {
            assert!(numeric_id("x", &KeyId(ok.into()), "deploy key").is_ok());
        }
        for bad in ["", "1/../2", "1?x=y", "-1", "123456789012345678901"] {
            assert!(
                numeric_id("x", &KeyId(bad.into()), "deploy key").is_err(),
                "{bad}"
            );
        }
    }
}
