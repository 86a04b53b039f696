//! `delete` and the kustomizations that list a removed file: the entry goes with the file
//! (the same verified, byte-preserving edit), and before anything is committed every
//! kustomization the change touches must still resolve its files — an overlay that no
//! longer builds would stop Argo CD from syncing the whole application.

use std::path::{Path, PathBuf};

const NAMES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

#[derive(serde::Deserialize, Default)]
struct Resources {
    #[serde(default)]
    resources: Option<Vec<String>>,
}

fn resources_of(src: &str) -> Option<Vec<String>> {
    serde_saphyr::from_str::<Option<Resources>>(crate::manifest::yaml::strip_bom(src))
        .ok()
        .map(|r| r.unwrap_or_default().resources.unwrap_or_default())
}

/// The kustomization file of `dir` (repo-relative), if any.
fn kustomization_in(root: &Path, dir: &Path) -> Option<PathBuf> {
    NAMES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| root.join(p).is_file())
}

/// Whether `entry` names a local path (not a remote base: URL, `github.com/...?ref=`).
fn is_local(entry: &str) -> bool {
    !entry.contains("://") && !entry.contains("?ref=") && !entry.starts_with("github.com/")
}

/// Removes the `- <entry>` line from `src`; `None` when the entry is not exactly one plain
/// block-list line (a flow list, a duplicate, an anchor): the caller refuses then.
fn remove_entry(src: &str, entry: &str) -> Option<String> {
    let mut hits = Vec::new();
    let mut offset = 0;
    for line in src.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let t = body.trim_start();
        if let Some(v) = t.strip_prefix("- ") {
            let v = v.split(" #").next().unwrap_or(v).trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            if v == entry {
                hits.push((offset, offset + line.len()));
            }
        }
        offset += line.len();
    }
    let [(a, b)] = hits[..] else { return None };
    let out = format!("{}{}", &src[..a], &src[b..]);
    // Verified: the list lost exactly that entry, and nothing else changed meaning.
    let (before, after) = (resources_of(src)?, resources_of(&out)?);
    let mut expected = before.clone();
    expected.retain(|r| r != entry);
    (after == expected && before.len() == expected.len() + 1).then_some(out)
}

/// For each removed file, removes its entry from the kustomizations of its directory and
/// the directories above it (as the path relative to each). Returns the kustomizations
/// changed (repo-relative). An entry that is not a plain list line is an error: nothing
/// is left half-done (the caller discards the worktree).
pub(super) fn drop_entries(root: &Path, removed: &[String]) -> Result<Vec<String>, KustomizeError> {
    let mut changed = Vec::new();
    for file in removed {
        let file = Path::new(file);
        let mut dir = file.parent();
        while let Some(d) = dir {
            if let Some(k) = kustomization_in(root, d) {
                let rel = file.strip_prefix(d).unwrap_or(file);
                let entry = rel.to_string_lossy().replace('\\', "/");
                let path = root.join(&k);
                let src = std::fs::read_to_string(&path).map_err(|e| io(&k, e))?;
                let listed = resources_of(&src).unwrap_or_default();
                if listed
                    .iter()
                    .any(|r| r == &entry || r == &format!("./{entry}"))
                {
                    let name = if listed.iter().any(|r| r == &entry) {
                        entry.clone()
                    } else {
                        format!("./{entry}")
                    };
                    let out =
                        remove_entry(&src, &name).ok_or_else(|| KustomizeError::Unedited {
                            kustomization: crate::text::path(&k),
                            entry: crate::text::escape(&name).into_owned(),
                        })?;
                    crate::manifest::edit::write_in_worktree(&path, out.as_bytes())
                        .map_err(|e| io(&k, e))?;
                    changed.push(k.to_string_lossy().replace('\\', "/"));
                }
            }
            dir = d.parent();
        }
    }
    Ok(changed)
}

/// Every local `resources:` entry of the kustomizations of `dirs` (repo-relative) and
/// their parents exists; otherwise the kustomization and the missing entries.
pub(super) fn check_resolves(root: &Path, dirs: &[PathBuf]) -> Result<(), KustomizeError> {
    let mut seen = std::collections::BTreeSet::new();
    for d in dirs {
        let mut dir = Some(d.as_path());
        while let Some(d) = dir {
            if seen.insert(d.to_path_buf())
                && let Some(k) = kustomization_in(root, d)
            {
                let src = std::fs::read_to_string(root.join(&k)).map_err(|e| io(&k, e))?;
                let missing: Vec<String> = resources_of(&src)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|r| is_local(r) && !root.join(d).join(r).exists())
                    .collect();
                if !missing.is_empty() {
                    return Err(KustomizeError::Missing {
                        kustomization: crate::text::path(&k),
                        missing: missing
                            .iter()
                            .map(|m| crate::text::escape(m).into_owned())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
            dir = d.parent();
        }
    }
    Ok(())
}

/// Why the kustomizations of a deletion cannot be left buildable (nothing is deleted).
/// Paths and entries are escaped when the error is made (they come from the repo).
#[derive(Debug, thiserror::Error)]
pub(super) enum KustomizeError {
    /// A kustomization could not be read or written.
    #[error("{kustomization}: {source}")]
    Io {
        kustomization: String,
        #[source]
        source: std::io::Error,
    },
    /// The entry is written in a form the tool does not edit.
    #[error(
        "{kustomization} lists `{entry}` in a form this tool does not edit (a flow list or a duplicate); remove the entry by hand, then delete again"
    )]
    Unedited {
        kustomization: String,
        entry: String,
    },
    /// The kustomization would list files that are gone.
    #[error(
        "{kustomization} would list missing resources ({missing}); `kubectl kustomize` on it would fail, so nothing is deleted"
    )]
    Missing {
        kustomization: String,
        missing: String,
    },
}

fn io(kustomization: &Path, source: std::io::Error) -> KustomizeError {
    KustomizeError::Io {
        kustomization: crate::text::path(kustomization),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_a_plain_entry_and_nothing_else() {
        let src = "# overlay\nresources:\n  - a.yaml   # keep\n  - \"dns-credentials.yaml\"\n  - ../base\n";
        assert_eq!(
            remove_entry(src, "dns-credentials.yaml").unwrap(),
            "# overlay\nresources:\n  - a.yaml   # keep\n  - ../base\n"
        );
        assert_eq!(
            remove_entry("resources: [a.yaml, b.yaml]\n", "b.yaml"),
            None
        );
        assert_eq!(
            remove_entry("resources:\n  - b.yaml\n  - b.yaml\n", "b.yaml"),
            None
        );
    }

    #[test]
    fn finds_missing_resources() {
        let d = tempfile::tempdir().unwrap();
        let o = d.path().join("o");
        std::fs::create_dir_all(&o).unwrap();
        std::fs::write(o.join("a.yaml"), "x: 1\n").unwrap();
        std::fs::write(
            o.join("kustomization.yaml"),
            "resources:\n  - a.yaml\n  - gone.yaml\n  - https://example.com/x?ref=v1\n",
        )
        .unwrap();
        let e = check_resolves(d.path(), &[PathBuf::from("o")]).unwrap_err();
        let KustomizeError::Missing { missing, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!(missing, "gone.yaml");
        std::fs::write(o.join("kustomization.yaml"), "resources:\n  - a.yaml\n").unwrap();
        assert!(check_resolves(d.path(), &[PathBuf::from("o")]).is_ok());
    }
}
