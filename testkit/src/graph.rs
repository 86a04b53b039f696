//! A fake Microsoft Entra ID token endpoint plus the Microsoft Graph `applications` API
//! surface secret-manager uses, with the real paths, JSON and error envelopes:
//!
//! * `POST /{tenant}/oauth2/v2.0/token` — client-credentials grant (form body), the Entra
//!   error shape (`error`, `error_description` with an `AADSTS` code, `error_codes`).
//! * `GET /msi/token` — the App Service managed-identity endpoint (`IDENTITY_ENDPOINT`).
//! * `GET /v1.0/applications/{object-id}` — the application with `passwordCredentials`
//!   (`secretText` always null on reads).
//! * `POST /v1.0/applications/{object-id}/addPassword` — 200 with the new
//!   `passwordCredential` including `secretText`.
//! * `POST /v1.0/applications/{object-id}/removePassword` — 204.
//! * Graph errors as `{"error": {"code", "message", "innerError"}}`: 401
//!   `InvalidAuthenticationToken`, 403 `Authorization_RequestDenied`, 404
//!   `Request_ResourceNotFound`, 429 `TooManyRequests` with `Retry-After`.

use crate::server::{Reply, Request, TestServer};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rand::Rng;
use rand::distributions::Alphanumeric;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Client id of the principal secret-manager itself signs in as.
pub const ADMIN_CLIENT_ID: &str = "00000000-aaaa-4bbb-8ccc-000000000001";
/// Its client secret (TEST-ONLY).
pub const ADMIN_SECRET: &str = "TEST-ONLY-admin-client-secret";
/// The tenant.
pub const TENANT: &str = "11111111-2222-4333-8444-555555555555";
/// `x-identity-header` value the managed-identity endpoint expects.
pub const IDENTITY_HEADER: &str = "TEST-ONLY-identity-header";

/// A password credential of an application.
#[derive(Debug, Clone)]
pub struct Password {
    /// GUID.
    pub key_id: String,
    /// The secret (TEST-ONLY values; the fake keeps them to check sign-ins).
    pub secret: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Start of validity.
    pub start: DateTime<Utc>,
    /// End of validity.
    pub end: DateTime<Utc>,
}

/// An application registration.
#[derive(Debug, Clone)]
pub struct App {
    /// Application (client) id.
    pub app_id: String,
    /// Display name.
    pub display_name: String,
    /// Password credentials.
    pub passwords: Vec<Password>,
}

/// Everything the fake knows; tests read and tweak it.
#[derive(Debug, Default)]
pub struct GraphState {
    /// Applications by object id.
    pub apps: BTreeMap<String, App>,
    /// Issued access tokens: token → client id.
    pub tokens: BTreeMap<String, String>,
    /// The next N Graph calls answer 429.
    pub throttle: u32,
    /// The admin lacks `Application.ReadWrite.OwnedBy`: Graph calls answer 403.
    pub deny: bool,
    /// The next N sign-ins with a password younger than a minute fail with AADSTS7000215
    /// (a new secret that has not propagated yet).
    pub unpropagated: u32,
    /// `METHOD path` of every request, in order.
    pub log: Vec<String>,
}

/// A running fake Entra ID + Graph.
#[derive(Debug)]
pub struct FakeGraph {
    /// The HTTPS server (`url` is both the authority host and the Graph host).
    pub server: TestServer,
    /// Shared state.
    pub state: Arc<Mutex<GraphState>>,
}

fn guid() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0xfff,
        u16::from_be_bytes([b[8], b[9]]) & 0xfff,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn graph_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": {"code": code, "message": message, "innerError": {
            "date": ts(Utc::now()), "request-id": guid(), "client-request-id": guid()}}}),
    )
}

fn entra_error(status: u16, error: &str, code: u32, text: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": error,
               "error_description": format!("AADSTS{code}: {text} Trace ID: {} Correlation ID: {} Timestamp: {}", guid(), guid(), Utc::now().format("%Y-%m-%d %H:%M:%SZ")),
               "error_codes": [code], "timestamp": Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
               "trace_id": guid(), "correlation_id": guid(),
               "error_uri": format!("https://login.microsoftonline.com/error?code={code}")}),
    )
}

