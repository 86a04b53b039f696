#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod chain;
mod entra;
mod graph;
mod signins;

pub use chain::{CredentialChain, IMDS_PROBE_TIMEOUT, credential_chain, credential_chain_from};
pub use signins::LOG_DELAY as SIGN_IN_LOG_DELAY;
// Re-exported so users of this crate see the contract it implements.
pub use secret_manager_provider as api;

use api::{
    Capabilities, Clock, KeyId, KeyInfo, KeyStatus, Minted, Propagation, Provider, ProviderError,
    ProviderResult, Revoke, Revoked, SecretValue, SystemClock, Target,
};
use async_trait::async_trait;
use azure_core::credentials::{Secret, TokenCredential};
use chrono::Utc;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The value of the `source` annotation this crate serves.
pub const NAME: &str = "azure";

/// Microsoft Graph v1.0, the default endpoint.
pub const GRAPH_URL: &str = "https://graph.microsoft.com/v1.0";
/// The public-cloud Entra ID authority, the default login endpoint.
pub const AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// The scope every token is requested for (Graph, application permissions).
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// Overrides the Graph base URL (tests, national clouds): e.g. `https://graph.microsoft.us/v1.0`.
pub const GRAPH_URL_ENV: &str = "SECRET_MANAGER_AZURE_GRAPH_URL";
/// The standard azure-identity override of the login endpoint.
pub const AUTHORITY_HOST_ENV: &str = "AZURE_AUTHORITY_HOST";
/// How long a new client secret may take before Entra ID accepts it (4–18 s observed,
/// no SLA).
pub const PROPAGATION_WINDOW: Duration = Duration::from_secs(60);
/// The annotation that sets a credential's secret lifetime (e.g. `180d`).
pub const LIFETIME_PARAM: &str = "secretLifetime";

/// Where the provider talks to and with which HTTP client.
#[derive(Clone, Debug)]
pub struct AzureEndpoints {
    /// Graph base URL, without a trailing slash.
    pub graph_url: String,
    /// Entra ID authority host (`https://…`), used to verify new secrets.
    pub authority_host: String,
    /// The HTTP client for Graph and for sign-ins (shared with azure_identity).
    pub http: reqwest::Client,
}

impl AzureEndpoints {
    /// Endpoints from the environment (`SECRET_MANAGER_AZURE_GRAPH_URL`,
    /// `AZURE_AUTHORITY_HOST`), public cloud by default.
    pub fn from_env() -> AzureEndpoints {
        let var = |k: &str, d: &str| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| d.to_owned())
        };
        AzureEndpoints {
            graph_url: var(GRAPH_URL_ENV, GRAPH_URL)
                .trim_end_matches('/')
                .to_owned(),
            authority_host: var(AUTHORITY_HOST_ENV, AUTHORITY_HOST)
                .trim_end_matches('/')
                .to_owned(),
            // Bearer tokens and client secrets ride on these requests: no redirect is
            // followed to any host.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }

    /// azure_core client options that use this authority and HTTP client.
    pub fn client_options(&self) -> azure_core::http::ClientOptions {
        let mut cloud = azure_core::cloud::CustomConfiguration::default();
        cloud.authority_host = self.authority_host.clone();
        azure_core::http::ClientOptions {
            transport: Some(azure_core::http::Transport::new(Arc::new(
                self.http.clone(),
            ))),
            cloud: Some(Arc::new(cloud.into())),
            // The client library's retries are off: the shared policy (and, in verify,
            // the propagation window) decide, and the numbers in the docs stay true.
            retry: azure_core::http::RetryOptions::none(),
            ..Default::default()
        }
    }
}

/// Azure application password credentials through Microsoft Graph.
///
/// `mint` is `addPassword`, `revoke` is `removePassword` (Graph has no disable for
/// passwords, so `--revoke-mode disable` deletes), `keys` reads the application's
/// `passwordCredentials`, `verify` signs in with the new secret (client-credentials grant
/// through azure_identity's `ClientSecretCredential`), waiting while Entra ID propagates it.
pub struct AzureProvider {
    credential: Arc<dyn TokenCredential>,
    chain: Option<Arc<CredentialChain>>,
    endpoints: AzureEndpoints,
    home_tenant: Option<String>,
    secret_lifetime: Option<Duration>,
    /// How long `verify` waits for a new secret to work.
    pub propagation: Propagation,
    clock: Arc<dyn Clock>,
    /// The preflight's read of the application, for the `keys` that follows it.
    read: api::Prefetched<graph::Application>,
}

impl std::fmt::Debug for AzureProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureProvider")
            .field("graph_url", &self.endpoints.graph_url)
            .field("authority_host", &self.endpoints.authority_host)
            .finish_non_exhaustive()
    }
}

pub(crate) fn permanent(operation: &'static str, message: String) -> ProviderError {
    ProviderError::Permanent {
        provider: NAME.into(),
        operation,
        message,
    }
}

