#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod activity;
pub use activity::{POLICY_ANALYZER_ENV, POLICY_ANALYZER_URL};

// Re-exported so users of this crate see the contract it implements.
pub use secret_manager_provider as api;

use api::{
    Attempt, Capabilities, Clock, KeyId, KeyInfo, KeyStatus, Minted, Propagation, Provider,
    ProviderError, ProviderResult, Revoke, Revoked, SecretValue, SystemClock, Target,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use google_cloud_gax::error::rpc::{Code, StatusDetails};
use google_cloud_iam_admin_v1::client::Iam;
use google_cloud_iam_admin_v1::model::list_service_account_keys_request::KeyType;
use google_cloud_iam_admin_v1::model::{ServiceAccountKeyAlgorithm, ServiceAccountPrivateKeyType};
use std::collections::BTreeMap;
use std::time::Duration;

/// The value of the `source` annotation this crate serves.
pub const NAME: &str = "gcp";

/// User-managed keys a service account may hold at once.
pub const MAX_KEYS: u32 = 10;

/// How long a new key may take before Google accepts it ("60 seconds or more").
pub const PROPAGATION_WINDOW: Duration = Duration::from_secs(120);

/// The organization policy constraint that forbids new service-account keys.
pub const KEY_CREATION_CONSTRAINT: &str = "constraints/iam.disableServiceAccountKeyCreation";

/// Overrides the IAM endpoint (tests, private service connect): e.g. `http://127.0.0.1:8085`.
pub const ENDPOINT_ENV: &str = "SECRET_MANAGER_GCP_IAM_ENDPOINT";

/// GCP service-account keys through the IAM Admin API (`google-cloud-iam-admin-v1`).
///
/// Credentials are Application Default Credentials from `google-cloud-auth`
/// (`GOOGLE_APPLICATION_CREDENTIALS`, the gcloud ADC file, GKE workload identity / the
/// metadata server). The client library's own retries are off: the engine applies the
/// shared retry policy, which honours the `RetryInfo` delays IAM sends with quota errors.
pub struct GcpProvider {
    iam: Iam,
    endpoint: Option<String>,
    /// The credentials given, for the Policy Analyzer's REST calls (else ADC, built when
    /// first needed).
    credentials: Option<google_cloud_auth::credentials::Credentials>,
    /// Policy Analyzer base URL, without a trailing slash.
    analyzer_url: String,
    http: reqwest::Client,
    /// How long `verify` waits for a new key to propagate.
    pub propagation: Propagation,
    clock: std::sync::Arc<dyn Clock>,
    /// The preflight's key listing, for the `keys` that follows it.
    listed: api::Prefetched<Vec<KeyInfo>>,
    /// Application Default Credentials fall back to the metadata server: no key file is
    /// named or in the well-known place (then a token failure means no credentials).
    adc_is_metadata_server: bool,
}

/// What to do when there are no credentials.
const NO_CREDENTIALS: &str = "no GCP credentials found: set GOOGLE_APPLICATION_CREDENTIALS, \
     run `gcloud auth application-default login`, or use GKE workload identity";

/// Whether Application Default Credentials would come from the metadata server: no
/// `GOOGLE_APPLICATION_CREDENTIALS` and no file at gcloud's well-known path (AIP-4110).
fn adc_is_metadata_server() -> bool {
    if std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    let config = std::env::var_os("CLOUDSDK_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".config/gcloud"))
        });
    !config.is_some_and(|c| c.join("application_default_credentials.json").is_file())
}

impl std::fmt::Debug for GcpProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpProvider")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

fn permanent(operation: &'static str, message: String) -> ProviderError {
    ProviderError::Permanent {
        provider: NAME.into(),
        operation,
        message,
    }
}

