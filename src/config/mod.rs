//! `.secret-manager.yaml` at the repo root: annotation prefix, policies, pointer naming.
//!
//! Parsed as [`RawConfig`] (exactly what the file says, unknown keys rejected) and then
//! validated into [`Config`] (durations parsed, defaults filled in).

mod forge;
mod providers;

pub use forge::{Forge, ForgeKind, MainVia, RawForge, RawGit, secure_or_loopback};
pub use providers::{
    AwsAccount, AwsSettings, AzureSettings, ExecSettings, GcpSettings, ProviderSettings,
};

use crate::duration::parse_chrono;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Default ref namespace of claims on the main remote (`claims.refPrefix`).
pub const CLAIMS_REF_PREFIX: &str = "refs/secret-manager/claims/";

/// File name of the repo configuration.
pub const CONFIG_FILE: &str = ".secret-manager.yaml";

/// Errors reading configuration or inventory files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file exists but cannot be read (the cause follows in the error chain).
    #[error("{path}: cannot read")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML or has unexpected keys/types.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// What is wrong and what to do.
        message: String,
    },
    /// A value is well-formed YAML but not acceptable.
    #[error("{path}: {field}: {message}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// Offending field.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A file that is not read: a symlink out of the repo, not a regular file, too large.
    #[error(transparent)]
    Unsafe(#[from] crate::fsx::RepoFileError),
}

/// Result alias.
pub type ConfigResult<T> = Result<T, ConfigError>;

/// Deserializes `src` with serde-saphyr and turns its error into a [`ConfigError::Parse`].
pub(crate) fn from_yaml<T: serde::de::DeserializeOwned>(path: &Path, src: &str) -> ConfigResult<T> {
    let src = crate::manifest::yaml::strip_bom(src);
    serde_saphyr::from_str::<T>(src).map_err(|e| {
        let line = e.location().map_or(0, |l| l.line() as usize);
        // The library's Display includes a source snippet; keep only the first line.
        let msg = e.to_string();
        let first = msg
            .lines()
            .next()
            .unwrap_or("invalid YAML")
            .trim()
            .to_owned();
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            message: first,
        }
    })
}

/// Revoke mode for old keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RevokeMode {
    /// Delete the old key.
    Delete,
    /// Disable it first, delete on a later run.
    Disable,
}

/// `policy:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPolicy {
    /// Rotate when older than this (`90d`).
    pub max_age: Option<String>,
    /// Grace period between publish and revoke (`1h`).
    pub revoke_after: Option<String>,
    /// `delete` or `disable`.
    pub revoke_mode: Option<RevokeMode>,
    /// Roll a rotation back by itself when a gate finds the new key failing (default true).
    pub rollback_on_failure: Option<bool>,
    /// Roll a rotation back when it is not delivered (published, and past its gates) this
    /// long after staging (the grace period not counted). Off unless set.
    pub publish_deadline: Option<String>,
}

/// `pointers:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPointers {
    /// Branch name pattern; `{id}` is the cluster id.
    pub branch: Option<String>,
    /// Tag name pattern; `{id}` is the cluster id, `{name}` its last segment.
    pub tag: Option<String>,
}

/// `claims:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawClaims {
    /// How long a run holds a credential before another run may consider it dead (`10m`).
    pub lease: Option<String>,
    /// Ref namespace of claims on the main remote (`refs/secret-manager/claims/`).
    pub ref_prefix: Option<String>,
}

/// `.secret-manager.yaml` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConfig {
    /// Annotation prefix, default `secret-manager/`.
    pub annotation_prefix: Option<String>,
    /// Default policies.
    #[serde(default)]
    pub policy: RawPolicy,
    /// Cluster pointer naming.
    #[serde(default)]
    pub pointers: RawPointers,
    /// Branch that holds the source of truth, default `main`.
    pub main_branch: Option<String>,
    /// Remote that holds main (the dev remote), default `origin`.
    pub main_remote: Option<String>,
    /// Claims on credentials.
    #[serde(default)]
    pub claims: RawClaims,
    /// Per-provider settings.
    #[serde(default)]
    pub providers: ProviderSettings,
    /// `push` (default) or `pull-request`.
    #[serde(default)]
    pub main_via: MainVia,
    /// The forge, for `mainVia: pull-request`.
    pub forge: Option<RawForge>,
    /// Git settings.
    #[serde(default)]
    pub git: RawGit,
    /// Webhooks told about each `rotate`/`delete` run.
    #[serde(default)]
    pub notify: Vec<Notify>,
    /// Value templates by name (`secret-manager/template.<secretKey>: <name>`).
    #[serde(default)]
    pub templates: std::collections::BTreeMap<String, String>,
    /// The workloads that read a rotated Secret.
    #[serde(default)]
    pub consumers: RawConsumers,
}

