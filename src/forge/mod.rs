//! The forge API for pull-request mode: open a pull (merge) request for a branch, find it
//! again, read its state, ask the forge to merge it. GitHub and GitLab REST, reached with
//! reqwest; credentials from the environment (a token, or a GitHub App whose installation
//! token is refreshed before it expires), never from argv and never logged.
//!
//! Rate limits (GitHub's `403` with `x-ratelimit-remaining: 0`, `429` with `Retry-After`)
//! are waited out within [`MAX_WAIT`]; 5xx and transport errors are retried with the
//! jittered backoff of [`RETRY`] (the one retry policy type, named per use);
//! everything else is an error that says what to do.

mod auth;
mod github;
mod gitlab;

pub use auth::Auth;

use crate::config::{self, ForgeKind};
use crate::provider::RetryPolicy;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// How a forge call retries: server errors and unreachable hosts with jittered backoff,
/// rate limits for as long as the forge asks, within one budget of waiting.
pub const RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 6,
    max_retry_after: MAX_WAIT,
    budget: MAX_WAIT,
    ..RetryPolicy::FORGE
};

/// The longest a forge call waits for rate limits and server errors, in all.
pub const MAX_WAIT: Duration = Duration::from_secs(120);

/// Where a pull request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrState {
    /// Waiting for review.
    Open,
    /// Merged into the base branch.
    Merged,
    /// Closed without merging.
    Closed,
}

/// A pull (GitHub) or merge (GitLab) request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequest {
    /// Number (GitHub) or iid (GitLab).
    pub number: u64,
    /// Web URL for people.
    pub url: String,
    /// Open, merged or closed.
    pub state: PrState,
    /// The head (source) branch.
    pub head: String,
    /// When it was opened.
    pub created_at: Option<DateTime<Utc>>,
}

/// What to open.
#[derive(Clone, Debug)]
pub struct NewPullRequest<'a> {
    /// Head (source) branch.
    pub head: &'a str,
    /// Base (target) branch.
    pub base: &'a str,
    /// The pull request's title.
    pub title: &'a str,
    /// Body (Markdown).
    pub body: &'a str,
    /// Labels put on the tool's pull requests.
    pub labels: &'a [String],
}

/// Errors of forge calls. None contains a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForgeError {
    /// The repo asked for an API URL the operator did not give.
    #[error("{forge}: {message}")]
    Untrusted {
        /// github | gitlab.
        forge: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// No credentials in the environment.
    #[error("{forge}: no credentials: {hint}")]
    NoCredentials {
        /// github | gitlab.
        forge: &'static str,
        /// Which variables to set.
        hint: &'static str,
    },
    /// 401: the token (or App key) was rejected.
    #[error("{forge}: the credentials were rejected (401 {message}); {hint}")]
    Unauthorized {
        /// github | gitlab.
        forge: &'static str,
        /// The forge's message.
        message: String,
        /// What to do.
        hint: &'static str,
    },
    /// 403/404: no access to the repository or the request.
    #[error("{forge}: no access to {what} ({status} {message}); {hint}")]
    NoAccess {
        /// github | gitlab.
        forge: &'static str,
        /// The call.
        what: String,
        /// Status code.
        status: u16,
        /// The forge's message.
        message: String,
        /// What to do.
        hint: &'static str,
    },
    /// Rate limited for longer than [`MAX_WAIT`].
    #[error(
        "{forge}: rate limited on {what}; the limit resets in {reset_in}s, longer than secret-manager waits ({waited}s); the next run continues"
    )]
    RateLimited {
        /// github | gitlab.
        forge: &'static str,
        /// The call.
        what: String,
        /// Seconds until the forge's reset.
        reset_in: u64,
        /// Seconds waited.
        waited: u64,
    },
    /// Any other refusal or server error.
    #[error("{forge}: {what} failed: {status} {message}")]
    Failed {
        /// github | gitlab.
        forge: &'static str,
        /// The call.
        what: String,
        /// Status code (0: no response).
        status: u16,
        /// The forge's message.
        message: String,
    },
}

/// `?k=v&...` with every key and value form-encoded: a branch name with `/`, `#`, `&` or
/// `+` stays one value.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    format!("?{}", q.finish())
}

