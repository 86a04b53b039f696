//! Fake forge credential APIs: GitLab project deploy tokens ([`FakeDeployTokens`], below) and
//! a fake GitHub deploy-keys API (REST "Deploy keys"): `GET /repos/{o}/{r}/keys` (paged
//! with `per_page` ≤ 100 and `page`, a `Link: rel="next"` header), `POST
//! /repos/{o}/{r}/keys` (`title`, `key`, `read_only`; 201 with the deploy key object; 422
//! "Validation Failed" for a key that is not an SSH public key or already in use),
//! `GET`/`DELETE /repos/{o}/{r}/keys/{id}` (200/204, 404 "Not Found"). `Authorization:
//! Bearer` must carry the token (401 "Bad credentials"); a repository the token does not
//! administer is a 404, as on GitHub. Every request is recorded, so a test can prove what
//! was (not) sent.

use crate::server::{Reply, Request, TestServer};
use serde_json::json;
use std::sync::{Arc, Mutex};

/// A deploy key the fake holds.
#[derive(Clone, Debug)]
pub struct FakeDeployKey {
    /// The key's id.
    pub id: u64,
    /// Repository (`owner/name`).
    pub repository: String,
    /// The public key as registered (type and base64, no comment).
    pub key: String,
    /// Title.
    pub title: String,
    /// Read-only.
    pub read_only: bool,
    /// When it was last used, if ever.
    pub last_used: Option<String>,
}

/// What the fake holds; tests read and change it.
#[derive(Debug, Default)]
pub struct DeployKeysState {
    /// Repositories the token administers.
    pub repositories: Vec<String>,
    /// The token the fake accepts.
    pub token: String,
    /// Keys, in creation order.
    pub keys: Vec<FakeDeployKey>,
    /// Every request: method and path (with query).
    pub requests: Vec<String>,
    next_id: u64,
}

/// A running fake GitHub deploy-keys API.
pub struct FakeDeployKeys {
    /// Shared state.
    pub state: Arc<Mutex<DeployKeysState>>,
    /// Base URL (plain HTTP on loopback).
    pub url: String,
    _server: TestServer,
}

impl FakeDeployKeys {
    /// A fake where `token` administers `repositories`.
    pub async fn start(repositories: &[&str], token: &str) -> FakeDeployKeys {
        let state = Arc::new(Mutex::new(DeployKeysState {
            repositories: repositories.iter().map(|r| r.to_string()).collect(),
            token: token.to_owned(),
            next_id: 71_000_001,
            ..DeployKeysState::default()
        }));
        let s = state.clone();
        let server = TestServer::start_http(move |req| handle(&mut s.lock().unwrap(), &req)).await;
        FakeDeployKeys {
            state,
            url: server.url.clone(),
            _server: server,
        }
    }

