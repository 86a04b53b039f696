//! EKS bearer tokens from the identity the process already has (IRSA, EKS Pod Identity,
//! an instance role, a profile): what `aws eks get-token` prints, without the AWS CLI.
//!
//! An EKS token is `k8s-aws-v1.` and the unpadded base64url of a presigned STS
//! `GetCallerIdentity` URL whose signature covers the header `x-k8s-aws-id: <cluster>`.
//! The API server's authenticator calls that URL with the header and maps the caller's
//! ARN to Kubernetes groups (aws-auth ConfigMap or access entries). The URL is signed to
//! expire 60 seconds after signing (as aws-iam-authenticator does); the API server
//! accepts the token for 15 minutes from then, and kubectl is told 14.

use aws_credential_types::provider::ProvideCredentials as _;
use secret_manager_provider::ProviderError;
use std::time::{Duration, SystemTime};

/// How long kubectl may cache a token (the API server accepts it for 15 minutes).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(14 * 60);

/// A token and when kubectl should ask for a new one.
pub struct EksToken {
    /// `k8s-aws-v1.<base64url of the presigned URL>`: a bearer credential.
    pub token: String,
    /// When it stops being used.
    pub expires: SystemTime,
}

impl std::fmt::Debug for EksToken {
    // The token is a credential: never printed by accident.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EksToken")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// A cluster name as EKS allows it (letters, digits, `-`, `_`; at most 100): it goes
/// into a signed header, and a newline there would forge another header.
fn valid_cluster(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn failed(message: String) -> ProviderError {
    ProviderError::Permanent {
        provider: "aws".into(),
        operation: "eks-token",
        message,
    }
}

/// Signs a token for `cluster` with the SDK configuration's credentials and region
/// (`region` overrides it). The STS endpoint is the region's public one
/// (`https://sts.<region>.amazonaws.com`, the only host EKS accepts), or the
/// configuration's endpoint URL when one is set (`AWS_ENDPOINT_URL`; tests).
pub async fn token(
    config: &aws_config::SdkConfig,
    cluster: &str,
    region: Option<&str>,
    now: SystemTime,
) -> Result<EksToken, ProviderError> {
    if !valid_cluster(cluster) {
        return Err(failed(format!(
            "cluster name `{}`: letters, digits, `-` and `_` only",
            cluster.escape_debug()
        )));
    }
    let region = region
        .map(str::to_owned)
        .or_else(|| config.region().map(|r| r.to_string()))
        .ok_or_else(|| failed("no region: pass --region or set AWS_REGION".into()))?;
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(failed(format!(
            "region `{}` is not a region name",
            region.escape_debug()
        )));
    }
    let provider = config
        .credentials_provider()
        .ok_or_else(|| failed(crate::NO_CREDENTIALS.into()))?;
    let credentials =
        provider
            .provide_credentials()
            .await
            .map_err(|e| match crate::no_credentials(&e) {
                Some(message) => ProviderError::NoCredentials {
                    provider: "aws".into(),
                    message,
                },
                None => failed(format!("AWS credentials could not be loaded: {e}")),
            })?;
    let endpoint = config
        .endpoint_url()
        .map(|u| u.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
    let url = format!("{endpoint}/?Action=GetCallerIdentity&Version=2011-06-15");
    let host = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .ok_or_else(|| failed(format!("endpoint {endpoint} is not a URL")))?
        .to_owned();

    use aws_sigv4::http_request::{
        SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
    };
    let identity = credentials.into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(60));
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| failed(e.to_string()))?
        .into();
    let headers = [("host", host.as_str()), ("x-k8s-aws-id", cluster)];
    let request = SignableRequest::new("GET", &url, headers.into_iter(), SignableBody::Bytes(&[]))
        .map_err(|e| failed(e.to_string()))?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| failed(e.to_string()))?
        .into_parts();
    let mut presigned = url;
    for (name, value) in instructions.params() {
        presigned.push('&');
        presigned.push_str(name);
        presigned.push('=');
        presigned.push_str(&form_encode(value));
    }
    use base64::Engine as _;
    Ok(EksToken {
        token: format!(
            "k8s-aws-v1.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(presigned)
        ),
        expires: now + TOKEN_LIFETIME,
    })
}