impl ForgeError {
    /// Whether the operator must change something before any run can reach the forge
    /// (credentials, the API URL) — a usage error — rather than the forge failing or
    /// refusing one request (a publish failure the next run retries).
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            ForgeError::Untrusted { .. }
                | ForgeError::NoCredentials { .. }
                | ForgeError::Unauthorized { .. }
        )
    }
}

/// Result alias.
pub type ForgeResult<T> = Result<T, ForgeError>;

/// The operator's forge API URL (GitHub Enterprise, self-managed GitLab).
pub const API_URL_ENV: &str = "SECRET_MANAGER_FORGE_API_URL";

/// The forge API URL the token may be sent to. The operator decides it, never the repo:
/// it is [`API_URL_ENV`] when set, else the public forge of the kind (api.github.com,
/// gitlab.com). The repo's `forge.apiUrl` may only repeat that URL; a different one is
/// refused, so a change to `.secret-manager.yaml` cannot send the forge token or the
/// GitHub App's token to a host of its writer's choosing.
pub fn trusted_api_url(cfg: &config::Forge, operator: Option<&str>) -> ForgeResult<String> {
    let name = match cfg.kind {
        ForgeKind::Github => "github",
        ForgeKind::Gitlab => "gitlab",
    };
    let default = match cfg.kind {
        ForgeKind::Github => "https://api.github.com",
        ForgeKind::Gitlab => "https://gitlab.com/api/v4",
    };
    let trusted = match operator {
        Some(u) => {
            let u = u.trim_end_matches('/');
            if !config::secure_or_loopback(u) {
                return Err(ForgeError::Untrusted {
                    forge: name,
                    message: format!(
                        "{API_URL_ENV} `{}` must be https (plain http only to a loopback address)",
                        crate::text::escape(u)
                    ),
                });
            }
            u.to_owned()
        }
        None => default.to_owned(),
    };
    if let Some(written) = cfg.api_url.as_deref()
        && written != trusted
    {
        let written = crate::text::escape(written);
        return Err(ForgeError::Untrusted {
            forge: name,
            message: format!(
                ".secret-manager.yaml forge.apiUrl `{written}` is not the API URL the operator trusts (`{trusted}`); the forge token is only sent where the operator says: set {API_URL_ENV}={written} in the rotator's environment if that is your forge, or remove forge.apiUrl"
            ),
        });
    }
    Ok(trusted)
}

/// A forge client for one repository.
pub struct Forge {
    kind: ForgeKind,
    api: String,
    repository: String,
    http: reqwest::Client,
    auth: Auth,
}

impl std::fmt::Debug for Forge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forge")
            .field("kind", &self.kind)
            .field("api", &self.api)
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

/// A response: status, the headers we read, and the JSON body.
pub(crate) struct Response {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub ratelimit_remaining: Option<u64>,
    pub ratelimit_reset: Option<i64>,
    pub json: serde_json::Value,
}

impl Forge {
    /// A client for `cfg`, with credentials and the API URL the operator trusts from the
    /// environment ([`trusted_api_url`]).
    pub fn from_env(cfg: &config::Forge) -> ForgeResult<Forge> {
        let operator = std::env::var(API_URL_ENV).ok().filter(|v| !v.is_empty());
        let api_url = trusted_api_url(cfg, operator.as_deref())?;
        let auth = Auth::from_env(cfg.kind, &api_url)?;
        Ok(Forge::new(cfg, api_url, auth))
    }

