//! What Entra ID's answers mean: sign-in errors by AADSTS code (propagation, a verdict, or
//! the network), token-fetch failures, and the tenant check of preflight.

use crate::api::{Attempt, ProviderError};
use crate::{NAME, permanent};
use azure_core::error::ErrorKind;
use std::time::Duration;

/// The innermost azure_core error: azure_identity wraps the HTTP failure in a Credential
/// error whose message is the text, and whose source holds the status and AADSTS code.
fn innermost(e: &azure_core::Error) -> &azure_core::Error {
    let mut cur = e;
    while let Some(inner) = cur.downcast_ref::<azure_core::Error>() {
        if std::ptr::eq(inner, cur) {
            break;
        }
        cur = inner;
    }
    cur
}

/// How a failed Entra ID call looks from the outside.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No answer: connection, DNS, TLS, timeout.
    Network,
    /// Throttled (429), possibly with Retry-After.
    Throttled(Option<Duration>),
    /// 5xx.
    Server(u16),
    /// An answer with an AADSTS code.
    Aadsts(String),
    /// Anything else.
    Other,
}

pub(crate) fn failure(e: &azure_core::Error) -> Failure {
    let inner = innermost(e);
    match inner.kind() {
        ErrorKind::Io | ErrorKind::Connection => Failure::Network,
        ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => {
            let code = u16::from(*status);
            if code == 429 {
                let after = raw_response.as_ref().and_then(|r| {
                    r.headers()
                        .get_optional_str(&azure_core::http::headers::RETRY_AFTER)
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs)
                });
                Failure::Throttled(after)
            } else if code >= 500 {
                Failure::Server(code)
            } else if let Some(c) = error_code {
                Failure::Aadsts(c.clone())
            } else {
                aadsts_in(&e.to_string()).map_or(Failure::Other, Failure::Aadsts)
            }
        }
        _ => aadsts_in(&e.to_string()).map_or(
            if e.to_string().contains("error sending request") {
                Failure::Network
            } else {
                Failure::Other
            },
            Failure::Aadsts,
        ),
    }
}

/// The first `AADSTS<digits>` code in `text`.
pub(crate) fn aadsts_in(text: &str) -> Option<String> {
    let at = text.find("AADSTS")?;
    let digits: String = text[at + 6..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!digits.is_empty()).then_some(digits)
}

/// A sign-in with a brand-new secret failed: propagation (try again), or a verdict.
pub(crate) fn sign_in_outcome(e: &azure_core::Error, tenant: &str, client_id: &str) -> Attempt<()> {
    let text = e.to_string();
    let pending = |message: String| {
        Attempt::Pending(ProviderError::Transient {
            provider: NAME.into(),
            operation: "verify",
            message,
        })
    };
    match failure(e) {
        Failure::Network | Failure::Server(_) => pending(text),
        Failure::Throttled(after) => Attempt::Pending(ProviderError::Throttled {
            provider: NAME.into(),
            operation: "verify",
            message: text,
            retry_after: after,
        }),
        // Invalid client secret: what Entra says until the new secret has replicated.
        Failure::Aadsts(code) if code == "7000215" => pending(text),
        Failure::Aadsts(code) => Attempt::Failed(permanent(
            "verify",
            match code.as_str() {
                "700016" => format!(
                    "application {client_id} is not in tenant {tenant} (AADSTS700016): the tenantId annotation names another tenant than the application's"
                ),
                "90002" => format!(
                    "tenant {tenant} does not exist (AADSTS90002): fix the tenantId annotation"
                ),
                "7000222" => "the new secret is already expired (AADSTS7000222): check providers.azure.secretLifetime or the secretLifetime annotation".into(),
                "7000112" => format!("application {client_id} is disabled (AADSTS7000112)"),
                _ => text,
            },
        )),
        Failure::Other => Attempt::Failed(permanent("verify", text)),
    }
}

/// A failed fetch of the tool's own Graph token.
pub(crate) fn token_error(operation: &'static str, e: &azure_core::Error) -> ProviderError {
    let text = e.to_string();
    if text.starts_with(crate::chain::NO_CREDENTIALS) {
        return ProviderError::NoCredentials {
            provider: NAME.into(),
            message: text,
        };
    }
    let message = format!("cannot get a Graph token: {e}");
    match failure(e) {
        Failure::Network | Failure::Server(_) => ProviderError::Transient {
            provider: NAME.into(),
            operation,
            message,
        },
        Failure::Throttled(after) => ProviderError::Throttled {
            provider: NAME.into(),
            operation,
            message,
            retry_after: after,
        },
        Failure::Aadsts(_) | Failure::Other => ProviderError::AccessDenied {
            provider: NAME.into(),
            operation,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aadsts_codes_are_found_in_messages() {
        assert_eq!(
            aadsts_in("ClientSecretCredential authentication failed. AADSTS7000215: Invalid"),
            Some("7000215".into())
        );
        assert_eq!(aadsts_in("AADSTS: nothing"), None);
        assert_eq!(aadsts_in("no code"), None);
    }
}
