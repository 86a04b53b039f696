//! `.secret-manager.yaml` at the repo root: annotation prefix, policies, pointer naming.
//!
//! Parsed as [`RawConfig`] (exactly what the file says, unknown keys rejected) and then
//! validated into [`Config`] (durations parsed, defaults filled in).

use crate::duration::parse_chrono;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// File name of the repo configuration.
pub const CONFIG_FILE: &str = ".secret-manager.yaml";

/// Errors reading configuration or inventory files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("{path}: cannot read: {source}")]
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

/// One AWS account's role, as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AwsAccount {
    /// Role to assume for this account's users.
    pub role_arn: String,
    /// External id the role's trust policy requires, if any (not secret).
    pub external_id: Option<String>,
}

/// `providers.aws:` as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AwsSettings {
    /// Account id → role to assume for it. Accounts not listed use the ambient
    /// credentials, which must belong to that account.
    #[serde(default)]
    pub accounts: std::collections::BTreeMap<String, AwsAccount>,
    /// How long a new access key may take to work (default 30s).
    pub propagation_window: Option<String>,
}

/// `providers.azure:` as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AzureSettings {
    /// How long a new client secret may take to work (default 60s).
    pub propagation_window: Option<String>,
    /// Lifetime of new client secrets (`endDateTime`), e.g. `180d`; default: Graph's
    /// (two years). A `secret-manager/secretLifetime` annotation overrides it.
    pub secret_lifetime: Option<String>,
}

/// `providers.gcp:` as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GcpSettings {
    /// How long a new service-account key may take to work (default 120s).
    pub propagation_window: Option<String>,
}

/// `providers.exec.<name>:` as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecSettings {
    /// Environment variables the plugin gets besides the base allowlist.
    #[serde(default)]
    pub env: Vec<String>,
    /// Time limit of one call (default 120s).
    pub timeout: Option<String>,
}

/// `providers:` as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProviderSettings {
    /// AWS.
    #[serde(default)]
    pub aws: AwsSettings,
    /// Azure.
    #[serde(default)]
    pub azure: AzureSettings,
    /// GCP.
    #[serde(default)]
    pub gcp: GcpSettings,
    /// External plugins by source name.
    #[serde(default)]
    pub exec: std::collections::BTreeMap<String, ExecSettings>,
}

/// A duration field already checked by [`RawConfig::validate`].
fn checked(v: &Option<String>) -> Option<std::time::Duration> {
    v.as_deref()
        .and_then(|s| crate::duration::parse_duration(s).ok())
}

impl ProviderSettings {
    /// `providers.aws.propagationWindow`, if set.
    pub fn aws_window(&self) -> Option<std::time::Duration> {
        checked(&self.aws.propagation_window)
    }
    /// `providers.azure.propagationWindow`, if set.
    pub fn azure_window(&self) -> Option<std::time::Duration> {
        checked(&self.azure.propagation_window)
    }
    /// `providers.azure.secretLifetime`, if set.
    pub fn azure_secret_lifetime(&self) -> Option<std::time::Duration> {
        checked(&self.azure.secret_lifetime)
    }
    /// `providers.gcp.propagationWindow`, if set.
    pub fn gcp_window(&self) -> Option<std::time::Duration> {
        checked(&self.gcp.propagation_window)
    }
    /// `providers.exec.<name>.timeout`, if set.
    pub fn exec_timeout(&self, name: &str) -> Option<std::time::Duration> {
        self.exec.get(name).and_then(|e| checked(&e.timeout))
    }

    fn validate(&self, path: &Path) -> ConfigResult<()> {
        let invalid = |field: String, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            message,
        };
        let range = |field: String, v: &Option<String>, min: u64, max: u64| -> ConfigResult<()> {
            let Some(s) = v else { return Ok(()) };
            let d = crate::duration::parse_duration(s).map_err(|m| invalid(field.clone(), m))?;
            if d.as_secs() < min || d.as_secs() > max {
                return Err(invalid(
                    field,
                    format!(
                        "`{s}` is out of range: between {} and {}",
                        humantime::format_duration(std::time::Duration::from_secs(min)),
                        humantime::format_duration(std::time::Duration::from_secs(max))
                    ),
                ));
            }
            Ok(())
        };
        const WINDOW: (u64, u64) = (1, 15 * 60);
        range(
            "providers.aws.propagationWindow".into(),
            &self.aws.propagation_window,
            WINDOW.0,
            WINDOW.1,
        )?;
        range(
            "providers.azure.propagationWindow".into(),
            &self.azure.propagation_window,
            WINDOW.0,
            WINDOW.1,
        )?;
        range(
            "providers.gcp.propagationWindow".into(),
            &self.gcp.propagation_window,
            WINDOW.0,
            WINDOW.1,
        )?;
        range(
            "providers.azure.secretLifetime".into(),
            &self.azure.secret_lifetime,
            3600,
            3650 * 86400,
        )?;
        for (name, e) in &self.exec {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid(
                    format!("providers.exec.{name}"),
                    "a plugin name is the source annotation: letters, digits, `-` and `_`".into(),
                ));
            }
            range(
                format!("providers.exec.{name}.timeout"),
                &e.timeout,
                1,
                30 * 60,
            )?;
            for var in &e.env {
                let ok = var
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                    && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !ok {
                    return Err(invalid(
                        format!("providers.exec.{name}.env"),
                        format!("`{var}` is not an environment variable name"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// How changes reach main.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MainVia {
    /// The tool pushes its commits to main.
    #[default]
    Push,
    /// The tool opens a pull (merge) request and waits for it to be merged.
    PullRequest,
}

/// The kind of forge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    /// GitHub or GitHub Enterprise Server.
    Github,
    /// GitLab (SaaS or self-managed).
    Gitlab,
}

/// `forge:` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawForge {
    /// github | gitlab.
    pub kind: ForgeKind,
    /// REST base URL.
    pub api_url: Option<String>,
    /// `owner/name` (GitHub) or the project path (GitLab).
    pub repository: String,
    /// Prefix of the tool's branches.
    pub branch_prefix: Option<String>,
    /// Labels for the tool's pull requests.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Ask the forge to merge once it allows it.
    #[serde(default)]
    pub auto_merge: bool,
    /// An open pull request older than this is stale.
    pub max_open_age: Option<String>,
}

/// A validated `forge:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forge {
    /// Kind.
    pub kind: ForgeKind,
    /// REST base URL, without a trailing `/`.
    pub api_url: String,
    /// `owner/name` or project path.
    pub repository: String,
    /// Branch prefix (ends with `/` or `-` as written).
    pub branch_prefix: String,
    /// Labels.
    pub labels: Vec<String>,
    /// Merge once the forge allows it.
    pub auto_merge: bool,
    /// An open pull request older than this is reported as stale.
    pub max_open_age: Option<chrono::Duration>,
}

/// `git:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawGit {
    /// Sign every commit the tool makes (in addition to git's own `commit.gpgsign`).
    #[serde(default)]
    pub sign: bool,
}

