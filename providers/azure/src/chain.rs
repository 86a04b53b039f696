//! The explicit credential chain: workload identity → managed identity → client secret →
//! developer tools (Azure CLI, Azure Developer CLI).
//!
//! azure_identity 1.x has no `DefaultAzureCredential`; the chain is built here so the order
//! is ours and documented, and a link is only added when its configuration is present
//! (except managed identity, which has no configuration off App Service and is probed
//! with a short timeout).

use crate::AzureEndpoints;
use crate::api::{ProviderError, ProviderResult};
use async_trait::async_trait;
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long the managed-identity link may take before the chain moves on (IMDS does not
/// answer off Azure; App Service's `IDENTITY_ENDPOINT` is not limited).
pub const IMDS_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

struct Link {
    name: &'static str,
    /// Who the link signs in as, for the audit trail (ids only, never a secret).
    who: String,
    credential: Arc<dyn TokenCredential>,
    timeout: Option<Duration>,
    /// Set up for this machine on purpose (its variables are set), as opposed to a probe
    /// (IMDS, the developer tools) that fails on every machine that lacks it.
    configured: bool,
}

/// How the chain's error begins when no link was set up on purpose and every probe failed:
/// the machine has no Azure credentials at all (a setup problem, said once).
pub const NO_CREDENTIALS: &str = "no Azure credentials found";

/// Tries each credential in order; the first that returns a token is used from then on.
pub struct CredentialChain {
    links: Vec<Link>,
    chosen: AtomicUsize,
}

impl std::fmt::Debug for CredentialChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialChain")
            .field("links", &self.names())
            .finish()
    }
}

impl CredentialChain {
    /// The names of the links, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.links.iter().map(|l| l.name).collect()
    }

    /// The link that got the last token, as the operator of the audit trail:
    /// `azure workload identity (client …)`. `None` before any token.
    pub fn operator(&self) -> Option<String> {
        let i = self.chosen.load(Ordering::Relaxed);
        let link = self.links.get(i)?;
        Some(if link.who.is_empty() {
            format!("azure {}", link.name)
        } else {
            format!("azure {} ({})", link.name, link.who)
        })
    }
}

/// `client …` from the variable a link uses.
fn who(client: Option<String>) -> String {
    client.map(|c| format!("client {c}")).unwrap_or_default()
}

const NONE: usize = usize::MAX;

#[async_trait]
impl TokenCredential for CredentialChain {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let chosen = self.chosen.load(Ordering::Relaxed);
        if chosen != NONE {
            return self.links[chosen]
                .credential
                .get_token(scopes, options)
                .await;
        }
        let mut failures = Vec::new();
        let mut configured_failed = false;
        // A configured link that failed for a reason that passes (network, 5xx, 429)
        // makes the whole chain's failure transient: the next attempt may succeed.
        let mut transient = false;
        for (i, link) in self.links.iter().enumerate() {
            let attempt = link.credential.get_token(scopes, options.clone());
            let result = match link.timeout {
                Some(t) => match tokio::time::timeout(t, attempt).await {
                    Ok(r) => r,
                    Err(_) => {
                        failures.push(format!("{}: no answer within {t:?}", link.name));
                        continue;
                    }
                },
                None => attempt.await,
            };
            match result {
                Ok(token) => {
                    tracing::debug!(credential = link.name, "azure credential chain: using");
                    self.chosen.store(i, Ordering::Relaxed);
                    return Ok(token);
                }
                Err(e) => {
                    use crate::entra::Failure;
                    let passing = matches!(
                        crate::entra::failure(&e),
                        Failure::Network | Failure::Server(_) | Failure::Throttled(_)
                    ) || crate::entra::aadsts_in(&e.to_string()).as_deref()
                        == Some("90033");
                    transient |= passing && link.timeout.is_none();
                    configured_failed |= link.configured;
                    failures.push(format!("{}: {e}", link.name))
                }
            }
        }
        if !transient && !configured_failed {
            // Nothing was set up: the probes' own texts (an IMDS timeout, "az not found")
            // do not help; what to set does.
            tracing::debug!(tried = %failures.join("; "), "azure credential chain");
            return Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!(
                    "{NO_CREDENTIALS}: set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, \
                     use workload identity (AZURE_FEDERATED_TOKEN_FILE) or a managed identity, \
                     or sign in with `az login`"
                ),
            ));
        }
        Err(azure_core::Error::with_message(
            if transient {
                azure_core::error::ErrorKind::Io
            } else {
                azure_core::error::ErrorKind::Credential
            },
            format!(
                "no Azure credential worked (tried in order: {}). Configure workload identity (AZURE_FEDERATED_TOKEN_FILE), a managed identity, AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET, or sign in with `az login`",
                failures.join("; ")
            ),
        ))
    }
}

