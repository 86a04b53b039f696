#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use secret_manager_provider as api;

use api::{
    Capabilities, KeyId, KeyInfo, KeyStatus, Minted, Provider, ProviderError, ProviderResult,
    RetryPolicy, Revoke, SecretValue, Target,
};
use async_trait::async_trait;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iam::types::StatusType;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::time::Duration;

/// The value of the `source` annotation this crate serves.
pub const NAME: &str = "aws";

/// Access keys an IAM user may hold at once.
pub const MAX_KEYS: u32 = 2;

/// AWS IAM user access keys.
///
/// Credentials come from the standard chain (environment, shared profile, SSO, web
/// identity / IRSA, container and instance metadata). Endpoints follow the standard
/// overrides: `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_IAM`, `AWS_ENDPOINT_URL_STS`.
/// The SDK's own retries are off: callers wrap calls in the shared [`RetryPolicy`].
pub struct AwsProvider {
    config: aws_config::SdkConfig,
    iam: aws_sdk_iam::Client,
    /// The caller's ARN, asked once per run (it is the same for every credential).
    caller: tokio::sync::OnceCell<Option<String>>,
    /// How long `verify` waits for a new key to propagate.
    pub verify_policy: RetryPolicy,
}

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProvider")
            .field("region", &self.config.region())
            .finish_non_exhaustive()
    }
}

impl AwsProvider {
    /// Loads the standard AWS configuration (pinned behavior version, SDK retries off).
    pub async fn from_env() -> Self {
        let config = aws_config::defaults(aws_config::BehaviorVersion::v2026_01_12())
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await;
        Self::from_config(config)
    }

    /// Uses an existing SDK configuration.
    pub fn from_config(config: aws_config::SdkConfig) -> Self {
        let config = if config.region().is_none() {
            // IAM is global; the SDK still wants a region for signing.
            config
                .into_builder()
                .region(aws_config::Region::new("us-east-1"))
                .build()
        } else {
            config
        };
        AwsProvider {
            iam: aws_sdk_iam::Client::new(&config),
            caller: tokio::sync::OnceCell::new(),
            config,
            verify_policy: RetryPolicy {
                max_attempts: 12,
                base_delay: Duration::from_millis(500),
                max_delay: Duration::from_secs(8),
            },
        }
    }

    async fn caller(&self) -> Option<String> {
        self.caller
            .get_or_init(|| async {
                let sts = aws_sdk_sts::Client::new(&self.config);
                sts.get_caller_identity()
                    .send()
                    .await
                    .ok()
                    .and_then(|o| o.arn().map(str::to_owned))
            })
            .await
            .clone()
    }
}

fn to_utc(d: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    d.and_then(|d| DateTime::from_timestamp(d.secs(), d.subsec_nanos()))
}

/// Maps an SDK error to a [`ProviderError`], telling transient from permanent.
pub fn classify<E, R>(operation: &'static str, err: &SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let provider = NAME.to_owned();
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ProviderError::Transient {
                provider,
                operation,
                message: format!(
                    "{}",
                    aws_smithy_types::error::display::DisplayErrorContext(err)
                ),
            }
        }
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e.code().unwrap_or("Unknown");
            let message = format!("{code}: {}", e.message().unwrap_or("no message"));
            match code {
                "Throttling"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "TooManyRequestsException"
                | "ServiceUnavailable"
                | "ServiceFailure"
                | "InternalFailure"
                | "RequestTimeout" => ProviderError::Transient {
                    provider,
                    operation,
                    message,
                },
                "AccessDenied"
                | "AccessDeniedException"
                | "UnauthorizedOperation"
                | "InvalidClientTokenId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken" => ProviderError::AccessDenied {
                    provider,
                    operation,
                    message,
                },
                "NoSuchEntity" => ProviderError::NotFound {
                    provider,
                    what: message,
                },
                _ => ProviderError::Permanent {
                    provider,
                    operation,
                    message,
                },
            }
        }
        _ => ProviderError::Permanent {
            provider,
            operation,
            message: format!(
                "{}",
                aws_smithy_types::error::display::DisplayErrorContext(err)
            ),
        },
    }
}

fn status(s: Option<&StatusType>) -> KeyStatus {
    match s {
        Some(StatusType::Inactive) => KeyStatus::Inactive,
        Some(StatusType::Expired) => KeyStatus::Expired,
        _ => KeyStatus::Active,
    }
}

