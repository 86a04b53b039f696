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
    /// Revoke mode.
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
                message,
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
            .unwrap_or_else(|| crate::journal::CLAIMS_REF_PREFIX.to_owned());
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
mod tests {
    use super::*;

    fn parse(src: &str) -> ConfigResult<Config> {
        from_yaml::<Option<RawConfig>>(Path::new(CONFIG_FILE), src)?
            .unwrap_or_default()
            .validate(Path::new(CONFIG_FILE))
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.annotation_prefix, "secret-manager/");
        assert_eq!(c.max_age, chrono::Duration::days(90));
        assert_eq!(c.revoke_after, chrono::Duration::hours(1));
        assert_eq!(c.branch_pattern, "cluster/{id}");
    }

    #[test]
    fn unknown_keys_are_errors_with_a_line() {
        let e = parse("policy:\n  maxAge: 30d\n  maxAgee: 1d\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(".secret-manager.yaml:3:"), "{e}");
        assert!(e.contains("maxAgee"), "{e}");
    }

    #[test]
    fn claims_and_aws_accounts_are_validated() {
        let c = parse("claims:\n  lease: 5m\nproviders:\n  aws:\n    accounts:\n      \"111111111111\": {roleArn: \"arn:aws:iam::111111111111:role/sm\", externalId: x}\n").unwrap();
        assert_eq!(c.claim_lease, chrono::Duration::minutes(5));
        assert_eq!(c.claim_ref_prefix, "refs/secret-manager/claims/");
        assert_eq!(
            c.providers.aws.accounts["111111111111"]
                .external_id
                .as_deref(),
            Some("x")
        );
        let e = parse("claims:\n  lease: 5s\n").unwrap_err().to_string();
        assert!(e.contains("claims.lease"), "{e}");
        let e = parse(
            "providers:\n  aws:\n    accounts:\n      \"1111\": {roleArn: arn:aws:iam::1:role/x}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("12 digits"), "{e}");
        let e = parse("providers:\n  aws:\n    acounts: {}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("acounts"), "{e}");
        let e = parse("claims:\n  refPrefix: secret-manager/\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("claims.refPrefix"), "{e}");
    }

    #[test]
    fn provider_windows_lifetimes_and_plugins_are_validated() {
        let c = parse("providers:\n  aws: {propagationWindow: 45s}\n  azure: {propagationWindow: 2m, secretLifetime: 180d}\n  gcp: {propagationWindow: 3m}\n  exec:\n    vault: {env: [VAULT_ADDR], timeout: 30s}\n").unwrap();
        let p = &c.providers;
        assert_eq!(p.aws_window(), Some(std::time::Duration::from_secs(45)));
        assert_eq!(p.azure_window(), Some(std::time::Duration::from_secs(120)));
        assert_eq!(
            p.azure_secret_lifetime(),
            Some(std::time::Duration::from_secs(180 * 86400))
        );
        assert_eq!(p.gcp_window(), Some(std::time::Duration::from_secs(180)));
        assert_eq!(
            p.exec_timeout("vault"),
            Some(std::time::Duration::from_secs(30))
        );
        assert_eq!(p.exec["vault"].env, ["VAULT_ADDR"]);
        for (src, field) in [
            (
                "providers:\n  aws: {propagationWindow: 1h}\n",
                "providers.aws.propagationWindow",
            ),
            (
                "providers:\n  gcp: {propagationWindow: soon}\n",
                "providers.gcp.propagationWindow",
            ),
            (
                "providers:\n  azure: {secretLifetime: 5m}\n",
                "providers.azure.secretLifetime",
            ),
            (
                "providers:\n  exec:\n    v: {timeout: 2h}\n",
                "providers.exec.v.timeout",
            ),
            (
                "providers:\n  exec:\n    v: {env: [\"A=B\"]}\n",
                "providers.exec.v.env",
            ),
            (
                "providers:\n  exec:\n    \"../x\": {}\n",
                "providers.exec.../x",
            ),
            ("providers:\n  exec:\n    v: {envs: []}\n", "envs"),
        ] {
            let e = parse(src).unwrap_err().to_string();
            assert!(e.contains(field), "{src}: {e}");
        }
    }

    #[test]
    fn a_plugin_never_gets_the_rotators_credentials() {
        for var in [
            "AWS_SECRET_ACCESS_KEY",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AZURE_CLIENT_SECRET",
            "AZURE_FEDERATED_TOKEN_FILE",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "GITHUB_TOKEN",
            "GITHUB_APP_PRIVATE_KEY_FILE",
            "GITLAB_TOKEN",
            "SSH_AUTH_SOCK",
            "KUBECONFIG",
            "SECRET_MANAGER_FORGE_API_URL",
            "aws_secret_access_key",
        ] {
            let e = parse(&format!(
                "providers:\n  exec:\n    vault: {{env: [VAULT_ADDR, {var}]}}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("providers.exec.vault.env") && e.contains("rotator's own credentials"),
                "{var}: {e}"
            );
        }
        assert!(parse("providers:\n  exec:\n    vault: {env: [VAULT_ADDR, VAULT_TOKEN_FILE, AWS_REGION]}\n").is_ok());
    }

    #[test]
    fn remotes_branches_and_patterns_are_names() {
        for (src, field) in [
            ("mainRemote: \"--upload-pack=touch /tmp/x\"\n", "mainRemote"),
            ("mainRemote: https://evil.example/r.git\n", "mainRemote"),
            ("mainBranch: \"main:refs/heads/x\"\n", "mainBranch"),
            ("pointers: {branch: \"-c/{id}\"}\n", "pointers.branch"),
        ] {
            let e = parse(src).unwrap_err().to_string();
            assert!(e.contains(field), "{src}: {e}");
        }
    }

    #[test]
    fn pull_request_mode_needs_a_valid_forge() {
        let c = parse("mainVia: pull-request\nforge:\n  kind: github\n  repository: org/fleet\n  labels: [rotation]\n  maxOpenAge: 7d\n").unwrap();
        assert_eq!(c.main_via, MainVia::PullRequest);
        let f = c.forge.unwrap();
        assert_eq!(f.api_url, None);
        assert_eq!(f.branch_prefix, "secret-manager/");
        assert_eq!(f.max_open_age, Some(chrono::Duration::days(7)));
        let e = parse("mainVia: pull-request\n").unwrap_err().to_string();
        assert!(e.contains("needs a forge block"), "{e}");
        let e = parse("mainVia: pull-request\nforge: {kind: gitlab, repository: g/p, apiUrl: http://gitlab.example.com/api/v4}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("forge.apiUrl") && e.contains("https"), "{e}");
        assert!(
            parse("forge: {kind: gitlab, repository: g/p, apiUrl: http://127.0.0.1:8080/api/v4}\n")
                .is_ok()
        );
        let e = parse("forge: {kind: github, repository: fleet}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("forge.repository"), "{e}");
        let e = parse("forge: {kind: bitbucket, repository: a/b}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bitbucket"), "{e}");
        let e = parse("mainVia: pr\n").unwrap_err().to_string();
        assert!(e.contains("pr"), "{e}");
        let e = parse("git: {sign: true, key: x}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("key"), "{e}");
        assert!(parse("git: {sign: true}\n").unwrap().git_sign);
    }

    #[test]
    fn loopback_http_is_allowed_and_nothing_else() {
        assert!(secure_or_loopback("https://api.github.com"));
        assert!(secure_or_loopback("http://127.0.0.1:8080/api"));
        assert!(secure_or_loopback("http://localhost/api"));
        assert!(!secure_or_loopback("http://127.0.0.1.example.com/api"));
        assert!(secure_or_loopback("http://[::1]:8080/x"));
        assert!(!secure_or_loopback("http://localhost.evil.example/x"));
        assert!(!secure_or_loopback("http://github.example.com"));
        assert!(!secure_or_loopback("ftp://x"));
    }

    #[test]
    fn bad_duration_names_the_field() {
        let e = parse("policy:\n  maxAge: soon\n").unwrap_err().to_string();
        assert!(e.contains("policy.maxAge"), "{e}");
        assert!(e.contains("e.g. 90d"), "{e}");
    }
}
