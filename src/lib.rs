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
pub mod blocking;
pub mod config;
pub mod consumers;
pub mod create;
pub mod db_logins;
pub mod deploy_key_source;
pub mod deploy_token_source;
pub mod duration;
pub mod engine;
pub mod forge;
pub mod forge_api;
pub mod fsx;
pub mod gitops;
pub mod inventory;
pub mod journal;
pub mod keys;
pub mod lint;
pub mod list;
pub mod manifest;
pub mod mysql_source;
pub mod names;
pub mod postgres_source;
pub mod providers;
pub mod random_source;
pub mod reseal;
pub mod scan;
pub mod seal;
pub mod template;
#[cfg(test)]
mod test_support;
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
    #[error(transparent)]
    UntrustedCert(#[from] seal::trust::Untrusted),
    /// Loading or validating the certificate failed.
    #[error(transparent)]
    Seal(#[from] seal::SealError),
}

/// Why main's settings could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MainError {
    /// A configuration or inventory file is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Main could not be fetched.
    #[error(transparent)]
    Git(#[from] gitops::git::GitError),
    /// The checkout and main disagree on where main is.
    #[error("{0}")]
    Moved(String),
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

    /// The configuration and inventory as commit `rev` of `git` has them (not as the
    /// checkout's files say): what a run acts on comes from the fetched main, whatever
    /// branch or uncommitted edits the checkout at `root` holds. Only regular files count:
    /// a symlink in the tree is an error naming it.
    pub fn open_at(root: &Path, git: &gitops::git::Git, rev: &str) -> config::ConfigResult<Repo> {
        let git_err = |e: gitops::git::GitError| config::ConfigError::Invalid {
            path: PathBuf::from(rev),
            field: "git".into(),
            message: e.to_string(),
        };
        let listing = git
            .run(&[
                "ls-tree",
                "-z",
                "--end-of-options",
                rev,
                "--",
                config::CONFIG_FILE,
                &format!("{}/", inventory::INVENTORY_DIR),
            ])
            .map_err(git_err)?;
        let mut specs = Vec::new();
        for entry in listing.split('\0').filter(|e| !e.is_empty()) {
            let Some((meta, path)) = entry.split_once('\t') else {
                continue;
            };
            let mode = meta.split(' ').next().unwrap_or_default();
            let is_yaml =
                path == config::CONFIG_FILE || path.ends_with(".yaml") || path.ends_with(".yml");
            if !is_yaml {
                continue;
            }
            if mode != "100644" && mode != "100755" {
                return Err(config::ConfigError::Unsafe(
                    fsx::RepoFileError::NotRegular {
                        path: text::escape(path).into_owned(),
                        what: if mode == "120000" {
                            "symlink"
                        } else {
                            "special entry"
                        },
                    },
                ));
            }
            specs.push(path.to_owned());
        }
        let blobs = git
            .read_blobs(
                &specs
                    .iter()
                    .map(|p| format!("{rev}:{p}"))
                    .collect::<Vec<_>>(),
            )
            .map_err(git_err)?;
        let mut config_src = None;
        let mut files = Vec::new();
        for (path, blob) in specs.into_iter().zip(blobs) {
            let Some(text) = blob else { continue };
            if text.len() as u64 > fsx::MAX_CONFIG_BYTES {
                return Err(config::ConfigError::Unsafe(fsx::RepoFileError::TooLarge {
                    path: text::escape(&path).into_owned(),
                    size: text.len() as u64,
                    limit: fsx::MAX_CONFIG_BYTES,
                }));
            }
            if path == config::CONFIG_FILE {
                config_src = Some(text);
            } else if let Some(name) = path
                .strip_prefix(inventory::INVENTORY_DIR)
                .and_then(|p| p.strip_prefix('/'))
                .filter(|n| !n.contains('/'))
            {
                files.push((name.to_owned(), text));
            }
        }
        let config = config::Config::from_source(config_src.as_deref())?;
        let inventory = inventory::Inventory::from_files(files, &config)?;
        Ok(Repo {
            root: root.to_path_buf(),
            config,
            inventory,
        })
    }

    /// The checkout at `root` only for where main is (`mainRemote`, `mainBranch`): main is
    /// fetched and the configuration and inventory are read from it ([`Repo::open_at`]).
    /// `root` stays the checkout (its git, its remotes).
    pub fn main_of(root: &Path) -> Result<Repo, MainError> {
        let checkout = Repo::open(root)?;
        let fleet = gitops::Fleet::new(&checkout);
        let tip = fleet.fetch_main()?;
        let main = Repo::open_at(root, fleet.git(), &tip)?;
        let (c, m) = (&checkout.config, &main.config);
        if c.main_remote != m.main_remote || c.main_branch != m.main_branch {
            return Err(MainError::Moved(format!(
                "this checkout's .secret-manager.yaml says main is {}/{}, but that main says {}/{}; update the checkout (git pull --ff-only {} {})",
                c.main_remote,
                c.main_branch,
                m.main_remote,
                m.main_branch,
                c.main_remote,
                c.main_branch
            )));
        }
        if checkout.config != main.config || checkout.inventory.clusters != main.inventory.clusters
        {
            tracing::info!(
                "the settings of this checkout differ from {}/{}: using main's (.secret-manager.yaml, cluster-values/)",
                m.main_remote,
                m.main_branch
            );
        }
        Ok(main)
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
        let pins = seal::trust::Pins::from_env().map_err(seal::trust::Untrusted::from)?;
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
        crate::blocking::sleep(std::time::Duration::from_millis(ms));
    }
    if FAILPOINT.try_with(|f| f == name).unwrap_or(false) {
        std::panic::panic_any(Crash(name.to_owned()));
    }
}

/// Test-only crash injection; compiled out without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn failpoint(_name: &str) {}
