//! A fake GCP IAM Admin API (v1) for service-account keys, with the real REST shapes:
//!
//! * `GET    /v1/projects/{p}/serviceAccounts/{email}/keys[?keyTypes=USER_MANAGED]`
//! * `POST   /v1/projects/{p}/serviceAccounts/{email}/keys` — the new key with
//!   `privateKeyData` (base64 of a JSON key file); 400 `FAILED_PRECONDITION` at 10
//!   user-managed keys.
//! * `GET    /v1/projects/{p}/serviceAccounts/{email}/keys/{id}`
//! * `POST   /v1/projects/{p}/serviceAccounts/{email}/keys/{id}:disable` (and `:enable`)
//! * `DELETE /v1/projects/{p}/serviceAccounts/{email}/keys/{id}`
//! * `GET /v1/projects/{p}/locations/global/activityTypes/serviceAccountKeyLastAuthentication/activities:query`
//!   — the Policy Analyzer (same server in tests): `filter` on
//!   `activities.full_resource_name="//iam.googleapis.com/projects/{p}/serviceAccounts/{e}/keys/{id}"`,
//!   one activity per key with `lastAuthenticatedTime` as the start of the day of last use
//!   (midnight US Pacific, 08:00Z) and `observationPeriod`; `{}` when the key has none; 403
//!   `PERMISSION_DENIED` when the API is not enabled (`SERVICE_DISABLED`) or the caller lacks
//!   the permission.
//! * errors as `{"error": {"code", "message", "status", "details"}}`: 401
//!   `UNAUTHENTICATED`, 403 `PERMISSION_DENIED`, 404 `NOT_FOUND`, 429 `RESOURCE_EXHAUSTED`
//!   with a `google.rpc.RetryInfo` delay, 400 `FAILED_PRECONDITION` with a
//!   `google.rpc.PreconditionFailure` for the organization policy that forbids keys.
//!
//! What the real service does and a test must be able to catch: a new key authenticates
//! only after a propagation window; quota is per minute; deleting or disabling a key that
//! no longer exists answers 403, not 404 (all in [`VirtualClock`] time, shared with the
//! provider under test).
//!
//! Callers authenticate with a self-signed JWT (what `google-cloud-auth` makes from a
//! service-account key file): the fake checks the RS256 signature against the public key
//! of the key named by `kid`, that the key exists, is enabled and belongs to `iss`.

use crate::clock::VirtualClock;
use crate::server::{Reply, Request, TestServer};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::signature::Verifier;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// User-managed keys a service account may hold.
pub const MAX_KEYS: usize = 10;
/// The service account secret-manager itself runs as.
pub const ADMIN_EMAIL: &str = "secret-manager@ops-project.iam.gserviceaccount.com";