/// Whether `url` is https, or plain http to a loopback address (tests, port-forwards,
/// `kubectl proxy`). The one rule for every URL the tool sends credentials or trust to.
pub fn secure_or_loopback(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        hostport.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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
    /// The forge (always set when `main_via` is `PullRequest`).
    pub forge: Option<Forge>,
    /// Sign every commit, whatever git's own configuration says.
    pub git_sign: bool,
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
        for (account, a) in &self.providers.aws.accounts {
            if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    field: format!("providers.aws.accounts.{account}"),
                    message: "an AWS account id is 12 digits (quote it: \"012345678901\")".into(),
                });
            }
            if !a.role_arn.starts_with("arn:aws") || !a.role_arn.contains(":role/") {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    field: format!("providers.aws.accounts.{account}.roleArn"),
                    message: format!(
                        "`{}` is not a role ARN (arn:aws:iam::<account>:role/<name>)",
                        a.role_arn
                    ),
                });
            }
        }
        self.providers.validate(path)?;
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field: field.into(),
            message,
        };
        let forge = match self.forge {
            None if self.main_via == MainVia::PullRequest => {
                return Err(invalid(
                    "forge",
                    "mainVia: pull-request needs a forge block (kind, repository; see docs/pull-requests.md)".into(),
                ));
            }
            None => None,
            Some(f) => {
                let api_url = f
                    .api_url
                    .unwrap_or_else(|| match f.kind {
                        ForgeKind::Github => "https://api.github.com".into(),
                        ForgeKind::Gitlab => "https://gitlab.com/api/v4".into(),
                    })
                    .trim_end_matches('/')
                    .to_owned();
                if !secure_or_loopback(&api_url) {
                    return Err(invalid(
                        "forge.apiUrl",
                        format!(
                            "`{api_url}` must be https (plain http only to a loopback address)"
                        ),
                    ));
                }
                let repo_ok = !f.repository.is_empty()
                    && !f.repository.starts_with('/')
                    && !f.repository.ends_with('/')
                    && f.repository.contains('/')
                    && !f.repository.contains(char::is_whitespace);
                if !repo_ok {
                    return Err(invalid(
                        "forge.repository",
                        format!(
                            "`{}` must be owner/name (GitHub) or the project path group/project (GitLab)",
                            f.repository
                        ),
                    ));
                }
                let branch_prefix = f.branch_prefix.unwrap_or_else(|| "secret-manager/".into());
                if branch_prefix.is_empty()
                    || branch_prefix.contains(char::is_whitespace)
                    || branch_prefix.contains("..")
                    || branch_prefix.starts_with('/')
                    || branch_prefix.starts_with("refs/")
                {
                    return Err(invalid(
                        "forge.branchPrefix",
                        format!(
                            "`{branch_prefix}` must be a branch name prefix such as secret-manager/"
                        ),
                    ));
                }
                let max_open_age = f
                    .max_open_age
                    .as_deref()
                    .map(parse_chrono)
                    .transpose()
                    .map_err(|m| invalid("forge.maxOpenAge", m))?;
                Some(Forge {
                    kind: f.kind,
                    api_url,
                    repository: f.repository,
                    branch_prefix,
                    labels: f.labels,
                    auto_merge: f.auto_merge,
                    max_open_age,
                })
            }
        };
        Ok(Config {
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
            main_branch: self.main_branch.unwrap_or_else(|| "main".into()),
            main_remote: self.main_remote.unwrap_or_else(|| "origin".into()),
        })
    }
}

impl Config {
    /// Loads `<repo>/.secret-manager.yaml`, or the defaults when the file is absent.
    pub fn load(repo: &Path) -> ConfigResult<Config> {
        let path = repo.join(CONFIG_FILE);
        match std::fs::read_to_string(&path) {
            Ok(src) => from_yaml::<Option<RawConfig>>(Path::new(CONFIG_FILE), &src)?
                .unwrap_or_default()
                .validate(Path::new(CONFIG_FILE)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read { path, source }),
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
    fn pull_request_mode_needs_a_valid_forge() {
        let c = parse("mainVia: pull-request\nforge:\n  kind: github\n  repository: org/fleet\n  labels: [rotation]\n  maxOpenAge: 7d\n").unwrap();
        assert_eq!(c.main_via, MainVia::PullRequest);
        let f = c.forge.unwrap();
        assert_eq!(f.api_url, "https://api.github.com");
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
