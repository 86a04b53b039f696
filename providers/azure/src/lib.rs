#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod chain;

pub use chain::{CredentialChain, IMDS_PROBE_TIMEOUT, credential_chain, credential_chain_from};
// Re-exported so users of this crate see the contract it implements.
pub use secret_manager_provider as api;

use api::{
    Capabilities, KeyId, KeyInfo, KeyStatus, Minted, Provider, ProviderError, ProviderResult,
    RetryPolicy, Revoke, SecretValue, Target,
};
use async_trait::async_trait;
use azure_core::credentials::{Secret, TokenCredential};
use chrono::{DateTime, Utc};
use serde::Deserialize;
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
            http: reqwest::Client::builder()
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
            ..Default::default()
        }
    }
}

/// Azure application password credentials through Microsoft Graph.
///
/// `mint` is `addPassword`, `revoke` is `removePassword` (Graph has no disable for
/// passwords, so `--revoke-mode disable` deletes), `keys` reads the application's
/// `passwordCredentials`, `verify` signs in with the new secret (client-credentials grant
/// through azure_identity's `ClientSecretCredential`), retrying while Entra ID propagates it.
pub struct AzureProvider {
    credential: Arc<dyn TokenCredential>,
    endpoints: AzureEndpoints,
    /// How long `verify` waits for a new secret to propagate.
    pub verify_policy: RetryPolicy,
}