/// Maps a client-library error to a [`ProviderError`].
fn classify(
    operation: &'static str,
    what: &str,
    e: &google_cloud_gax::error::Error,
) -> ProviderError {
    let provider = NAME.to_owned();
    // The error's Display names the RPC status and message; it never carries key material
    // (request bodies hold none, and failed responses have no privateKeyData).
    let message = match e.status() {
        Some(s) => format!("{:?}: {}", s.code, s.message),
        None => e.to_string(),
    };
    if let Some(s) = e.status() {
        if s.code == Code::ResourceExhausted && s.message.contains("Maximum number of keys") {
            return ProviderError::KeyLimit {
                provider,
                identity: what.to_owned(),
                count: MAX_KEYS as usize,
                hint: format!("IAM refused a new key ({message})"),
            };
        }
        return match s.code {
            Code::ResourceExhausted => ProviderError::Throttled {
                provider,
                operation,
                message,
                retry_after: retry_delay(s),
            },
            Code::Unavailable | Code::Internal | Code::DeadlineExceeded | Code::Aborted => {
                ProviderError::Transient {
                    provider,
                    operation,
                    message,
                }
            }
            Code::PermissionDenied | Code::Unauthenticated => ProviderError::AccessDenied {
                provider,
                operation,
                message: format!(
                    "{message} (the caller needs roles/iam.serviceAccountKeyAdmin on {what})"
                ),
            },
            Code::NotFound => ProviderError::NotFound {
                provider,
                what: what.to_owned(),
            },
            _ => ProviderError::Permanent {
                provider,
                operation,
                message,
            },
        };
    }
    if e.is_timeout() || e.is_io() || e.is_transport() || e.is_exhausted() {
        ProviderError::Transient {
            provider,
            operation,
            message,
        }
    } else if e.is_authentication() {
        // The auth library's own text joins two sentences of its retry policy ("might
        // succeed. but future attempts may succeed"): say what happened instead.
        ProviderError::AccessDenied {
            provider,
            operation,
            message: "the Application Default Credentials gave no access token: check GOOGLE_APPLICATION_CREDENTIALS, run `gcloud auth application-default login`, or use GKE workload identity".into(),
        }
    } else if let Some(code) = e.http_status_code().filter(|c| *c == 429 || *c >= 500) {
        ProviderError::Transient {
            provider,
            operation,
            message: format!("HTTP {code}: {message}"),
        }
    } else {
        ProviderError::Permanent {
            provider,
            operation,
            message,
        }
    }
}

/// The delay of a `google.rpc.RetryInfo` detail (quota errors carry one).
fn retry_delay(s: &google_cloud_gax::error::rpc::Status) -> Option<Duration> {
    s.details.iter().find_map(|d| match d {
        StatusDetails::RetryInfo(r) => r
            .retry_delay
            .as_ref()
            .map(|d| Duration::new(d.seconds().max(0) as u64, d.nanos().max(0) as u32)),
        _ => None,
    })
}

/// Whether a FAILED_PRECONDITION is the organization policy that forbids key creation.
fn org_policy_forbids_keys(s: &google_cloud_gax::error::rpc::Status) -> bool {
    s.details.iter().any(|d| match d {
        StatusDetails::PreconditionFailure(p) => p
            .violations
            .iter()
            .any(|v| v.r#type.contains(KEY_CREATION_CONSTRAINT)),
        _ => false,
    }) || s.message.contains("Key creation is not allowed")
}

fn to_utc(
    t: Option<&google_cloud_iam_admin_v1::model::ServiceAccountKey>,
) -> Option<DateTime<Utc>> {
    let ts = t?.valid_after_time.as_ref()?;
    DateTime::from_timestamp(ts.seconds(), ts.nanos().max(0) as u32)
}

fn account(t: &Target) -> ProviderResult<(String, &str)> {
    let project = t.param("project")?;
    let email = t.param("serviceAccount")?;
    // Both come from manifest annotations and become a resource path: a `/` or `..` in
    // one would name another resource. Only what GCP allows in them gets through.
    let project_ok = (6..=30).contains(&project.len())
        && project
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let email_ok = email.len() <= 254
        && email.contains('@')
        && email
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'.' | b'_' | b'-'));
    if !project_ok || !email_ok {
        return Err(ProviderError::Permanent {
            provider: NAME.into(),
            operation: "resolve service account",
            message: format!(
                "`{}` / `{}` is not a GCP project id and service account e-mail; fix the annotations",
                api::escape_for_display(project),
                api::escape_for_display(email)
            ),
        });
    }
    Ok((format!("projects/{project}/serviceAccounts/{email}"), email))
}

