//! The cluster inventory: one `cluster-values/<cloud.region.name>.yaml` per cluster.
//!
//! The tool reads only the `secretManager:` block of each file; clusters
//! without it are listed with defaults (branch pointer on `origin`).

use crate::config::{Config, ConfigError, ConfigResult, from_yaml};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Directory of the inventory, relative to the repo root.
pub const INVENTORY_DIR: &str = "cluster-values";

/// How a cluster follows main: a branch or a tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PointerKind {
    /// `cluster/<id>` branch, moved fast-forward only.
    Branch,
    /// `tag/<name>` tag, moved with a lease.
    Tag,
}

/// `secretManager:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawClusterBlock {
    /// `branch` or `tag`.
    pub pointer: Option<PointerKind>,
    /// Git remote holding the pointer.
    pub remote: Option<String>,
    /// Path in repo, https URL, or `controller://namespace/name`.
    pub sealing_cert: Option<String>,
    /// kubectl context for in-cluster checks.
    pub kube_context: Option<String>,
    /// Argo CD application name.
    pub argocd_app: Option<String>,
}

#[derive(Deserialize)]
struct ClusterValuesFile {
    #[serde(rename = "secretManager")]
    secret_manager: Option<RawClusterBlock>,
}

/// One cluster of the fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// `cloud.region.name`.
    pub id: String,
    /// The last segment of the id (used for tag names).
    pub name: String,
    /// First segment: the cloud.
    pub cloud: String,
    /// Branch or tag.
    pub pointer: PointerKind,
    /// The ref name of the pointer (`cluster/<id>` or `tag/<name>`).
    pub pointer_ref: String,
    /// Remote that holds the pointer.
    pub remote: String,
    /// Where the sealing certificate comes from.
    pub sealing_cert: Option<String>,
    /// kubectl context (validated: never read as a kubectl option).
    pub kube_context: Option<crate::names::KubeContext>,
    /// Argo CD application.
    pub argocd_app: Option<String>,
    /// The inventory file, repo-relative.
    pub file: PathBuf,
}

/// The whole fleet, sorted by id.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    /// Clusters sorted by id.
    pub clusters: Vec<Cluster>,
}

/// Whether `id` looks like `cloud.region.name`.
pub fn is_cluster_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

impl Inventory {
    /// Reads every `cluster-values/*.yaml`. A missing directory is an empty fleet.
    pub fn load(repo: &Path, config: &Config) -> ConfigResult<Inventory> {
        let dir = repo.join(INVENTORY_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Inventory::default()),
            Err(source) => return Err(ConfigError::Read { path: dir, source }),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| ConfigError::Read {
                path: dir.clone(),
                source,
            })?;
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            if !(file_name.ends_with(".yaml") || file_name.ends_with(".yml")) {
                continue;
            }
            let rel = Path::new(INVENTORY_DIR).join(file_name);
            if let Some(src) =
                crate::fsx::read_text_in_repo(repo, &rel, crate::fsx::MAX_CONFIG_BYTES)?
            {
                files.push((file_name.to_owned(), src));
            }
        }
        Inventory::from_files(files, config)
    }

    /// The inventory of `files`: (file name in `cluster-values/`, its text).
    pub fn from_files(
        files: impl IntoIterator<Item = (String, String)>,
        config: &Config,
    ) -> ConfigResult<Inventory> {
        let mut clusters = Vec::new();
        for (file_name, src) in files {
            let Some(id) = file_name
                .strip_suffix(".yaml")
                .or_else(|| file_name.strip_suffix(".yml"))
            else {
                continue;
            };
            let rel = Path::new(INVENTORY_DIR).join(&file_name);
            if !is_cluster_id(id) {
                return Err(ConfigError::Invalid {
                    path: rel,
                    field: "file name".into(),
                    message: format!(
                        "`{}` is not a cluster id of the form cloud.region.name (lowercase, digits, `-`); rename the file",
                        crate::text::escape(id)
                    ),
                });
            }
            let block = from_yaml::<Option<ClusterValuesFile>>(&rel, &src)?
                .and_then(|f| f.secret_manager)
                .unwrap_or_default();
            clusters.push(Cluster::new(id, block, rel, config)?);
        }
        clusters.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Inventory { clusters })
    }

    /// The cluster with `id`.
    pub fn get(&self, id: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.id == id)
    }

    /// Cluster ids, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.clusters.iter().map(|c| c.id.as_str())
    }
}