impl std::fmt::Debug for AzureProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureProvider")
            .field("graph_url", &self.endpoints.graph_url)
            .field("authority_host", &self.endpoints.authority_host)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PasswordCredential {
    key_id: String,
    start_date_time: Option<DateTime<Utc>>,
    end_date_time: Option<DateTime<Utc>>,
    #[serde(default)]
    secret_text: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Application {
    #[serde(default)]
    app_id: Option<String>,
    #[serde(default)]
    password_credentials: Vec<PasswordCredential>,
}

#[derive(Deserialize)]
struct GraphErrorBody {
    error: GraphError,
}

#[derive(Deserialize)]
struct GraphError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

fn transient(operation: &'static str, message: String) -> ProviderError {
    ProviderError::Transient {
        provider: NAME.into(),
        operation,
        message,
    }
}

fn permanent(operation: &'static str, message: String) -> ProviderError {
    ProviderError::Permanent {
        provider: NAME.into(),
        operation,
        message,
    }
}

/// Maps a Graph error response to a [`ProviderError`].
fn classify(operation: &'static str, status: u16, body: &[u8], object_id: &str) -> ProviderError {
    let (code, message) = serde_json::from_slice::<GraphErrorBody>(body)
        .map(|b| (b.error.code, b.error.message))
        .unwrap_or_else(|_| (String::new(), format!("HTTP {status}")));
    let message = if code.is_empty() {
        message
    } else {
        format!("{code}: {message}")
    };
    match status {
        429 | 500 | 502 | 503 | 504 => transient(operation, message),
        401 | 403 => ProviderError::AccessDenied {
            provider: NAME.into(),
            operation,
            message: format!(
                "{message} (the principal needs the Graph application permission Application.ReadWrite.OwnedBy and must be an owner of application {object_id})"
            ),
        },
        404 => ProviderError::NotFound {
            provider: NAME.into(),
            what: format!(
                "application with object id {object_id} (applicationObjectId must be the application's object id, not its appId/client id)"
            ),
        },
        _ => permanent(operation, message),
    }
}

fn http_error(operation: &'static str, e: &reqwest::Error) -> ProviderError {
    // reqwest errors name the URL and the cause; neither carries a secret.
    transient(operation, e.to_string())
}

impl AzureProvider {
    /// The provider with the explicit credential chain and endpoints from the environment.
    pub fn from_env() -> ProviderResult<Self> {
        let endpoints = AzureEndpoints::from_env();
        let credential = credential_chain(&endpoints)?;
        tracing::debug!(chain = ?credential.names(), "azure credential chain");
        Ok(Self::new(credential, endpoints))
    }

    /// A provider that gets Graph tokens from `credential`.
    pub fn new(credential: Arc<dyn TokenCredential>, endpoints: AzureEndpoints) -> Self {
        AzureProvider {
            credential,
            endpoints,
            verify_policy: RetryPolicy {
                max_attempts: 12,
                base_delay: Duration::from_millis(500),
                max_delay: Duration::from_secs(8),
            },
        }
    }

    async fn token(&self, operation: &'static str) -> ProviderResult<String> {
        let t = self
            .credential
            .get_token(&[GRAPH_SCOPE], None)
            .await
            .map_err(|e| ProviderError::AccessDenied {
                provider: NAME.into(),
                operation,
                message: format!("cannot get a Graph token: {e}"),
            })?;
        Ok(t.token.secret().to_owned())
    }

    fn app_url(&self, object_id: &str, action: Option<&str>) -> String {
        let mut u = format!("{}/applications/{object_id}", self.endpoints.graph_url);
        if let Some(a) = action {
            u.push('/');
            u.push_str(a);
        }
        u
    }

    /// Sends a Graph request; returns the body of a 2xx response.
    async fn graph(
        &self,
        operation: &'static str,
        object_id: &str,
        req: reqwest::RequestBuilder,
    ) -> ProviderResult<Vec<u8>> {
        let token = self.token(operation).await?;
        let resp = req
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| http_error(operation, &e))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| http_error(operation, &e))?;
        tracing::debug!(operation, status, "graph response");
        if (200..300).contains(&status) {
            Ok(body.to_vec())
        } else {
            Err(classify(operation, status, &body, object_id))
        }
    }

    async fn application(&self, object_id: &str) -> ProviderResult<Application> {
        let http = &self.endpoints.http;
        let body = self
            .graph(
                "GetApplication",
                object_id,
                http.get(format!(
                    "{}?$select=id,appId,passwordCredentials",
                    self.app_url(object_id, None)
                )),
            )
            .await?;
        serde_json::from_slice(&body)
            .map_err(|e| permanent("GetApplication", format!("unexpected response: {e}")))
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
        }
    }

    async fn preflight(&self, t: &Target) -> ProviderResult<()> {
        t.param("tenantId")?;
        let client_id = t.param("clientId")?;
        let object_id = t.param("applicationObjectId")?;
        let app = self.application(object_id).await?;
        match app.app_id.as_deref() {
            Some(a) if a.eq_ignore_ascii_case(client_id) => Ok(()),
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
        let app = self.application(object_id).await?;
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
            })
            .collect();
        keys.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(keys)
    }

    async fn mint(&self, t: &Target) -> ProviderResult<Minted> {
        let tenant = t.param("tenantId")?;
        let client_id = t.param("clientId")?;
        let object_id = t.param("applicationObjectId")?;
        let now = Utc::now();
        let body = serde_json::json!({
            "passwordCredential": {
                "displayName": format!("secret-manager {}", now.format("%Y-%m-%dT%H:%M:%SZ")),
            }
        });
        let http = &self.endpoints.http;
        let raw = self
            .graph(
                "addPassword",
                object_id,
                http.post(self.app_url(object_id, Some("addPassword")))
                    .json(&body),
            )
            .await?;
        let created: PasswordCredential = serde_json::from_slice(&raw)
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
            operator: std::env::var("AZURE_CLIENT_ID")
                .ok()
                .map(|c| format!("azure client {c}")),
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
            client_id,
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
        // that is propagation, not failure, so every sign-in error is retried.
        self.verify_policy
            .run("sign-in with the new secret", || async {
                credential
                    .get_token(&[GRAPH_SCOPE], None)
                    .await
                    .map(drop)
                    .map_err(|e| transient("verify", e.to_string()))
            })
            .await
    }

    async fn revoke(&self, t: &Target, key: &KeyId, _how: Revoke) -> ProviderResult<()> {
        // Graph cannot disable a password credential: both modes remove it.
        let object_id = t.param("applicationObjectId")?;
        let app = self.application(object_id).await?;
        if !app
            .password_credentials
            .iter()
            .any(|p| p.key_id.eq_ignore_ascii_case(&key.0))
        {
            return Ok(());
        }
        let http = &self.endpoints.http;
        let result = self
            .graph(
                "removePassword",
                object_id,
                http.post(self.app_url(object_id, Some("removePassword")))
                    .json(&serde_json::json!({ "keyId": key.0 })),
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            // Removed concurrently between the read and the remove: already revoked.
            Err(ProviderError::Permanent { .. }) => {
                let again = self.application(object_id).await?;
                if again
                    .password_credentials
                    .iter()
                    .any(|p| p.key_id.eq_ignore_ascii_case(&key.0))
                {
                    result.map(drop)
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(e),
        }
    }
}
