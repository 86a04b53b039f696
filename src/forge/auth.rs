//! Forge credentials: a token from the environment, or a GitHub App (an RS256 JWT
//! exchanged for an installation token, refreshed before it expires). Values live in
//! `SecretValue`s, go out only in headers marked sensitive, and never reach a log or an
//! error.

use super::{ForgeError, ForgeResult, message_of};
use crate::config::ForgeKind;
use crate::provider::SecretValue;
use chrono::{DateTime, Utc};

/// How the tool authenticates to the forge.
pub enum Auth {
    /// `GITHUB_TOKEN` / `GITLAB_TOKEN`.
    Token(SecretValue),
    /// A GitHub App installation.
    App(Box<GitHubApp>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Token(_) => f.write_str("Auth::Token([redacted])"),
            Auth::App(a) => f
                .debug_struct("Auth::App")
                .field("app_id", &a.app_id)
                .field("installation", &a.installation)
                .finish_non_exhaustive(),
        }
    }
}

/// A GitHub App: its id, private key and installation, and the current installation token.
pub struct GitHubApp {
    app_id: String,
    installation: String,
    key: jsonwebtoken::EncodingKey,
    cached: tokio::sync::Mutex<Option<(SecretValue, DateTime<Utc>)>>,
}

#[derive(serde::Serialize)]
struct AppClaims<'a> {
    iat: i64,
    exp: i64,
    iss: &'a str,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Auth {
    /// From the environment: `GITHUB_TOKEN`, or `GITHUB_APP_ID` +
    /// `GITHUB_APP_PRIVATE_KEY_FILE` + `GITHUB_APP_INSTALLATION_ID` (GitHub);
    /// `GITLAB_TOKEN` (GitLab).
    pub fn from_env(kind: ForgeKind, _api: &str) -> ForgeResult<Auth> {
        match kind {
            ForgeKind::Github => {
                if let (Some(id), Some(file), Some(inst)) = (
                    var("GITHUB_APP_ID"),
                    var("GITHUB_APP_PRIVATE_KEY_FILE"),
                    var("GITHUB_APP_INSTALLATION_ID"),
                ) {
                    let pem = zeroize::Zeroizing::new(std::fs::read(&file).map_err(|e| {
                        ForgeError::Failed {
                            forge: "github",
                            what: "reading GITHUB_APP_PRIVATE_KEY_FILE".into(),
                            status: 0,
                            message: format!("{file}: {e}"),
                        }
                    })?);
                    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).map_err(|e| {
                        ForgeError::Failed {
                            forge: "github",
                            what: "reading GITHUB_APP_PRIVATE_KEY_FILE".into(),
                            status: 0,
                            message: format!("{file} is not an RSA private key in PEM ({e})"),
                        }
                    })?;
                    return Ok(Auth::App(Box::new(GitHubApp {
                        app_id: id,
                        installation: inst,
                        key,
                        cached: tokio::sync::Mutex::new(None),
                    })));
                }
                var("GITHUB_TOKEN")
                    .map(|t| Auth::Token(SecretValue::new(t)))
                    .ok_or(ForgeError::NoCredentials {
                        forge: "github",
                        hint: "set GITHUB_TOKEN, or GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY_FILE and GITHUB_APP_INSTALLATION_ID",
                    })
            }
            ForgeKind::Gitlab => var("GITLAB_TOKEN")
                .map(|t| Auth::Token(SecretValue::new(t)))
                .ok_or(ForgeError::NoCredentials {
                    forge: "gitlab",
                    hint: "set GITLAB_TOKEN (a project or group access token with the api scope)",
                }),
        }
    }

    /// Adds the credentials to `req`.
    pub(crate) async fn apply(
        &self,
        kind: ForgeKind,
        http: &reqwest::Client,
        api: &str,
        req: reqwest::RequestBuilder,
    ) -> ForgeResult<reqwest::RequestBuilder> {
        let token = match self {
            Auth::Token(t) => t.clone(),
            Auth::App(app) => app.token(http, api).await?,
        };
        let (name, value) = match kind {
            ForgeKind::Github => ("authorization", format!("Bearer {}", token.expose())),
            ForgeKind::Gitlab => ("private-token", token.expose().to_owned()),
        };
        let mut v =
            reqwest::header::HeaderValue::from_str(&value).map_err(|_| ForgeError::Failed {
                forge: if kind == ForgeKind::Github {
                    "github"
                } else {
                    "gitlab"
                },
                what: "building the request".into(),
                status: 0,
                message: "the token contains characters a header cannot carry".into(),
            })?;
        v.set_sensitive(true);
        Ok(req.header(name, v))
    }
}

impl GitHubApp {
    /// The installation token, exchanged anew when less than five minutes are left.
    async fn token(&self, http: &reqwest::Client, api: &str) -> ForgeResult<SecretValue> {
        let mut cached = self.cached.lock().await;
        if let Some((t, exp)) = cached.as_ref()
            && *exp - Utc::now() > chrono::Duration::minutes(5)
        {
            return Ok(t.clone());
        }
        let now = Utc::now().timestamp();
        let claims = AppClaims {
            iat: now - 60,
            exp: now + 9 * 60,
            iss: &self.app_id,
        };
        let fail = |status: u16, message: String| ForgeError::Failed {
            forge: "github",
            what: "exchanging the GitHub App's JWT for an installation token".into(),
            status,
            message,
        };
        let jwt = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &self.key,
        )
        .map_err(|e| fail(0, format!("signing the JWT failed: {e}")))?;
        let mut auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {jwt}"))
            .map_err(|_| fail(0, "the JWT cannot be sent".into()))?;
        auth.set_sensitive(true);
        let resp = http
            .post(format!(
                "{api}/app/installations/{}/access_tokens",
                self.installation
            ))
            .header("authorization", auth)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .send()
            .await
            .map_err(|e| fail(0, e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let json: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
        if status == 401 {
            return Err(ForgeError::Unauthorized {
                forge: "github",
                message: message_of(&json),
                hint: "check GITHUB_APP_ID and the App's private key (GITHUB_APP_PRIVATE_KEY_FILE)",
            });
        }
        if status != 201 && status != 200 {
            return Err(fail(
                status,
                format!(
                    "{} (check GITHUB_APP_INSTALLATION_ID and that the App is installed on the repository)",
                    message_of(&json)
                ),
            ));
        }
        let token = json["token"]
            .as_str()
            .ok_or_else(|| fail(status, "no token in the answer".into()))?;
        let expires = json["expires_at"]
            .as_str()
            .and_then(|s| s.parse::<DateTime<Utc>>().ok())
            .unwrap_or_else(|| Utc::now() + chrono::Duration::minutes(50));
        let t = SecretValue::new(token);
        *cached = Some((t.clone(), expires));
        Ok(t)
    }
}