fn password_json(p: &Password, with_secret: bool) -> Value {
    json!({
        "customKeyIdentifier": null,
        "displayName": p.display_name,
        "endDateTime": ts(p.end),
        "hint": &p.secret[..3],
        "keyId": p.key_id,
        "secretText": if with_secret { Value::String(p.secret.clone()) } else { Value::Null },
        "startDateTime": ts(p.start),
    })
}

/// A secret in the shape Entra issues (40 characters, `~` after the hint).
fn new_secret() -> String {
    let r: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(37)
        .map(char::from)
        .collect();
    format!("{}~{}", &r[..3], &r[3..])
}

impl GraphState {
    /// Registers an application; returns its object id.
    pub fn add_app(&mut self, app_id: &str, display_name: &str) -> String {
        let id = guid();
        self.apps.insert(
            id.clone(),
            App {
                app_id: app_id.into(),
                display_name: display_name.into(),
                passwords: Vec::new(),
            },
        );
        id
    }

    /// Adds a password to `object_id` the way the portal would; returns (keyId, secret).
    pub fn add_password(&mut self, object_id: &str, age: Duration) -> (String, String) {
        let start = Utc::now() - age;
        let p = Password {
            key_id: guid(),
            secret: new_secret(),
            display_name: Some("added in the portal".into()),
            start,
            end: start + Duration::days(730),
        };
        let out = (p.key_id.clone(), p.secret.clone());
        self.apps.get_mut(object_id).expect("app").passwords.push(p);
        out
    }

    /// Key ids of `object_id`'s passwords.
    pub fn key_ids(&self, object_id: &str) -> Vec<String> {
        self.apps
            .get(object_id)
            .map(|a| a.passwords.iter().map(|p| p.key_id.clone()).collect())
            .unwrap_or_default()
    }

    fn token_for(&mut self, client_id: &str) -> String {
        let token = format!("fake-graph-token-{}", guid());
        self.tokens.insert(token.clone(), client_id.into());
        token
    }

