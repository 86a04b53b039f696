//! The old key's use since publish, from the Microsoft Entra sign-in logs through Graph
//! (`GET /beta/auditLogs/signIns`, service-principal sign-ins filtered by the credential's
//! key id; application permission `AuditLog.Read.All`).
//!
//! The logs lag: Microsoft documents sign-ins appearing within 5 minutes at the 99th
//! percentile, so "no sign-in since publish" is trusted only once [`LOG_DELAY`] has passed
//! since publish. A tenant without a Microsoft Entra ID P1/P2 licence keeps no sign-in
//! logs: the source says it cannot tell, and the gate falls back to the grace period.

use crate::{AzureProvider, NAME, permanent};
use chrono::{DateTime, SecondsFormat, Utc};
use secret_manager_provider::{ProviderError, ProviderResult, Target, Usage};

/// How long after a sign-in it may take to appear in the logs (twice Microsoft's 99th
/// percentile of 5 minutes, for margin).
pub const LOG_DELAY: chrono::Duration = chrono::Duration::minutes(10);

/// The error Graph answers a tenant without a P1/P2 licence.
const NON_PREMIUM: &str = "Authentication_RequestFromNonPremiumTenantOrB2CTenant";

#[derive(serde::Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<SignIn>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignIn {
    created_date_time: DateTime<Utc>,
}

/// A GUID: 8-4-4-4-12 hex digits. What goes into the OData filter must be one (the
/// values come from manifest annotations).
fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The Graph beta base next to the configured v1.0 one (sign-ins of service principals
/// are in beta only).
fn beta_base(graph_url: &str) -> String {
    match graph_url.strip_suffix("/v1.0") {
        Some(host) => format!("{host}/beta"),
        None => format!("{graph_url}/../beta"),
    }
}

/// What the sign-in page says, asked at `now` about use since `since`.
pub(crate) fn decide(
    signed_in: Option<DateTime<Utc>>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Usage {
    match signed_in {
        Some(at) => Usage::Used(at),
        None if now < since + LOG_DELAY => Usage::Pending(format!(
            "no sign-in with the old key since publish yet, but Microsoft Entra sign-in logs lag (up to {} min): waiting until {} before trusting that it is idle",
            LOG_DELAY.num_minutes(),
            (since + LOG_DELAY).to_rfc3339_opts(SecondsFormat::Secs, true)
        )),
        None => Usage::Idle,
    }
}

impl AzureProvider {
    pub(crate) async fn signins_since(
        &self,
        t: &Target,
        key: &str,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> ProviderResult<Usage> {
        let client_id = t.param("clientId")?;
        for (what, v) in [("clientId", client_id), ("key id", key)] {
            if !is_guid(v) {
                return Err(permanent(
                    "signIns",
                    format!(
                        "{what} `{}` is not a GUID: nothing was asked",
                        secret_manager_provider::escape_for_display(v)
                    ),
                ));
            }
        }
        let filter = format!(
            "signInEventTypes/any(t: t eq 'servicePrincipal') and appId eq '{client_id}' and servicePrincipalCredentialKeyId eq '{key}' and createdDateTime ge {}",
            since.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        let url = format!("{}/auditLogs/signIns", beta_base(&self.endpoints.graph_url));
        let req = self
            .endpoints
            .http
            .get(url)
            .query(&[("$filter", filter.as_str()), ("$top", "1")]);
        let body = match self.graph("signIns", "-", req).await {
            Ok(b) => b,
            Err(ProviderError::AccessDenied { message, .. }) if message.contains(NON_PREMIUM) => {
                return Ok(Usage::Unknown(
                    "the tenant has no Microsoft Entra ID P1/P2 licence, so Graph keeps no sign-in logs for the azure source to check".into(),
                ));
            }
            Err(ProviderError::AccessDenied {
                operation, message, ..
            }) => {
                return Err(ProviderError::AccessDenied {
                    provider: NAME.into(),
                    operation,
                    message: format!(
                        "{} (reading sign-in logs needs the Graph application permission AuditLog.Read.All)",
                        message
                            .split(" (the principal needs")
                            .next()
                            .unwrap_or(&message)
                    ),
                });
            }
            Err(e) => return Err(e),
        };
        let page: Page = serde_json::from_slice(&body)
            .map_err(|e| permanent("signIns", format!("unexpected response: {e}")))?;
        // The filter already asked for sign-ins since publish; the latest of the page.
        let last = page
            .value
            .iter()
            .map(|s| s.created_date_time)
            .filter(|at| *at >= since)
            .max();
        Ok(decide(last, since, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_sign_in_counts_only_once_the_logs_caught_up() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let published = t("2026-12-01T10:00:00Z");
        assert!(matches!(
            decide(None, published, t("2026-12-01T10:05:00Z")),
            Usage::Pending(why) if why.contains("2026-12-01T10:10:00Z")
        ));
        assert_eq!(
            decide(None, published, t("2026-12-01T10:10:00Z")),
            Usage::Idle
        );
        assert_eq!(
            decide(
                Some(t("2026-12-01T10:03:00Z")),
                published,
                t("2026-12-01T11:00:00Z")
            ),
            Usage::Used(t("2026-12-01T10:03:00Z"))
        );
        assert!(is_guid("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"));
        assert!(!is_guid("x' or appId ne 'y"));
        assert_eq!(
            beta_base("https://graph.microsoft.us/v1.0"),
            "https://graph.microsoft.us/beta"
        );
    }
}
