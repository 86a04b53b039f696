#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use secret_manager_provider as api;

pub mod eks;

use api::{
    Attempt, Capabilities, Clock, KeyId, KeyInfo, KeyStatus, Minted, Propagation, Provider,
    ProviderError, ProviderResult, Revoke, Revoked, SecretValue, SystemClock, Target,
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

/// How long a new access key may take before STS accepts it (IAM is eventually
/// consistent; new keys usually work within 10–15 s).
pub const PROPAGATION_WINDOW: Duration = Duration::from_secs(30);

/// The role to assume for one AWS account's users (`providers.aws.accounts` in
/// `.secret-manager.yaml`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRole {
    /// `arn:aws:iam::<account>:role/<name>`.
    pub role_arn: String,
    /// External id the role's trust policy requires, if any.
    pub external_id: Option<String>,
}

/// The caller the source sees for one account's calls.
#[derive(Clone, Debug)]
struct Caller {
    arn: String,
    account: String,
}

/// Clients for one AWS account: the ambient credentials, or a role assumed for it.
struct Account {
    config: aws_config::SdkConfig,
    iam: aws_sdk_iam::Client,
    caller: tokio::sync::OnceCell<Caller>,
    /// Set when this account's credentials could not be loaded at all: every later call
    /// of the run fails at once with the same one line instead of walking the
    /// credential chain again.
    no_credentials: std::sync::OnceLock<String>,
}

/// AWS IAM user access keys.
///
/// Credentials come from the standard chain (environment, shared profile, SSO, web
/// identity / IRSA, container and instance metadata). For an account listed in
/// `providers.aws.accounts`, that chain's credentials assume the account's role (the
/// session name carries the run id, so CloudTrail names the run). Every identity's
/// `account` annotation is compared with the caller's account before anything changes.
/// Endpoints follow the standard overrides: `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_IAM`,
/// `AWS_ENDPOINT_URL_STS`. The SDK's own retries are off: the engine's retry layer
/// decides.
pub struct AwsProvider {
    config: aws_config::SdkConfig,
    roles: BTreeMap<String, AccountRole>,
    session: String,
    accounts: tokio::sync::Mutex<BTreeMap<String, std::sync::Arc<Account>>>,
    /// How long `verify` (and a `mint` that meets a delete IAM has not made visible yet)
    /// waits for IAM to propagate a change.
    pub propagation: Propagation,
    clock: std::sync::Arc<dyn Clock>,
}

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProvider")
            .field("region", &self.config.region())
            .field("roles", &self.roles.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A valid STS session name from `run` (`[\w+=,.@-]{2,64}`).
pub fn session_name(run: &str) -> String {
    let mut s: String = format!("secret-manager-{run}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(64);
    s
}

impl AwsProvider {
    /// Loads the standard AWS configuration (pinned behavior version, SDK retries off),
    /// with no per-account roles.
    pub async fn from_env() -> Self {
        Self::from_env_with(BTreeMap::new(), "secret-manager").await
    }

    /// Like [`AwsProvider::from_env`], assuming `roles[account]` for those accounts;
    /// `run` names the STS session.
    pub async fn from_env_with(roles: BTreeMap<String, AccountRole>, run: &str) -> Self {
        let config = aws_config::defaults(aws_config::BehaviorVersion::v2026_01_12())
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await;
        Self::from_config(config).with_roles(roles, run)
    }

    /// Assumes `roles[account]` for those accounts' identities; `run` names the session.
    pub fn with_roles(mut self, roles: BTreeMap<String, AccountRole>, run: &str) -> Self {
        self.roles = roles;
        self.session = session_name(run);
        self
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
            config,
            roles: BTreeMap::new(),
            session: session_name("secret-manager"),
            accounts: tokio::sync::Mutex::new(BTreeMap::new()),
            propagation: Propagation::new(PROPAGATION_WINDOW),
            clock: SystemClock::shared(),
        }
    }

    /// Waits up to `window` for new keys to work (`providers.aws.propagationWindow`).
    pub fn with_propagation_window(mut self, window: Duration) -> Self {
        self.propagation.window = window;
        self
    }

    /// Measures the propagation window on `clock` (tests use a virtual one).
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The clients for the account of `t` (built once per account).
    async fn account(&self, t: &Target) -> ProviderResult<std::sync::Arc<Account>> {
        let id = t.param("account")?.to_owned();
        let mut accounts = self.accounts.lock().await;
        if let Some(a) = accounts.get(&id) {
            return Ok(a.clone());
        }
        let config = match self.roles.get(&id) {
            Some(role) => {
                let mut b = aws_config::sts::AssumeRoleProvider::builder(&role.role_arn)
                    .session_name(&self.session)
                    .configure(&self.config);
                if let Some(x) = &role.external_id {
                    b = b.external_id(x);
                }
                let provider = b.build().await;
                self.config
                    .to_builder()
                    .credentials_provider(
                        aws_credential_types::provider::SharedCredentialsProvider::new(provider),
                    )
                    .build()
            }
            None => self.config.clone(),
        };
        let a = std::sync::Arc::new(Account {
            iam: aws_sdk_iam::Client::new(&config),
            config,
            caller: tokio::sync::OnceCell::new(),
            no_credentials: std::sync::OnceLock::new(),
        });
        accounts.insert(id, a.clone());
        Ok(a)
    }

    /// Who the account's calls run as (asked once per account per run; a failure is
    /// not remembered, so a transient one is retried by the next call).
    async fn caller(&self, a: &Account) -> ProviderResult<Caller> {
        if let Some(message) = a.no_credentials.get() {
            return Err(ProviderError::NoCredentials {
                provider: NAME.to_owned(),
                message: message.clone(),
            });
        }
        a.caller
            .get_or_try_init(|| async {
                let sts = aws_sdk_sts::Client::new(&a.config);
                let o = sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| classify("GetCallerIdentity", &e))
                    .inspect_err(|e| {
                        if let ProviderError::NoCredentials { message, .. } = e {
                            let _ = a.no_credentials.set(message.clone());
                        }
                    })?;
                Ok(Caller {
                    arn: o.arn().unwrap_or_default().to_owned(),
                    account: o.account().unwrap_or_default().to_owned(),
                })
            })
            .await
            .cloned()
    }
}

