//! The workloads that read a rotated Secret, found in the repo, so that a rotation can
//! restart them through git.
//!
//! A Secret that changes does not reach a process that read it at start (`env`,
//! `envFrom`) or through a `subPath` mount; only a new pod does. With `consumers:
//! {restart: true}` in `.secret-manager.yaml`, the stage commit writes the annotation
//! `secret-manager/rotated: <hash of the new key id>` into the pod template of each
//! workload that reads the Secret, so Argo CD rolls it out with the new value.
//!
//! **Which workloads.** Those of the kustomize build that includes the SealedSecret: the
//! nearest `kustomization.yaml` above its file, its `resources` (files, and directories
//! with their own kustomization, followed down to [`MAX_DEPTH`]). A Deployment,
//! StatefulSet, DaemonSet, ReplicaSet, Job, CronJob or Argo Rollout consumes the Secret
//! when its pod template names it in `env[].valueFrom.secretKeyRef`, `envFrom[].secretRef`,
//! `volumes[].secret` or a projected volume's `sources[].secret`, in any container, init
//! container or ephemeral container, and its namespace (the build's `namespace:`, else its
//! own) is the Secret's. Names are compared as written: kustomize's `namePrefix` and
//! `nameSuffix` rename a Secret and the references to it in the same build alike.
//!
//! **What happens to each** ([`Fate`]): a workload in a file of the rotated cluster is
//! annotated; one that Stakater Reloader restarts (its annotations are present) is left
//! to Reloader; one in a shared base, in another cluster's file, or rendered by a Helm
//! chart of the build is reported as "not restarted by the tool", never edited.
//!
//! Everything here is repo content: files are read through [`crate::fsx`] (no symlink out
//! of the repo, no FIFO, a size cap), a resource that leaves the repo or is a URL is not
//! followed, and names are only compared, never used to build a path or a command.

mod patch;

pub use patch::{add_patch_entry, patch_file, patch_text};

use crate::manifest::yaml::{Node, NodeKind, parse_documents};
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// The pod-template annotation a rotation writes (after the annotation prefix).
pub const ROTATED: &str = "rotated";

/// The SealedSecret annotation that opts a secret out (`"false"`).
pub const RESTART_CONSUMERS: &str = "restartConsumers";

/// How deep `resources` are followed.
pub const MAX_DEPTH: usize = 8;

/// How many files one build may name before the search stops.
pub const MAX_FILES: usize = 2_000;

const KUSTOMIZATIONS: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

const WORKLOADS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "Rollout",
];

/// What a rotation does about one consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// In a file of the rotated cluster: its pod template gets the `rotated` annotation.
    Restart,
    /// Stakater Reloader restarts it (its annotations are present): not patched twice.
    Reloader,
    /// In a shared base that the rotated cluster's overlay builds: restarted through a
    /// tool-owned strategic-merge patch in that overlay (the base, shared with other
    /// clusters, is never edited).
    Patch {
        /// The patch file (repo-relative, in the overlay).
        patch: PathBuf,
        /// The overlay's kustomization, which lists it under `patches:`.
        kustomization: PathBuf,
        /// The workload's apiVersion.
        api_version: String,
        /// The namespace the base gives it (its own, or its kustomization's), if any:
        /// kustomize matches a patch by it.
        namespace: Option<String>,
    },
    /// The tool does not restart it, and says why (another cluster's file, a Helm chart,
    /// a shared base no overlay of this cluster builds).
    Manual(String),
}

/// A workload that reads the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    /// Repo-relative file (for a Helm chart: the kustomization that renders it).
    pub file: PathBuf,
    /// Document index in the file.
    pub document: usize,
    /// `Deployment`, `CronJob`, … (`HelmChart` for a chart of the build).
    pub kind: String,
    /// The workload's name as written.
    pub name: String,
    /// Where its pod template is: `spec.template` or, for a CronJob,
    /// `spec.jobTemplate.spec.template`.
    pub job_template: bool,
    /// What the rotation does about it.
    pub fate: Fate,
}

impl Consumer {
    /// `Kind/name (file)`, for plans and reports.
    pub fn describe(&self) -> String {
        let through = match &self.fate {
            Fate::Patch { patch, .. } => format!(" through {}", crate::text::path(patch)),
            _ => String::new(),
        };
        format!(
            "{}/{} ({}){through}",
            self.kind,
            crate::text::escape(&self.name),
            crate::text::path(&self.file)
        )
    }
}

/// The Secret whose consumers to find.
#[derive(Clone, Copy, Debug)]
pub struct Wanted<'a> {
    /// Repo-relative file of the SealedSecret.
    pub file: &'a Path,
    /// The Secret's namespace, when known.
    pub namespace: Option<&'a str>,
    /// The Secret's name.
    pub name: &'a str,
    /// The cluster the rotation seals for.
    pub cluster: &'a str,
}

#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kustomization {
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    bases: Vec<String>,
    namespace: Option<String>,
    #[serde(default)]
    helm_charts: Vec<HelmChart>,
}

#[derive(serde::Deserialize)]
struct HelmChart {
    name: Option<String>,
}