    /// The keys registered on `repository`.
    pub fn keys(&self, repository: &str) -> Vec<FakeDeployKey> {
        self.state
            .lock()
            .unwrap()
            .keys
            .iter()
            .filter(|k| k.repository == repository)
            .cloned()
            .collect()
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Marks key `id` as used at `at` (RFC 3339).
    pub fn used(&self, id: u64, at: &str) {
        if let Some(k) = self
            .state
            .lock()
            .unwrap()
            .keys
            .iter_mut()
            .find(|k| k.id == id)
        {
            k.last_used = Some(at.to_owned());
        }
    }
}

fn not_found() -> Reply {
    Reply::json(
        404,
        json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest/deploy-keys/deploy-keys", "status": "404"}),
    )
}

fn object(k: &FakeDeployKey, url: &str) -> serde_json::Value {
    json!({
        "id": k.id,
        "key": k.key,
        "url": format!("{url}/repos/{}/keys/{}", k.repository, k.id),
        "title": k.title,
        "verified": true,
        "created_at": "2026-12-01T10:00:00Z",
        "read_only": k.read_only,
        "added_by": "secret-manager-bot",
        "last_used": k.last_used,
        "enabled": true,
    })
}

fn handle(st: &mut DeployKeysState, req: &Request) -> Reply {
    let query = req
        .query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    st.requests.push(format!(
        "{} {}{}{query}",
        req.method,
        req.path,
        if query.is_empty() { "" } else { "?" }
    ));
    if req.bearer() != Some(st.token.as_str()) {
        return Reply::json(
            401,
            json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"}),
        );
    }
    let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let (repo, id) = match parts.as_slice() {
        ["repos", o, r, "keys"] => (format!("{o}/{r}"), None),
        ["repos", o, r, "keys", id] => (format!("{o}/{r}"), Some(*id)),
        _ => return not_found(),
    };
    if !st
        .repositories
        .iter()
        .any(|r| r.eq_ignore_ascii_case(&repo))
    {
        return not_found();
    }
    let base = "https://api.github.com";
    match (req.method.as_str(), id) {
        ("GET", None) => {
            let per_page: usize = req
                .query
                .get("per_page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(30)
                .clamp(1, 100);
            let page: usize = req
                .query
                .get("page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1)
                .max(1);
            let all: Vec<&FakeDeployKey> =
                st.keys.iter().filter(|k| k.repository == repo).collect();
            let items: Vec<serde_json::Value> = all
                .iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .map(|k| object(k, base))
                .collect();
            let mut reply = Reply::json(200, serde_json::Value::Array(items));
            if page * per_page < all.len() {
                reply = reply.header(
                    "link",
                    &format!(
                        "<{base}/repos/{repo}/keys?per_page={per_page}&page={}>; rel=\"next\"",
                        page + 1
                    ),
                );
            }
            reply
        }
        ("POST", None) => {
            let body = req.json();
            let key = body["key"].as_str().unwrap_or_default();
            let parts: Vec<&str> = key.split_whitespace().collect();
            let valid = parts.len() >= 2
                && parts[0].starts_with("ssh-")
                && parts[1].len() > 40
                && parts[1]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
            let error = |message: &str| {
                Reply::json(
                    422,
                    json!({
                        "message": "Validation Failed",
                        "errors": [{"resource": "PublicKey", "code": "custom", "field": "key", "message": message}],
                        "documentation_url": "https://docs.github.com/rest/deploy-keys/deploy-keys#create-a-deploy-key",
                        "status": "422"
                    }),
                )
            };
            if !valid {
                return error("key is invalid. You must supply a key in OpenSSH public key format");
            }
            let stored = format!("{} {}", parts[0], parts[1]);
            if st.keys.iter().any(|k| k.key == stored) {
                return error("key is already in use");
            }
            st.next_id += 1;
            let k = FakeDeployKey {
                id: st.next_id,
                repository: repo,
                key: stored,
                title: body["title"].as_str().unwrap_or_default().to_owned(),
                // GitHub's default is read-write; the tool must ask for read-only.
                read_only: body["read_only"].as_bool().unwrap_or(false),
                last_used: None,
            };
            let v = object(&k, base);
            st.keys.push(k);
            Reply::json(201, v)
        }
        ("GET", Some(id)) => match st
            .keys
            .iter()
            .find(|k| k.repository == repo && k.id.to_string() == id)
        {
            Some(k) => Reply::json(200, object(k, base)),
            None => not_found(),
        },
        ("DELETE", Some(id)) => {
            let before = st.keys.len();
            st.keys
                .retain(|k| !(k.repository == repo && k.id.to_string() == id));
            if st.keys.len() < before {
                Reply::empty(204)
            } else {
                not_found()
            }
        }
        _ => not_found(),
    }
}

/// A deploy token the fake GitLab holds.
#[derive(Clone, Debug)]
pub struct FakeDeployToken {
    /// The token's id.
    pub id: u64,
    /// Project path (`group/project`), or the group's path for a group token.
    pub project: String,
    /// A group deploy token (`/groups/:id/deploy_tokens`).
    pub group: bool,
    /// Name.
    pub name: String,
    /// `gitlab+deploy-token-<id>`.
    pub username: String,
    /// The token's value (shown once, at creation).
    pub token: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Revoked (GitLab keeps revoked tokens and lists them unless `active=true`).
    pub revoked: bool,
}

/// What the fake GitLab holds.
#[derive(Debug, Default)]
pub struct DeployTokensState {
    /// Projects the token maintains.
    pub projects: Vec<String>,
    /// Groups the token owns (group deploy tokens need the Owner role).
    pub groups: Vec<String>,
    /// The `PRIVATE-TOKEN` the fake accepts.
    pub token: String,
    /// Tokens, in creation order.
    pub tokens: Vec<FakeDeployToken>,
    /// Every request: method and path (with query).
    pub requests: Vec<String>,
    next_id: u64,
}

/// A running fake GitLab deploy-tokens API, project (`/api/v4/projects/:id/deploy_tokens`)
/// and group (`/api/v4/groups/:id/deploy_tokens`), `:id` the URL-encoded path: list (`active`, `per_page`, `page`), create (`name`,
/// `scopes`; 201 with the token's value, 400 for an unknown scope), get and delete
/// (revoke: 204; the token stays, `revoked: true`), 401 without the right
/// `PRIVATE-TOKEN`, 404 for a project the token does not maintain or a group it does not
/// own.
pub struct FakeDeployTokens {
    /// Shared state.
    pub state: Arc<Mutex<DeployTokensState>>,
    /// API URL (`http://127.0.0.1:<port>/api/v4`).
    pub url: String,
    _server: TestServer,
}

impl FakeDeployTokens {
    /// A fake where `token` maintains `projects`.
    pub async fn start(projects: &[&str], token: &str) -> FakeDeployTokens {
        let state = Arc::new(Mutex::new(DeployTokensState {
            projects: projects.iter().map(|p| p.to_string()).collect(),
            token: token.to_owned(),
            next_id: 4_000,
            ..DeployTokensState::default()
        }));
        let s = state.clone();
        let server =
            TestServer::start_http(move |req| handle_gitlab(&mut s.lock().unwrap(), &req)).await;
        FakeDeployTokens {
            state,
            url: format!("{}/api/v4", server.url),
            _server: server,
        }
    }

    /// Lets the token own `groups` too (group deploy tokens).
    pub fn own_groups(&self, groups: &[&str]) {
        self.state.lock().unwrap().groups = groups.iter().map(|g| g.to_string()).collect();
    }

    /// The tokens of `project` that are not revoked.
    pub fn active(&self, project: &str) -> Vec<FakeDeployToken> {
        self.active_of(project, false)
    }

    /// The group tokens of `group` that are not revoked.
    pub fn active_group(&self, group: &str) -> Vec<FakeDeployToken> {
        self.active_of(group, true)
    }

    fn active_of(&self, path: &str, group: bool) -> Vec<FakeDeployToken> {
        self.state
            .lock()
            .unwrap()
            .tokens
            .iter()
            .filter(|t| t.project == path && t.group == group && !t.revoked)
            .cloned()
            .collect()
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn gitlab_object(t: &FakeDeployToken, with_token: bool) -> serde_json::Value {
    let mut v = json!({
        "id": t.id,
        "name": t.name,
        "username": t.username,
        "expires_at": null,
        "revoked": t.revoked,
        "expired": false,
        "scopes": t.scopes,
    });
    if with_token {
        v["token"] = json!(t.token);
    }
    v
}

fn handle_gitlab(st: &mut DeployTokensState, req: &Request) -> Reply {
    let query = req
        .query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    st.requests.push(format!(
        "{} {}{}{query}",
        req.method,
        req.path,
        if query.is_empty() { "" } else { "?" }
    ));
    let gone = || Reply::json(404, json!({"message": "404 Project Not Found"}));
    if req.headers.get("private-token") != Some(&st.token) {
        return Reply::json(401, json!({"message": "401 Unauthorized"}));
    }
    // The path arrives percent-decoded: /api/v4/{projects,groups}/<path>/deploy_tokens[/id]
    let (group, rest) = if let Some(rest) = req.path.strip_prefix("/api/v4/projects/") {
        (false, rest)
    } else if let Some(rest) = req.path.strip_prefix("/api/v4/groups/") {
        (true, rest)
    } else {
        return gone();
    };
    let (project, id) = if let Some(p) = rest.strip_suffix("/deploy_tokens") {
        (p.to_owned(), None)
    } else if let Some((p, id)) = rest.rsplit_once("/deploy_tokens/") {
        (p.to_owned(), Some(id.to_owned()))
    } else {
        return gone();
    };
    let known = if group { &st.groups } else { &st.projects };
    if !known.iter().any(|p| p.eq_ignore_ascii_case(&project)) {
        return if group {
            Reply::json(404, json!({"message": "404 Group Not Found"}))
        } else {
            gone()
        };
    }
    let mine = |t: &FakeDeployToken| t.project == project && t.group == group;
    match (req.method.as_str(), id) {
        ("GET", None) => {
            let active = req.query.get("active").is_some_and(|a| a == "true");
            let per_page: usize = req
                .query
                .get("per_page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(20)
                .clamp(1, 100);
            let page: usize = req
                .query
                .get("page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1)
                .max(1);
            let items: Vec<serde_json::Value> = st
                .tokens
                .iter()
                .filter(|t| mine(t) && (!active || !t.revoked))
                .skip((page - 1) * per_page)
                .take(per_page)
                .map(|t| gitlab_object(t, false))
                .collect();
            Reply::json(200, serde_json::Value::Array(items))
        }
        ("POST", None) => {
            let body = req.json();
            let scopes: Vec<String> = body["scopes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let known = [
                "read_repository",
                "read_registry",
                "write_registry",
                "read_package_registry",
                "write_package_registry",
            ];
            if scopes.is_empty() || scopes.iter().any(|s| !known.contains(&s.as_str())) {
                return Reply::json(400, json!({"error": "scopes does not have a valid value"}));
            }
            st.next_id += 1;
            let id = st.next_id;
            let t = FakeDeployToken {
                id,
                project: project.clone(),
                group,
                name: body["name"].as_str().unwrap_or_default().to_owned(),
                username: format!("gitlab+deploy-token-{id}"),
                token: format!("gldt-{:020x}", rand_token(id)),
                scopes,
                revoked: false,
            };
            let v = gitlab_object(&t, true);
            st.tokens.push(t);
            Reply::json(201, v)
        }
        ("GET", Some(id)) => match st.tokens.iter().find(|t| mine(t) && t.id.to_string() == id) {
            Some(t) => Reply::json(200, gitlab_object(t, false)),
            None => Reply::json(404, json!({"message": "404 Deploy Token Not Found"})),
        },
        ("DELETE", Some(id)) => match st.tokens.iter_mut().find(|t| {
            t.project == project && t.group == group && t.id.to_string() == id && !t.revoked
        }) {
            Some(t) => {
                t.revoked = true;
                Reply::empty(204)
            }
            None => Reply::json(404, json!({"message": "404 Deploy Token Not Found"})),
        },
        _ => gone(),
    }
}

/// A token value that differs per id and per fake (not a secret: a test fixture).
fn rand_token(id: u64) -> u128 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    nanos ^ (u128::from(id) << 64)
}