/// `consumers:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConsumers {
    /// Restart them through git: the stage commit annotates their pod templates.
    #[serde(default)]
    pub restart: bool,
}

/// When a webhook is told about a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    /// Only when something failed (the default).
    #[default]
    Failure,
    /// When something changed (a key staged, published, revoked, a PR opened) or failed.
    Change,
    /// After every run.
    Always,
}

/// One `notify:` entry: a Slack/Mattermost-compatible incoming webhook.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Notify {
    /// The environment variable that holds the webhook URL (webhook URLs carry a token:
    /// keep them out of the repo).
    pub url_env: String,
    /// When to post.
    #[serde(default)]
    pub on: NotifyOn,
}

/// Validated configuration with defaults applied.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Annotation prefix, ends with `/`.
    pub annotation_prefix: String,
    /// Rotation policy age.
    pub max_age: chrono::Duration,
    /// Grace period between publish and revoke.
    pub revoke_after: chrono::Duration,
    /// Whether the old key is deleted, or disabled first and deleted after the grace period again.
    pub revoke_mode: RevokeMode,
    /// Branch pointer pattern.
    pub branch_pattern: String,
    /// Tag pointer pattern.
    pub tag_pattern: String,
    /// Main branch name.
    pub main_branch: String,
    /// Remote holding main.
    pub main_remote: String,
    /// Lease of a claim.
    pub claim_lease: chrono::Duration,
    /// Ref namespace of claims, ends with `/`.
    pub claim_ref_prefix: String,
    /// Per-provider settings.
    pub providers: ProviderSettings,
    /// How changes reach main.
    pub main_via: MainVia,
    /// Webhooks told about runs.
    pub notify: Vec<Notify>,
    /// The forge (always set when `main_via` is `PullRequest`).
    pub forge: Option<Forge>,
    /// Sign every commit, whatever git's own configuration says.
    pub git_sign: bool,
    /// Value templates by name, each checked (syntax, size, sandbox rules) when loaded.
    pub templates: std::collections::BTreeMap<String, String>,
    /// `policy.rollbackOnFailure`: a rotation whose gate finds the new key failing (pods
    /// crash-looping with it, Argo CD Degraded, the gate command failing) is rolled back
    /// while the old key works.
    pub rollback_on_failure: bool,
    /// `policy.publishDeadline`: a rotation still waiting to reach every pointer, or on a
    /// gate, this long after staging is rolled back (with `rollback_on_failure`).
    pub publish_deadline: Option<chrono::Duration>,
    /// `consumers.restart`: the stage commit annotates the pod templates of the workloads
    /// that read a rotated Secret, so they restart with the new value.
    pub restart_consumers: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("annotation_prefix", &self.annotation_prefix)
            .field("max_age", &self.max_age)
            .field("revoke_mode", &self.revoke_mode)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        RawConfig::default()
            .validate(Path::new(CONFIG_FILE))
            .expect("defaults are valid")
    }
}

