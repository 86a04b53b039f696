//! Walks a GitOps repo and finds every SealedSecret.
//!
//! The walk honours `.gitignore` (also outside a git work tree), skips `.git` and the
//! tool's own `.secret-manager/` state (other hidden directories are read: GitOps tools
//! keep manifests in them), and reads `*.yaml`, `*.yml` and `*.json` files in parallel. A file is only
//! parsed when its bytes contain `SealedSecret`, so the cost on a large fleet is close to a
//! `grep` of the tree. A file that cannot be read or parsed becomes a [`Diagnostic`] and the
//! scan goes on; Helm-templated files are reported as skipped and never edited.

mod namespace;

use crate::annotations::Managed;
use crate::manifest::SealedSecretDoc;
use crate::manifest::yaml::parse_documents;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// Which cluster a manifest belongs to (docs/guide.md, "Which cluster a manifest belongs to").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "clusters")]
pub enum Attribution {
    /// No cluster id in the path: shared by every cluster that includes it.
    Shared,
    /// Exactly one cluster id in the path.
    Cluster(String),
    /// Several different cluster ids in the path: an error.
    Ambiguous(Vec<String>),
}

impl Attribution {
    /// The cluster id, or `None` for shared and ambiguous manifests.
    pub fn cluster(&self) -> Option<&str> {
        match self {
            Attribution::Cluster(c) => Some(c),
            _ => None,
        }
    }

    /// Short text for tables: the id, `(shared)` or `(ambiguous)`.
    pub fn label(&self) -> String {
        match self {
            Attribution::Cluster(c) => c.clone(),
            Attribution::Shared => "(shared)".into(),
            Attribution::Ambiguous(_) => "(ambiguous)".into(),
        }
    }
}

/// Where the effective namespace came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum NamespaceOrigin {
    /// Outer `metadata.namespace`.
    Metadata,
    /// `namespace:` of the enclosing kustomization file (repo-relative path).
    Kustomization(PathBuf),
    /// Not resolvable.
    Unresolved,
}

/// One SealedSecret found in the repo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Repo-relative path with `/` separators.
    pub file: PathBuf,
    /// The document.
    pub doc: SealedSecretDoc,
    /// The namespace the controller will see.
    pub namespace: Option<String>,
    /// Where [`Found::namespace`] came from.
    pub namespace_origin: NamespaceOrigin,
    /// Cluster attribution.
    pub attribution: Attribution,
    /// Our annotations, when the secret is managed (has a `source`).
    pub managed: Option<Managed>,
}

/// Severity of a [`Diagnostic`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiagnosticKind {
    /// The file mentions SealedSecret but could not be read or parsed.
    Error,
    /// The file was deliberately skipped (Helm template).
    Skipped,
}

/// A per-file problem found while scanning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Repo-relative path.
    pub file: PathBuf,
    /// 1-based line, 0 when not applicable.
    pub line: usize,
    /// Error or skipped.
    pub kind: DiagnosticKind,
    /// What happened and what to do.
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // File names and parser messages come from the repo: escaped, so they can neither
        // drive a terminal nor forge another line of the report.
        let file = crate::text::path(&self.file);
        let message = crate::text::escape(&self.message);
        if self.line > 0 {
            write!(f, "{file}:{}: {message}", self.line)
        } else {
            write!(f, "{file}: {message}")
        }
    }
}

/// What a scan found.
#[derive(Clone, Debug, Default)]
pub struct ScanReport {
    /// SealedSecrets, sorted by file then document.
    pub secrets: Vec<Found>,
    /// Per-file problems, sorted by file.
    pub diagnostics: Vec<Diagnostic>,
    /// Number of candidate files looked at.
    pub files_seen: usize,
}

/// Scan settings.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    /// Annotation prefix (`secret-manager/`).
    pub prefix: String,
    /// Known cluster ids, for attribution.
    pub cluster_ids: BTreeSet<String>,
    /// Worker threads, 0 = one per core.
    pub threads: usize,
}

const NEEDLE: &[u8] = b"SealedSecret";

/// The prefilter's searcher, built once (its SIMD tables) instead of once per file.
fn needle() -> &'static memchr::memmem::Finder<'static> {
    static FINDER: std::sync::OnceLock<memchr::memmem::Finder<'static>> =
        std::sync::OnceLock::new();
    FINDER.get_or_init(|| memchr::memmem::Finder::new(NEEDLE))
}

enum FileOutcome {
    Docs(PathBuf, Vec<SealedSecretDoc>),
    Diag(Diagnostic),
}

fn rel_path(repo: &Path, path: &Path) -> PathBuf {
    let rel = path.strip_prefix(repo).unwrap_or(path);
    // Stable, platform-independent output: always `/`.
    PathBuf::from(
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
    )
}