    /// A client for `cfg` that talks to `api_url` (the trusted one) with `auth`.
    pub fn new(cfg: &config::Forge, api_url: String, auth: Auth) -> Forge {
        let http = reqwest::Client::builder()
            .user_agent(concat!("secret-manager/", env!("CARGO_PKG_VERSION")))
            // The token travels in a header that a redirect would carry to another host
            // (GitLab's PRIVATE-TOKEN is not dropped the way Authorization is).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        Forge {
            kind: cfg.kind,
            api: api_url,
            repository: cfg.repository.clone(),
            http,
            auth,
        }
    }

    fn name(&self) -> &'static str {
        match self.kind {
            ForgeKind::Github => "github",
            ForgeKind::Gitlab => "gitlab",
        }
    }

    /// Sends one request, waiting out rate limits and retrying server errors within
    /// [`MAX_WAIT`]. Returns the response for any status the caller handles (2xx, 4xx).
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> ForgeResult<Response> {
        let what = format!("{method} {path}");
        let mut attempt = 0u32;
        let mut waited = Duration::ZERO;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.api));
            req = self
                .auth
                .apply(self.kind, &self.http, &self.api, req)
                .await?;
            if self.kind == ForgeKind::Github {
                req = req
                    .header("accept", "application/vnd.github+json")
                    .header("x-github-api-version", "2022-11-28");
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    if let Some(d) = RETRY.backoff(attempt, None, waited) {
                        tracing::info!(forge = self.name(), %what, error = %e.without_url(), "forge unreachable; retrying");
                        tokio::time::sleep(d).await;
                        waited += d;
                        continue;
                    }
                    return Err(ForgeError::Failed {
                        forge: self.name(),
                        what,
                        status: 0,
                        message: e.without_url().to_string(),
                    });
                }
            };
            let h = resp.headers();
            let num = |k: &str| {
                h.get(k)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<i64>().ok())
            };
            let r = Response {
                status: resp.status().as_u16(),
                retry_after: num("retry-after").map(|v| v.max(0) as u64),
                ratelimit_remaining: num("x-ratelimit-remaining").map(|v| v.max(0) as u64),
                ratelimit_reset: num("x-ratelimit-reset").or_else(|| num("ratelimit-reset")),
                json: serde_json::Value::Null,
            };
            let text = resp.text().await.unwrap_or_default();
            let r = Response {
                json: serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
                ..r
            };
            // Rate limits: 429 (both), or GitHub's 403 with no requests left.
            let limited = r.status == 429 || (r.status == 403 && r.ratelimit_remaining == Some(0));
            if limited {
                let wait = r.retry_after.unwrap_or_else(|| {
                    r.ratelimit_reset
                        .map(|reset| (reset - Utc::now().timestamp()).max(1) as u64)
                        .unwrap_or(5)
                });
                let Some(d) = RETRY.backoff(attempt, Some(Duration::from_secs(wait)), waited)
                else {
                    return Err(ForgeError::RateLimited {
                        forge: self.name(),
                        what,
                        reset_in: wait,
                        waited: waited.as_secs(),
                    });
                };
                tracing::info!(forge = self.name(), %what, wait_ms = d.as_millis() as u64, "rate limited; waiting");
                tokio::time::sleep(d).await;
                waited += d;
                continue;
            }
            if r.status >= 500
                && let Some(d) = RETRY.backoff(attempt, None, waited)
            {
                tracing::info!(forge = self.name(), %what, status = r.status, "forge server error; retrying");
                tokio::time::sleep(d).await;
                waited += d;
                continue;
            }
            return Ok(r);
        }
    }

    /// Maps a status the caller does not handle to an error.
    pub(crate) fn error(&self, what: &str, r: &Response) -> ForgeError {
        let message = message_of(&r.json);
        let forge = self.name();
        let (token_hint, access_hint) = match self.kind {
            ForgeKind::Github => (
                "check GITHUB_TOKEN (or the GitHub App's id, key and installation)",
                "the token or App needs contents and pull requests read/write on the repository",
            ),
            ForgeKind::Gitlab => (
                "check GITLAB_TOKEN",
                "the token needs the api scope and Developer access to the project",
            ),
        };
        match r.status {
            401 => ForgeError::Unauthorized {
                forge,
                message,
                hint: token_hint,
            },
            403 | 404 => ForgeError::NoAccess {
                forge,
                what: format!("{what} on {}", self.repository),
                status: r.status,
                message,
                hint: access_hint,
            },
            status => ForgeError::Failed {
                forge,
                what: what.to_owned(),
                status,
                message,
            },
        }
    }

    /// Opens a pull request; one that already exists for the branch is reused.
    pub async fn open(&self, pr: &NewPullRequest<'_>) -> ForgeResult<PullRequest> {
        match self.kind {
            ForgeKind::Github => github::open(self, pr).await,
            ForgeKind::Gitlab => gitlab::open(self, pr).await,
        }
    }

    /// The newest pull request whose head is `branch`, in any state.
    pub async fn find(&self, branch: &str) -> ForgeResult<Option<PullRequest>> {
        match self.kind {
            ForgeKind::Github => github::find(self, branch).await,
            ForgeKind::Gitlab => gitlab::find(self, branch).await,
        }
    }

    /// Pull request `number`.
    pub async fn get(&self, number: u64) -> ForgeResult<PullRequest> {
        match self.kind {
            ForgeKind::Github => github::get(self, number).await,
            ForgeKind::Gitlab => gitlab::get(self, number).await,
        }
    }

    /// Asks the forge to merge `number` now; `Ok(false)` when it does not allow it yet
    /// (reviews, checks).
    pub async fn merge(&self, number: u64) -> ForgeResult<bool> {
        match self.kind {
            ForgeKind::Github => github::merge(self, number).await,
            ForgeKind::Gitlab => gitlab::merge(self, number).await,
        }
    }

    pub(crate) fn repository(&self) -> &str {
        &self.repository
    }
}