/// The last path segment of a key's resource name: its id.
fn key_id(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

async fn client(
    endpoint: Option<&str>,
    credentials: Option<google_cloud_auth::credentials::Credentials>,
) -> ProviderResult<Iam> {
    // No `.with_tracing()`: its DEBUG spans record the client itself, and the TRACE leak
    // test found private-key material in them. The provider logs its own calls instead.
    let mut b = Iam::builder().with_retry_policy(google_cloud_gax::retry_policy::NeverRetry);
    if let Some(e) = endpoint {
        b = b.with_endpoint(e);
    }
    if let Some(c) = credentials {
        b = b.with_credentials(c);
    }
    b.build().await.map_err(|e| ProviderError::AccessDenied {
        provider: NAME.into(),
        operation: "credentials",
        message: format!(
            "cannot set up the IAM client: {e} (set GOOGLE_APPLICATION_CREDENTIALS, run `gcloud auth application-default login`, or use GKE workload identity)"
        ),
    })
}

impl GcpProvider {
    /// [`classify`] for a call made with the provider's own credentials: a token that
    /// cannot be had where only the metadata server could give one is no credentials.
    fn classify(
        &self,
        operation: &'static str,
        what: &str,
        e: &google_cloud_gax::error::Error,
    ) -> ProviderError {
        if self.adc_is_metadata_server && e.is_authentication() {
            return ProviderError::NoCredentials {
                provider: NAME.into(),
                message: format!(
                    "{NO_CREDENTIALS} (no key file, and no metadata server gave a token)"
                ),
            };
        }
        classify(operation, what, e)
    }

    /// Application Default Credentials; the endpoint from `SECRET_MANAGER_GCP_IAM_ENDPOINT`.
    pub async fn from_env() -> ProviderResult<Self> {
        let endpoint = std::env::var(ENDPOINT_ENV).ok().filter(|v| !v.is_empty());
        let analyzer = std::env::var(POLICY_ANALYZER_ENV)
            .ok()
            .filter(|v| !v.is_empty());
        Ok(Self::new(endpoint, None)
            .await?
            .with_policy_analyzer(analyzer))
    }

    /// A provider against `endpoint` (default: `https://iam.googleapis.com`) with
    /// `credentials` (default: Application Default Credentials).
    pub async fn new(
        endpoint: Option<String>,
        credentials: Option<google_cloud_auth::credentials::Credentials>,
    ) -> ProviderResult<Self> {
        let given = credentials.is_some();
        Ok(GcpProvider {
            iam: client(endpoint.as_deref(), credentials.clone()).await?,
            endpoint,
            credentials,
            analyzer_url: POLICY_ANALYZER_URL.to_owned(),
            // Bearer tokens ride on these requests: no redirect is followed.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            propagation: Propagation::new(PROPAGATION_WINDOW),
            clock: SystemClock::shared(),
            listed: api::Prefetched::default(),
            adc_is_metadata_server: !given && adc_is_metadata_server(),
        })
    }

    /// Asks the Policy Analyzer at `url` (default: the public endpoint) about key use.
    pub fn with_policy_analyzer(mut self, url: Option<String>) -> Self {
        if let Some(u) = url {
            self.analyzer_url = u.trim_end_matches('/').to_owned();
        }
        self
    }

    /// Waits up to `window` for new keys to work (`providers.gcp.propagationWindow`).
    pub fn with_propagation_window(mut self, window: Duration) -> Self {
        self.propagation.window = window;
        self
    }

    /// Measures the propagation window on `clock` (tests use a virtual one).
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    async fn list(&self, t: &Target) -> ProviderResult<Vec<KeyInfo>> {
        let (name, _) = account(t)?;
        tracing::debug!(account = %name, "ListServiceAccountKeys");
        let out = self
            .iam
            .list_service_account_keys()
            .set_name(&name)
            .set_key_types([KeyType::UserManaged])
            .send()
            .await
            .map_err(|e| self.classify("ListServiceAccountKeys", &name, &e))?;
        let now = Utc::now();
        let mut keys: Vec<KeyInfo> = out
            .keys
            .iter()
            .map(|k| {
                // User-managed keys without an expiry say 9999-12-31.
                let expires = k
                    .valid_before_time
                    .as_ref()
                    .and_then(|t| DateTime::from_timestamp(t.seconds(), 0))
                    .filter(|t| t.timestamp() < 253_402_000_000);
                let expired = expires.is_some_and(|t| t < now);
                KeyInfo {
                    id: KeyId(key_id(&k.name).to_owned()),
                    created: to_utc(Some(k)),
                    status: if k.disabled {
                        KeyStatus::Inactive
                    } else if expired {
                        KeyStatus::Expired
                    } else {
                        KeyStatus::Active
                    },
                    last_used: None,
                    expires,
                }
            })
            .collect();
        keys.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(keys)
    }
}

#[async_trait]
impl Provider for GcpProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_keys_per_identity: Some(MAX_KEYS),
            can_disable: true,
            needs_propagation: true,
            reports_last_use: false,
        }
    }

    async fn preflight(&self, t: &Target) -> ProviderResult<()> {
        // The account exists and its keys may be listed: that listing is also what the
        // `keys` right after it needs, so it is kept for that call.
        let keys = self.list(t).await?;
        self.listed.put(&account(t)?.0, keys);
        Ok(())
    }

    async fn keys(&self, t: &Target) -> ProviderResult<Vec<KeyInfo>> {
        match self.listed.take(&account(t)?.0) {
            Some(keys) => Ok(keys),
            None => self.list(t).await,
        }
    }

    async fn mint(&self, t: &Target) -> ProviderResult<Minted> {
        let (name, email) = account(t)?;
        self.listed.forget(&name);
        // No slot is freed here: the engine decides which keys may go (only keys it
        // minted itself). A full account is IAM's FAILED_PRECONDITION (or, from older
        // deployments, RESOURCE_EXHAUSTED "Maximum number of keys"), mapped to KeyLimit.
        tracing::debug!(account = %name, "CreateServiceAccountKey");
        let key = self
            .iam
            .create_service_account_key()
            .set_name(&name)
            .set_private_key_type(ServiceAccountPrivateKeyType::TypeGoogleCredentialsFile)
            .set_key_algorithm(ServiceAccountKeyAlgorithm::KeyAlgRsa2048)
            .send()
            .await;
        let key = match key {
            Ok(k) => k,
            Err(e) => return Err(self.create_failed(t, &name, email, &e).await),
        };
        // Never Debug-print `key`: its Debug shows the private key. Only these fields are read.
        let id = key_id(&key.name).to_owned();
        let created = to_utc(Some(&key)).unwrap_or_else(Utc::now);
        let file = String::from_utf8(key.private_key_data.to_vec())
            .map(SecretValue::new)
            .map_err(|_| {
                permanent(
                    "CreateServiceAccountKey",
                    "privateKeyData is not a JSON key file".into(),
                )
            })?;
        drop(key);
        let mut fields = BTreeMap::new();
        fields.insert("KeyFileJson".to_owned(), file);
        fields.insert("KeyId".to_owned(), SecretValue::new(id.clone()));
        fields.insert("ClientEmail".to_owned(), SecretValue::new(email));
        Ok(Minted {
            key_id: KeyId(id),
            created,
            fields,
            operator: None,
        })
    }

    async fn verify(&self, m: &Minted) -> ProviderResult<()> {
        let file = m
            .fields
            .get("KeyFileJson")
            .ok_or_else(|| permanent("verify", "minted credential lacks KeyFileJson".into()))?;
        let json: serde_json::Value = serde_json::from_str(file.expose())
            .map_err(|_| permanent("verify", "the key file is not JSON".into()))?;
        let email = json["client_email"].as_str().unwrap_or_default().to_owned();
        let project = json["project_id"].as_str().unwrap_or("-").to_owned();
        let credentials = google_cloud_auth::credentials::service_account::Builder::new(json)
            .build()
            .map_err(|e| permanent("verify", format!("the new key is not usable: {e}")))?;
        let as_new_key = client(self.endpoint.as_deref(), Some(credentials)).await?;
        let name = format!(
            "projects/{project}/serviceAccounts/{email}/keys/{}",
            m.key_id
        );
        // Authenticating as the account itself: 200, or 403 when the account may not read
        // its own keys, both prove the key works; 401 means IAM has not propagated it yet.
        self.propagation
            .wait(
                self.clock.as_ref(),
                "authenticate with the new key",
                || async {
                    tracing::debug!(key = %name, "GetServiceAccountKey as the new key");
                    match as_new_key
                        .get_service_account_key()
                        .set_name(&name)
                        .send()
                        .await
                    {
                        Ok(_) => Attempt::Done(()),
                        Err(e) if e.status().is_some_and(|s| s.code == Code::PermissionDenied) => {
                            Attempt::Done(())
                        }
                        Err(e) => match classify("verify", &name, &e) {
                            e @ (ProviderError::AccessDenied { .. }
                            | ProviderError::Transient { .. }
                            | ProviderError::Throttled { .. }) => Attempt::Pending(e),
                            e => Attempt::Failed(e),
                        },
                    }
                },
            )
            .await
    }

    async fn revoke(&self, t: &Target, key: &KeyId, how: Revoke) -> ProviderResult<Revoked> {
        let (name, _) = account(t)?;
        self.listed.forget(&name);
        let key_name = format!("{name}/keys/{key}");
        tracing::debug!(key = %key_name, ?how, "revoke");
        let result = match how {
            Revoke::Delete => self
                .iam
                .delete_service_account_key()
                .set_name(&key_name)
                .send()
                .await
                .map(drop)
                .map_err(|e| self.classify("DeleteServiceAccountKey", &key_name, &e)),
            Revoke::Disable => self
                .iam
                .disable_service_account_key()
                .set_name(&key_name)
                .send()
                .await
                .map(drop)
                .map_err(|e| self.classify("DisableServiceAccountKey", &key_name, &e)),
        };
        match result {
            Ok(()) => Ok(Revoked::Done),
            // Idempotent: an absent key is already revoked.
            Err(ProviderError::NotFound { .. }) => Ok(Revoked::AlreadyGone),
            // IAM also answers 403 for a key (or account) that no longer exists: confirm
            // with a list before reporting access denied.
            Err(e @ ProviderError::AccessDenied { .. }) => match self.list(t).await {
                Ok(keys) if !keys.iter().any(|k| &k.id == key) => {
                    tracing::debug!(key = %key_name, "403 on revoke, but the key is gone: already revoked");
                    Ok(Revoked::AlreadyGone)
                }
                Err(ProviderError::NotFound { .. }) => Ok(Revoked::AlreadyGone),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// From the Policy Analyzer's key activity (see `activity`).
    async fn usage_since(
        &self,
        t: &Target,
        key: &KeyId,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> ProviderResult<api::Usage> {
        self.activity_since(t, &key.0, since, now).await
    }
}

impl GcpProvider {
    /// Why CreateServiceAccountKey failed: a full account (KeyLimit), the organization
    /// policy that forbids keys, or whatever else IAM said.
    async fn create_failed(
        &self,
        t: &Target,
        name: &str,
        email: &str,
        e: &google_cloud_gax::error::Error,
    ) -> ProviderError {
        let err = self.classify("CreateServiceAccountKey", name, e);
        let Some(status) = e.status().filter(|s| s.code == Code::FailedPrecondition) else {
            return match err {
                ProviderError::KeyLimit {
                    provider,
                    count,
                    hint,
                    ..
                } => ProviderError::KeyLimit {
                    provider,
                    identity: format!("service account {email}"),
                    count,
                    hint,
                },
                other => other,
            };
        };
        if org_policy_forbids_keys(status) {
            return permanent(
                "CreateServiceAccountKey",
                format!(
                    "the organization policy {KEY_CREATION_CONSTRAINT} forbids new keys for {email} ({}): ask the organization's admins for an exception for this project, or move the workload to workload identity federation",
                    status.message
                ),
            );
        }
        // "Precondition check failed." is what IAM says at 10 keys; count to be sure.
        match self.list(t).await {
            Ok(keys) if keys.len() >= MAX_KEYS as usize => ProviderError::KeyLimit {
                provider: NAME.into(),
                identity: format!("service account {email}"),
                count: keys.len(),
                hint: format!("IAM refused a new key ({})", status.message),
            },
            _ => permanent(
                "CreateServiceAccountKey",
                format!(
                    "IAM refused a new key with FAILED_PRECONDITION ({}) although the account has room",
                    status.message
                ),
            ),
        }
    }
}
