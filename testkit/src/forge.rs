//! Fake GitHub and GitLab REST servers for pull-request mode, backed by a real bare
//! repository: a "merge" through the fake (or from the test) performs a real merge commit,
//! squash or rebase in the bare repo, as the forge would server-side — without running its
//! hooks, which play branch protection for direct pushes.
//!
//! They follow the real shapes: GitHub `POST/GET /repos/{o}/{r}/pulls`, `GET/PUT
//! …/pulls/{n}[/merge]`, `POST /repos/{o}/{r}/issues/{n}/labels`, `POST
//! /app/installations/{id}/access_tokens` (checking the App JWT's RS256 signature, `iss` and
//! `exp`), `Authorization: Bearer`, 401 "Bad credentials", 422 "A pull request already
//! exists", 403 with `x-ratelimit-remaining: 0` + `x-ratelimit-reset`, 429 with
//! `Retry-After`; GitLab `/api/v4/projects/:id/merge_requests[/:iid[/merge]]` with
//! `PRIVATE-TOKEN`, 409 for an existing merge request, `opened`/`merged`/`closed`.

use crate::server::{Reply, Request, TestServer};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// How a pull request is merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeStyle {
    /// A merge commit (GitHub "Create a merge commit", GitLab merge commit).
    Merge,
    /// One new commit with the branch's changes.
    Squash,
    /// The branch's commits replayed on the base as new commits.
    Rebase,
}

/// A pull request the fake holds.
#[derive(Clone, Debug)]
pub struct FakePr {
    /// Number (GitHub) or iid (GitLab).
    pub number: u64,
    /// Head branch.
    pub head: String,
    /// Base branch.
    pub base: String,
    /// The pull request's title.
    pub title: String,
    /// The description, as the tool wrote it (markdown).
    pub body: String,
    /// Labels put on the tool's pull requests.
    pub labels: Vec<String>,
    /// `open`, `merged` or `closed`.
    pub state: String,
    /// When it was opened.
    pub created_at: String,
    /// The commit the merge made, once merged.
    pub merge_commit: Option<String>,
}

/// A GitHub App the fake knows.
#[derive(Clone, Debug)]
pub struct FakeApp {
    /// App id (the JWT's `iss`).
    pub id: String,
    /// The App's public key (PEM), to check the JWT's signature.
    pub public_pem: String,
    /// The installation id.
    pub installation: String,
}

/// What the fake holds; tests read and change it.
#[derive(Debug, Default)]
pub struct ForgeState {
    /// The bare repository behind the fake.
    pub bare: PathBuf,
    /// The repository's path (`owner/name` or `group/project`).
    pub repository: String,
    /// The one token the fake accepts (besides installation tokens it issued).
    pub token: String,
    /// The App, when App auth is tested.
    pub app: Option<FakeApp>,
    /// Installation tokens issued.
    pub issued: Vec<String>,
    /// Pull requests.
    pub prs: Vec<FakePr>,
    /// Whether the merge endpoint merges (false: "not mergeable yet").
    pub mergeable: bool,
    /// The next N API calls answer with this rate-limit response.
    pub rate_limited: u32,
    /// The next N API calls answer 502.
    pub bad_gateway: u32,
    /// Every request: method, path, and the authorization header value it carried.
    pub requests: Vec<(String, String, String)>,
}

/// Which REST shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// GitHub's REST shapes (`/repos/{owner}/{repo}/pulls`).
    Github,
    /// GitLab's REST shapes (`/projects/{id}/merge_requests`).
    Gitlab,
}

/// A running fake forge.
pub struct FakeForge {
    /// Its state.
    pub state: Arc<Mutex<ForgeState>>,
    /// The REST base URL (`…` for GitHub, `…/api/v4` for GitLab).
    pub api_url: String,
    kind: Kind,
    _server: TestServer,
}

fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Forge")
        .env("GIT_AUTHOR_EMAIL", "forge@example.com")
        .env("GIT_COMMITTER_NAME", "Forge")
        .env("GIT_COMMITTER_EMAIL", "forge@example.com")
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Merges `pr` in `bare` the way a forge does server-side; returns the new base commit.
pub fn merge_in_bare(bare: &Path, pr: &FakePr, style: MergeStyle) -> Result<String, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let w = tmp.path().join("w");
    git(
        tmp.path(),
        &["clone", "--quiet", bare.to_str().unwrap(), "w"],
    )?;
    git(&w, &["checkout", "--quiet", &pr.base])?;
    let old = git(&w, &["rev-parse", "HEAD"])?;
    let head = format!("origin/{}", pr.head);
    match style {
        MergeStyle::Merge => {
            let msg = format!(
                "Merge pull request #{} from {}\n\n{}",
                pr.number, pr.head, pr.title
            );
            git(&w, &["merge", "--quiet", "--no-ff", "-m", &msg, &head])?;
        }
        MergeStyle::Squash => {
            git(&w, &["merge", "--quiet", "--squash", &head])?;
            let msg = format!("{} (#{})\n\n{}", pr.title, pr.number, pr.body);
            git(&w, &["commit", "--quiet", "-m", &msg])?;
        }
        MergeStyle::Rebase => {
            git(&w, &["checkout", "--quiet", "-b", "rebased", &head])?;
            git(&w, &["rebase", "--quiet", "--force-rebase", &pr.base])?;
            git(&w, &["checkout", "--quiet", &pr.base])?;
            git(&w, &["merge", "--quiet", "--ff-only", "rebased"])?;
        }
    }
    let new = git(&w, &["rev-parse", "HEAD"])?;
    git(
        bare,
        &[
            "fetch",
            "--quiet",
            w.to_str().unwrap(),
            &format!("{new}:refs/fake/merged-{}", pr.number),
        ],
    )?;
    git(
        bare,
        &["update-ref", &format!("refs/heads/{}", pr.base), &new, &old],
    )?;
    Ok(new)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl FakeForge {
    /// A fake GitHub for `owner/name` over `bare`, accepting `token`.
    pub async fn github(bare: &Path, repository: &str, token: &str) -> FakeForge {
        Self::start(Kind::Github, bare, repository, token).await
    }

    /// A fake GitLab for `group/project` over `bare`, accepting `token`.
    pub async fn gitlab(bare: &Path, repository: &str, token: &str) -> FakeForge {
        Self::start(Kind::Gitlab, bare, repository, token).await
    }

    async fn start(kind: Kind, bare: &Path, repository: &str, token: &str) -> FakeForge {
        let state = Arc::new(Mutex::new(ForgeState {
            bare: bare.to_path_buf(),
            repository: repository.to_owned(),
            token: token.to_owned(),
            mergeable: true,
            ..ForgeState::default()
        }));
        let s = state.clone();
        let server = TestServer::start_http(move |req| {
            let mut st = s.lock().unwrap();
            match kind {
                Kind::Github => github(&mut st, &req),
                Kind::Gitlab => gitlab(&mut st, &req),
            }
        })
        .await;
        let api_url = match kind {
            Kind::Github => server.url.clone(),
            Kind::Gitlab => format!("{}/api/v4", server.url),
        };
        FakeForge {
            state,
            api_url,
            kind,
            _server: server,
        }
    }

    /// Registers a GitHub App (its public key in PEM).
    pub fn with_app(&self, id: &str, public_pem: &str, installation: &str) {
        self.state.lock().unwrap().app = Some(FakeApp {
            id: id.into(),
            public_pem: public_pem.into(),
            installation: installation.into(),
        });
    }

    /// The pull requests.
    pub fn prs(&self) -> Vec<FakePr> {
        self.state.lock().unwrap().prs.clone()
    }

    /// Merges pull request `number` (as a reviewer would press the button).
    pub fn merge(&self, number: u64, style: MergeStyle) -> String {
        let mut st = self.state.lock().unwrap();
        let bare = st.bare.clone();
        let pr = st
            .prs
            .iter_mut()
            .find(|p| p.number == number)
            .expect("a PR");
        let sha = merge_in_bare(&bare, pr, style).expect("the merge works");
        pr.state = "merged".into();
        pr.merge_commit = Some(sha.clone());
        sha
    }

    /// Closes pull request `number` without merging.
    pub fn close(&self, number: u64) {
        let mut st = self.state.lock().unwrap();
        let pr = st
            .prs
            .iter_mut()
            .find(|p| p.number == number)
            .expect("a PR");
        pr.state = "closed".into();
    }

    /// Which REST shape this fake speaks.
    pub fn kind(&self) -> Kind {
        self.kind
    }
}