/// `dir.join(entry)` without `.`/`..`, or `None` when it leaves the repo or is not a
/// relative path (a URL, an absolute path).
fn resolve(dir: &Path, entry: &str) -> Option<PathBuf> {
    if entry.contains("://") || entry.starts_with("git@") || entry.contains('?') {
        return None;
    }
    let mut out = dir.to_path_buf();
    for c in Path::new(entry).components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// The kustomization file in `dir` (repo-relative), parsed; `None` when there is none
/// or it cannot be read (a hostile file is not followed).
fn kustomization(repo: &Path, dir: &Path) -> Option<(PathBuf, Kustomization)> {
    for name in KUSTOMIZATIONS {
        let rel = dir.join(name);
        match crate::fsx::read_text_in_repo(repo, &rel, crate::fsx::MAX_CONFIG_BYTES) {
            Ok(Some(src)) => {
                let k = serde_saphyr::from_str::<Option<Kustomization>>(
                    crate::manifest::yaml::strip_bom(&src),
                )
                .ok()
                .flatten()
                .unwrap_or_default();
                return Some((rel, k));
            }
            Ok(None) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Whether `rel` is a real directory inside `repo` (not a symlink).
fn is_dir(repo: &Path, rel: &Path) -> bool {
    std::fs::symlink_metadata(repo.join(rel)).is_ok_and(|m| m.is_dir())
}

/// A workload file of the build: the namespace the whole build gives it, and the one it
/// has in what the root's `resources` produce (what a patch at the root must name).
struct Listed {
    file: PathBuf,
    build_ns: Option<String>,
    below_root_ns: Option<String>,
}

struct Build {
    /// Workload files.
    files: Vec<Listed>,
    /// Helm charts of the build: (kustomization, chart name).
    charts: Vec<(PathBuf, String)>,
}

/// Collects the files of the build rooted at `dir`. `ns` is the namespace an enclosing
/// build sets (the outermost wins, as kustomize applies it last); `below` the same
/// without the root's.
fn collect(
    repo: &Path,
    dir: &Path,
    (ns, below): (Option<&str>, Option<&str>),
    depth: usize,
    seen: &mut BTreeSet<PathBuf>,
    out: &mut Build,
) {
    if depth > MAX_DEPTH || !seen.insert(dir.to_path_buf()) {
        return;
    }
    let Some((kfile, k)) = kustomization(repo, dir) else {
        return;
    };
    let own = k.namespace.filter(|n| !n.is_empty());
    let ns = ns.map(str::to_owned).or(own.clone());
    let below = if depth == 0 {
        None
    } else {
        below.map(str::to_owned).or(own)
    };
    for chart in k.helm_charts {
        out.charts
            .push((kfile.clone(), chart.name.unwrap_or_else(|| "?".into())));
    }
    for entry in k.resources.iter().chain(&k.bases) {
        if out.files.len() >= MAX_FILES {
            return;
        }
        let Some(p) = resolve(dir, entry) else {
            continue;
        };
        if is_dir(repo, &p) {
            collect(
                repo,
                &p,
                (ns.as_deref(), below.as_deref()),
                depth + 1,
                seen,
                out,
            );
        } else if p
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            out.files.push(Listed {
                file: p,
                build_ns: ns.clone(),
                below_root_ns: below.clone(),
            });
        }
    }
}

/// The nearest directory at or above `file`'s that holds a kustomization.
fn build_root(repo: &Path, file: &Path) -> Option<PathBuf> {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if kustomization(repo, d).is_some() {
            return Some(d.to_path_buf());
        }
        dir = d.parent();
    }
    None
}

fn items<'n, 'a>(node: Option<&'n Node<'a>>) -> &'n [Node<'a>] {
    match node.map(|n| &n.kind) {
        Some(NodeKind::Sequence { items, .. }) => items,
        _ => &[],
    }
}

/// Whether the pod spec `spec` names the Secret `name`.
fn reads(spec: &Node<'_>, name: &str) -> bool {
    let is = |n: Option<&Node<'_>>| n.and_then(Node::as_str) == Some(name);
    let containers = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| items(spec.get(k)));
    for c in containers {
        if items(c.get("env"))
            .iter()
            .any(|e| is(e.path(&["valueFrom", "secretKeyRef", "name"])))
            || items(c.get("envFrom"))
                .iter()
                .any(|e| is(e.path(&["secretRef", "name"])))
        {
            return true;
        }
    }
    items(spec.get("volumes")).iter().any(|v| {
        is(v.path(&["secret", "secretName"]))
            || items(v.path(&["projected", "sources"]))
                .iter()
                .any(|s| is(s.path(&["secret", "name"])))
    })
}

/// Whether Stakater Reloader restarts this workload when `name` changes.
fn reloaded(root: &Node<'_>, name: &str) -> bool {
    let Some(a) = root.path(&["metadata", "annotations"]) else {
        return false;
    };
    let on = |k: &str| a.get_str(k).is_some_and(|v| v.trim() == "true");
    on("reloader.stakater.com/auto")
        || on("secret.reloader.stakater.com/auto")
        || a.get_str("secret.reloader.stakater.com/reload")
            .is_some_and(|v| v.split(',').any(|s| s.trim() == name))
}

