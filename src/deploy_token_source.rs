//! The `gitlab-deploy-token` source: a GitLab project deploy token — the git (and
//! registry) read credential of a cluster whose config repo or images live on GitLab.
//!
//! Mint creates a token with read scopes only (`POST /projects/:id/deploy_tokens`; GitLab
//! shows the token's value once, in that answer, and the engine seals it); verify reads
//! it back (`GET …/deploy_tokens/:token_id`: not revoked, not expired, the same scopes);
//! revoke revokes it (`DELETE …/deploy_tokens/:token_id`; a token already gone is
//! success). `keys` lists the project's active tokens. The key id is the token's id.
//!
//! As for GitHub deploy keys, the project comes from a manifest the rotator does not
//! trust: a token is created only on projects the operator lists in
//! `SECRET_MANAGER_DEPLOY_TOKEN_PROJECTS` (`group/project` or `group/*`), only with read
//! scopes, and with the operator's API URL and `GITLAB_TOKEN`.

use crate::config::ForgeKind;
use crate::forge::Auth;
use crate::forge_api::{ForgeApi, check_listed, numeric_id};
use crate::provider::{
    Capabilities, KeyId, KeyInfo, KeyStatus, Minted, Provider, ProviderError, ProviderResult,
    Revoke, Revoked, SecretValue, Target,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The source name.
pub const NAME: &str = "gitlab-deploy-token";
/// Output field: the token's username (`gitlab+deploy-token-N`).
pub const USERNAME: &str = "Username";
/// Output field: the token.
pub const TOKEN: &str = "Token";
/// The operator's list of projects the rotator may create deploy tokens on.
pub const ALLOWED_ENV: &str = "SECRET_MANAGER_DEPLOY_TOKEN_PROJECTS";
/// The scopes a token may have: read only. A `write_*` scope is refused.
pub const READ_SCOPES: &[&str] = &["read_repository", "read_registry", "read_package_registry"];

/// GitLab project deploy tokens (see the module documentation).
pub struct DeployTokenProvider {
    /// The GitLab client, made on first use.
    api: ForgeApi,
    /// Tokens minted by this process: id → (project, scopes), for verify.
    minted: Mutex<BTreeMap<String, (String, Vec<String>)>>,
    allowed: Option<String>,
}

impl Default for DeployTokenProvider {
    fn default() -> Self {
        DeployTokenProvider {
            api: ForgeApi::new(
                NAME,
                ForgeKind::Gitlab,
                "check GITLAB_TOKEN",
                "the token needs the api scope and the Maintainer role on the project",
            ),
            minted: Mutex::default(),
            allowed: None,
        }
    }
}

impl std::fmt::Debug for DeployTokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployTokenProvider")
            .finish_non_exhaustive()
    }
}

fn permanent(operation: &'static str, message: String) -> ProviderError {
    ProviderError::Permanent {
        provider: NAME.into(),
        operation,
        message,
    }
}

/// Whether `path` is a GitLab project path: segments of letters, digits, `_`, `.` and
/// `-` (not starting with `-` or `.`, not ending in `.git`), at least a namespace and a
/// project, at most 255 characters. Anything else never reaches a request.
pub fn is_valid_project(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    path.len() <= 255
        && segments.len() >= 2
        && segments.iter().all(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
                && !s.starts_with(['-', '.'])
                && !s.ends_with(".git")
                && !s.ends_with(".atom")
        })
}

