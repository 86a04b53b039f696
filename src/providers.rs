//! Picking a provider by the `source` annotation: one registration point.
//!
//! Built-in sources are cargo features (all on by default); any other name is an external
//! plugin `secret-manager-provider-<name>` on PATH.

use crate::provider::{Provider, ProviderError, ProviderResult};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Providers by source name, created on first use and shared for the run.
#[derive(Default)]
pub struct Providers {
    cache: Mutex<HashMap<String, Arc<dyn Provider>>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers").finish_non_exhaustive()
    }
}

async fn create(source: &str) -> ProviderResult<Arc<dyn Provider>> {
    match source {
        #[cfg(feature = "aws")]
        "aws" => Ok(Arc::new(secret_manager_aws::AwsProvider::from_env().await)),
        #[cfg(not(feature = "aws"))]
        "aws" => Err(ProviderError::NotCompiledIn {
            name: source.into(),
            feature: "aws",
        }),
        #[cfg(feature = "azure")]
        "azure" => Ok(Arc::new(secret_manager_azure::AzureProvider::from_env()?)),
        #[cfg(not(feature = "azure"))]
        "azure" => Err(ProviderError::NotCompiledIn {
            name: source.into(),
            feature: "azure",
        }),
        #[cfg(feature = "gcp")]
        "gcp" => Ok(Arc::new(secret_manager_gcp::GcpProvider::from_env().await?)),
        #[cfg(not(feature = "gcp"))]
        "gcp" => Err(ProviderError::NotCompiledIn {
            name: source.into(),
            feature: "gcp",
        }),
        #[cfg(feature = "exec")]
        other => secret_manager_exec::ExecProvider::find(other)
            .map(|p| Arc::new(p) as Arc<dyn Provider>)
            .ok_or_else(|| ProviderError::UnknownSource { name: other.into() }),
        #[cfg(not(feature = "exec"))]
        other => Err(ProviderError::NotCompiledIn {
            name: other.into(),
            feature: "exec",
        }),
    }
}

impl Providers {
    /// The provider for `source`.
    pub async fn get(&self, source: &str) -> ProviderResult<Arc<dyn Provider>> {
        let mut cache = self.cache.lock().await;
        if let Some(p) = cache.get(source) {
            return Ok(p.clone());
        }
        let p = create(source).await?;
        cache.insert(source.to_owned(), p.clone());
        Ok(p)
    }
}
