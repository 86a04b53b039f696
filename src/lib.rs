//! secret-manager: keeps the credentials inside Bitnami SealedSecrets fresh across a GitOps fleet.
//!
//! The library is organised the way a rotation flows: [`scan`] finds annotated
//! SealedSecrets in a config repo, [`inventory`] knows the clusters, [`list`] and [`lint`]
//! report on them. The provider contract lives in the `secret-manager-provider` crate and
//! is re-exported as [`provider`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod annotations;
pub mod audit;
pub mod config;
pub mod create;
pub mod duration;
pub mod engine;
pub mod forge;
pub mod fsx;
pub mod gitops;
pub mod inventory;
pub mod journal;
pub mod keys;
pub mod lint;
pub mod list;
pub mod manifest;
pub mod names;
pub mod providers;
pub mod reseal;
pub mod scan;
pub mod seal;
pub mod text;

pub use secret_manager_provider as provider;

use std::path::{Path, PathBuf};

/// Errors resolving clusters and their certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// No such cluster in `cluster-values/`.
    #[error("no cluster `{id}` in cluster-values/ (known: {})", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    UnknownCluster {
        /// Requested id.
        id: String,
        /// Known ids.
        known: Vec<String>,
    },
    /// The cluster has no `sealingCert`.
    #[error("cluster `{id}` has no secretManager.sealingCert in {}; add one or pass --cert", file.display())]
    NoSealingCert {
        /// Cluster.
        id: String,
        /// Inventory file.
        file: PathBuf,
    },
    /// The repo's certificate for a cluster is not one the tool may seal to.
    #[error("{0}")]
    UntrustedCert(String),
    /// Loading or validating the certificate failed.
    #[error(transparent)]
    Seal(#[from] seal::SealError),
}

/// An opened config repo: its configuration and cluster inventory.
#[derive(Debug, Clone)]
pub struct Repo {
    /// Repo root.
    pub root: PathBuf,
    /// `.secret-manager.yaml`, or defaults.
    pub config: config::Config,
    /// `cluster-values/`.
    pub inventory: inventory::Inventory,
}