impl Cluster {
    fn new(
        id: &str,
        block: RawClusterBlock,
        file: PathBuf,
        config: &Config,
    ) -> ConfigResult<Cluster> {
        // The repo names a remote and a context; it never names a URL, a path or an
        // option: those are refused here, before anything reaches git or kubectl.
        let invalid = |field: &str, e: crate::names::NameError| ConfigError::Invalid {
            path: file.clone(),
            field: format!("secretManager.{field}"),
            message: e.to_string(),
        };
        let remote = block.remote.unwrap_or_else(|| "origin".into());
        crate::names::RemoteName::parse(&remote).map_err(|e| invalid("remote", e))?;
        let kube_context = block
            .kube_context
            .as_deref()
            .map(crate::names::KubeContext::parse)
            .transpose()
            .map_err(|e| invalid("kubeContext", e))?;
        let mut parts = id.split('.');
        let cloud = parts.next().unwrap_or_default().to_owned();
        let name = id.rsplit('.').next().unwrap_or(id).to_owned();
        let pointer = block.pointer.unwrap_or(PointerKind::Branch);
        let pattern = match pointer {
            PointerKind::Branch => &config.branch_pattern,
            PointerKind::Tag => &config.tag_pattern,
        };
        Ok(Cluster {
            pointer_ref: pattern.replace("{id}", id).replace("{name}", &name),
            id: id.to_owned(),
            name,
            cloud,
            pointer,
            remote,
            sealing_cert: block.sealing_cert,
            kube_context,
            argocd_app: block.argocd_app,
            file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids() {
        assert!(is_cluster_id("aws.eu-central-1.dev1"));
        assert!(!is_cluster_id("aws.eu-central-1"));
        assert!(!is_cluster_id("AWS.x.y"));
    }

    #[test]
    fn loads_blocks_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let inv = dir.path().join(INVENTORY_DIR);
        std::fs::create_dir(&inv).unwrap();
        std::fs::write(
            inv.join("aws.eu-central-1.dev1.yaml"),
            "cloud: aws\nsecretManager:\n  pointer: tag\n  remote: prod\n",
        )
        .unwrap();
        std::fs::write(inv.join("gcp.europe-west1.dev2.yaml"), "cloud: gcp\n").unwrap();
        let i = Inventory::load(dir.path(), &Config::default()).unwrap();
        assert_eq!(i.clusters.len(), 2);
        assert_eq!(i.clusters[0].pointer_ref, "tag/dev1");
        assert_eq!(i.clusters[0].remote, "prod");
        assert_eq!(i.clusters[1].pointer_ref, "cluster/gcp.europe-west1.dev2");
        assert_eq!(i.clusters[1].remote, "origin");
    }

    #[test]
    fn remotes_and_contexts_that_are_not_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let inv = dir.path().join(INVENTORY_DIR);
        std::fs::create_dir(&inv).unwrap();
        for (block, field) in [
            (
                "remote: \"--upload-pack=touch /tmp/pwned\"",
                "secretManager.remote",
            ),
            (
                "remote: https://evil.example/fleet.git",
                "secretManager.remote",
            ),
            ("remote: /srv/other.git", "secretManager.remote"),
            (
                "kubeContext: \"--kubeconfig=applications/x/kubeconfig\"",
                "secretManager.kubeContext",
            ),
        ] {
            std::fs::write(
                inv.join("aws.x.y.yaml"),
                format!("secretManager:\n  {block}\n"),
            )
            .unwrap();
            let e = Inventory::load(dir.path(), &Config::default())
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("cluster-values/aws.x.y.yaml") && e.contains(field),
                "{block}: {e}"
            );
        }
    }

    #[test]
    fn a_cluster_values_symlink_out_of_the_repo_is_an_error_not_a_read() {
        let dir = tempfile::tempdir().unwrap();
        let inv = dir.path().join(INVENTORY_DIR);
        std::fs::create_dir(&inv).unwrap();
        std::os::unix::fs::symlink("/dev/zero", inv.join("aws.x.y.yaml")).unwrap();
        let e = Inventory::load(dir.path(), &Config::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("leaves the repo"), "{e}");
    }

    #[test]
    fn bad_block_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let inv = dir.path().join(INVENTORY_DIR);
        std::fs::create_dir(&inv).unwrap();
        std::fs::write(
            inv.join("aws.x.y.yaml"),
            "a: 1\nsecretManager:\n  pointer: twig\n",
        )
        .unwrap();
        let e = Inventory::load(dir.path(), &Config::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cluster-values/aws.x.y.yaml:3"), "{e}");
    }
}