/// A key of a service account.
#[derive(Clone)]
pub struct Key {
    /// 40 hex characters.
    pub id: String,
    /// Public half, to check JWTs; `None` for keys seeded without material.
    pub public: Option<RsaPublicKey>,
    /// When the key was created.
    pub created: DateTime<Utc>,
    /// Whether the key is disabled (inactive).
    pub disabled: bool,
    /// `USER_MANAGED` or `SYSTEM_MANAGED`.
    pub user_managed: bool,
    /// Virtual time from which it authenticates (creation plus the propagation window).
    pub usable_at: std::time::Duration,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// A service account.
#[derive(Debug, Clone, Default)]
pub struct ServiceAccount {
    /// Project id.
    pub project: String,
    /// Keys, including one Google-managed key.
    pub keys: Vec<Key>,
    /// May administer keys of every account (the role secret-manager needs).
    pub admin: bool,
}

/// Everything the fake knows.
#[derive(Debug)]
pub struct IamState {
    /// Authentications with keys, as `(key id, when)` (the tests add them: a workload still
    /// on a key). The Policy Analyzer reports them by day.
    pub key_uses: Vec<(String, DateTime<Utc>)>,
    /// How far the Policy Analyzer's data reaches (`observationPeriod.endTime`); uses after
    /// it are not visible yet. Default: far in the future (everything is visible).
    pub analyzed_until: DateTime<Utc>,
    /// The Policy Analyzer API is not enabled in the project.
    pub analyzer_disabled: bool,
    /// Accounts by email.
    pub accounts: BTreeMap<String, ServiceAccount>,
    /// The next N calls answer 429 (with a 1 s RetryInfo).
    pub throttle: u32,
    /// Requests allowed per (virtual) minute; beyond, 429 with the delay to the next one.
    pub quota_per_minute: Option<u32>,
    /// Admin calls answer 403.
    pub deny: bool,
    /// A new key authenticates only this long after it was created (401 before).
    pub propagation: std::time::Duration,
    /// The organization policy `iam.disableServiceAccountKeyCreation` is enforced.
    pub keys_forbidden: bool,
    /// Deleting or disabling a key that does not exist answers 403 (what IAM does).
    pub missing_key_403: bool,
    /// Virtual time.
    pub clock: Arc<VirtualClock>,
    /// (virtual minute, requests in it).
    minute: (u64, u32),
    /// `METHOD path` of every request.
    pub log: Vec<String>,
}

impl Default for IamState {
    fn default() -> Self {
        IamState {
            key_uses: Vec::new(),
            analyzed_until: DateTime::<Utc>::MAX_UTC,
            analyzer_disabled: false,
            accounts: BTreeMap::new(),
            throttle: 0,
            quota_per_minute: None,
            deny: false,
            propagation: std::time::Duration::ZERO,
            keys_forbidden: false,
            missing_key_403: true,
            clock: Arc::new(VirtualClock::default()),
            minute: (0, 0),
            log: Vec::new(),
        }
    }
}

/// A running fake.
#[derive(Debug)]
pub struct FakeIam {
    /// The server (plain HTTP: the google-cloud-* clients build their own HTTP client, so
    /// they cannot be handed the test CA).
    pub server: TestServer,
    /// Shared state.
    pub state: Arc<Mutex<IamState>>,
    admin_key: String,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn quota_error(retry_secs: u64) -> Reply {
    Reply::json(
        429,
        json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
        "message": "Quota exceeded for quota metric 'Service account key requests' and limit 'Service account key requests per minute' of service 'iam.googleapis.com'.",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
             "domain": "googleapis.com", "metadata": {"service": "iam.googleapis.com",
             "quota_limit": "KeyRequestsPerMinutePerProject"}},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{retry_secs}s")}
        ]}}),
    )
}

fn error(code: u16, status: &str, message: &str, reason: Option<(&str, &str)>) -> Reply {
    let details = match reason {
        Some((reason, permission)) => json!([{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason, "domain": "iam.googleapis.com",
            "metadata": {"permission": permission}}]),
        None => json!([]),
    };
    Reply::json(
        code,
        json!({"error": {"code": code, "message": message, "status": status, "details": details}}),
    )
}

fn key_json(name_prefix: &str, k: &Key) -> Value {
    json!({
        "name": format!("{name_prefix}/keys/{}", k.id),
        "validAfterTime": ts(k.created),
        "validBeforeTime": if k.user_managed { "9999-12-31T23:59:59Z".to_string() } else { ts(k.created + Duration::days(14)) },
        "keyAlgorithm": "KEY_ALG_RSA_2048",
        "keyOrigin": "GOOGLE_PROVIDED",
        "keyType": if k.user_managed { "USER_MANAGED" } else { "SYSTEM_MANAGED" },
        "disabled": k.disabled,
    })
}

fn key_id() -> String {
    hex40(rand::random::<[u8; 20]>())
}

