//! The `github-deploy-key` source: the git read credential a cluster's Argo CD needs — an
//! SSH deploy key with read-only access to one GitHub repository.
//!
//! Mint generates an ed25519 key pair here (RustCrypto's `ssh-key`, the operating system's
//! RNG), registers the public half on the repository as a read-only deploy key through the
//! GitHub REST API (`POST /repos/{owner}/{repo}/keys`), and hands the private half to the
//! engine, which seals it; it exists nowhere else. The key id is the deploy key's id.
//! Verify reads the key back (`GET …/keys/{id}`: the same public key, read-only); revoke
//! deletes it (`DELETE …/keys/{id}`; a key already gone is success). `keys` lists the
//! repository's deploy keys with GitHub's `last_used`, so `--require-old-key-unused`
//! works.
//!
//! The repository comes from the manifest (annotation `repository: owner/name`), that is
//! from the repo, which the rotator does not trust: a change to a manifest must not make
//! the rotator hand out read access to another repository its token administers. So a
//! repository is used only when the operator lists it in
//! `SECRET_MANAGER_DEPLOY_KEY_REPOS` (`owner/name` or `owner/*`, comma-separated), and
//! the API URL and credentials are the forge's (`SECRET_MANAGER_FORGE_API_URL`,
//! `GITHUB_TOKEN` or the GitHub App), never the repo's.

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
pub const NAME: &str = "github-deploy-key";
/// Output field: the private key in OpenSSH format (what Argo CD's `sshPrivateKey` takes).
pub const PRIVATE_KEY: &str = "PrivateKey";
/// Output field: the public key (`ssh-ed25519 AAAA… secret-manager`).
pub const PUBLIC_KEY: &str = "PublicKey";
/// The operator's list of repositories the rotator may register deploy keys on.
pub const ALLOWED_ENV: &str = "SECRET_MANAGER_DEPLOY_KEY_REPOS";

/// Deploy keys (see the module documentation).
pub struct DeployKeyProvider {
    /// The GitHub client, made on first use (so that a run without deploy keys needs no
    /// GitHub credentials).
    api: ForgeApi,
    /// Keys minted by this process: key id → (repository, public key), for verify.
    minted: Mutex<BTreeMap<String, (String, String)>>,
    /// The operator's list, when not from the environment (tests, embedding).
    allowed: Option<String>,
}

impl Default for DeployKeyProvider {
    fn default() -> Self {
        DeployKeyProvider {
            api: ForgeApi::new(
                NAME,
                ForgeKind::Github,
                "check GITHUB_TOKEN or the GitHub App's id, key and installation",
                "the token or App needs administration read/write on the repository",
            ),
            minted: Mutex::default(),
            allowed: None,
        }
    }
}

impl std::fmt::Debug for DeployKeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployKeyProvider").finish_non_exhaustive()
    }
}

fn permanent(operation: &'static str, message: String) -> ProviderError {
    ProviderError::Permanent {
        provider: NAME.into(),
        operation,
        message,
    }
}