impl RawConfig {
    /// Applies defaults and checks values.
    pub fn validate(self, path: &Path) -> ConfigResult<Config> {
        let dur = |field: &str, v: Option<String>, default: &str| {
            parse_chrono(v.as_deref().unwrap_or(default)).map_err(|message| ConfigError::Invalid {
                path: path.to_path_buf(),
                field: field.to_owned(),
                message: message.to_string(),
            })
        };
        let prefix = self
            .annotation_prefix
            .unwrap_or_else(|| crate::annotations::ANNOTATION_PREFIX.to_owned());
        if !prefix.ends_with('/') || prefix.len() < 2 || prefix.contains(char::is_whitespace) {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                field: "annotationPrefix".into(),
                message: format!(
                    "`{prefix}` must be a DNS-style prefix ending in `/`, e.g. secret-manager/"
                ),
            });
        }
        let branch = self
            .pointers
            .branch
            .unwrap_or_else(|| "cluster/{id}".into());
        let tag = self.pointers.tag.unwrap_or_else(|| "tag/{name}".into());
        for (field, p) in [("pointers.branch", &branch), ("pointers.tag", &tag)] {
            if !p.contains("{id}") && !p.contains("{name}") {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    field: field.into(),
                    message: format!("`{p}` must contain {{id}} or {{name}}"),
                });
            }
        }
        let main_branch = self.main_branch.unwrap_or_else(|| "main".into());
        let main_remote = self.main_remote.unwrap_or_else(|| "origin".into());
        // Names that end up in git's arguments and refspecs: names only, never an option,
        // a URL or a second refspec.
        for (field, v) in [
            ("pointers.branch", &branch),
            ("pointers.tag", &tag),
            ("mainBranch", &main_branch),
        ] {
            if !crate::names::is_safe_ref_name(v) {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    field: field.into(),
                    message: format!(
                        "`{}` is not a valid ref name (letters, digits, `.`, `_`, `-`, `/`; no `:`, no `..`, not starting with `-`)",
                        crate::text::escape(v)
                    ),
                });
            }
        }
        if let Err(e) = crate::names::RemoteName::parse(&main_remote) {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                field: "mainRemote".into(),
                message: e.to_string(),
            });
        }
        let claim_lease = dur("claims.lease", self.claims.lease, "10m")?;
        if claim_lease < chrono::Duration::minutes(1) {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                field: "claims.lease".into(),
                message: "must be at least 1m: a run renews its claims before they run out, and a lease shorter than one provider call would expire mid-call".into(),
            });
        }
        let claim_ref_prefix = self
            .claims
            .ref_prefix
            .unwrap_or_else(|| CLAIMS_REF_PREFIX.to_owned());
        if !claim_ref_prefix.starts_with("refs/")
            || !claim_ref_prefix.ends_with('/')
            || claim_ref_prefix.contains(char::is_whitespace)
            || claim_ref_prefix.contains("..")
        {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                field: "claims.refPrefix".into(),
                message: format!(
                    "`{claim_ref_prefix}` must be a ref namespace like refs/secret-manager/claims/ (starting with refs/, ending with /)"
                ),
            });
        }
        self.providers.validate(path)?;
        let forge = RawForge::validate(self.forge, self.main_via, path)?;
        for n in &self.notify {
            if n.url_env.is_empty()
                || !n
                    .url_env
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    field: "notify[].urlEnv".into(),
                    message: format!(
                        "`{}` is not an environment variable name (e.g. SLACK_WEBHOOK_URL)",
                        n.url_env
                    ),
                });
            }
        }
        for (name, src) in &self.templates {
            if let Err(e) = crate::template::check(name, src) {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    field: format!("templates.{}", crate::text::escape_cut(name, 80)),
                    message: match e.line {
                        Some(l) => format!("line {l} of the template: {}", e.message),
                        None => e.message,
                    },
                });
            }
        }
        Ok(Config {
            templates: self.templates,
            restart_consumers: self.consumers.restart,
            rollback_on_failure: self.policy.rollback_on_failure.unwrap_or(true),
            publish_deadline: match &self.policy.publish_deadline {
                Some(d) => Some(dur("policy.publishDeadline", Some(d.clone()), "")?),
                None => None,
            },
            notify: self.notify,
            annotation_prefix: prefix,
            claim_lease,
            claim_ref_prefix,
            main_via: self.main_via,
            forge,
            git_sign: self.git.sign,
            providers: self.providers,
            max_age: dur("policy.maxAge", self.policy.max_age, "90d")?,
            revoke_after: dur("policy.revokeAfter", self.policy.revoke_after, "1h")?,
            revoke_mode: self.policy.revoke_mode.unwrap_or(RevokeMode::Delete),
            branch_pattern: branch,
            tag_pattern: tag,
            main_branch,
            main_remote,
        })
    }
}

impl Config {
    /// Loads `<repo>/.secret-manager.yaml`, or the defaults when the file is absent.
    pub fn load(repo: &Path) -> ConfigResult<Config> {
        // The repo is input: a symlink out of it, a FIFO or a huge file is an error.
        match crate::fsx::read_text_in_repo(
            repo,
            Path::new(CONFIG_FILE),
            crate::fsx::MAX_CONFIG_BYTES,
        ) {
            Ok(src) => Config::from_source(src.as_deref()),
            Err(e) => Err(ConfigError::Unsafe(e)),
        }
    }

    /// The configuration `src` (the text of `.secret-manager.yaml`) says; the defaults
    /// when there is no such file.
    pub fn from_source(src: Option<&str>) -> ConfigResult<Config> {
        match src {
            Some(src) => from_yaml::<Option<RawConfig>>(Path::new(CONFIG_FILE), src)?
                .unwrap_or_default()
                .validate(Path::new(CONFIG_FILE)),
            None => Ok(Config::default()),
        }
    }
}

#[cfg(test)]
mod tests;