#[async_trait]
impl Provider for AwsProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_keys_per_identity: Some(MAX_KEYS),
            can_disable: true,
            needs_propagation: true,
        }
    }

    async fn preflight(&self, t: &Target) -> ProviderResult<()> {
        let user = t.param("username")?;
        t.param("account")?;
        self.iam
            .get_user()
            .user_name(user)
            .send()
            .await
            .map_err(|e| classify("GetUser", &e))?;
        self.iam
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .map_err(|e| classify("ListAccessKeys", &e))?;
        Ok(())
    }

    async fn keys(&self, t: &Target) -> ProviderResult<Vec<KeyInfo>> {
        let user = t.param("username")?;
        let out = self
            .iam
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .map_err(|e| classify("ListAccessKeys", &e))?;
        let mut keys = Vec::new();
        for m in out.access_key_metadata() {
            let Some(id) = m.access_key_id() else {
                continue;
            };
            let last = self
                .iam
                .get_access_key_last_used()
                .access_key_id(id)
                .send()
                .await
                .map_err(|e| classify("GetAccessKeyLastUsed", &e))?;
            keys.push(KeyInfo {
                id: KeyId(id.to_owned()),
                created: to_utc(m.create_date()),
                status: status(m.status()),
                last_used: to_utc(last.access_key_last_used().and_then(|l| l.last_used_date())),
            });
        }
        keys.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(keys)
    }

    async fn mint(&self, t: &Target) -> ProviderResult<Minted> {
        let user = t.param("username")?;
        // Last-use data (one call per key) only matters when a slot must be freed.
        let listed = self
            .iam
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .map_err(|e| classify("ListAccessKeys", &e))?;
        if listed.access_key_metadata().len() as u32 >= MAX_KEYS {
            let existing = self.keys(t).await?;
            // Free a slot only with a key nobody references that is inactive or never used.
            let free = existing.iter().find(|k| {
                !t.referenced.contains(&k.id)
                    && t.current_key.as_ref() != Some(&k.id)
                    && (k.status != KeyStatus::Active || k.last_used.is_none())
            });
            let Some(free) = free else {
                return Err(ProviderError::KeyLimit {
                    provider: NAME.into(),
                    identity: format!("IAM user {user}"),
                    count: existing.len(),
                    hint: format!(
                        "keys {}: each is referenced by a manifest or active and used; finish or revoke a staged rotation, or delete an unused key by hand",
                        existing
                            .iter()
                            .map(|k| k.id.0.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            };
            tracing::info!(user, key = %free.id, "deleting an unreferenced, unused key to make room");
            self.revoke(t, &free.id, Revoke::Delete).await?;
        }
        let out = self
            .iam
            .create_access_key()
            .user_name(user)
            .send()
            .await
            .map_err(|e| classify("CreateAccessKey", &e))?;
        let key = out.access_key().ok_or_else(|| ProviderError::Permanent {
            provider: NAME.into(),
            operation: "CreateAccessKey",
            message: "response has no access key".into(),
        })?;
        let mut fields = BTreeMap::new();
        fields.insert(
            "AccessKeyId".to_owned(),
            SecretValue::new(key.access_key_id()),
        );
        fields.insert(
            "SecretAccessKey".to_owned(),
            SecretValue::new(key.secret_access_key()),
        );
        Ok(Minted {
            key_id: KeyId(key.access_key_id().to_owned()),
            created: to_utc(key.create_date()).unwrap_or_else(Utc::now),
            fields,
            operator: self.caller().await,
        })
    }

    async fn verify(&self, m: &Minted) -> ProviderResult<()> {
        let (Some(id), Some(secret)) =
            (m.fields.get("AccessKeyId"), m.fields.get("SecretAccessKey"))
        else {
            return Err(ProviderError::Permanent {
                provider: NAME.into(),
                operation: "verify",
                message: "minted credential lacks AccessKeyId/SecretAccessKey".into(),
            });
        };
        let creds = aws_credential_types::Credentials::new(
            id.expose(),
            secret.expose(),
            None,
            None,
            "secret-manager-verify",
        );
        let conf = aws_sdk_sts::config::Builder::from(&self.config)
            .credentials_provider(creds)
            .build();
        let sts = aws_sdk_sts::Client::from_conf(conf);
        // A new IAM key takes a few seconds to be accepted everywhere: while STS rejects it
        // as unknown, that is propagation, not failure.
        self.verify_policy
            .run("GetCallerIdentity", || async {
                match sts.get_caller_identity().send().await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(classify("GetCallerIdentity", &e).denied_as_propagation()),
                }
            })
            .await
    }

    async fn revoke(&self, t: &Target, key: &KeyId, how: Revoke) -> ProviderResult<()> {
        let user = t.param("username")?;
        let result = match how {
            Revoke::Delete => self
                .iam
                .delete_access_key()
                .user_name(user)
                .access_key_id(&key.0)
                .send()
                .await
                .map(drop)
                .map_err(|e| classify("DeleteAccessKey", &e)),
            Revoke::Disable => self
                .iam
                .update_access_key()
                .user_name(user)
                .access_key_id(&key.0)
                .status(StatusType::Inactive)
                .send()
                .await
                .map(drop)
                .map_err(|e| classify("UpdateAccessKey", &e)),
        };
        match result {
            // Idempotent: an absent key is already revoked.
            Err(ProviderError::NotFound { .. }) => Ok(()),
            other => other,
        }
    }
}