fn is_candidate(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// The line of the first `{{` when `text` is a Helm/Go template: such files are reported,
/// never read or edited.
pub fn templated_line(text: &str) -> Option<usize> {
    let pos = memchr::memmem::find(text.as_bytes(), b"{{")?;
    Some(text[..pos].bytes().filter(|&b| b == b'\n').count() + 1)
}

/// `NEEDLE` in UTF-16 (little- and big-endian).
fn utf16_needle(big_endian: bool) -> Vec<u8> {
    NEEDLE
        .iter()
        .flat_map(|&b| if big_endian { [0, b] } else { [b, 0] })
        .collect()
}

/// Directories never read: git's own, and the tool's rotation state.
fn is_skipped_dir(name: &std::ffi::OsStr) -> bool {
    name == ".git" || name == ".secret-manager"
}

/// Reads and parses one file. `None` when it does not mention SealedSecret.
fn scan_file(repo: &Path, path: &Path) -> Option<FileOutcome> {
    // The relative path is built only for files that produce something: most do not.
    let diag = |line: usize, kind, message: String| {
        Some(FileOutcome::Diag(Diagnostic {
            file: rel_path(repo, path),
            line,
            kind,
            message,
        }))
    };
    // The walk yields regular files only (symlinks are not followed, FIFOs and devices
    // are not files); a file over the cap is reported, never read into memory.
    use crate::fsx::Capped;
    let read = std::fs::File::open(path)
        .map_err(Capped::Io)
        .and_then(|f| crate::fsx::read_capped(f, crate::fsx::MAX_MANIFEST_BYTES));
    let bytes = match read {
        Ok(b) => b,
        Err(Capped::TooLarge(size)) => {
            return diag(
                0,
                DiagnosticKind::Error,
                format!(
                    "is {size} bytes, over the {} MiB limit for a manifest; nothing in it is read (split the file)",
                    crate::fsx::MAX_MANIFEST_BYTES >> 20
                ),
            );
        }
        Err(Capped::Io(e)) => {
            return diag(0, DiagnosticKind::Error, format!("cannot read file: {e}"));
        }
    };
    // UTF-16 (with a byte order mark): the needle is interleaved with NULs.
    let utf16 = match bytes.get(..2) {
        Some([0xFF, 0xFE]) => Some(false),
        Some([0xFE, 0xFF]) => Some(true),
        _ => None,
    };
    if let Some(be) = utf16 {
        memchr::memmem::find(&bytes, &utf16_needle(be))?;
        return diag(
            1,
            DiagnosticKind::Error,
            format!(
                "UTF-16 text ({}); re-save the file as UTF-8 (nothing in it is read or edited until then)",
                if be { "big-endian" } else { "little-endian" }
            ),
        );
    }
    needle().find(&bytes)?;
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            return diag(
                line,
                DiagnosticKind::Error,
                "not valid UTF-8; re-save the file as UTF-8".into(),
            );
        }
    };
    if let Some(line) = templated_line(text) {
        return diag(
            line,
            DiagnosticKind::Skipped,
            "Helm/Go template (`{{`): not plain YAML, never edited; manage the rendered value instead".into(),
        );
    }
    let docs = match parse_documents(text) {
        Ok(d) => d,
        Err(e) => {
            return diag(
                e.line,
                DiagnosticKind::Error,
                format!(
                    "YAML syntax error at column {}: {}; fix the file (nothing in it is read or edited until then)",
                    e.col, e.message
                ),
            );
        }
    };
    let found: Vec<SealedSecretDoc> = docs
        .iter()
        .flat_map(SealedSecretDoc::all_from_document)
        .collect();
    Some(FileOutcome::Docs(rel_path(repo, path), found))
}

/// A walk error as a diagnostic on the path it names.
fn walk_error(repo: &Path, e: &ignore::Error) -> Diagnostic {
    fn path_of(e: &ignore::Error) -> Option<&Path> {
        match e {
            ignore::Error::WithPath { path, .. } => Some(path),
            ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
                path_of(err)
            }
            _ => None,
        }
    }
    let path = path_of(e).map(|p| rel_path(repo, p)).unwrap_or_default();
    Diagnostic {
        file: path,
        line: 0,
        kind: DiagnosticKind::Error,
        message: format!(
            "cannot read: {e}; nothing under it was scanned (fix its permissions, or add it to .gitignore)"
        ),
    }
}

/// Which cluster ids appear as path segments (a segment equal to the id, or the id plus a
/// YAML/JSON extension, as in `values/<id>.yaml`).
pub fn attribute(rel: &Path, cluster_ids: &BTreeSet<String>) -> Attribution {
    let mut hits: Vec<String> = Vec::new();
    for seg in rel.iter().filter_map(|s| s.to_str()) {
        let stem = seg
            .strip_suffix(".yaml")
            .or_else(|| seg.strip_suffix(".yml"))
            .or_else(|| seg.strip_suffix(".json"))
            .unwrap_or(seg);
        for cand in [seg, stem] {
            if cluster_ids.contains(cand) && !hits.iter().any(|h| h == cand) {
                hits.push(cand.to_owned());
            }
        }
    }
    match hits.len() {
        0 => Attribution::Shared,
        1 => Attribution::Cluster(hits.remove(0)),
        _ => Attribution::Ambiguous(hits),
    }
}