impl AzureProvider {
    /// The provider with the explicit credential chain and endpoints from the environment;
    /// `AZURE_TENANT_ID`, when set, is the tenant the applications must live in.
    pub fn from_env() -> ProviderResult<Self> {
        let endpoints = AzureEndpoints::from_env();
        let chain = credential_chain(&endpoints)?;
        tracing::debug!(chain = ?chain.names(), "azure credential chain");
        let home = std::env::var("AZURE_TENANT_ID")
            .ok()
            .filter(|t| !t.is_empty());
        Ok(Self::with_chain(chain, endpoints).with_home_tenant(home))
    }

    /// A provider that gets Graph tokens from `credential`.
    pub fn new(credential: Arc<dyn TokenCredential>, endpoints: AzureEndpoints) -> Self {
        AzureProvider {
            credential,
            chain: None,
            endpoints,
            home_tenant: None,
            secret_lifetime: None,
            propagation: Propagation::new(PROPAGATION_WINDOW),
            clock: SystemClock::shared(),
            read: api::Prefetched::default(),
        }
    }

    /// A provider that gets Graph tokens from `chain`, and names the link it used as the
    /// operator of the audit trail.
    pub fn with_chain(chain: Arc<CredentialChain>, endpoints: AzureEndpoints) -> Self {
        let mut p = Self::new(chain.clone(), endpoints);
        p.chain = Some(chain);
        p
    }

    /// The tenant this tool manages applications in: preflight refuses a manifest whose
    /// `tenantId` is another one.
    pub fn with_home_tenant(mut self, tenant: Option<String>) -> Self {
        self.home_tenant = tenant;
        self
    }

    /// New secrets end after `lifetime` (`providers.azure.secretLifetime`) unless the
    /// manifest says otherwise; by default Graph's own (two years).
    pub fn with_secret_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.secret_lifetime = lifetime;
        self
    }

    /// Waits up to `window` for new secrets to work (`providers.azure.propagationWindow`).
    pub fn with_propagation_window(mut self, window: Duration) -> Self {
        self.propagation.window = window;
        self
    }

    /// Measures the propagation window on `clock` (tests use a virtual one).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    async fn token(&self, operation: &'static str) -> ProviderResult<String> {
        let t = self
            .credential
            .get_token(&[GRAPH_SCOPE], None)
            .await
            .map_err(|e| entra::token_error(operation, &e))?;
        Ok(t.token.secret().to_owned())
    }

    /// The lifetime of a new secret for `t`: its annotation, else the setting.
    fn lifetime(&self, t: &Target) -> ProviderResult<Option<Duration>> {
        match t.params.get(LIFETIME_PARAM) {
            None => Ok(self.secret_lifetime),
            Some(v) => humantime::parse_duration(v.trim()).map(Some).map_err(|e| {
                permanent(
                    "addPassword",
                    format!("the secretLifetime annotation `{}` is not a duration ({e}); write e.g. 180d", api::escape_for_display(v)),
                )
            }),
        }
    }
}

