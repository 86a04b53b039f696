//! How changes reach main (`mainVia`), the forge of pull-request mode (`forge:`) and
//! commit signing (`git:`).

use super::{ConfigError, ConfigResult};
use crate::duration::parse_chrono;
use serde::Deserialize;
use std::path::Path;

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
    /// GitHub or GitLab.
    pub kind: ForgeKind,
    /// REST base URL as the repo wrote it, without a trailing `/`. Only a statement of
    /// intent: the token goes to the URL the operator trusts
    /// (`secret_manager::forge::trusted_api_url`), which this must match.
    pub api_url: Option<String>,
    /// `owner/name` or project path.
    pub repository: String,
    /// Branch prefix (ends with `/` or `-` as written).
    pub branch_prefix: String,
    /// Labels put on the tool's pull requests.
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

impl RawForge {
    /// The validated forge for `mainVia`: required in pull-request mode.
    pub(super) fn validate(
        forge: Option<RawForge>,
        main_via: MainVia,
        path: &Path,
    ) -> ConfigResult<Option<Forge>> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field: field.into(),
            message,
        };
        let forge = match forge {
            None if main_via == MainVia::PullRequest => {
                return Err(invalid(
                    "forge",
                    "mainVia: pull-request needs a forge block (kind, repository; see docs/pull-requests.md)".into(),
                ));
            }
            None => None,
            Some(f) => {
                let api_url = f.api_url.map(|u| u.trim_end_matches('/').to_owned());
                if let Some(api_url) = api_url.as_deref()
                    && !secure_or_loopback(api_url)
                {
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
                    .map_err(|m| invalid("forge.maxOpenAge", m.to_string()))?;
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
        Ok(forge)
    }
}