    fn sign_in(&mut self, r: &Request) -> Reply {
        let form: BTreeMap<String, String> = form_urlencoded::parse(&r.body).into_owned().collect();
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return entra_error(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type.",
            );
        }
        let client_id = form.get("client_id").cloned().unwrap_or_default();
        let secret = form.get("client_secret").cloned().unwrap_or_default();
        if client_id == ADMIN_CLIENT_ID {
            if secret != ADMIN_SECRET {
                return entra_error(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
                );
            }
        } else {
            let Some(app) = self.apps.values().find(|a| a.app_id == client_id) else {
                return entra_error(
                    400,
                    "unauthorized_client",
                    700016,
                    &format!(
                        "Application with identifier '{client_id}' was not found in the directory '{}'.",
                        TENANT
                    ),
                );
            };
            let now = Utc::now();
            let Some(p) = app.passwords.iter().find(|p| p.secret == secret) else {
                return entra_error(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
                );
            };
            if p.end < now {
                return entra_error(
                    401,
                    "invalid_client",
                    7000222,
                    "The provided client secret keys are expired.",
                );
            }
            if now - p.start < Duration::minutes(1) && self.unpropagated > 0 {
                self.unpropagated -= 1;
                return entra_error(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
                );
            }
        }
        let token = self.token_for(&client_id);
        Reply::json(
            200,
            json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}),
        )
    }

    fn managed_identity(&mut self, r: &Request) -> Reply {
        if r.headers.get("x-identity-header").map(String::as_str) != Some(IDENTITY_HEADER) {
            return Reply::json(401, json!({"statusCode": 401, "message": "Unauthorized"}));
        }
        let resource = r.query.get("resource").cloned().unwrap_or_default();
        let token = self.token_for(ADMIN_CLIENT_ID);
        let expires = (Utc::now() + Duration::hours(1)).timestamp();
        Reply::json(
            200,
            json!({"access_token": token, "expires_on": expires.to_string(), "resource": resource,
                   "token_type": "Bearer", "client_id": ADMIN_CLIENT_ID}),
        )
    }

    fn graph(&mut self, r: &Request, rest: &str) -> Reply {
        let caller = r.bearer().and_then(|t| self.tokens.get(t)).cloned();
        let Some(caller) = caller else {
            return graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
            );
        };
        if self.throttle > 0 {
            self.throttle -= 1;
            return graph_error(429, "TooManyRequests", "Too many requests.")
                .header("retry-after", "1");
        }
        let segs: Vec<&str> = rest.split('/').collect();
        let (object_id, action) = match segs.as_slice() {
            ["applications", id] => (*id, None),
            ["applications", id, action] => (*id, Some(*action)),
            _ => {
                return graph_error(
                    400,
                    "BadRequest",
                    &format!("Resource not found for the segment '{rest}'."),
                );
            }
        };
        if self.deny || caller != ADMIN_CLIENT_ID {
            return graph_error(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            );
        }
        let Some(app) = self.apps.get_mut(object_id) else {
            return graph_error(
                404,
                "Request_ResourceNotFound",
                &format!(
                    "Resource '{object_id}' does not exist or one of its queried reference-property objects are not present."
                ),
            );
        };
        match (r.method.as_str(), action) {
            ("GET", None) => Reply::json(
                200,
                json!({
                    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#applications/$entity",
                    "id": object_id, "appId": app.app_id, "displayName": app.display_name,
                    "passwordCredentials": app.passwords.iter().map(|p| password_json(p, false)).collect::<Vec<_>>(),
                }),
            ),
            ("POST", Some("addPassword")) => {
                let body = r.json();
                let pc = &body["passwordCredential"];
                let start = Utc::now();
                let end = pc["endDateTime"]
                    .as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .map(|d| d.with_timezone(&Utc))
                    .unwrap_or(start + Duration::days(730));
                let p = Password {
                    key_id: guid(),
                    secret: new_secret(),
                    display_name: pc["displayName"].as_str().map(str::to_owned),
                    start,
                    end,
                };
                let mut out = password_json(&p, true);
                out["@odata.context"] = json!(
                    "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.passwordCredential"
                );
                app.passwords.push(p);
                Reply::json(200, out)
            }
            ("POST", Some("removePassword")) => {
                let body = r.json();
                let Some(key_id) = body["keyId"].as_str() else {
                    return graph_error(
                        400,
                        "Request_BadRequest",
                        "Invalid value specified for property 'keyId' of resource 'Application'.",
                    );
                };
                let before = app.passwords.len();
                app.passwords.retain(|p| p.key_id != key_id);
                if app.passwords.len() == before {
                    return graph_error(
                        400,
                        "Request_BadRequest",
                        &format!("No password credential found with keyId '{key_id}'."),
                    );
                }
                Reply::empty(204)
            }
            _ => graph_error(
                405,
                "Request_BadRequest",
                "Specified HTTP method is not allowed for the request target.",
            ),
        }
    }

    fn handle(&mut self, r: Request) -> Reply {
        self.log.push(format!("{} {}", r.method, r.path));
        if r.method == "POST" && r.path == format!("/{TENANT}/oauth2/v2.0/token") {
            return self.sign_in(&r);
        }
        if r.method == "GET" && r.path == "/msi/token" {
            return self.managed_identity(&r);
        }
        if let Some(rest) = r.path.strip_prefix("/v1.0/") {
            let rest = rest.to_owned();
            return self.graph(&r, &rest);
        }
        if r.path.ends_with("/oauth2/v2.0/token") {
            return entra_error(400, "invalid_request", 90002, "Tenant not found.");
        }
        graph_error(404, "NotFound", "no such endpoint in the fake")
    }
}

impl FakeGraph {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> FakeGraph {
        let state = Arc::new(Mutex::new(GraphState::default()));
        let s = state.clone();
        let server = TestServer::start(move |r| s.lock().expect("graph state").handle(r)).await;
        FakeGraph { server, state }
    }

    /// Locks the state.
    pub fn state(&self) -> std::sync::MutexGuard<'_, GraphState> {
        self.state.lock().expect("graph state")
    }

    /// Base URL for Graph (`…/v1.0`).
    pub fn graph_url(&self) -> String {
        format!("{}/v1.0", self.server.url)
    }
}
