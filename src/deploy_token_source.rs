//! The `gitlab-deploy-token` source: a GitLab project or group deploy token — the git (and
//! registry) read credential of a cluster whose config repo or images live on GitLab.
//!
//! The identity is a project (`project: group/project`) or a whole group (`group: group`,
//! one token reading every project in it), never both. Mint creates a token with read
//! scopes only (`POST /projects/:id/deploy_tokens` or `/groups/:id/deploy_tokens`; GitLab
//! shows the token's value once, in that answer, and the engine seals it); verify reads
//! it back (`GET …/deploy_tokens/:token_id`: not revoked, not expired, the same scopes);
//! revoke revokes it (`DELETE …/deploy_tokens/:token_id`; a token already gone is
//! success). `keys` lists the active tokens. The key id is the token's id.
//!
//! As for GitHub deploy keys, the project or group comes from a manifest the rotator does
//! not trust: a token is created only where the operator lists it —
//! `SECRET_MANAGER_DEPLOY_TOKEN_PROJECTS` for projects (`group/project` or `group/*`),
//! `SECRET_MANAGER_DEPLOY_TOKEN_GROUPS` for group tokens (a group token reads every
//! project of the group, so a project list never grants one) — only with read scopes,
//! and with the operator's API URL and `GITLAB_TOKEN`.

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
/// The operator's list of groups the rotator may create group deploy tokens on.
pub const ALLOWED_GROUPS_ENV: &str = "SECRET_MANAGER_DEPLOY_TOKEN_GROUPS";
/// The scopes a token may have: read only. A `write_*` scope is refused.
pub const READ_SCOPES: &[&str] = &["read_repository", "read_registry", "read_package_registry"];

/// GitLab project deploy tokens (see the module documentation).
pub struct DeployTokenProvider {
    /// The GitLab client, made on first use.
    api: ForgeApi,
    /// Tokens minted by this process: id → (project, scopes), for verify.
    minted: Mutex<BTreeMap<String, (String, Vec<String>)>>,
    allowed: Option<String>,
    allowed_groups: Option<String>,
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
            allowed_groups: None,
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

/// Whether `path` is a GitLab namespace path of at least `min` segments: segments of
/// letters, digits, `_`, `.` and `-` (not starting with `-` or `.`, not ending in `.git`
/// or `.atom`), at most 255 characters. Anything else never reaches a request.
fn is_valid_path(path: &str, min: usize) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    path.len() <= 255
        && segments.len() >= min
        && segments.iter().all(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
                && !s.starts_with(['-', '.'])
                && !s.ends_with(".git")
                && !s.ends_with(".atom")
        })
}

/// Whether `path` is a GitLab project path (a namespace and a project at least).
pub fn is_valid_project(path: &str) -> bool {
    is_valid_path(path, 2)
}

/// Whether `path` is a GitLab group path (`acme`, `acme/platform`).
pub fn is_valid_group(path: &str) -> bool {
    is_valid_path(path, 1)
}

/// Where a token lives: a project or a group, its path, and that path URL-encoded
/// (`projects/group%2Fproject`).
struct Owner {
    path: String,
    api: String,
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
    /// A provider that talks to `api_url` with `auth` and allows the projects `allowed`
    /// (tests).
    pub fn with(api_url: &str, auth: Auth, allowed: &str) -> DeployTokenProvider {
        let d = DeployTokenProvider::default();
        DeployTokenProvider {
            api: d.api.at(api_url, auth),
            allowed: Some(allowed.to_owned()),
            allowed_groups: Some(String::new()),
            minted: d.minted,
        }
    }

    /// The same, allowing group tokens on `groups` too (tests).
    pub fn with_groups(mut self, groups: &str) -> DeployTokenProvider {
        self.allowed_groups = Some(groups.to_owned());
        self
    }

