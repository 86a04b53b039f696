//! Namespace resolution through the enclosing `kustomization.yaml`.
//!
//! Only the nearest enclosing kustomization counts: a namespace set by an overlay that
//! includes a base from elsewhere differs per overlay, so guessing it would seal for the
//! wrong label. When the nearest kustomization sets no namespace, it stays unresolved.

use super::{Diagnostic, DiagnosticKind};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const NAMES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

#[derive(Deserialize)]
struct Kustomization {
    namespace: Option<String>,
}

type Resolved = Result<Option<(String, PathBuf)>, Diagnostic>;

pub(super) struct Resolver<'a> {
    repo: &'a Path,
    cache: HashMap<PathBuf, Resolved>,
}

impl<'a> Resolver<'a> {
    pub(super) fn new(repo: &'a Path) -> Self {
        Self {
            repo,
            cache: HashMap::new(),
        }
    }

    /// Namespace and kustomization path for a repo-relative manifest path.
    pub(super) fn namespace_for(&mut self, rel: &Path) -> Resolved {
        let mut dir = rel.parent();
        while let Some(d) = dir {
            if let Some(r) = self.cache.get(d) {
                return r.clone();
            }
            if let Some(r) = self.read_dir(d) {
                self.cache.insert(d.to_path_buf(), r.clone());
                return r;
            }
            dir = d.parent();
        }
        Ok(None)
    }

    /// `Some` when `dir` holds a kustomization file.
    fn read_dir(&self, dir: &Path) -> Option<Resolved> {
        for name in NAMES {
            let rel = dir.join(name);
            let rel_s = PathBuf::from(rel.to_string_lossy().replace('\\', "/"));
            let src = match crate::fsx::read_text_in_repo(
                self.repo,
                &rel,
                crate::fsx::MAX_CONFIG_BYTES,
            ) {
                Ok(Some(src)) => src,
                Ok(None) => continue,
                Err(e) => {
                    return Some(Err(Diagnostic {
                        file: rel_s,
                        line: 0,
                        kind: DiagnosticKind::Error,
                        message: format!(
                            "kustomization not read ({e}); namespaces of manifests below it are unresolved"
                        ),
                    }));
                }
            };
            return Some(
                match serde_saphyr::from_str::<Option<Kustomization>>(
                    crate::manifest::yaml::strip_bom(&src),
                ) {
                    Ok(k) => Ok(k
                        .and_then(|k| k.namespace)
                        .filter(|n| !n.is_empty())
                        .map(|n| (n, rel_s))),
                    Err(e) => Err(Diagnostic {
                        file: rel_s,
                        line: e.location().map_or(0, |l| l.line() as usize),
                        kind: DiagnosticKind::Error,
                        message: format!(
                            "kustomization cannot be parsed ({}); namespaces of manifests below it are unresolved",
                            e.to_string().lines().next().unwrap_or("invalid YAML")
                        ),
                    }),
                },
            );
        }
        None
    }
}