fn to_utc(d: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    d.and_then(|d| DateTime::from_timestamp(d.secs(), d.subsec_nanos()))
}

/// The one-line hint for a machine without usable AWS credentials.
const NO_CREDENTIALS: &str = "no AWS credentials found: set AWS_PROFILE (after `aws sso login` if it is an SSO profile), \
     or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with IRSA, EKS Pod \
     Identity or an instance role";

/// When `err` is the credential chain failing to produce credentials, one line saying
/// so and how to fix it (the SDK's own report lists every provider of the chain, ~8 KB).
///
/// The whole source chain is read, not just its first credentials error: with a role to
/// assume, the error of the role's STS call wraps the base chain's own failure (the SDK
/// shows it as "dispatch failure"), and a metadata endpoint that refuses the token request
/// (a node that blocks pods from IMDS) ends the chain with a provider error rather than
/// "not loaded".
fn no_credentials(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    use aws_config::imds::client::error::ImdsError;
    use aws_credential_types::provider::error::CredentialsError;
    let mut first: Option<&CredentialsError> = None;
    let mut not_loaded = false;
    let mut timed_out = false;
    let mut imds_refused = false;
    let mut e: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cur) = e {
        if let Some(ce) = cur.downcast_ref::<CredentialsError>() {
            first.get_or_insert(ce);
            match ce {
                CredentialsError::CredentialsNotLoaded(_) => not_loaded = true,
                CredentialsError::ProviderTimedOut(_) => timed_out = true,
                _ => {}
            }
        }
        if let Some(ImdsError::FailedToLoadToken(t)) = cur.downcast_ref::<ImdsError>() {
            imds_refused |= !t.is_dispatch_failure();
        }
        e = cur.source();
    }
    let first = first?;
    if not_loaded {
        return Some(NO_CREDENTIALS.to_owned());
    }
    if imds_refused {
        return Some(format!(
            "{NO_CREDENTIALS} (the instance metadata service refused to give this machine a \
             token: it is disabled, or a pod needs a hop limit of 2)"
        ));
    }
    // A timeout of the credential source is worth another try by the caller.
    if timed_out {
        return None;
    }
    let mut line = format!("AWS credentials could not be loaded: {first}");
    if let Some(src) = std::error::Error::source(first) {
        line.push_str(&format!(": {src}"));
    }
    line.truncate(line.floor_char_boundary(400));
    Some(line.replace('\n', " "))
}