fn authorized(st: &mut ForgeState, req: &Request, kind: Kind) -> Result<(), Reply> {
    let given = match kind {
        Kind::Github => req.bearer().map(str::to_owned),
        Kind::Gitlab => req
            .headers
            .get("private-token")
            .cloned()
            .or_else(|| req.bearer().map(str::to_owned)),
    };
    st.requests.push((
        req.method.clone(),
        req.path.clone(),
        given.clone().unwrap_or_default(),
    ));
    if st.bad_gateway > 0 {
        st.bad_gateway -= 1;
        return Err(Reply::json(502, json!({"message": "Server Error"})));
    }
    if st.rate_limited > 0 {
        st.rate_limited -= 1;
        let reset = chrono::Utc::now().timestamp() + 1;
        return Err(match kind {
            Kind::Github => Reply::json(
                403,
                json!({"message": "API rate limit exceeded for installation.", "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}),
            )
            .header("x-ratelimit-limit", "5000")
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", &reset.to_string()),
            Kind::Gitlab => Reply::json(429, json!({"message": "Retry later"}))
                .header("retry-after", "1")
                .header("ratelimit-remaining", "0"),
        });
    }
    let ok = given
        .as_deref()
        .is_some_and(|t| t == st.token || st.issued.iter().any(|i| i == t));
    if ok {
        Ok(())
    } else {
        Err(match kind {
            Kind::Github => Reply::json(
                401,
                json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}),
            ),
            Kind::Gitlab => Reply::json(401, json!({"message": "401 Unauthorized"})),
        })
    }
}

fn branch_exists(st: &ForgeState, branch: &str) -> bool {
    git(
        &st.bare,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ],
    )
    .is_ok()
}

fn gh_pr(st: &ForgeState, p: &FakePr) -> serde_json::Value {
    json!({
        "number": p.number,
        "html_url": format!("https://github.example/{}/pull/{}", st.repository, p.number),
        "state": if p.state == "open" { "open" } else { "closed" },
        "merged": p.state == "merged",
        "merged_at": if p.state == "merged" { json!(now()) } else { json!(null) },
        "merge_commit_sha": p.merge_commit,
        "title": p.title,
        "body": p.body,
        "head": {"ref": p.head, "label": format!("{}:{}", st.repository.split('/').next().unwrap_or(""), p.head)},
        "base": {"ref": p.base},
        "labels": p.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
        "created_at": p.created_at,
    })
}