/// A forge's error message from its JSON body (GitHub `message` + `errors[].message`,
/// GitLab `message` or `error`, which may be a string, a list or a map).
pub(crate) fn message_of(v: &serde_json::Value) -> String {
    fn flat(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(a) => a.iter().map(flat).collect::<Vec<_>>().join("; "),
            serde_json::Value::Object(o) => o
                .iter()
                .map(|(k, v)| format!("{k}: {}", flat(v)))
                .collect::<Vec<_>>()
                .join("; "),
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        }
    }
    let mut parts = Vec::new();
    for k in ["message", "error"] {
        let m = flat(&v[k]);
        if !m.is_empty() {
            parts.push(m);
        }
    }
    if let Some(errs) = v["errors"].as_array() {
        for e in errs {
            let m = flat(&e["message"]);
            if !m.is_empty() {
                parts.push(m);
            }
        }
    }
    let s = parts.join(": ");
    let mut s: String = s.chars().filter(|c| !c.is_control()).take(400).collect();
    if s.is_empty() {
        s = "(no message)".into();
    }
    s
}

fn time(v: &serde_json::Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(|s| s.parse().ok())
}

#[cfg(test)]
mod query_tests {
    #[test]
    fn query_values_stay_one_value() {
        assert_eq!(
            super::query(&[
                ("head", "org:secret-manager/rotate#1&x=y+z"),
                ("state", "all")
            ]),
            "?head=org%3Asecret-manager%2Frotate%231%26x%3Dy%2Bz&state=all"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forge(kind: ForgeKind, api_url: Option<&str>) -> config::Forge {
        config::Forge {
            kind,
            api_url: api_url.map(str::to_owned),
            repository: "org/fleet".into(),
            branch_prefix: "secret-manager/".into(),
            labels: vec![],
            auto_merge: false,
            max_open_age: None,
        }
    }

    #[test]
    fn the_operator_decides_where_the_token_goes() {
        // No operator URL: the public forge; the repo may repeat it.
        assert_eq!(
            trusted_api_url(&forge(ForgeKind::Github, None), None).unwrap(),
            "https://api.github.com"
        );
        assert_eq!(
            trusted_api_url(
                &forge(ForgeKind::Gitlab, Some("https://gitlab.com/api/v4")),
                None
            )
            .unwrap(),
            "https://gitlab.com/api/v4"
        );
        // The repo alone cannot name another host.
        let e = trusted_api_url(
            &forge(ForgeKind::Github, Some("https://collector.evil.example")),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(API_URL_ENV) && e.contains("collector.evil.example"),
            "{e}"
        );
        // The operator's URL wins; the repo must agree with it or say nothing.
        let ghe = Some("https://ghe.example.com/api/v3/");
        assert_eq!(
            trusted_api_url(&forge(ForgeKind::Github, None), ghe).unwrap(),
            "https://ghe.example.com/api/v3"
        );
        assert!(
            trusted_api_url(
                &forge(ForgeKind::Github, Some("https://ghe.example.com/api/v3")),
                ghe
            )
            .is_ok()
        );
        assert!(
            trusted_api_url(
                &forge(ForgeKind::Github, Some("https://api.github.com")),
                ghe
            )
            .is_err()
        );
        assert!(
            trusted_api_url(
                &forge(ForgeKind::Github, None),
                Some("http://ghe.example.com")
            )
            .is_err()
        );
    }
}