/// Maps an SDK error to a [`ProviderError`], telling transient from permanent.
pub fn classify<E, R>(operation: &'static str, err: &SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let provider = NAME.to_owned();
    if let Some(message) = no_credentials(err) {
        return ProviderError::NoCredentials { provider, message };
    }
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
                | "TooManyRequestsException" => ProviderError::Throttled {
                    provider,
                    operation,
                    message,
                    retry_after: None,
                },
                "ServiceUnavailable" | "ServiceFailure" | "InternalFailure" | "RequestTimeout" => {
                    ProviderError::Transient {
                        provider,
                        operation,
                        message,
                    }
                }
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
                "LimitExceeded" => ProviderError::KeyLimit {
                    provider,
                    identity: "the IAM user".into(),
                    count: MAX_KEYS as usize,
                    hint: message,
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
            reports_last_use: true,
        }
    }

    async fn preflight(&self, t: &Target) -> ProviderResult<()> {
        let user = t.param("username")?;
        let expected = t.param("account")?;
        let a = self.account(t).await?;
        // The credentials must act in the manifest's account: IAM user names are only
        // unique per account, so a mismatch would mint a key for someone else's user.
        let caller = self.caller(&a).await?;
        if caller.account != expected {
            let how = if self.roles.is_empty() {
                format!(
                    "run with credentials of account {expected}, or add providers.aws.accounts.\"{expected}\".roleArn to .secret-manager.yaml"
                )
            } else {
                format!(
                    "check providers.aws.accounts.\"{expected}\" in .secret-manager.yaml: the role must live in account {expected}"
                )
            };
            return Err(ProviderError::IdentityMismatch {
                provider: NAME.into(),
                message: format!(
                    "the manifest's account is {expected}, but the credentials act in account {} ({}); nothing was changed. {how}",
                    caller.account, caller.arn
                ),
            });
        }
        // The user exists. Listing its keys (and the permission to) is the next call of
        // every caller (`keys`), so it is not made twice.
        a.iam
            .get_user()
            .user_name(user)
            .send()
            .await
            .map_err(|e| classify("GetUser", &e))?;
        Ok(())
    }

    async fn keys(&self, t: &Target) -> ProviderResult<Vec<KeyInfo>> {
        let user = t.param("username")?;
        let a = self.account(t).await?;
        let out = a
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
            // When a key was last used is one call per key. The key `t` names as current is
            // the one in use (a rotation replaces it, `keys` asks without a current key),
            // so it is not asked for; every other key is (foreign keys in a key-limit
            // message, the old key for --require-old-key-unused).
            let last_used = if t.current_key.as_ref().is_some_and(|k| k.0 == id) {
                None
            } else {
                let last = a
                    .iam
                    .get_access_key_last_used()
                    .access_key_id(id)
                    .send()
                    .await
                    .map_err(|e| classify("GetAccessKeyLastUsed", &e))?;
                to_utc(last.access_key_last_used().and_then(|l| l.last_used_date()))
            };
            keys.push(KeyInfo {
                id: KeyId(id.to_owned()),
                created: to_utc(m.create_date()),
                status: status(m.status()),
                last_used,
                // IAM access keys do not expire.
                expires: None,
            });
        }
        keys.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(keys)
    }

    async fn mint(&self, t: &Target) -> ProviderResult<Minted> {
        let user = t.param("username")?;
        let a = self.account(t).await?;
        // No slot is freed here: the engine decides which keys may go (only keys it
        // minted itself). A full user is IAM's LimitExceeded, mapped to KeyLimit — unless
        // the user really has room and IAM has not made a recent delete visible yet: then
        // the create is tried again (it created nothing) within the propagation window.
        let out = self
            .propagation
            .wait(self.clock.as_ref(), "CreateAccessKey", || async {
                let e = match a.iam.create_access_key().user_name(user).send().await {
                    Ok(out) => return Attempt::Done(out),
                    Err(e) => classify("CreateAccessKey", &e),
                };
                let ProviderError::KeyLimit { provider, hint, .. } = e else {
                    return Attempt::Failed(e);
                };
                let listed = a.iam.list_access_keys().user_name(user).send().await;
                match listed.map(|l| l.access_key_metadata().len()) {
                    Ok(n) if n < MAX_KEYS as usize => Attempt::Pending(ProviderError::Transient {
                        provider,
                        operation: "CreateAccessKey",
                        message: format!(
                            "{hint} although IAM user {user} lists {n} key(s): a recent delete is not visible yet"
                        ),
                    }),
                    listed => Attempt::Failed(ProviderError::KeyLimit {
                        provider,
                        identity: format!("IAM user {user}"),
                        count: listed.unwrap_or(MAX_KEYS as usize),
                        hint,
                    }),
                }
            })
            .await?;
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
            operator: self.caller(&a).await.ok().map(|c| c.arn),
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
        // Only the endpoint and region matter here: the credentials are the new key's.
        let conf = aws_sdk_sts::config::Builder::from(&self.config)
            .credentials_provider(creds)
            .build();
        let sts = aws_sdk_sts::Client::from_conf(conf);
        // A new IAM key takes a few seconds to be accepted everywhere: while STS rejects it
        // as unknown (or throttles), that is propagation; anything else is a verdict.
        self.propagation
            .wait(
                self.clock.as_ref(),
                "GetCallerIdentity with the new key",
                || async {
                    match sts.get_caller_identity().send().await {
                        Ok(_) => Attempt::Done(()),
                        Err(e) => match classify("GetCallerIdentity", &e) {
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
        let user = t.param("username")?;
        let a = self.account(t).await?;
        let result = match how {
            Revoke::Delete => a
                .iam
                .delete_access_key()
                .user_name(user)
                .access_key_id(&key.0)
                .send()
                .await
                .map(drop)
                .map_err(|e| classify("DeleteAccessKey", &e)),
            Revoke::Disable => a
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
            Ok(()) => Ok(Revoked::Done),
            // Idempotent: an absent key is already revoked.
            Err(ProviderError::NotFound { .. }) => Ok(Revoked::AlreadyGone),
            Err(e) => Err(e),
        }
    }
}
