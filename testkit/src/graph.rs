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
//! * `GET /beta/auditLogs/signIns` — sign-in logs, newest first, `$filter` on
//!   `signInEventTypes/any(t: t eq 'servicePrincipal')` (without it only interactive user
//!   sign-ins are listed: none here), `appId`, `servicePrincipalCredentialKeyId` and
//!   `createdDateTime ge`; `$top` pages with `@odata.nextLink` (`$skiptoken`); 403
//!   `Authentication_RequestFromNonPremiumTenantOrB2CTenant` for a tenant without P1/P2,
//!   403 `Authorization_RequestDenied` without `AuditLog.Read.All`.
//! * `GET /{tenant}/v2.0/.well-known/openid-configuration` — OpenID discovery; 400
//!   `AADSTS90002` for a tenant that does not exist.
//! * Graph errors as `{"error": {"code", "message", "innerError"}}`: 401
//!   `InvalidAuthenticationToken`, 403 `Authorization_RequestDenied`, 404
//!   `Request_ResourceNotFound`, 429 `TooManyRequests` / 503 `ServiceUnavailable` with
//!   `Retry-After`, 400 `CredentialInvalidLifetimeAsPerAppPolicy` and
//!   `CredentialTypeNotAllowedAsPerAppPolicy` from a tenant app-management policy.
//!
//! What the real service does and a test must be able to catch: a new secret signs in
//! only after a propagation window, and reads of an application lag its writes (both in
//! [`VirtualClock`] time, shared with the provider under test).

use crate::clock::VirtualClock;
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
/// Another tenant that exists, where none of the fake's applications live.
pub const OTHER_TENANT: &str = "99999999-2222-4333-8444-555555555555";
/// `x-identity-header` value the managed-identity endpoint expects.
pub const IDENTITY_HEADER: &str = "TEST-ONLY-identity-header";

/// A password credential of an application.
#[derive(Debug, Clone)]
pub struct Password {
    /// GUID.
    pub key_id: String,
    /// The secret (TEST-ONLY values; the fake keeps them to check sign-ins).
    pub secret: String,
    /// The name shown in the portal (not an identifier).
    pub display_name: Option<String>,
    /// Start of validity.
    pub start: DateTime<Utc>,
    /// End of validity.
    pub end: DateTime<Utc>,
    /// Virtual time it was added.
    pub born: std::time::Duration,
    /// Virtual time from which it signs in (addition plus the propagation window).
    pub usable_at: std::time::Duration,
    /// Virtual time it was removed (reads may still show it for the read lag).
    pub removed: Option<std::time::Duration>,
}

/// An application registration.
#[derive(Debug, Clone)]
pub struct App {
    /// Application (client) id.
    pub app_id: String,
    /// The name shown in the portal (not an identifier).
    pub display_name: String,
    /// Password credentials.
    pub passwords: Vec<Password>,
}

/// One service-principal sign-in in the logs.
#[derive(Debug, Clone)]
pub struct SignIn {
    /// The application (client) id that signed in.
    pub app_id: String,
    /// The password credential it used.
    pub key_id: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Everything the fake knows; tests read and tweak it.
#[derive(Debug)]
pub struct GraphState {
    /// Service-principal sign-ins (the tests add them: a workload still on a key).
    pub sign_ins: Vec<SignIn>,
    /// The tenant has Microsoft Entra ID P1/P2 (default): sign-in logs exist.
    pub premium: bool,
    /// The admin holds `AuditLog.Read.All` (default).
    pub audit_log_read: bool,
    /// Applications by object id.
    pub apps: BTreeMap<String, App>,
    /// Issued access tokens: token → client id.
    pub tokens: BTreeMap<String, String>,
    /// The next N Graph calls answer `throttle_status` with `Retry-After: retry_after`.
    pub throttle: u32,
    /// 429 (default) or 503.
    pub throttle_status: u16,
    /// Seconds in the `Retry-After` of throttled answers (default 1).
    pub retry_after: u64,
    /// The admin lacks `Application.ReadWrite.OwnedBy`: Graph calls answer 403.
    pub deny: bool,
    /// The next N token requests answer 503 (an Entra ID outage).
    pub token_outage: u32,
    /// A new password signs in only this long after it was added (AADSTS7000215 before).
    pub propagation: std::time::Duration,
    /// Reads of an application lag writes by this long.
    pub read_lag: std::time::Duration,
    /// Tenant policy: the longest lifetime a new password may have.
    pub max_password_lifetime: Option<Duration>,
    /// Tenant policy: no new passwords at all.
    pub block_passwords: bool,
    /// Virtual time.
    pub clock: Arc<VirtualClock>,
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

impl Default for GraphState {
    fn default() -> Self {
        GraphState {
            sign_ins: Vec::new(),
            premium: true,
            audit_log_read: true,
            apps: BTreeMap::new(),
            tokens: BTreeMap::new(),
            throttle: 0,
            throttle_status: 429,
            retry_after: 1,
            deny: false,
            token_outage: 0,
            propagation: std::time::Duration::ZERO,
            read_lag: std::time::Duration::ZERO,
            max_password_lifetime: None,
            block_passwords: false,
            clock: Arc::new(VirtualClock::default()),
            log: Vec::new(),
        }
    }
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
            born: std::time::Duration::ZERO,
            usable_at: std::time::Duration::ZERO,
            removed: None,
        };
        let out = (p.key_id.clone(), p.secret.clone());
        self.apps.get_mut(object_id).expect("app").passwords.push(p);
        out
    }