fn env(k: &str) -> Option<String> {
    // The process environment, empty values treated as unset.
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

fn build_error(what: &str, e: azure_core::Error) -> ProviderError {
    ProviderError::Permanent {
        provider: crate::NAME.into(),
        operation: "credentials",
        message: format!("{what}: {e}"),
    }
}

/// Builds the chain from the environment, the way the Azure SDKs document their variables.
pub fn credential_chain(endpoints: &AzureEndpoints) -> ProviderResult<Arc<CredentialChain>> {
    credential_chain_from(endpoints, env)
}

/// [`credential_chain`] with the variables the chain itself reads taken from `env`
/// (azure_identity's workload and managed identity credentials still read the process
/// environment for their own settings).
pub fn credential_chain_from(
    endpoints: &AzureEndpoints,
    env: impl Fn(&str) -> Option<String>,
) -> ProviderResult<Arc<CredentialChain>> {
    let env = |k: &str| env(k).filter(|v| !v.is_empty());
    let mut links = Vec::new();
    if env("AZURE_FEDERATED_TOKEN_FILE").is_some() {
        let options = azure_identity::WorkloadIdentityCredentialOptions {
            credential_options: azure_identity::ClientAssertionCredentialOptions {
                client_options: endpoints.client_options(),
            },
            ..Default::default()
        };
        links.push(Link {
            name: "workload identity",
            who: who(env("AZURE_CLIENT_ID")),
            credential: azure_identity::WorkloadIdentityCredential::new(Some(options))
                .map_err(|e| build_error("workload identity", e))?,
            timeout: None,
            configured: true,
        });
    }
    let mi_options = azure_identity::ManagedIdentityCredentialOptions {
        user_assigned_id: env("AZURE_CLIENT_ID").map(azure_identity::UserAssignedId::ClientId),
        client_options: endpoints.client_options(),
    };
    match azure_identity::ManagedIdentityCredential::new(Some(mi_options)) {
        Ok(c) => links.push(Link {
            name: "managed identity",
            who: who(env("AZURE_CLIENT_ID")),
            credential: c,
            timeout: env("IDENTITY_ENDPOINT")
                .is_none()
                .then_some(IMDS_PROBE_TIMEOUT),
            configured: env("IDENTITY_ENDPOINT").is_some(),
        }),
        Err(e) => tracing::debug!("managed identity unavailable: {e}"),
    }
    if let (Some(tenant), Some(client), Some(secret)) = (
        env("AZURE_TENANT_ID"),
        env("AZURE_CLIENT_ID"),
        env("AZURE_CLIENT_SECRET"),
    ) {
        let options = azure_identity::ClientSecretCredentialOptions {
            client_options: endpoints.client_options(),
        };
        links.push(Link {
            name: "client secret",
            who: who(Some(client.clone())),
            credential: azure_identity::ClientSecretCredential::new(
                &tenant,
                client,
                Secret::new(secret),
                Some(options),
            )
            .map_err(|e| build_error("client secret", e))?,
            timeout: None,
            configured: true,
        });
    }
    match azure_identity::DeveloperToolsCredential::new(None) {
        Ok(c) => links.push(Link {
            name: "developer tools",
            who: String::new(),
            credential: c,
            timeout: None,
            configured: false,
        }),
        Err(e) => tracing::debug!("developer tools credential unavailable: {e}"),
    }
    Ok(Arc::new(CredentialChain {
        links,
        chosen: AtomicUsize::new(NONE),
    }))
}