/// [`token`] with the standard AWS configuration of the environment (profile, IRSA, EKS
/// Pod Identity, instance role).
pub async fn token_from_env(
    cluster: &str,
    region: Option<&str>,
) -> Result<EksToken, ProviderError> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::v2026_01_12())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    token(&config, cluster, region, SystemTime::now()).await
}

/// Percent-encodes a query value the way SigV4 canonicalises it (RFC 3986 unreserved
/// characters kept), so the URL the API server calls is the one that was signed.
fn form_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param<'a>(url: &'a str, name: &str) -> &'a str {
        url.split(['?', '&'])
            .find_map(|p| p.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
            .unwrap_or_else(|| panic!("{name} in {url}"))
    }

    /// SigV4 of a presigned GET written out from AWS's specification (canonical request,
    /// string to sign, derived key), independent of the `aws-sigv4` signer under test:
    /// the signature STS recomputes when the API server calls the URL with the header.
    fn signature_of(url: &str, secret: &str, cluster: &str) -> String {
        use hmac::{KeyInit as _, Mac as _};
        use sha2::Digest as _;
        let mac = |key: &[u8], data: &str| {
            let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
            m.update(data.as_bytes());
            m.finalize().into_bytes().to_vec()
        };
        let (base, query) = url.split_once('?').unwrap();
        let host = base.strip_prefix("https://").unwrap().trim_end_matches('/');
        let mut pairs: Vec<&str> = query
            .split('&')
            .filter(|p| !p.starts_with("X-Amz-Signature="))
            .collect();
        pairs.sort();
        let canonical = format!(
            "GET\n/\n{}\nhost:{host}\nx-k8s-aws-id:{cluster}\n\nhost;x-k8s-aws-id\n{}",
            pairs.join("&"),
            hex::encode(sha2::Sha256::digest(b""))
        );
        let date = param(url, "X-Amz-Date");
        let scope = param(url, "X-Amz-Credential")
            .split_once("%2F")
            .unwrap()
            .1
            .replace("%2F", "/");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
            hex::encode(sha2::Sha256::digest(canonical.as_bytes()))
        );
        let parts: Vec<&str> = scope.split('/').collect();
        let mut key = mac(format!("AWS4{secret}").as_bytes(), parts[0]);
        for p in &parts[1..] {
            key = mac(&key, p);
        }
        hex::encode(mac(&key, &to_sign))
    }

    #[tokio::test]
    async fn a_token_is_a_presigned_get_caller_identity_bound_to_the_cluster() {
        let config = aws_config::SdkConfig::builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(
                    aws_credential_types::Credentials::new(
                        "AKIDEXAMPLE",
                        "secret",
                        Some("session/token+=".into()),
                        None,
                        "test",
                    ),
                ),
            )
            .behavior_version(aws_config::BehaviorVersion::v2026_01_12())
            .build();
        let t = token(
            &config,
            "prod-1",
            Some("eu-west-1"),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        )
        .await
        .unwrap();
        let b64 = t.token.strip_prefix("k8s-aws-v1.").unwrap();
        use base64::Engine as _;
        let url = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b64)
                .unwrap(),
        )
        .unwrap();
        assert!(
            url.starts_with(
                "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
            ),
            "{url}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F20270115%2Feu-west-1%2Fsts%2Faws4_request",
            "X-Amz-Date=20270115T080000Z",
            "X-Amz-Expires=60",
            "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
            "X-Amz-Security-Token=session%2Ftoken%2B%3D",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part}: {url}");
        }
        assert!(!url.contains("secret"), "{url}");
        assert_eq!(
            t.expires,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + TOKEN_LIFETIME
        );
        assert!(!format!("{t:?}").contains("k8s-aws-v1"));
        assert_eq!(
            signature_of(&url, "secret", "prod-1"),
            param(&url, "X-Amz-Signature")
        );
        // Signed for another cluster, the token would not match: the header is signed.
        assert_ne!(
            signature_of(&url, "secret", "prod-2"),
            param(&url, "X-Amz-Signature")
        );
        // A header injection in the cluster name, or a region that is a host, is refused.
        for (cluster, region) in [("a\r\nx-amz-foo: 1", "eu-west-1"), ("a", "evil.example/x")] {
            assert!(
                token(&config, cluster, Some(region), SystemTime::now())
                    .await
                    .is_err(),
                "{cluster:?} {region}"
            );
        }
    }
}