    /// Key ids of `object_id`'s passwords (the truth, not a lagging read).
    pub fn key_ids(&self, object_id: &str) -> Vec<String> {
        self.apps
            .get(object_id)
            .map(|a| {
                a.passwords
                    .iter()
                    .filter(|p| p.removed.is_none())
                    .map(|p| p.key_id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether a read now shows `p` (reads lag writes by `read_lag`).
    fn visible(&self, p: &Password) -> bool {
        let now = self.clock.now();
        p.born + self.read_lag <= now && p.removed.is_none_or(|r| r + self.read_lag > now)
    }

    fn token_for(&mut self, client_id: &str) -> String {
        let token = format!("fake-graph-token-{}", guid());
        self.tokens.insert(token.clone(), client_id.into());
        token
    }

    fn sign_in(&mut self, r: &Request) -> Reply {
        if self.token_outage > 0 {
            self.token_outage -= 1;
            return entra_error(
                503,
                "temporarily_unavailable",
                90033,
                "A transient error has occurred. Please try again.",
            );
        }
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
            let Some(p) = app
                .passwords
                .iter()
                .find(|p| p.secret == secret && p.removed.is_none())
            else {
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
            if self.clock.now() < p.usable_at {
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

    /// `GET /beta/auditLogs/signIns`.
    fn sign_ins(&mut self, r: &Request) -> Reply {
        let caller = r.bearer().and_then(|t| self.tokens.get(t)).cloned();
        if caller.is_none() {
            return graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
            );
        }
        if !self.premium {
            return graph_error(
                403,
                "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                "Neither tenant is B2C or tenant doesn't have premium license",
            );
        }
        if !self.audit_log_read || caller.as_deref() != Some(ADMIN_CLIENT_ID) {
            return graph_error(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            );
        }
        let filter = r.query.get("$filter").cloned().unwrap_or_default();
        let quoted = |field: &str| -> Option<String> {
            let rest = filter.split(&format!("{field} eq '")).nth(1)?;
            Some(rest.split('\'').next()?.to_owned())
        };
        let since = filter
            .split("createdDateTime ge ")
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .map(|v| v.parse::<DateTime<Utc>>());
        let since = match since {
            Some(Err(_)) => {
                return graph_error(400, "BadRequest", "Invalid filter clause");
            }
            Some(Ok(t)) => Some(t),
            None => None,
        };
        let service_principal = filter.contains("signInEventTypes/any(t: t eq 'servicePrincipal')");
        let (app, key) = (quoted("appId"), quoted("servicePrincipalCredentialKeyId"));
        let mut hits: Vec<&SignIn> = self
            .sign_ins
            .iter()
            .filter(|_| service_principal)
            .filter(|s| app.as_ref().is_none_or(|a| *a == s.app_id))
            .filter(|s| key.as_ref().is_none_or(|k| *k == s.key_id))
            .filter(|s| since.is_none_or(|t| s.at >= t))
            .collect();
        hits.sort_by_key(|s| std::cmp::Reverse(s.at));
        let top: usize = r
            .query
            .get("$top")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000)
            .clamp(1, 1000);
        let skip: usize = r
            .query
            .get("$skiptoken")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let page: Vec<Value> = hits
            .iter()
            .skip(skip)
            .take(top)
            .map(|s| {
                json!({
                    "id": guid(),
                    "createdDateTime": ts(s.at),
                    "appId": s.app_id,
                    "servicePrincipalCredentialKeyId": s.key_id,
                    "signInEventTypes": ["servicePrincipal"],
                    "status": {"errorCode": 0},
                })
            })
            .collect();
        let mut body = json!({
            "@odata.context": "https://graph.microsoft.com/beta/$metadata#auditLogs/signIns",
            "value": page,
        });
        if hits.len() > skip + top {
            body["@odata.nextLink"] = json!(format!(
                "https://graph.microsoft.com/beta/auditLogs/signIns?$top={top}&$skiptoken={}",
                skip + top
            ));
        }
        Reply::json(200, body)
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
            let (code, text) = if self.throttle_status == 503 {
                (
                    "ServiceUnavailable",
                    "The service is temporarily unavailable.",
                )
            } else {
                ("TooManyRequests", "Too many requests.")
            };
            return graph_error(self.throttle_status, code, text)
                .header("retry-after", &self.retry_after.to_string());
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
        let visible: Vec<bool> = self
            .apps
            .get(object_id)
            .map(|a| a.passwords.iter().map(|p| self.visible(p)).collect())
            .unwrap_or_default();
        let now_virtual = self.clock.now();
        let (max_lifetime, blocked, propagation) = (
            self.max_password_lifetime,
            self.block_passwords,
            self.propagation,
        );
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
                    "passwordCredentials": app.passwords.iter().zip(&visible).filter(|(_, v)| **v).map(|(p, _)| password_json(p, false)).collect::<Vec<_>>(),
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
                if blocked {
                    return graph_error(
                        400,
                        "CredentialTypeNotAllowedAsPerAppPolicy",
                        "Password credentials are not allowed as per assigned policy 'f0f1c2d3-0000-4000-8000-0000000000aa'.",
                    );
                }
                if max_lifetime.is_some_and(|max| end - start > max) {
                    return graph_error(
                        400,
                        "CredentialInvalidLifetimeAsPerAppPolicy",
                        "Credential lifetime exceeds the max value allowed as per assigned policy 'f0f1c2d3-0000-4000-8000-0000000000aa'.",
                    );
                }
                let p = Password {
                    key_id: guid(),
                    secret: new_secret(),
                    display_name: pc["displayName"].as_str().map(str::to_owned),
                    start,
                    end,
                    born: now_virtual,
                    usable_at: now_virtual + propagation,
                    removed: None,
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
                let Some(p) = app
                    .passwords
                    .iter_mut()
                    .find(|p| p.key_id.eq_ignore_ascii_case(key_id) && p.removed.is_none())
                else {
                    return graph_error(
                        400,
                        "Request_BadRequest",
                        &format!("No password credential found with keyId '{key_id}'."),
                    );
                };
                p.removed = Some(now_virtual);
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
        if let Some(tenant) = r
            .path
            .strip_prefix('/')
            .and_then(|p| p.strip_suffix("/v2.0/.well-known/openid-configuration"))
        {
            return discovery(tenant);
        }
        if r.method == "POST" && r.path == format!("/{OTHER_TENANT}/oauth2/v2.0/token") {
            let form: BTreeMap<String, String> =
                form_urlencoded::parse(&r.body).into_owned().collect();
            let client = form.get("client_id").cloned().unwrap_or_default();
            return entra_error(
                400,
                "unauthorized_client",
                700016,
                &format!(
                    "Application with identifier '{client}' was not found in the directory '{OTHER_TENANT}'. This can happen if the application has not been installed by the administrator of the tenant."
                ),
            );
        }
        if r.method == "GET" && r.path == "/beta/auditLogs/signIns" {
            return self.sign_ins(&r);
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

/// OpenID discovery for `tenant`: the document for a tenant that exists, AADSTS90002 else.
fn discovery(tenant: &str) -> Reply {
    if tenant != TENANT && tenant != OTHER_TENANT {
        return entra_error(
            400,
            "invalid_tenant",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    Reply::json(
        200,
        json!({
            "token_endpoint": format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"),
            "issuer": format!("https://login.microsoftonline.com/{tenant}/v2.0"),
            "authorization_endpoint": format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize"),
            "jwks_uri": format!("https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys"),
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        }),
    )
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

    /// Shares `clock` with the provider under test: propagation and read lag use it.
    pub fn use_clock(&self, clock: Arc<VirtualClock>) {
        self.state().clock = clock;
    }

    /// Base URL for Graph (`…/v1.0`).
    pub fn graph_url(&self) -> String {
        format!("{}/v1.0", self.server.url)
    }
}