/// The scopes a manifest asks for (`scopes: read_repository,read_registry`; default
/// `read_repository`), read scopes only.
pub fn scopes(t: &Target) -> ProviderResult<Vec<String>> {
    let raw = t
        .params
        .get("scopes")
        .map_or("read_repository", String::as_str);
    let mut out = Vec::new();
    for s in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !READ_SCOPES.contains(&s) {
            return Err(permanent(
                "preflight",
                format!(
                    "scope `{}`: a deploy token the rotator creates may only read ({})",
                    crate::text::escape(s),
                    READ_SCOPES.join(", ")
                ),
            ));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    if out.is_empty() {
        return Err(permanent("preflight", "no scope".into()));
    }
    out.sort();
    Ok(out)
}

impl DeployTokenProvider {
    /// A provider that talks to `api_url` with `auth` and allows `allowed` (tests).
    pub fn with(api_url: &str, auth: Auth, allowed: &str) -> DeployTokenProvider {
        let d = DeployTokenProvider::default();
        DeployTokenProvider {
            api: d.api.at(api_url, auth),
            allowed: Some(allowed.to_owned()),
            minted: d.minted,
        }
    }

    /// The manifest's project, checked against the operator's list, URL-encoded for a
    /// path (`group%2Fproject`).
    fn project(&self, t: &Target, operation: &'static str) -> ProviderResult<(String, String)> {
        let project = t.param("project")?;
        if !is_valid_project(project) {
            return Err(permanent(
                operation,
                format!(
                    "project `{}` is not a GitLab project path (group/project)",
                    crate::text::escape(project)
                ),
            ));
        }
        check_listed(
            NAME,
            operation,
            ALLOWED_ENV,
            self.allowed.as_deref(),
            project,
            "project",
        )?;
        Ok((project.to_owned(), project.replace('/', "%2F")))
    }
}

fn token_info(v: &serde_json::Value) -> Option<KeyInfo> {
    let id = v.get("id")?.as_u64()?;
    let expires = v
        .get("expires_at")
        .and_then(|t| t.as_str())
        .and_then(|t| t.parse::<DateTime<Utc>>().ok());
    let flag = |k: &str| v.get(k).and_then(|b| b.as_bool()) == Some(true);
    Some(KeyInfo {
        id: KeyId(id.to_string()),
        created: None,
        status: if flag("expired") {
            KeyStatus::Expired
        } else if flag("revoked") {
            KeyStatus::Inactive
        } else {
            KeyStatus::Active
        },
        last_used: None,
        expires,
    })
}

fn not_found(project: &str) -> ProviderError {
    ProviderError::NotFound {
        provider: NAME.into(),
        what: format!("project {project} (or the token has no Maintainer access to it)"),
    }
}

#[async_trait]
impl Provider for DeployTokenProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_keys_per_identity: None,
            can_disable: false,
            needs_propagation: false,
            reports_last_use: false,
        }
    }

    async fn preflight(&self, t: &Target) -> ProviderResult<()> {
        scopes(t)?;
        let (project, enc) = self.project(t, "preflight")?;
        let path = format!("/projects/{enc}/deploy_tokens?active=true&per_page=1");
        let (status, _) = self
            .api
            .call("preflight", reqwest::Method::GET, &path, None)
            .await?;
        if status == 404 {
            return Err(not_found(&project));
        }
        Ok(())
    }

    async fn keys(&self, t: &Target) -> ProviderResult<Vec<KeyInfo>> {
        let (project, enc) = self.project(t, "keys")?;
        let mut out = Vec::new();
        for page in 1..=100 {
            let path =
                format!("/projects/{enc}/deploy_tokens?active=true&per_page=100&page={page}");
            let (status, json) = self
                .api
                .call("keys", reqwest::Method::GET, &path, None)
                .await?;
            if status == 404 {
                return Err(not_found(&project));
            }
            let items = json.as_array().cloned().unwrap_or_default();
            out.extend(items.iter().filter_map(token_info));
            if items.len() < 100 {
                break;
            }
        }
        Ok(out)
    }

    async fn mint(&self, t: &Target) -> ProviderResult<Minted> {
        let scopes = scopes(t)?;
        let (project, enc) = self.project(t, "mint")?;
        let created = Utc::now();
        let name = format!(
            "secret-manager {} {}",
            t.params.get("id").map_or(project.as_str(), String::as_str),
            created.format("%Y-%m-%dT%H:%M:%SZ")
        );
        let body = serde_json::json!({"name": name, "scopes": scopes});
        let (status, json) = self
            .api
            .call(
                "mint",
                reqwest::Method::POST,
                &format!("/projects/{enc}/deploy_tokens"),
                Some(&body),
            )
            .await?;
        if status == 404 {
            return Err(not_found(&project));
        }
        let (Some(id), Some(username), Some(token)) = (
            json.get("id").and_then(|i| i.as_u64()),
            json.get("username").and_then(|u| u.as_str()),
            json.get("token").and_then(|t| t.as_str()),
        ) else {
            return Err(permanent(
                "mint",
                "GitLab's answer lacks the token's id, username or value".into(),
            ));
        };
        let id = id.to_string();
        self.minted
            .lock()
            .expect("deploy token state")
            .insert(id.clone(), (enc, scopes));
        Ok(Minted {
            key_id: KeyId(id),
            created,
            fields: [
                (USERNAME.to_owned(), SecretValue::new(username.to_owned())),
                (TOKEN.to_owned(), SecretValue::new(token.to_owned())),
            ]
            .into(),
            operator: None,
        })
    }

    async fn verify(&self, m: &Minted) -> ProviderResult<()> {
        let Some((enc, scopes)) = self
            .minted
            .lock()
            .expect("deploy token state")
            .get(&m.key_id.0)
            .cloned()
        else {
            return Err(permanent(
                "verify",
                format!("deploy token {} was not minted by this run", m.key_id.0),
            ));
        };
        let (status, json) = self
            .api
            .call(
                "verify",
                reqwest::Method::GET,
                &format!("/projects/{enc}/deploy_tokens/{}", m.key_id.0),
                None,
            )
            .await?;
        let mut held: Vec<String> = json
            .get("scopes")
            .and_then(|s| s.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        held.sort();
        let usable = token_info(&json).is_some_and(|k| k.status == KeyStatus::Active);
        if status == 404 || !usable || held != scopes {
            return Err(permanent(
                "verify",
                format!(
                    "deploy token {} is not the active read-only token just created",
                    m.key_id.0
                ),
            ));
        }
        Ok(())
    }

    async fn revoke(&self, t: &Target, key: &KeyId, _: Revoke) -> ProviderResult<Revoked> {
        let (_, enc) = self.project(t, "revoke")?;
        numeric_id(NAME, key, "deploy token")?;
        let (status, _) = self
            .api
            .call(
                "revoke",
                reqwest::Method::DELETE,
                &format!("/projects/{enc}/deploy_tokens/{}", key.0),
                None,
            )
            .await?;
        self.minted
            .lock()
            .expect("deploy token state")
            .remove(&key.0);
        Ok(if status == 404 {
            Revoked::AlreadyGone
        } else {
            Revoked::Done
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(params: &[(&str, &str)]) -> Target {
        Target {
            source: NAME.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            current_key: None,
            referenced: Vec::new(),
        }
    }

    #[test]
    fn a_project_is_a_gitlab_path_and_nothing_else() {
        for ok in ["acme/config", "acme/platform/config", "a_b/c.d-e"] {
            assert!(is_valid_project(ok), "{ok}");
        }
        for bad in [
            "acme",
            "acme/",
            "/acme/config",
            "acme//config",
            "acme/../config",
            "acme/.config",
            "acme/config.git",
            "https://evil.example/acme/config",
            "acme/config?private_token=x",
            "acme/con fig",
            "acme/\u{1b}[31m",
        ] {
            assert!(!is_valid_project(bad), "{bad:?}");
        }
    }

    #[test]
    fn only_read_scopes_are_asked_for() {
        assert_eq!(scopes(&target(&[])).unwrap(), ["read_repository"]);
        assert_eq!(
            scopes(&target(&[(
                "scopes",
                "read_registry, read_repository,read_registry"
            )]))
            .unwrap(),
            ["read_registry", "read_repository"]
        );
        for bad in [
            "write_repository",
            "read_repository,write_registry",
            "api",
            "",
        ] {
            assert!(scopes(&target(&[("scopes", bad)])).is_err(), "{bad:?}");
        }
    }
}