    /// The manifest's project or group, checked against the operator's lists.
    fn owner(&self, t: &Target, operation: &'static str) -> ProviderResult<Owner> {
        let esc = |s: &str| crate::text::escape(s).into_owned();
        match (t.params.get("project"), t.params.get("group")) {
            (Some(project), None) => {
                if !is_valid_project(project) {
                    return Err(permanent(
                        operation,
                        format!(
                            "project `{}` is not a GitLab project path (group/project)",
                            esc(project)
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
                Ok(Owner {
                    path: project.clone(),
                    api: format!("projects/{}", project.replace('/', "%2F")),
                })
            }
            (None, Some(group)) => {
                if !is_valid_group(group) {
                    return Err(permanent(
                        operation,
                        format!(
                            "group `{}` is not a GitLab group path (acme or acme/platform)",
                            esc(group)
                        ),
                    ));
                }
                check_listed(
                    NAME,
                    operation,
                    ALLOWED_GROUPS_ENV,
                    self.allowed_groups.as_deref(),
                    group,
                    "group",
                )?;
                Ok(Owner {
                    path: group.clone(),
                    api: format!("groups/{}", group.replace('/', "%2F")),
                })
            }
            (Some(_), Some(_)) => Err(permanent(
                operation,
                "both secret-manager/project and secret-manager/group are set; a deploy token belongs to one: keep the one you mean".into(),
            )),
            (None, None) => Err(ProviderError::MissingParameter {
                provider: NAME.into(),
                name: "project",
            }),
        }
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

fn not_found(owner: &Owner) -> ProviderError {
    let what = if owner.api.starts_with("groups/") {
        format!(
            "group {} (or the token has no Owner access to it)",
            owner.path
        )
    } else {
        format!(
            "project {} (or the token has no Maintainer access to it)",
            owner.path
        )
    };
    ProviderError::NotFound {
        provider: NAME.into(),
        what,
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
        let owner = self.owner(t, "preflight")?;
        let path = format!("/{}/deploy_tokens?active=true&per_page=1", owner.api);
        let (status, _) = self
            .api
            .call("preflight", reqwest::Method::GET, &path, None)
            .await?;
        if status == 404 {
            return Err(not_found(&owner));
        }
        Ok(())
    }

    async fn keys(&self, t: &Target) -> ProviderResult<Vec<KeyInfo>> {
        let owner = self.owner(t, "keys")?;
        let mut out = Vec::new();
        for page in 1..=100 {
            let path = format!(
                "/{}/deploy_tokens?active=true&per_page=100&page={page}",
                owner.api
            );
            let (status, json) = self
                .api
                .call("keys", reqwest::Method::GET, &path, None)
                .await?;
            if status == 404 {
                return Err(not_found(&owner));
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
        let owner = self.owner(t, "mint")?;
        let created = Utc::now();
        let name = format!(
            "secret-manager {} {}",
            t.params
                .get("id")
                .map_or(owner.path.as_str(), String::as_str),
            created.format("%Y-%m-%dT%H:%M:%SZ")
        );
        let body = serde_json::json!({"name": name, "scopes": scopes});
        let (status, json) = self
            .api
            .call(
                "mint",
                reqwest::Method::POST,
                &format!("/{}/deploy_tokens", owner.api),
                Some(&body),
            )
            .await?;
        if status == 404 {
            return Err(not_found(&owner));
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
            .insert(id.clone(), (owner.api, scopes));
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
        let Some((api, scopes)) = self
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
                &format!("/{api}/deploy_tokens/{}", m.key_id.0),
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
        let owner = self.owner(t, "revoke")?;
        numeric_id(NAME, key, "deploy token")?;
        let (status, _) = self
            .api
            .call(
                "revoke",
                reqwest::Method::DELETE,
                &format!("/{}/deploy_tokens/{}", owner.api, key.0),
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
        assert!(is_valid_group("acme") && is_valid_group("acme/platform"));
        for bad in [
            "",
            "acme/",
            "../acme",
            "acme/.x",
            "https://evil.example",
            "a b",
        ] {
            assert!(!is_valid_group(bad), "{bad:?}");
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