#[async_trait]
impl Provider for AzureProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_keys_per_identity: None,
            can_disable: false,
            needs_propagation: true,
            reports_last_use: false,
        }
    }

    async fn preflight(&self, t: &Target) -> ProviderResult<()> {
        let tenant = t.param("tenantId")?;
        let client_id = t.param("clientId")?;
        let object_id = t.param("applicationObjectId")?;
        self.lifetime(t)?;
        // The tool's own sign-in first (cached for the calls that follow): a machine
        // without credentials is told so before any tenant lookup can fail for it.
        self.token("preflight").await?;
        // The tenant must exist, and be the one this tool manages the application in:
        // a secret is only ever valid in the application's home tenant.
        let tid = self.tenant_id(tenant).await?;
        if let Some(home) = &self.home_tenant
            && !home.eq_ignore_ascii_case(&tid)
            && !home.eq_ignore_ascii_case(tenant)
        {
            return Err(permanent(
                "preflight",
                format!(
                    "the manifest's tenantId is {tenant}, but this tool signs in to tenant {home} (AZURE_TENANT_ID), where the application lives; fix the annotation"
                ),
            ));
        }
        let app = self.application(object_id).await?;
        match app.app_id.as_deref() {
            // The read is also what the `keys` right after it needs: kept for that call.
            Some(a) if a.eq_ignore_ascii_case(client_id) => {
                self.read.put(object_id, app);
                Ok(())
            }
            other => Err(permanent(
                "preflight",
                format!(
                    "application {object_id} has appId {}, but the manifest's clientId is {client_id}; fix the annotation",
                    other.unwrap_or("(none)")
                ),
            )),
        }
    }

    async fn keys(&self, t: &Target) -> ProviderResult<Vec<KeyInfo>> {
        let object_id = t.param("applicationObjectId")?;
        let app = match self.read.take(object_id) {
            Some(app) => app,
            None => self.application(object_id).await?,
        };
        let now = Utc::now();
        let mut keys: Vec<KeyInfo> = app
            .password_credentials
            .iter()
            .map(|p| KeyInfo {
                id: KeyId(p.key_id.clone()),
                created: p.start_date_time,
                status: match p.end_date_time {
                    Some(end) if end < now => KeyStatus::Expired,
                    _ => KeyStatus::Active,
                },
                last_used: None,
                expires: p.end_date_time,
            })
            .collect();
        keys.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(keys)
    }

    async fn mint(&self, t: &Target) -> ProviderResult<Minted> {
        let tenant = t.param("tenantId")?;
        let client_id = t.param("clientId")?;
        let object_id = t.param("applicationObjectId")?;
        self.read.forget(object_id);
        let now = Utc::now();
        let mut credential = serde_json::json!({
            "displayName": format!("secret-manager {}", now.format("%Y-%m-%dT%H:%M:%SZ")),
        });
        if let Some(life) = self.lifetime(t)? {
            let end = now + chrono::Duration::from_std(life).unwrap_or(chrono::Duration::MAX);
            credential["endDateTime"] = end
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                .into();
        }
        let body = serde_json::json!({ "passwordCredential": credential });
        let http = &self.endpoints.http;
        let raw = self
            .graph(
                "addPassword",
                object_id,
                http.post(self.app_url(object_id, Some("addPassword")))
                    .json(&body),
            )
            .await?;
        let created: graph::PasswordCredential = serde_json::from_slice(&raw)
            .map_err(|e| permanent("addPassword", format!("unexpected response: {e}")))?;
        drop(raw);
        let secret = created
            .secret_text
            .map(SecretValue::new)
            .ok_or_else(|| permanent("addPassword", "response has no secretText".into()))?;
        let mut fields = BTreeMap::new();
        fields.insert("ClientId".to_owned(), SecretValue::new(client_id));
        fields.insert("ClientSecret".to_owned(), secret);
        fields.insert("TenantId".to_owned(), SecretValue::new(tenant));
        fields.insert("KeyId".to_owned(), SecretValue::new(created.key_id.clone()));
        Ok(Minted {
            key_id: KeyId(created.key_id),
            created: created.start_date_time.unwrap_or(now),
            fields,
            operator: self.chain.as_ref().and_then(|c| c.operator()),
        })
    }

    async fn verify(&self, m: &Minted) -> ProviderResult<()> {
        let field = |k: &str| {
            m.fields
                .get(k)
                .ok_or_else(|| permanent("verify", format!("minted credential lacks {k}")))
        };
        let tenant = field("TenantId")?.expose().to_owned();
        let client_id = field("ClientId")?.expose().to_owned();
        let secret = field("ClientSecret")?;
        let options = azure_identity::ClientSecretCredentialOptions {
            client_options: self.endpoints.client_options(),
        };
        let credential = azure_identity::ClientSecretCredential::new(
            &tenant,
            client_id.clone(),
            Secret::new(secret.expose().to_owned()),
            Some(options),
        )
        .map_err(|e| {
            permanent(
                "verify",
                format!("cannot build a client-secret credential: {e}"),
            )
        })?;
        // A new password is rejected (AADSTS7000215) until Entra ID has replicated it:
        // that is propagation. A wrong tenant, an expired secret or a disabled app is a
        // verdict that waiting does not change.
        self.propagation
            .wait(
                self.clock.as_ref(),
                "sign-in with the new secret",
                || async {
                    match credential.get_token(&[GRAPH_SCOPE], None).await {
                        Ok(_) => api::Attempt::Done(()),
                        Err(e) => entra::sign_in_outcome(&e, &tenant, &client_id),
                    }
                },
            )
            .await
    }

    async fn revoke(&self, t: &Target, key: &KeyId, _how: Revoke) -> ProviderResult<Revoked> {
        // Graph cannot disable a password credential: both modes remove it. No read first:
        // Graph reads can lag writes, so a fresh secret may not be listed yet. A password
        // that is not there is already revoked.
        let object_id = t.param("applicationObjectId")?;
        self.read.forget(object_id);
        let http = &self.endpoints.http;
        match self
            .graph(
                "removePassword",
                object_id,
                http.post(self.app_url(object_id, Some("removePassword")))
                    .json(&serde_json::json!({ "keyId": key.0 })),
            )
            .await
        {
            Ok(_) => Ok(Revoked::Done),
            Err(e) if graph::is_password_not_found(&e) => Ok(Revoked::AlreadyGone),
            Err(e) => Err(e),
        }
    }

    /// From the sign-in logs of the application's service principal (see `signins`).
    async fn usage_since(
        &self,
        t: &Target,
        key: &KeyId,
        since: chrono::DateTime<Utc>,
        now: chrono::DateTime<Utc>,
    ) -> ProviderResult<api::Usage> {
        self.signins_since(t, &key.0, since, now).await
    }
}
