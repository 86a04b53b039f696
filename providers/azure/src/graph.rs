//! Microsoft Graph over reqwest: the `applications` calls and what their errors mean.

use crate::api::{ProviderError, ProviderResult};
use crate::{AzureProvider, NAME, permanent};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PasswordCredential {
    pub key_id: String,
    pub start_date_time: Option<DateTime<Utc>>,
    pub end_date_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub secret_text: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Application {
    #[serde(default)]
    pub app_id: Option<String>,
    #[serde(default)]
    pub password_credentials: Vec<PasswordCredential>,
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

/// Graph's answer to removing a password that is not (or no longer) there. (A 404 is the
/// application itself missing: a wrong identity, not an absent password.)
pub(crate) fn is_password_not_found(e: &ProviderError) -> bool {
    matches!(e, ProviderError::Permanent { message, .. } if message.contains("No password credential found"))
}

/// Maps a Graph error response to a [`ProviderError`].
pub(crate) fn classify(
    operation: &'static str,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    object_id: &str,
) -> ProviderError {
    let (code, message) = serde_json::from_slice::<GraphErrorBody>(body)
        .map(|b| (b.error.code, b.error.message))
        .unwrap_or_else(|_| (String::new(), format!("HTTP {status}")));
    let text = if code.is_empty() {
        message.clone()
    } else {
        format!("{code}: {message}")
    };
    match (status, code.as_str()) {
        (429 | 503, _) => ProviderError::Throttled {
            provider: NAME.into(),
            operation,
            message: text,
            retry_after,
        },
        (500 | 502 | 504, _) => ProviderError::Transient {
            provider: NAME.into(),
            operation,
            message: text,
        },
        (_, "CredentialInvalidLifetimeAsPerAppPolicy") => permanent(
            operation,
            format!(
                "{text} (the tenant's app management policy limits secret lifetimes: set providers.azure.secretLifetime, or the secretLifetime annotation, within that limit)"
            ),
        ),
        (_, "CredentialTypeNotAllowedAsPerAppPolicy") => permanent(
            operation,
            format!(
                "{text} (the tenant's app management policy forbids client secrets for this application: ask the Entra ID admins for an exemption, or move it to certificate or federated credentials)"
            ),
        ),
        (401 | 403, _) => ProviderError::AccessDenied {
            provider: NAME.into(),
            operation,
            message: format!(
                "{text} (the principal needs the Graph application permission Application.ReadWrite.OwnedBy and must be an owner of application {object_id})"
            ),
        },
        (404, _) => ProviderError::NotFound {
            provider: NAME.into(),
            what: format!(
                "application with object id {object_id} (applicationObjectId must be the application's object id, not its appId/client id)"
            ),
        },
        _ => permanent(operation, text),
    }
}

fn http_error(operation: &'static str, e: &reqwest::Error) -> ProviderError {
    // reqwest errors name the URL and the cause; neither carries a secret.
    ProviderError::Transient {
        provider: NAME.into(),
        operation,
        message: e.to_string(),
    }
}

/// `s` percent-encoded as one URL path segment: only ASCII letters, digits and `-` stay.
pub(crate) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl AzureProvider {
    pub(crate) fn app_url(&self, object_id: &str, action: Option<&str>) -> String {
        // The object id comes from a manifest annotation: one path segment, whatever it
        // holds (`../users`, `?$select=`, `#` are escaped, never interpreted by Graph).
        let mut u = format!(
            "{}/applications/{}",
            self.endpoints.graph_url,
            path_segment(object_id)
        );
        if let Some(a) = action {
            u.push('/');
            u.push_str(a);
        }
        u
    }

    /// Sends a Graph request; returns the body of a 2xx response.
    pub(crate) async fn graph(
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
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.bytes().await.map_err(|e| http_error(operation, &e))?;
        tracing::debug!(operation, status, "graph response");
        if (200..300).contains(&status) {
            Ok(body.to_vec())
        } else {
            Err(classify(operation, status, retry_after, &body, object_id))
        }
    }

    pub(crate) async fn application(&self, object_id: &str) -> ProviderResult<Application> {
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

    /// The tenant `tenant` resolves to (its GUID), from OpenID discovery: a tenant that
    /// does not exist is AADSTS90002.
    pub(crate) async fn tenant_id(&self, tenant: &str) -> ProviderResult<String> {
        let url = format!(
            "{}/{tenant}/v2.0/.well-known/openid-configuration",
            self.endpoints.authority_host
        );
        let resp = self
            .endpoints
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| http_error("preflight", &e))?;
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if status >= 500 || status == 429 {
            return Err(ProviderError::Transient {
                provider: NAME.into(),
                operation: "preflight",
                message: format!("OpenID discovery for tenant {tenant}: HTTP {status}"),
            });
        }
        if status != 200 {
            let text = body["error_description"].as_str().unwrap_or("").to_owned();
            return Err(permanent(
                "preflight",
                format!(
                    "tenant {tenant} does not exist ({}): fix the tenantId annotation",
                    text.split(" Trace ID").next().unwrap_or(&text)
                ),
            ));
        }
        let issuer = body["issuer"].as_str().unwrap_or_default();
        Ok(issuer
            .trim_end_matches("/v2.0")
            .rsplit('/')
            .next()
            .unwrap_or(tenant)
            .to_owned())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_object_id_is_one_path_segment() {
        assert_eq!(
            super::path_segment("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
        );
        assert_eq!(super::path_segment("../users"), "%2E%2E%2Fusers");
        assert_eq!(super::path_segment("x?$top=1#"), "x%3F%24top%3D1%23");
    }
}