fn github(st: &mut ForgeState, req: &Request) -> Reply {
    let not_found = || {
        Reply::json(
            404,
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
        )
    };
    // The App's token exchange is authenticated by the App JWT, not a token.
    if let Some(rest) = req.path.strip_prefix("/app/installations/") {
        return app_token(st, req, rest);
    }
    if let Err(r) = authorized(st, req, Kind::Github) {
        return r;
    }
    let prefix = format!("/repos/{}/", st.repository);
    let Some(rest) = req.path.strip_prefix(&prefix) else {
        return not_found();
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match (req.method.as_str(), parts.as_slice()) {
        ("POST", ["pulls"]) => {
            let b = req.json();
            let head = b["head"].as_str().unwrap_or_default().to_owned();
            let head = head.rsplit(':').next().unwrap_or_default().to_owned();
            if st.prs.iter().any(|p| p.head == head && p.state == "open") {
                return Reply::json(
                    422,
                    json!({
                        "message": "Validation Failed",
                        "errors": [{"resource": "PullRequest", "code": "custom", "message": format!("A pull request already exists for {}:{head}.", st.repository.split('/').next().unwrap_or(""))}],
                        "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"
                    }),
                );
            }
            if !branch_exists(st, &head) {
                return Reply::json(
                    422,
                    json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}]}),
                );
            }
            let pr = FakePr {
                number: st.prs.len() as u64 + 1,
                head,
                base: b["base"].as_str().unwrap_or("main").to_owned(),
                title: b["title"].as_str().unwrap_or_default().to_owned(),
                body: b["body"].as_str().unwrap_or_default().to_owned(),
                labels: Vec::new(),
                state: "open".into(),
                created_at: now(),
                merge_commit: None,
            };
            let v = gh_pr(st, &pr);
            st.prs.push(pr);
            Reply::json(201, v)
        }
        ("GET", ["pulls"]) => {
            let head = req.query.get("head").cloned().unwrap_or_default();
            let head = head.rsplit(':').next().unwrap_or_default().to_owned();
            let state = req
                .query
                .get("state")
                .cloned()
                .unwrap_or_else(|| "open".into());
            let list: Vec<serde_json::Value> = st
                .prs
                .iter()
                .rev()
                .filter(|p| head.is_empty() || p.head == head)
                .filter(|p| state == "all" || (state == "open") == (p.state == "open"))
                .map(|p| gh_pr(st, p))
                .collect();
            Reply::json(200, json!(list))
        }
        ("GET", ["pulls", n]) => match st.prs.iter().find(|p| p.number.to_string() == *n) {
            Some(p) => Reply::json(200, gh_pr(st, p)),
            None => not_found(),
        },
        ("PUT", ["pulls", n, "merge"]) => {
            let bare = st.bare.clone();
            let mergeable = st.mergeable;
            let Some(p) = st.prs.iter_mut().find(|p| p.number.to_string() == *n) else {
                return not_found();
            };
            if p.state != "open" || !mergeable {
                return Reply::json(405, json!({"message": "Pull Request is not mergeable"}));
            }
            match merge_in_bare(&bare, p, MergeStyle::Merge) {
                Ok(sha) => {
                    p.state = "merged".into();
                    p.merge_commit = Some(sha.clone());
                    Reply::json(
                        200,
                        json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"}),
                    )
                }
                Err(e) => Reply::json(409, json!({"message": format!("merge conflict: {e}")})),
            }
        }
        ("POST", ["issues", n, "labels"]) => {
            let labels: Vec<String> = req.json()["labels"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect();
            match st.prs.iter_mut().find(|p| p.number.to_string() == *n) {
                Some(p) => {
                    p.labels.extend(labels);
                    Reply::json(
                        200,
                        json!(
                            p.labels
                                .iter()
                                .map(|l| json!({"name": l}))
                                .collect::<Vec<_>>()
                        ),
                    )
                }
                None => not_found(),
            }
        }
        _ => not_found(),
    }
}

fn app_token(st: &mut ForgeState, req: &Request, rest: &str) -> Reply {
    st.requests.push((
        req.method.clone(),
        req.path.clone(),
        req.bearer().unwrap_or_default().to_owned(),
    ));
    let Some(app) = st.app.clone() else {
        return Reply::json(404, json!({"message": "Not Found"}));
    };
    let id = rest.trim_end_matches("/access_tokens");
    if req.method != "POST" || !rest.ends_with("/access_tokens") || id != app.installation {
        return Reply::json(404, json!({"message": "Not Found"}));
    }
    let Some(jwt) = req.bearer() else {
        return Reply::json(
            401,
            json!({"message": "A JSON web token could not be decoded"}),
        );
    };
    let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(app.public_pem.as_bytes()) else {
        return Reply::json(500, json!({"message": "fake: bad public key"}));
    };
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_issuer(&[app.id.as_str()]);
    v.set_required_spec_claims(&["exp", "iat", "iss"]);
    let claims = match jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &v) {
        Ok(d) => d.claims,
        Err(e) => {
            return Reply::json(
                401,
                json!({"message": format!("'Issuer' claim or signature rejected: {e}")}),
            );
        }
    };
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap_or(0),
        claims["exp"].as_i64().unwrap_or(0),
    );
    if exp - iat > 600 {
        return Reply::json(
            401,
            json!({"message": "'Expiration time' claim ('exp') is too far in the future"}),
        );
    }
    let token = format!("ghs_fake{:016x}", rand::random::<u64>());
    st.issued.push(token.clone());
    let expires = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Reply::json(
        201,
        json!({"token": token, "expires_at": expires, "permissions": {"contents": "write", "pull_requests": "write"}}),
    )
}