/// The workloads that read the Secret `wanted`, in the build that includes its file, with
/// what a rotation does about each. `cluster_ids` attributes files to clusters as the scan
/// does.
pub fn find(repo: &Path, wanted: Wanted<'_>, cluster_ids: &BTreeSet<String>) -> Vec<Consumer> {
    let Some(root) = build_root(repo, wanted.file) else {
        return Vec::new();
    };
    let mut build = Build {
        files: Vec::new(),
        charts: Vec::new(),
    };
    collect(
        repo,
        &root,
        (None, None),
        0,
        &mut BTreeSet::new(),
        &mut build,
    );
    let root_kustomization = kustomization(repo, &root).map(|(k, _)| k);
    // The root build is the cluster's own (its path names the cluster): a shared base it
    // builds is restarted through a patch there.
    let patchable = root_kustomization.as_ref().is_some_and(|k| {
        matches!(crate::scan::attribute(k, cluster_ids), crate::scan::Attribution::Cluster(c) if c == wanted.cluster)
    });
    let mut out = Vec::new();
    let mut read: BTreeSet<PathBuf> = BTreeSet::new();
    for listed in &build.files {
        let (file, build_ns) = (&listed.file, &listed.build_ns);
        if !read.insert(file.clone()) {
            continue;
        }
        let Ok(Some(src)) =
            crate::fsx::read_text_in_repo(repo, file, crate::fsx::MAX_MANIFEST_BYTES)
        else {
            continue;
        };
        let Ok(docs) = parse_documents(&src) else {
            continue;
        };
        for d in &docs {
            let Some(root) = &d.root else { continue };
            let Some(kind) = root.get_str("kind").filter(|k| WORKLOADS.contains(k)) else {
                continue;
            };
            let job_template = kind == "CronJob";
            let spec_path: &[&str] = if job_template {
                &["spec", "jobTemplate", "spec", "template", "spec"]
            } else {
                &["spec", "template", "spec"]
            };
            let Some(spec) = root.path(spec_path) else {
                continue;
            };
            if !reads(spec, wanted.name) {
                continue;
            }
            let own_ns = root
                .path(&["metadata", "namespace"])
                .and_then(Node::as_str)
                .map(str::to_owned);
            let ns = build_ns.clone().or_else(|| own_ns.clone());
            if let (Some(a), Some(b)) = (ns.as_deref(), wanted.namespace)
                && a != b
            {
                continue;
            }
            let name = root
                .path(&["metadata", "name"])
                .and_then(Node::as_str)
                .unwrap_or("?")
                .to_owned();
            let api_version = root.get_str("apiVersion").filter(|a| {
                a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b'-'))
            });
            let fate = if reloaded(root, wanted.name) {
                Fate::Reloader
            } else {
                match crate::scan::attribute(file, cluster_ids) {
                    crate::scan::Attribution::Cluster(c) if c == wanted.cluster => Fate::Restart,
                    crate::scan::Attribution::Shared => match (&root_kustomization, api_version) {
                        (Some(k), Some(api))
                            if patchable && crate::names::KubeName::parse(&name).is_ok() =>
                        {
                            Fate::Patch {
                                patch: k.with_file_name(patch_file(kind, &name)),
                                kustomization: k.clone(),
                                api_version: api.to_owned(),
                                namespace: own_ns.clone().or_else(|| listed.below_root_ns.clone()),
                            }
                        }
                        _ => Fate::Manual(
                            "in a shared base that no overlay of this cluster builds: annotate its pod template by hand".into(),
                        ),
                    },
                    _ => Fate::Manual("in a file of another cluster".into()),
                }
            };
            out.push(Consumer {
                file: file.clone(),
                document: d.index,
                kind: kind.to_owned(),
                name,
                job_template,
                fate,
            });
        }
    }
    for (kfile, chart) in build.charts {
        out.push(Consumer {
            file: kfile,
            document: 0,
            kind: "HelmChart".into(),
            name: chart,
            job_template: false,
            fate: Fate::Manual(
                "rendered by Helm: the tool cannot see whether it reads the Secret".into(),
            ),
        });
    }
    out
}

/// The value of the `rotated` annotation for a new key: a hash of its id (a key id is not
/// a secret, but the annotation need not show it).
pub fn rotated_value(new_key_id: &str) -> String {
    crate::seal::fingerprint_hex(new_key_id.as_bytes())[..16].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_stay_in_the_repo() {
        let d = Path::new("apps/x/overlays/dev");
        assert_eq!(resolve(d, "../../base"), Some(PathBuf::from("apps/x/base")));
        assert_eq!(
            resolve(d, "./deploy.yaml"),
            Some(PathBuf::from("apps/x/overlays/dev/deploy.yaml"))
        );
        for hostile in [
            "../../../../../etc",
            "/etc/passwd",
            "https://github.com/acme/base?ref=main",
            "git@github.com:acme/base.git",
            "github.com/acme/base?ref=v1",
        ] {
            assert_eq!(resolve(d, hostile), None, "{hostile}");
        }
    }
}