/// Whether `repo` is `owner/name` as GitHub spells them: an owner of letters, digits and
/// inner hyphens (at most 39), a name of letters, digits, `.`, `_` and `-` (at most 100,
/// not `.` or `..`). Anything else — a URL, a path, a query — never reaches a request.
pub fn is_valid_repository(repo: &str) -> bool {
    let Some((owner, name)) = repo.split_once('/') else {
        return false;
    };
    let owner_ok = (1..=39).contains(&owner.len())
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !owner.starts_with('-')
        && !owner.ends_with('-');
    let name_ok = (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "."
        && name != "..";
    owner_ok && name_ok
}

impl DeployKeyProvider {
    /// A provider that talks to `api_url` with `auth` and allows `allowed`, instead of
    /// what the environment says (tests, embedding).
    pub fn with(api_url: &str, auth: Auth, allowed: &str) -> DeployKeyProvider {
        let d = DeployKeyProvider::default();
        DeployKeyProvider {
            api: d.api.at(api_url, auth),
            allowed: Some(allowed.to_owned()),
            minted: d.minted,
        }
    }

    /// The manifest's repository, checked against the operator's list.
    fn repository<'t>(&self, t: &'t Target, operation: &'static str) -> ProviderResult<&'t str> {
        let repo = t.param("repository")?;
        if !is_valid_repository(repo) {
            return Err(permanent(
                operation,
                format!(
                    "repository `{}` is not owner/name",
                    crate::text::escape(repo)
                ),
            ));
        }
        check_listed(
            NAME,
            operation,
            ALLOWED_ENV,
            self.allowed.as_deref(),
            repo,
            "repository",
        )?;
        Ok(repo)
    }
}

/// A deploy key as GitHub lists it.
fn key_info(v: &serde_json::Value) -> Option<KeyInfo> {
    let id = v.get("id")?.as_u64()?;
    let time = |k: &str| {
        v.get(k)
            .and_then(|t| t.as_str())
            .and_then(|t| t.parse::<DateTime<Utc>>().ok())
    };
    Some(KeyInfo {
        id: KeyId(id.to_string()),
        created: time("created_at"),
        // Deploy keys an organization policy disabled still exist, and do not work.
        status: if v.get("enabled").and_then(|e| e.as_bool()) == Some(false) {
            KeyStatus::Inactive
        } else {
            KeyStatus::Active
        },
        last_used: time("last_used"),
        expires: None,
    })
}

/// The key's type and base64 body (what GitHub compares; it drops the comment).
fn key_body(openssh: &str) -> String {
    openssh
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[async_trait]
impl Provider for DeployKeyProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_keys_per_identity: None,
            can_disable: false,
            needs_propagation: false,
            reports_last_use: true,
        }
    }

    async fn preflight(&self, t: &Target) -> ProviderResult<()> {
        let repo = self.repository(t, "preflight")?;
        let (status, _) = self
            .api
            .call(
                "preflight",
                reqwest::Method::GET,
                &format!("/repos/{repo}/keys?per_page=1"),
                None,
            )
            .await?;
        if status == 404 {
            return Err(ProviderError::NotFound {
                provider: NAME.into(),
                what: format!(
                    "repository {repo} (or the token or App has no administration access to it)"
                ),
            });
        }
        Ok(())
    }

    async fn keys(&self, t: &Target) -> ProviderResult<Vec<KeyInfo>> {
        let repo = self.repository(t, "keys")?;
        let mut out = Vec::new();
        for page in 1..=100 {
            let (status, json) = self
                .api
                .call(
                    "keys",
                    reqwest::Method::GET,
                    &format!("/repos/{repo}/keys?per_page=100&page={page}"),
                    None,
                )
                .await?;
            if status == 404 {
                return Err(ProviderError::NotFound {
                    provider: NAME.into(),
                    what: format!("repository {repo}"),
                });
            }
            let items = json.as_array().cloned().unwrap_or_default();
            out.extend(items.iter().filter_map(key_info));
            if items.len() < 100 {
                break;
            }
        }
        Ok(out)
    }

    async fn mint(&self, t: &Target) -> ProviderResult<Minted> {
        let repo = self.repository(t, "mint")?.to_owned();
        let mut key =
            ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519)
                .map_err(|e| permanent("mint", format!("cannot generate an ed25519 key: {e}")))?;
        key.set_comment("secret-manager");
        let private = key
            .to_openssh(ssh_key::LineEnding::LF)
            .map_err(|e| permanent("mint", format!("cannot encode the key: {e}")))?;
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|e| permanent("mint", format!("cannot encode the key: {e}")))?;
        let created = Utc::now();
        let title = format!(
            "secret-manager {} {}",
            t.params.get("id").map_or(repo.as_str(), String::as_str),
            created.format("%Y-%m-%dT%H:%M:%SZ")
        );
        let body = serde_json::json!({"title": title, "key": public, "read_only": true});
        let (status, json) = self
            .api
            .call(
                "mint",
                reqwest::Method::POST,
                &format!("/repos/{repo}/keys"),
                Some(&body),
            )
            .await?;
        if status == 404 {
            return Err(ProviderError::NotFound {
                provider: NAME.into(),
                what: format!("repository {repo}"),
            });
        }
        let id = json
            .get("id")
            .and_then(|i| i.as_u64())
            .ok_or_else(|| permanent("mint", "GitHub's answer has no deploy key id".into()))?
            .to_string();
        self.minted
            .lock()
            .expect("deploy key state")
            .insert(id.clone(), (repo, key_body(&public)));
        Ok(Minted {
            key_id: KeyId(id),
            created,
            fields: [
                (
                    PRIVATE_KEY.to_owned(),
                    SecretValue::new(private.to_string()),
                ),
                (PUBLIC_KEY.to_owned(), SecretValue::new(public)),
            ]
            .into(),
            operator: None,
        })
    }

    async fn verify(&self, m: &Minted) -> ProviderResult<()> {
        let Some((repo, public)) = self
            .minted
            .lock()
            .expect("deploy key state")
            .get(&m.key_id.0)
            .cloned()
        else {
            return Err(permanent(
                "verify",
                format!("deploy key {} was not minted by this run", m.key_id.0),
            ));
        };
        let (status, json) = self
            .api
            .call(
                "verify",
                reqwest::Method::GET,
                &format!("/repos/{repo}/keys/{}", m.key_id.0),
                None,
            )
            .await?;
        let same = json.get("key").and_then(|k| k.as_str()).map(key_body) == Some(public);
        let read_only = json.get("read_only").and_then(|r| r.as_bool()) == Some(true);
        if status == 404 || !same || !read_only {
            return Err(permanent(
                "verify",
                format!(
                    "deploy key {} on {repo} is not the read-only key just registered",
                    m.key_id.0
                ),
            ));
        }
        Ok(())
    }

    async fn revoke(&self, t: &Target, key: &KeyId, _: Revoke) -> ProviderResult<Revoked> {
        let repo = self.repository(t, "revoke")?;
        numeric_id(NAME, key, "deploy key")?;
        let (status, _) = self
            .api
            .call(
                "revoke",
                reqwest::Method::DELETE,
                &format!("/repos/{repo}/keys/{}", key.0),
                None,
            )
            .await?;
        self.minted.lock().expect("deploy key state").remove(&key.0);
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

    #[test]
    fn a_repository_is_owner_slash_name_and_nothing_else() {
        for ok in ["acme/config", "a-b/c.d_e-f", "A1/x"] {
            assert!(is_valid_repository(ok), "{ok}");
        }
        for bad in [
            "acme",
            "acme/config/extra",
            "https://evil.example/acme/config",
            "acme/..",
            "-acme/config",
            "acme/con fig",
            "acme/config?x=1",
            "acme/config#x",
            "../acme/config",
            "acme/",
            "/config",
            "acme/\u{1b}[31m",
        ] {
            assert!(!is_valid_repository(bad), "{bad:?}");
        }
    }
}