fn gl_mr(st: &ForgeState, p: &FakePr) -> serde_json::Value {
    json!({
        "iid": p.number,
        "id": 1000 + p.number,
        "web_url": format!("https://gitlab.example/{}/-/merge_requests/{}", st.repository, p.number),
        "state": if p.state == "open" { "opened" } else { p.state.as_str() },
        "title": p.title,
        "description": p.body,
        "source_branch": p.head,
        "target_branch": p.base,
        "labels": p.labels,
        "created_at": p.created_at,
        "merged_at": if p.state == "merged" { json!(now()) } else { json!(null) },
        "merge_commit_sha": p.merge_commit,
    })
}

fn gitlab(st: &mut ForgeState, req: &Request) -> Reply {
    let not_found = || Reply::json(404, json!({"message": "404 Project Not Found"}));
    if let Err(r) = authorized(st, req, Kind::Gitlab) {
        return r;
    }
    let prefix = format!("/api/v4/projects/{}/", st.repository);
    let Some(rest) = req.path.strip_prefix(&prefix) else {
        return not_found();
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match (req.method.as_str(), parts.as_slice()) {
        ("POST", ["merge_requests"]) => {
            let b = req.json();
            let head = b["source_branch"].as_str().unwrap_or_default().to_owned();
            if let Some(p) = st.prs.iter().find(|p| p.head == head && p.state == "open") {
                return Reply::json(
                    409,
                    json!({"message": [format!("Another open merge request already exists for this source branch: !{}", p.number)]}),
                );
            }
            if !branch_exists(st, &head) {
                return Reply::json(422, json!({"message": {"source_branch": ["is invalid"]}}));
            }
            let pr = FakePr {
                number: st.prs.len() as u64 + 1,
                head,
                base: b["target_branch"].as_str().unwrap_or("main").to_owned(),
                title: b["title"].as_str().unwrap_or_default().to_owned(),
                body: b["description"].as_str().unwrap_or_default().to_owned(),
                labels: b["labels"]
                    .as_str()
                    .unwrap_or_default()
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect(),
                state: "open".into(),
                created_at: now(),
                merge_commit: None,
            };
            let v = gl_mr(st, &pr);
            st.prs.push(pr);
            Reply::json(201, v)
        }
        ("GET", ["merge_requests"]) => {
            let head = req.query.get("source_branch").cloned().unwrap_or_default();
            let list: Vec<serde_json::Value> = st
                .prs
                .iter()
                .rev()
                .filter(|p| head.is_empty() || p.head == head)
                .map(|p| gl_mr(st, p))
                .collect();
            Reply::json(200, json!(list))
        }
        ("GET", ["merge_requests", n]) => {
            match st.prs.iter().find(|p| p.number.to_string() == *n) {
                Some(p) => Reply::json(200, gl_mr(st, p)),
                None => Reply::json(404, json!({"message": "404 Not found"})),
            }
        }
        ("PUT", ["merge_requests", n, "merge"]) => {
            let bare = st.bare.clone();
            let mergeable = st.mergeable;
            let Some(p) = st.prs.iter_mut().find(|p| p.number.to_string() == *n) else {
                return Reply::json(404, json!({"message": "404 Not found"}));
            };
            if p.state != "open" || !mergeable {
                return Reply::json(405, json!({"message": "405 Method Not Allowed"}));
            }
            match merge_in_bare(&bare, p, MergeStyle::Merge) {
                Ok(sha) => {
                    p.state = "merged".into();
                    p.merge_commit = Some(sha);
                    let v = gl_mr(
                        st,
                        st.prs.iter().find(|q| q.number.to_string() == *n).unwrap(),
                    );
                    Reply::json(200, v)
                }
                Err(e) => Reply::json(
                    406,
                    json!({"message": format!("Branch cannot be merged: {e}")}),
                ),
            }
        }
        _ => not_found(),
    }
}

/// The public key (SPKI PEM) of an RSA private key in PEM (PKCS#8 or PKCS#1), for
/// registering a test App.
pub fn public_pem_of(private_pem: &str) -> String {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(private_pem)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(private_pem))
        .expect("an RSA private key");
    rsa::RsaPublicKey::from(&key)
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .expect("PEM")
}