impl Repo {
    /// Opens `root`: reads the configuration and the inventory.
    pub fn open(root: &Path) -> config::ConfigResult<Repo> {
        let meta = std::fs::metadata(root).map_err(|source| config::ConfigError::Read {
            path: root.to_path_buf(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(config::ConfigError::Invalid {
                path: root.to_path_buf(),
                field: "--repo".into(),
                message: "not a directory; pass the root of the GitOps config repo".into(),
            });
        }
        let config = config::Config::load(root)?;
        let inventory = inventory::Inventory::load(root, &config)?;
        Ok(Repo {
            root: root.to_path_buf(),
            config,
            inventory,
        })
    }

    /// The validated sealing certificate of cluster `id` (from its `sealingCert`).
    pub async fn sealing_cert(
        &self,
        id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<seal::SealingCert, RepoError> {
        let cluster = self
            .inventory
            .get(id)
            .ok_or_else(|| RepoError::UnknownCluster {
                id: id.to_owned(),
                known: self.inventory.ids().map(str::to_owned).collect(),
            })?;
        let spec = cluster
            .sealing_cert
            .as_deref()
            .ok_or_else(|| RepoError::NoSealingCert {
                id: id.to_owned(),
                file: cluster.file.clone(),
            })?;
        let source = seal::CertSource::parse_in_repo(spec, &self.root)?;
        let origin = format!("cluster {id}: sealingCert {spec}");
        Ok(source
            .load(
                &origin,
                cluster.kube_context.as_ref().map(|c| c.as_str()),
                now,
            )
            .await?)
    }

    /// The sealing certificate of cluster `id`, only when it may seal a new credential
    /// ([`seal::trust`]): pinned by the operator, served by the cluster's controller,
    /// recorded by most of the cluster's manifests in `found`, or the first one.
    pub async fn trusted_sealing_cert(
        &self,
        id: &str,
        now: chrono::DateTime<chrono::Utc>,
        found: &[scan::Found],
        pins: &seal::trust::Pins,
    ) -> Result<seal::SealingCert, RepoError> {
        use seal::trust::{self, Basis};
        let cert = self.sealing_cert(id, now).await?;
        let cluster = self
            .inventory
            .get(id)
            .expect("sealing_cert found the cluster");
        let from_controller = cluster
            .sealing_cert
            .as_deref()
            .is_some_and(|s| s.starts_with("controller://"));
        let recorded = trust::recorded(found, id, &self.config.annotation_prefix);
        let fp = cert.fingerprint.clone();
        let mut controller = from_controller.then(|| fp.clone());
        let mut decided = trust::decide(id, &fp, pins, &recorded, controller.as_deref());
        if decided.is_err()
            && controller.is_none()
            && pins.of(id).is_none()
            && let Some(ctx) = &cluster.kube_context
        {
            // A changed certificate: ask the cluster's controller which one it serves.
            let ns = std::env::var("SEALED_SECRETS_CONTROLLER_NAMESPACE")
                .unwrap_or_else(|_| "kube-system".into());
            let name = std::env::var("SEALED_SECRETS_CONTROLLER_NAME")
                .unwrap_or_else(|_| "sealed-secrets-controller".into());
            match seal::CertSource::parse(&format!("controller://{ns}/{name}"), &self.root) {
                Ok(src) => match src.load("controller", Some(ctx.as_str()), now).await {
                    Ok(c) => controller = Some(c.fingerprint),
                    Err(e) => {
                        tracing::warn!(cluster = id, error = %e, "cannot verify the sealing certificate against the controller");
                    }
                },
                Err(e) => tracing::warn!(cluster = id, error = %e, "controller name"),
            }
            decided = trust::decide(id, &fp, pins, &recorded, controller.as_deref());
        }
        match decided {
            Ok(Basis::FirstUse) => {
                tracing::warn!(
                    cluster = id,
                    fingerprint = %fp,
                    "no manifest of this cluster records a sealing certificate yet: trusting the repo's on first use; pin it with {}",
                    trust::TRUSTED_CERTS_ENV
                );
                Ok(cert)
            }
            Ok(basis) => {
                tracing::debug!(cluster = id, ?basis, "sealing certificate trusted");
                Ok(cert)
            }
            Err(m) => Err(RepoError::UntrustedCert(m)),
        }
    }

    /// [`Repo::trusted_sealing_cert`] with this repo's own SealedSecrets as the record and
    /// the operator's pins from the environment: for one-off commands (`seal`, `create`).
    pub async fn sealing_cert_to_seal_with(
        &self,
        id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<seal::SealingCert, RepoError> {
        let pins = seal::trust::Pins::from_env().map_err(RepoError::UntrustedCert)?;
        let found = self.scan().secrets;
        self.trusted_sealing_cert(id, now, &found, &pins).await
    }

    /// Scans the repo for SealedSecrets.
    pub fn scan(&self) -> scan::ScanReport {
        scan::scan(
            &self.root,
            &scan::ScanOptions {
                prefix: self.config.annotation_prefix.clone(),
                cluster_ids: self.inventory.ids().map(str::to_owned).collect(),
                threads: 0,
            },
        )
    }
}

/// Whether a provider plugin `secret-manager-provider-<name>` is on PATH.
pub fn plugin_exists(name: &str) -> bool {
    #[cfg(feature = "exec")]
    {
        secret_manager_exec::find_plugin(name).is_some()
    }
    #[cfg(not(feature = "exec"))]
    {
        let _ = name;
        false
    }
}

#[cfg(feature = "failpoints")]
tokio::task_local! {
    /// In-process crash injection: the failpoint that [`failpoint`] turns into a panic
    /// for the future run inside `FAILPOINT.scope(..)`.
    pub static FAILPOINT: String;
}

/// The panic payload of an in-process failpoint.
#[cfg(feature = "failpoints")]
#[derive(Debug)]
pub struct Crash(pub String);

/// Test-only crash injection (cargo feature `failpoints`). When `SECRET_MANAGER_FAILPOINT`
/// names this point, the process exits at once with code 86, as if killed there; when it
/// says `<name>:pause`, the run stops there for `SECRET_MANAGER_FAILPOINT_PAUSE_MS`
/// (default 3000) milliseconds — time for a test to send a signal mid-phase. Inside a
/// [`FAILPOINT`] scope naming it, the run panics with [`Crash`]: no cleanup code runs,
/// as when a pod is killed (only destructors, which a kill would skip too).
#[cfg(feature = "failpoints")]
pub fn failpoint(name: &str) {
    let set = std::env::var("SECRET_MANAGER_FAILPOINT").unwrap_or_default();
    if set == name {
        eprintln!("failpoint {name}: exiting");
        std::process::exit(86);
    }
    if set.strip_suffix(":pause") == Some(name) {
        let ms = std::env::var("SECRET_MANAGER_FAILPOINT_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000);
        eprintln!("failpoint {name}: pausing {ms} ms");
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    if FAILPOINT.try_with(|f| f == name).unwrap_or(false) {
        std::panic::panic_any(Crash(name.to_owned()));
    }
}

/// Test-only crash injection; compiled out without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn failpoint(_name: &str) {}
