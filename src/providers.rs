//! Picking a provider by the `source` annotation: one registration point.
//!
//! Built-in sources are cargo features (all on by default); any other name is an external
//! plugin `secret-manager-provider-<name>` on PATH. [`Providers::with`] puts any
//! implementation under a name — how tests hand the engine an in-memory source. Every
//! provider handed out is wrapped in [`Checked`] (key ids of the source's format, printable)
//! inside [`Retrying`], the one place its calls are retried, inside [`OnWorker`], which
//! runs each call as its own task.

use crate::config::ProviderSettings;
use crate::provider::{Checked, Provider, ProviderError, ProviderResult, RetryPolicy, Retrying};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Providers by source name, created on first use and shared for the run.
pub struct Providers {
    settings: ProviderSettings,
    session: String,
    policy: RetryPolicy,
    injected: HashMap<String, Arc<dyn Provider>>,
    cache: Mutex<HashMap<String, Arc<dyn Provider>>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("injected", &self.injected.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Default for Providers {
    fn default() -> Self {
        Providers::builtin(ProviderSettings::default(), "secret-manager")
    }
}

impl Providers {
    /// The built-in providers (and plugins on PATH), configured by `settings` (from
    /// `.secret-manager.yaml`). `session` names this run where a source records the
    /// caller's session (AWS: the AssumeRole session name, seen in CloudTrail).
    pub fn builtin(settings: ProviderSettings, session: &str) -> Providers {
        Providers {
            settings,
            session: session.to_owned(),
            policy: RetryPolicy::default(),
            injected: HashMap::new(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Serves `provider` for source `name`, instead of (or in addition to) the built-ins.
    pub fn with(mut self, name: &str, provider: Arc<dyn Provider>) -> Providers {
        self.injected.insert(name.to_owned(), provider);
        self
    }

    /// Retries provider calls with `policy` instead of the default.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Providers {
        self.policy = policy;
        self
    }

    /// The provider for `source`, wrapped in the retry layer.
    pub async fn get(&self, source: &str) -> ProviderResult<Arc<dyn Provider>> {
        let mut cache = self.cache.lock().await;
        if let Some(p) = cache.get(source) {
            return Ok(p.clone());
        }
        let inner = match self.injected.get(source) {
            Some(p) => p.clone(),
            None => create(source, &self.settings, &self.session).await?,
        };
        let retrying: Arc<dyn Provider> = Arc::new(Retrying::new(Checked::new(inner), self.policy));
        let p: Arc<dyn Provider> = Arc::new(OnWorker(retrying));
        cache.insert(source.to_owned(), p.clone());
        Ok(p)
    }
}

#[allow(unused_variables)]
async fn create(
    source: &str,
    settings: &ProviderSettings,
    session: &str,
) -> ProviderResult<Arc<dyn Provider>> {
    match source {
        #[cfg(feature = "aws")]
        "aws" => {
            let accounts = settings
                .aws
                .accounts
                .iter()
                .map(|(id, a)| {
                    (
                        id.clone(),
                        secret_manager_aws::AccountRole {
                            role_arn: a.role_arn.clone(),
                            external_id: a.external_id.clone(),
                        },
                    )
                })
                .collect();
            let mut p = secret_manager_aws::AwsProvider::from_env_with(accounts, session).await;
            if let Some(w) = settings.aws_window() {
                p = p.with_propagation_window(w);
            }
            Ok(Arc::new(p))
        }
        #[cfg(not(feature = "aws"))]
        "aws" => Err(ProviderError::NotCompiledIn {
            name: source.into(),
            feature: "aws",
        }),
        #[cfg(feature = "azure")]
        "azure" => {
            let mut p = secret_manager_azure::AzureProvider::from_env()?
                .with_secret_lifetime(settings.azure_secret_lifetime());
            if let Some(w) = settings.azure_window() {
                p = p.with_propagation_window(w);
            }
            Ok(Arc::new(p))
        }
        #[cfg(not(feature = "azure"))]
        "azure" => Err(ProviderError::NotCompiledIn {
            name: source.into(),
            feature: "azure",
        }),
        #[cfg(feature = "gcp")]
        "gcp" => {
            let mut p = secret_manager_gcp::GcpProvider::from_env().await?;
            if let Some(w) = settings.gcp_window() {
                p = p.with_propagation_window(w);
            }
            Ok(Arc::new(p))
        }
        #[cfg(not(feature = "gcp"))]
        "gcp" => Err(ProviderError::NotCompiledIn {
            name: source.into(),
            feature: "gcp",
        }),
        crate::random_source::NAME => Ok(Arc::new(crate::random_source::RandomProvider::default())),
        crate::deploy_key_source::NAME => Ok(Arc::new(
            crate::deploy_key_source::DeployKeyProvider::default(),
        )),
        crate::deploy_token_source::NAME => Ok(Arc::new(
            crate::deploy_token_source::DeployTokenProvider::default(),
        )),
        crate::mysql_source::NAME => Ok(Arc::new(crate::mysql_source::MysqlProvider::default())),
        crate::postgres_source::NAME => {
            Ok(Arc::new(crate::postgres_source::PostgresProvider::default()))
        }
        #[cfg(feature = "exec")]
        other => {
            let plugin = secret_manager_exec::PluginSettings {
                env: settings
                    .exec
                    .get(other)
                    .map(|e| e.env.clone())
                    .unwrap_or_default(),
                timeout: settings
                    .exec_timeout(other)
                    .unwrap_or(secret_manager_exec::DEFAULT_TIMEOUT),
            };
            secret_manager_exec::ExecProvider::connect(other, plugin)
                .await?
                .map(|p| Arc::new(p) as Arc<dyn Provider>)
                .ok_or_else(|| ProviderError::UnknownSource { name: other.into() })
        }
        #[cfg(not(feature = "exec"))]
        other => Err(ProviderError::NotCompiledIn {
            name: other.into(),
            feature: "exec",
        }),
    }
}

/// Kills the external plugins still running (their whole process groups) and starts no
/// other: for a process that exits at once, without unwinding the calls in flight.
pub fn kill_plugins() {
    #[cfg(feature = "exec")]
    secret_manager_exec::stop_all();
}

/// An EKS bearer token for `cluster` from the environment's AWS identity: the token and
/// when it expires (see `secret-manager eks-token`).
#[cfg(feature = "aws")]
pub async fn eks_token(
    cluster: &str,
    region: Option<&str>,
) -> Result<(String, std::time::SystemTime), crate::provider::ProviderError> {
    let t = secret_manager_aws::eks::token_from_env(cluster, region).await?;
    Ok((t.token, t.expires))
}

/// Runs every call of the provider it wraps as its own tokio task.
///
/// The engine drives a batch's calls from one task (`engine::bounded`): the client work of
/// each call — signing, endpoint rules, parsing the answer — then runs on that task's
/// thread, one call after the other, while the calls' network waits overlap. On a
/// 2-core pod at 32 calls in flight that queueing made every provider phase ~1.5× its
/// latency. As tasks, the calls' client work runs on any runtime worker.
///
/// Dropping a call's future aborts its task, as dropping the call itself would have.
#[derive(Debug)]
pub struct OnWorker(pub Arc<dyn Provider>);

/// Aborts the task when the caller stops waiting for it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn on_worker<T, F>(fut: F) -> T
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut task = AbortOnDrop(tokio::spawn(fut));
    match (&mut task.0).await {
        Ok(v) => v,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only a runtime shutting down cancels a task it did not abort.
            Err(e) => panic!("a provider call's task ended without an answer: {e}"),
        },
    }
}

#[async_trait::async_trait]
impl Provider for OnWorker {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn capabilities(&self) -> crate::provider::Capabilities {
        self.0.capabilities()
    }
    async fn preflight(&self, t: &crate::provider::Target) -> ProviderResult<()> {
        let (p, t) = (self.0.clone(), t.clone());
        on_worker(async move { p.preflight(&t).await }).await
    }
    async fn keys(
        &self,
        t: &crate::provider::Target,
    ) -> ProviderResult<Vec<crate::provider::KeyInfo>> {
        let (p, t) = (self.0.clone(), t.clone());
        on_worker(async move { p.keys(&t).await }).await
    }
    async fn mint(&self, t: &crate::provider::Target) -> ProviderResult<crate::provider::Minted> {
        let (p, t) = (self.0.clone(), t.clone());
        on_worker(async move { p.mint(&t).await }).await
    }
    async fn verify(&self, m: &crate::provider::Minted) -> ProviderResult<()> {
        let (p, m) = (self.0.clone(), m.clone());
        on_worker(async move { p.verify(&m).await }).await
    }
    async fn revoke(
        &self,
        t: &crate::provider::Target,
        key: &crate::provider::KeyId,
        how: crate::provider::Revoke,
    ) -> ProviderResult<crate::provider::Revoked> {
        let (p, t, key) = (self.0.clone(), t.clone(), key.clone());
        on_worker(async move { p.revoke(&t, &key, how).await }).await
    }
    async fn usage_since(
        &self,
        t: &crate::provider::Target,
        key: &crate::provider::KeyId,
        since: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> ProviderResult<crate::provider::Usage> {
        let (p, t, key) = (self.0.clone(), t.clone(), key.clone());
        on_worker(async move { p.usage_since(&t, &key, since, now).await }).await
    }
}