fn hex40(b: [u8; 20]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A JSON key file in the format Google issues.
fn key_file(project: &str, email: &str, id: &str, private: &RsaPrivateKey) -> String {
    let pem = private.to_pkcs8_pem(LineEnding::LF).expect("pkcs8");
    json!({
        "type": "service_account",
        "project_id": project,
        "private_key_id": id,
        "private_key": pem.as_str(),
        "client_email": email,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{}", email.replace('@', "%40")),
        "universe_domain": "googleapis.com",
    })
    .to_string()
}

impl IamState {
    /// Adds a service account (with its Google-managed key).
    pub fn add_account(&mut self, project: &str, email: &str) {
        self.accounts.insert(
            email.into(),
            ServiceAccount {
                project: project.into(),
                keys: vec![Key {
                    id: key_id(),
                    public: None,
                    created: Utc::now() - Duration::days(3),
                    disabled: false,
                    user_managed: false,
                    usable_at: std::time::Duration::ZERO,
                }],
                admin: false,
            },
        );
    }

    /// Seeds a user-managed key without usable material; returns its id.
    pub fn seed_key(&mut self, email: &str, age: Duration, disabled: bool) -> String {
        let id = key_id();
        self.accounts
            .get_mut(email)
            .expect("account")
            .keys
            .push(Key {
                id: id.clone(),
                public: None,
                created: Utc::now() - age,
                disabled,
                user_managed: true,
                usable_at: std::time::Duration::ZERO,
            });
        id
    }

    /// Ids of the user-managed keys of `email`.
    pub fn user_keys(&self, email: &str) -> Vec<String> {
        self.accounts
            .get(email)
            .map(|a| {
                a.keys
                    .iter()
                    .filter(|k| k.user_managed)
                    .map(|k| k.id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `email`'s key `id` is disabled.
    pub fn is_disabled(&self, email: &str, id: &str) -> Option<bool> {
        self.accounts
            .get(email)?
            .keys
            .iter()
            .find(|k| k.id == id)
            .map(|k| k.disabled)
    }

    /// The email of the caller, or the error reply.
    fn authenticate(&mut self, r: &Request) -> Result<String, Reply> {
        let unauth = || {
            error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
                None,
            )
        };
        let token = r.bearer().ok_or_else(unauth)?;
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(unauth());
        };
        let decode = |p: &str| -> Option<Value> {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()
        };
        let (Some(header), Some(claims)) = (decode(h), decode(c)) else {
            return Err(unauth());
        };
        let (Some(kid), Some(iss)) = (header["kid"].as_str(), claims["iss"].as_str()) else {
            return Err(unauth());
        };
        if header["alg"] != "RS256" || claims["sub"].as_str() != Some(iss) {
            return Err(unauth());
        }
        let now = Utc::now().timestamp();
        if claims["exp"].as_i64().is_none_or(|e| e < now) {
            return Err(unauth());
        }
        let account = self.accounts.get(iss).ok_or_else(unauth)?;
        let key = account
            .keys
            .iter()
            .find(|k| k.id == kid)
            .ok_or_else(unauth)?;
        let public = key.public.clone().ok_or_else(unauth)?;
        if key.disabled {
            return Err(unauth());
        }
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| unauth())?;
        let sig = Signature::try_from(sig.as_slice()).map_err(|_| unauth())?;
        VerifyingKey::<Sha256>::new(public)
            .verify(format!("{h}.{c}").as_bytes(), &sig)
            .map_err(|_| unauth())?;
        if self.clock.now() < key.usable_at {
            return Err(unauth());
        }
        Ok(iss.to_owned())
    }

    /// The Policy Analyzer's `serviceAccountKeyLastAuthentication` activities.
    fn key_activity(&mut self, caller: &str, project: &str, r: &Request) -> Reply {
        let permission = "policyanalyzer.serviceAccountKeyLastAuthenticationActivities.query";
        if self.analyzer_disabled {
            return Reply::json(
                403,
                json!({"error": {"code": 403, "status": "PERMISSION_DENIED",
                    "message": format!("Policy Analyzer API has not been used in project {project} before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/policyanalyzer.googleapis.com/overview?project={project} then retry."),
                    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED", "domain": "googleapis.com"}]}}),
            );
        }
        if !self.accounts.get(caller).is_some_and(|a| a.admin) || self.deny {
            return error(
                403,
                "PERMISSION_DENIED",
                &format!("Permission '{permission}' denied on resource (or it may not exist)."),
                Some(("IAM_PERMISSION_DENIED", permission)),
            );
        }
        let filter = r.query.get("filter").cloned().unwrap_or_default();
        let Some(name) = filter
            .strip_prefix("activities.full_resource_name=\"")
            .or_else(|| filter.strip_prefix("activities.fullResourceName=\""))
            .and_then(|f| f.strip_suffix('"'))
        else {
            return error(400, "INVALID_ARGUMENT", "Invalid filter.", None);
        };
        let prefix = format!("//iam.googleapis.com/projects/{project}/serviceAccounts/");
        let Some(key) = name
            .strip_prefix(&prefix)
            .and_then(|r| r.split("/keys/").nth(1))
        else {
            return Reply::json(200, json!({}));
        };
        let until = self.analyzed_until;
        let Some(last) = self
            .key_uses
            .iter()
            .filter(|(k, at)| k == key && *at <= until)
            .map(|(_, at)| *at)
            .max()
        else {
            return Reply::json(200, json!({}));
        };
        // The start of its day in US Pacific standard time (UTC-8), as the analyzer reports.
        let day = (last - Duration::hours(8)).date_naive();
        let day_start = day.and_hms_opt(8, 0, 0).expect("08:00").and_utc();
        let end = if until == DateTime::<Utc>::MAX_UTC {
            Utc::now()
        } else {
            until
        };
        Reply::json(
            200,
            json!({"activities": [{
                "activityType": "serviceAccountKeyLastAuthentication",
                "fullResourceName": name,
                "activity": {
                    "lastAuthenticatedTime": day_start.to_rfc3339_opts(SecondsFormat::Secs, true),
                    "serviceAccountKey": {"serviceAccountId": "100000000000000000001", "projectNumber": "123456789012", "fullResourceName": name},
                },
                "observationPeriod": {
                    "startTime": (end - Duration::days(400)).to_rfc3339_opts(SecondsFormat::Secs, true),
                    "endTime": end.to_rfc3339_opts(SecondsFormat::Secs, true),
                },
            }]}),
        )
    }

    fn handle(&mut self, r: Request) -> Reply {
        self.log.push(format!("{} {}", r.method, r.path));
        let caller = match self.authenticate(&r) {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        if self.throttle > 0 {
            self.throttle -= 1;
            return quota_error(1);
        }
        if let Some(limit) = self.quota_per_minute {
            let now = self.clock.now().as_secs();
            let minute = now / 60;
            if self.minute.0 != minute {
                self.minute = (minute, 0);
            }
            self.minute.1 += 1;
            if self.minute.1 > limit {
                return quota_error((minute + 1) * 60 - now);
            }
        }
        if let Some(project) = r.path.strip_prefix("/v1/projects/").and_then(|p| {
            p.strip_suffix(
                "/locations/global/activityTypes/serviceAccountKeyLastAuthentication/activities:query",
            )
        }) {
            let project = project.to_owned();
            return self.key_activity(&caller, &project, &r);
        }
        // /v1/projects/{p}/serviceAccounts/{email}/keys[/{id}[:verb]]
        let Some(rest) = r.path.strip_prefix("/v1/projects/") else {
            return error(404, "NOT_FOUND", "Requested entity was not found.", None);
        };
        let segs: Vec<&str> = rest.split('/').collect();
        let (project, email, key) = match segs.as_slice() {
            [p, "serviceAccounts", e, "keys"] => (*p, *e, None),
            [p, "serviceAccounts", e, "keys", k] => (*p, *e, Some(*k)),
            _ => return error(404, "NOT_FOUND", "Requested entity was not found.", None),
        };
        let (key, verb) =
            match key.map(|k| k.split_once(':').map_or((k, None), |(k, v)| (k, Some(v)))) {
                Some((k, v)) => (Some(k), v),
                None => (None, None),
            };
        let permission = match (r.method.as_str(), key, verb) {
            ("GET", None, None) => "iam.serviceAccountKeys.list",
            ("POST", None, None) => "iam.serviceAccountKeys.create",
            ("GET", Some(_), None) => "iam.serviceAccountKeys.get",
            ("POST", Some(_), Some("disable")) => "iam.serviceAccountKeys.disable",
            ("POST", Some(_), Some("enable")) => "iam.serviceAccountKeys.enable",
            ("DELETE", Some(_), None) => "iam.serviceAccountKeys.delete",
            _ => return error(404, "NOT_FOUND", "Requested entity was not found.", None),
        };
        let caller_is_admin = self.accounts.get(&caller).is_some_and(|a| a.admin);
        let resource = format!("projects/{project}/serviceAccounts/{email}");
        if !caller_is_admin || self.deny {
            return error(
                403,
                "PERMISSION_DENIED",
                &format!("Permission '{permission}' denied on resource (or it may not exist)."),
                Some(("IAM_PERMISSION_DENIED", permission)),
            );
        }
        let Some(account) = self
            .accounts
            .get_mut(email)
            .filter(|a| project == "-" || a.project == project)
        else {
            return error(
                404,
                "NOT_FOUND",
                &format!("Service account {resource} does not exist."),
                None,
            );
        };
        let prefix = format!("projects/{}/serviceAccounts/{email}", account.project);
        match (r.method.as_str(), key, verb) {
            ("GET", None, None) => {
                // Enum query parameters arrive by name or by number (gRPC transcoding).
                let only_user = matches!(
                    r.query.get("keyTypes").map(String::as_str),
                    Some("USER_MANAGED" | "1")
                );
                let keys: Vec<Value> = account
                    .keys
                    .iter()
                    .filter(|k| !only_user || k.user_managed)
                    .map(|k| key_json(&prefix, k))
                    .collect();
                Reply::json(200, json!({"keys": keys}))
            }
            ("POST", None, None) => {
                if self.keys_forbidden {
                    return Reply::json(
                        400,
                        json!({"error": {"code": 400, "status": "FAILED_PRECONDITION",
                            "message": "Key creation is not allowed on this service account.",
                            "details": [{"@type": "type.googleapis.com/google.rpc.PreconditionFailure",
                                "violations": [{"type": "constraints/iam.disableServiceAccountKeyCreation",
                                    "subject": format!("projects/{}?configvalue={email}", account.project),
                                    "description": "Key creation is not allowed on this service account."}]}]}}),
                    );
                }
                if account.keys.iter().filter(|k| k.user_managed).count() >= MAX_KEYS {
                    return error(
                        400,
                        "FAILED_PRECONDITION",
                        "Precondition check failed.",
                        None,
                    );
                }
                let private = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("rsa");
                let k = Key {
                    id: key_id(),
                    public: Some(private.to_public_key()),
                    created: Utc::now(),
                    disabled: false,
                    user_managed: true,
                    usable_at: self.clock.now() + self.propagation,
                };
                let file = key_file(&account.project, email, &k.id, &private);
                let mut out = key_json(&prefix, &k);
                out["privateKeyType"] = json!("TYPE_GOOGLE_CREDENTIALS_FILE");
                out["privateKeyData"] = json!(STANDARD.encode(file));
                account.keys.push(k);
                Reply::json(200, out)
            }
            (method, Some(id), verb) => {
                let Some(pos) = account.keys.iter().position(|k| k.id == id) else {
                    if self.missing_key_403 && method != "GET" {
                        return error(
                            403,
                            "PERMISSION_DENIED",
                            &format!(
                                "Permission '{permission}' denied on resource (or it may not exist)."
                            ),
                            Some(("IAM_PERMISSION_DENIED", permission)),
                        );
                    }
                    return error(
                        404,
                        "NOT_FOUND",
                        &format!("Service account key {prefix}/keys/{id} does not exist."),
                        None,
                    );
                };
                match (method, verb) {
                    ("GET", None) => Reply::json(200, key_json(&prefix, &account.keys[pos])),
                    ("POST", Some("disable")) => {
                        account.keys[pos].disabled = true;
                        Reply::json(200, json!({}))
                    }
                    ("POST", Some("enable")) => {
                        account.keys[pos].disabled = false;
                        Reply::json(200, json!({}))
                    }
                    ("DELETE", None) => {
                        account.keys.remove(pos);
                        Reply::json(200, json!({}))
                    }
                    _ => error(404, "NOT_FOUND", "Requested entity was not found.", None),
                }
            }
            _ => error(404, "NOT_FOUND", "Requested entity was not found.", None),
        }
    }
}

impl FakeIam {
    /// Starts the fake with the admin account secret-manager runs as.
    pub async fn start() -> FakeIam {
        let mut st = IamState::default();
        st.add_account("ops-project", ADMIN_EMAIL);
        let private = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("rsa");
        let id = key_id();
        let admin = st.accounts.get_mut(ADMIN_EMAIL).expect("admin");
        admin.admin = true;
        admin.keys.push(Key {
            id: id.clone(),
            public: Some(private.to_public_key()),
            created: Utc::now() - Duration::days(30),
            disabled: false,
            user_managed: true,
            usable_at: std::time::Duration::ZERO,
        });
        let admin_key = key_file("ops-project", ADMIN_EMAIL, &id, &private);
        let state = Arc::new(Mutex::new(st));
        let s = state.clone();
        let server = TestServer::start_http(move |r| s.lock().expect("iam state").handle(r)).await;
        FakeIam {
            server,
            state,
            admin_key,
        }
    }

    /// Locks the state.
    pub fn state(&self) -> std::sync::MutexGuard<'_, IamState> {
        self.state.lock().expect("iam state")
    }

    /// Shares `clock` with the provider under test: propagation and quota use it.
    pub fn use_clock(&self, clock: Arc<VirtualClock>) {
        self.state().clock = clock;
    }

    /// The admin's JSON key file (TEST-ONLY), for ADC (`GOOGLE_APPLICATION_CREDENTIALS`).
    pub fn admin_key_json(&self) -> &str {
        &self.admin_key
    }
}
