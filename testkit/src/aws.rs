//! A fast fake of the AWS IAM and STS Query APIs for benchmarks: the subset of actions a
//! rotation makes, in the wire shapes the real SDK parses (form-encoded `Action` POSTs,
//! `<ActionResponse><ActionResult>` XML, the `<ErrorResponse>` envelope with IAM's status
//! codes), answered from memory after a fixed, configurable delay.
//!
//! moto is the correctness fake (the whole IAM model, in Python); it answers each call in
//! ~5 ms of CPU under one interpreter lock, so it cannot show how the tool scales with
//! `--concurrency`. This one spends microseconds per call and holds each answer with an
//! async timer, so N calls in flight take one latency, as against the real service.
//!
//! Actions: `CreateUser`, `GetUser`, `ListAccessKeys`, `CreateAccessKey`,
//! `UpdateAccessKey`, `DeleteAccessKey`, `GetAccessKeyLastUsed` (IAM) and
//! `GetCallerIdentity` (STS; the caller is the access key id of the SigV4 `Credential`,
//! which the fake does not check further). Limits: two access keys per user
//! (`LimitExceeded`, 409), unknown users `NoSuchEntity` (404), STS with a key that does not
//! exist `InvalidClientTokenId` (403).
//!
//! Not part of the AWS API, for the benchmark: `POST /_fake/seed?users=N` creates N users
//! with one key each without delay and answers `[[user, keyId], ...]`; `GET /_fake/calls`
//! answers `{"Action": count, ...}` of the delayed calls since start or the last
//! `POST /_fake/reset`.

use crate::server::{Reply, Request, TestServer};
use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The account every user of the fake lives in.
pub const ACCOUNT: &str = "123456789012";
/// The access key id of the ambient (operator) credentials the fake accepts for STS.
pub const ADMIN_KEY_ID: &str = "testing";

const IAM_NS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";
const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// One access key.
#[derive(Debug, Clone)]
pub struct AccessKey {
    /// Access key id.
    pub id: String,
    /// Secret (TEST-ONLY, random).
    pub secret: String,
    /// `Active` or `Inactive`.
    pub active: bool,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// Last STS call signed with it.
    pub last_used: Option<DateTime<Utc>>,
}

/// Users, keys and the call counts.
#[derive(Debug, Default)]
pub struct AwsState {
    /// User name → its keys, oldest first.
    pub users: BTreeMap<String, Vec<AccessKey>>,
    /// Delayed calls by action.
    pub calls: BTreeMap<String, u64>,
}