/// The namespace the nearest enclosing kustomization gives `rel` (a path relative to
/// `repo`), with that kustomization's path.
pub fn kustomization_namespace(
    repo: &Path,
    rel: &Path,
) -> Result<Option<(String, PathBuf)>, Diagnostic> {
    namespace::Resolver::new(repo).namespace_for(rel)
}

/// Scans `repo` for SealedSecrets.
pub fn scan(repo: &Path, opts: &ScanOptions) -> ScanReport {
    let (tx, rx) = mpsc::channel::<FileOutcome>();
    let seen = std::sync::atomic::AtomicUsize::new(0);
    let walker = ignore::WalkBuilder::new(repo)
        .hidden(false)
        .filter_entry(|e| {
            !(e.file_type().is_some_and(|t| t.is_dir()) && is_skipped_dir(e.file_name()))
        })
        .git_ignore(true)
        .git_global(false)
        .git_exclude(false)
        .require_git(false)
        .parents(false)
        .threads(opts.threads)
        .build_parallel();
    walker.run(|| {
        let tx = tx.clone();
        let seen = &seen;
        Box::new(move |entry| {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    // An unreadable directory (or file) is a finding, never a silent skip.
                    let _ = tx.send(FileOutcome::Diag(walk_error(repo, &e)));
                    return ignore::WalkState::Continue;
                }
            };
            if entry.file_type().is_some_and(|t| t.is_file()) && is_candidate(entry.path()) {
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some(out) = scan_file(repo, entry.path()) {
                    let _ = tx.send(out);
                }
            }
            ignore::WalkState::Continue
        })
    });
    drop(tx);

    let mut report = ScanReport {
        files_seen: seen.into_inner(),
        ..ScanReport::default()
    };
    let mut kustomizations = namespace::Resolver::new(repo);
    for out in rx {
        match out {
            FileOutcome::Diag(d) => report.diagnostics.push(d),
            FileOutcome::Docs(rel, docs) => {
                let attribution = attribute(&rel, &opts.cluster_ids);
                for doc in docs {
                    let (namespace, namespace_origin) = match &doc.namespace {
                        Some(ns) => (Some(ns.clone()), NamespaceOrigin::Metadata),
                        None => match kustomizations.namespace_for(&rel) {
                            Ok(Some((ns, k))) => (Some(ns), NamespaceOrigin::Kustomization(k)),
                            Ok(None) => (None, NamespaceOrigin::Unresolved),
                            Err(d) => {
                                report.diagnostics.push(d);
                                (None, NamespaceOrigin::Unresolved)
                            }
                        },
                    };
                    // Names reach kubectl and reports: a name that the API server would
                    // refuse (one that looks like a flag, carries a path or an escape)
                    // is a finding, and the document is neither listed nor rotated.
                    let bad_name = doc
                        .name
                        .as_deref()
                        .and_then(|n| crate::names::KubeName::parse(n).err())
                        .map(|e| ("metadata.name", e))
                        .or_else(|| {
                            namespace
                                .as_deref()
                                .and_then(|n| crate::names::Namespace::parse(n).err())
                                .map(|e| ("namespace", e))
                        });
                    if let Some((field, e)) = bad_name {
                        report.diagnostics.push(Diagnostic {
                            file: rel.clone(),
                            line: doc.line,
                            kind: DiagnosticKind::Error,
                            message: format!(
                                "{field}: {e}; this SealedSecret is not read or rotated until it is fixed"
                            ),
                        });
                        continue;
                    }
                    report.secrets.push(Found {
                        managed: Managed::from_annotations(&doc.template_annotations, &opts.prefix),
                        file: rel.clone(),
                        attribution: attribution.clone(),
                        namespace,
                        namespace_origin,
                        doc,
                    });
                }
            }
        }
    }
    report.secrets.sort_by(|a, b| {
        (&a.file, a.doc.doc_index, a.doc.item).cmp(&(&b.file, b.doc.doc_index, b.doc.item))
    });
    report
        .diagnostics
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    report.diagnostics.dedup();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> BTreeSet<String> {
        ["aws.eu-central-1.dev1", "gcp.europe-west1.dev2"]
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn attribution_by_segment_or_values_file() {
        let ids = ids();
        assert_eq!(
            attribute(
                Path::new("apps/x/overlays/aws.eu-central-1.dev1/s.yaml"),
                &ids
            ),
            Attribution::Cluster("aws.eu-central-1.dev1".into())
        );
        assert_eq!(
            attribute(Path::new("apps/x/values/gcp.europe-west1.dev2.yaml"), &ids),
            Attribution::Cluster("gcp.europe-west1.dev2".into())
        );
        assert_eq!(
            attribute(Path::new("apps/x/base/s.yaml"), &ids),
            Attribution::Shared
        );
        assert!(matches!(
            attribute(Path::new("aws.eu-central-1.dev1/gcp.europe-west1.dev2.yaml"), &ids),
            Attribution::Ambiguous(v) if v.len() == 2
        ));
    }

    #[test]
    fn templated_detection_reports_line() {
        assert_eq!(templated_line("a: 1\nb: {{ .Values.x }}\n"), Some(2));
        assert_eq!(templated_line("a: 1\n"), None);
    }
}