/// A running fake IAM + STS over plain HTTP (point `AWS_ENDPOINT_URL` at `server.url`).
#[derive(Debug)]
pub struct FakeAws {
    /// The server.
    pub server: TestServer,
    /// Shared state.
    pub state: Arc<Mutex<AwsState>>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn request_id() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn random_chars(alphabet: &[u8], n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

fn new_key(now: DateTime<Utc>) -> AccessKey {
    AccessKey {
        id: format!(
            "AKIA{}",
            random_chars(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
        ),
        secret: random_chars(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            40,
        ),
        active: true,
        created: now,
        last_used: None,
    }
}

fn xml(status: u16, body: String) -> Reply {
    Reply {
        status,
        headers: vec![("content-type".into(), "text/xml".into())],
        body: body.into_bytes(),
    }
}

fn ok(ns: &str, action: &str, result: &str) -> Reply {
    xml(
        200,
        format!(
            "<{action}Response xmlns=\"{ns}\"><{action}Result>{result}</{action}Result>\
             <ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
            request_id()
        ),
    )
}

fn ok_empty(action: &str) -> Reply {
    xml(
        200,
        format!(
            "<{action}Response xmlns=\"{IAM_NS}\"><ResponseMetadata><RequestId>{}</RequestId>\
             </ResponseMetadata></{action}Response>",
            request_id()
        ),
    )
}

fn error(status: u16, ns: &str, code: &str, message: &str) -> Reply {
    xml(
        status,
        format!(
            "<ErrorResponse xmlns=\"{ns}\"><Error><Type>Sender</Type><Code>{code}</Code>\
             <Message>{message}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
            request_id()
        ),
    )
}

fn no_such_user(user: &str) -> Reply {
    error(
        404,
        IAM_NS,
        "NoSuchEntity",
        &format!("The user with name {user} cannot be found."),
    )
}

fn user_xml(user: &str) -> String {
    format!(
        "<User><Path>/</Path><UserName>{user}</UserName><UserId>AIDA{}</UserId>\
         <Arn>arn:aws:iam::{ACCOUNT}:user/{user}</Arn><CreateDate>2026-01-01T00:00:00Z</CreateDate></User>",
        user.len()
    )
}

/// The access key id of a SigV4 `Authorization` header.
fn signer(req: &Request) -> Option<&str> {
    let h = req.headers.get("authorization")?;
    let rest = &h[h.find("Credential=")? + "Credential=".len()..];
    rest.split('/').next()
}

impl AwsState {
    /// Creates `n` users `bench-NNNNN` (continuing the numbering) with one key each.
    pub fn seed(&mut self, n: usize) -> Vec<(String, String)> {
        let start = self.users.len();
        (start..start + n)
            .map(|i| {
                let user = format!("bench-{i:05}");
                let key = new_key(Utc::now());
                let id = key.id.clone();
                self.users.insert(user.clone(), vec![key]);
                (user, id)
            })
            .collect()
    }

    /// The ids of `user`'s keys.
    pub fn key_ids(&self, user: &str) -> Vec<String> {
        self.users
            .get(user)
            .map(|ks| ks.iter().map(|k| k.id.clone()).collect())
            .unwrap_or_default()
    }

    fn handle(&mut self, action: &str, p: &BTreeMap<String, String>, req: &Request) -> Reply {
        let now = Utc::now();
        let user = p.get("UserName").map(String::as_str).unwrap_or_default();
        match action {
            "CreateUser" => {
                if self.users.contains_key(user) {
                    return error(
                        409,
                        IAM_NS,
                        "EntityAlreadyExists",
                        &format!("User with name {user} already exists."),
                    );
                }
                self.users.insert(user.to_owned(), Vec::new());
                ok(IAM_NS, action, &user_xml(user))
            }
            "GetUser" => match self.users.get(user) {
                Some(_) => ok(IAM_NS, action, &user_xml(user)),
                None => no_such_user(user),
            },
            "ListAccessKeys" => {
                let Some(keys) = self.users.get(user) else {
                    return no_such_user(user);
                };
                let members: String = keys
                    .iter()
                    .map(|k| {
                        format!(
                            "<member><UserName>{user}</UserName><AccessKeyId>{}</AccessKeyId>\
                             <Status>{}</Status><CreateDate>{}</CreateDate></member>",
                            k.id,
                            if k.active { "Active" } else { "Inactive" },
                            ts(k.created)
                        )
                    })
                    .collect();
                ok(
                    IAM_NS,
                    action,
                    &format!(
                        "<AccessKeyMetadata>{members}</AccessKeyMetadata><IsTruncated>false</IsTruncated>"
                    ),
                )
            }
            "CreateAccessKey" => {
                let Some(keys) = self.users.get_mut(user) else {
                    return no_such_user(user);
                };
                if keys.len() >= 2 {
                    return error(
                        409,
                        IAM_NS,
                        "LimitExceeded",
                        &format!("Cannot exceed quota for AccessKeysPerUser: 2 ({user})"),
                    );
                }
                let k = new_key(now);
                let body = format!(
                    "<AccessKey><UserName>{user}</UserName><AccessKeyId>{}</AccessKeyId>\
                     <Status>Active</Status><SecretAccessKey>{}</SecretAccessKey>\
                     <CreateDate>{}</CreateDate></AccessKey>",
                    k.id,
                    k.secret,
                    ts(k.created)
                );
                keys.push(k);
                ok(IAM_NS, action, &body)
            }
            "UpdateAccessKey" | "DeleteAccessKey" => {
                let id = p.get("AccessKeyId").map(String::as_str).unwrap_or_default();
                let Some(keys) = self.users.get_mut(user) else {
                    return no_such_user(user);
                };
                let Some(i) = keys.iter().position(|k| k.id == id) else {
                    return error(
                        404,
                        IAM_NS,
                        "NoSuchEntity",
                        &format!("The Access Key with id {id} cannot be found."),
                    );
                };
                if action == "DeleteAccessKey" {
                    keys.remove(i);
                } else {
                    keys[i].active = p.get("Status").map(String::as_str) == Some("Active");
                }
                ok_empty(action)
            }
            "GetAccessKeyLastUsed" => {
                let id = p.get("AccessKeyId").map(String::as_str).unwrap_or_default();
                let found = self
                    .users
                    .iter()
                    .find_map(|(u, ks)| ks.iter().find(|k| k.id == id).map(|k| (u, k)));
                let Some((u, k)) = found else {
                    return error(
                        404,
                        IAM_NS,
                        "NoSuchEntity",
                        &format!("The Access Key with id {id} cannot be found."),
                    );
                };
                let last = match k.last_used {
                    Some(t) => format!(
                        "<LastUsedDate>{}</LastUsedDate><ServiceName>sts</ServiceName><Region>us-east-1</Region>",
                        ts(t)
                    ),
                    None => "<ServiceName>N/A</ServiceName><Region>N/A</Region>".into(),
                };
                ok(
                    IAM_NS,
                    action,
                    &format!(
                        "<UserName>{u}</UserName><AccessKeyLastUsed>{last}</AccessKeyLastUsed>"
                    ),
                )
            }
            "GetCallerIdentity" => {
                let id = signer(req).unwrap_or_default();
                if id == ADMIN_KEY_ID {
                    return ok(
                        STS_NS,
                        action,
                        &format!(
                            "<Arn>arn:aws:iam::{ACCOUNT}:user/operator</Arn>\
                             <UserId>AIDAOPERATOR</UserId><Account>{ACCOUNT}</Account>"
                        ),
                    );
                }
                for (u, ks) in self.users.iter_mut() {
                    if let Some(k) = ks.iter_mut().find(|k| k.id == id && k.active) {
                        k.last_used = Some(now);
                        return ok(
                            STS_NS,
                            action,
                            &format!(
                                "<Arn>arn:aws:iam::{ACCOUNT}:user/{u}</Arn>\
                                 <UserId>AIDA{}</UserId><Account>{ACCOUNT}</Account>",
                                u.len()
                            ),
                        );
                    }
                }
                error(
                    403,
                    STS_NS,
                    "InvalidClientTokenId",
                    "The security token included in the request is invalid.",
                )
            }
            other => error(
                400,
                IAM_NS,
                "InvalidAction",
                &format!("Could not find operation {other} for version 2010-05-08"),
            ),
        }
    }
}

impl FakeAws {
    /// Starts the fake on a free loopback port; every AWS call is answered `latency`
    /// after it arrived (needs a tokio runtime with timers).
    pub async fn start(latency: Duration) -> FakeAws {
        let state = Arc::new(Mutex::new(AwsState::default()));
        let s = state.clone();
        let server = TestServer::start_http_delayed(
            move |req: Request| {
                let mut st = s.lock().expect("aws state");
                match (req.method.as_str(), req.path.as_str()) {
                    ("POST", "/_fake/seed") => {
                        let n = req
                            .query
                            .get("users")
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(0);
                        Reply::json(200, json!(st.seed(n)))
                    }
                    ("GET", "/_fake/calls") => Reply::json(200, json!(st.calls)),
                    ("POST", "/_fake/reset") => {
                        st.calls.clear();
                        Reply::empty(204)
                    }
                    _ => {
                        let p: BTreeMap<String, String> =
                            form_urlencoded::parse(&req.body).into_owned().collect();
                        let action = p.get("Action").cloned().unwrap_or_default();
                        *st.calls.entry(action.clone()).or_default() += 1;
                        st.handle(&action, &p, &req)
                    }
                }
            },
            move |req: &Request| {
                if req.path.starts_with("/_fake/") {
                    Duration::ZERO
                } else {
                    latency
                }
            },
        )
        .await;
        FakeAws { server, state }
    }

    /// The state (users, keys, call counts).
    pub fn state(&self) -> std::sync::MutexGuard<'_, AwsState> {
        self.state.lock().expect("aws state")
    }
}
