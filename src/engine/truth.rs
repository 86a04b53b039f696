//! What git shows about a rotation in flight, the last check before its old key goes: a
//! record is only a claim about what happened, so the old key is revoked only when main
//! and every pointer the record names agree with it ([`truth_allows`]).

use super::context::Ctx;
use super::plan::index;
use crate::journal::RotationRecord;

/// Manifests on main by (source, identity, key id).
pub(super) type MainRefs = std::collections::BTreeMap<(String, String, String), Vec<String>>;

/// Whether the state of main and of the cluster pointers allows revoking `rec`'s old key.
/// A record is only a claim about what happened, and records live where many can write
/// (main by pull request, the journal ref outside branch protection): the old key goes
/// only when no manifest on main references it (for that identity), and — for a rotation — main holds the new
/// key and every pointer the record names has the new key in the record's files and not
/// the old one.
pub(super) fn truth_allows(
    ctx: &Ctx<'_>,
    rec: &RotationRecord,
    main_refs: &MainRefs,
    files: &mut PointerFiles,
) -> Result<(), NotYet> {
    let esc = crate::text::escape;
    let key = |k: &str| (rec.source.clone(), rec.identity.clone(), k.to_owned());
    if let Some(users) = main_refs.get(&key(&rec.old_key_id)) {
        return Err(NotYet::OldKeyOnMain {
            key: esc(&rec.old_key_id).into_owned(),
            users: users.join(", "),
        });
    }
    if rec.is_delete() {
        return Ok(());
    }
    if !main_refs.contains_key(&key(&rec.new_key_id)) {
        return Err(NotYet::NewKeyNotOnMain {
            key: esc(&rec.new_key_id).into_owned(),
        });
    }
    let mut specs = Vec::new();
    for m in &rec.manifests {
        let Some(c) = ctx.repo.inventory.get(&m.cluster) else {
            return Err(NotYet::UnknownCluster {
                cluster: esc(&m.cluster).into_owned(),
            });
        };
        if !crate::fsx::is_contained(std::path::Path::new(&m.file)) {
            return Err(NotYet::OutsideRepo {
                file: esc(&m.file).into_owned(),
            });
        }
        specs.push((
            m.cluster.clone(),
            format!("{}:{}", crate::gitops::Fleet::pointer_tracking(c), m.file),
        ));
    }
    let blobs = files
        .get(
            ctx,
            &specs.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(),
        )
        .map_err(NotYet::PointersUnreadable)?;
    for ((cluster, spec), blob) in specs.iter().zip(blobs) {
        let file = esc(spec.split_once(':').map_or(spec.as_str(), |(_, f)| f)).into_owned();
        let cluster = cluster.clone();
        match blob {
            Some(text) if text.contains(&rec.new_key_id) && !text.contains(&rec.old_key_id) => {}
            Some(_) => return Err(NotYet::PointerBehind { cluster, file }),
            None => return Err(NotYet::PointerLacksFile { cluster, file }),
        }
    }
    Ok(())
}

/// Why git does not allow revoking a record's old key (yet): the run waits and says so.
/// Values are escaped when the reason is made (they come from the repo).
#[derive(Debug, thiserror::Error)]
pub(super) enum NotYet {
    #[error("main still references the old key {key} ({users}); not revoked")]
    OldKeyOnMain { key: String, users: String },
    #[error(
        "no manifest on main holds the new key {key}; the record does not match main, so the old key is not revoked"
    )]
    NewKeyNotOnMain { key: String },
    #[error("the record names cluster `{cluster}`, which is not in cluster-values/; not revoked")]
    UnknownCluster { cluster: String },
    #[error("the record names file `{file}` outside the repo; not revoked")]
    OutsideRepo { file: String },
    #[error("cannot read the cluster pointers: {0}")]
    PointersUnreadable(#[source] crate::gitops::git::GitError),
    #[error(
        "cluster {cluster}'s pointer does not hold the new key in {file} (or still holds the old one); not revoked"
    )]
    PointerBehind { cluster: String, file: String },
    #[error("cluster {cluster}'s pointer has no {file}; not revoked")]
    PointerLacksFile { cluster: String, file: String },
}

/// Files at the cluster pointers (`<pointer>:<file>` → text), read once for every record
/// a run decides on: one read resolves each pointer and decodes each tree once, where a
/// read per record did it thousands of times.
#[derive(Default)]
pub(super) struct PointerFiles {
    read: std::collections::HashMap<String, Option<String>>,
}

impl PointerFiles {
    /// Reads the files every record in `records` names at its clusters' pointers. A
    /// record naming an unknown cluster or a path outside the repo is left out (its own
    /// check says why); a failed read leaves everything to the per-record reads.
    pub(super) fn prefetch(ctx: &Ctx<'_>, records: &[RotationRecord]) -> PointerFiles {
        let mut specs: Vec<String> = records
            .iter()
            .filter(|r| !r.is_delete())
            .flat_map(|r| r.manifests.iter())
            .filter(|m| crate::fsx::is_contained(std::path::Path::new(&m.file)))
            .filter_map(|m| {
                let c = ctx.repo.inventory.get(&m.cluster)?;
                Some(format!(
                    "{}:{}",
                    crate::gitops::Fleet::pointer_tracking(c),
                    m.file
                ))
            })
            .collect();
        specs.sort();
        specs.dedup();
        let mut files = PointerFiles::default();
        if let Ok(texts) = ctx.fleet.git().read_blobs(&specs) {
            files.read = specs.into_iter().zip(texts).collect();
        }
        files
    }

    /// The text of each spec, read now for those not read yet.
    fn get(
        &mut self,
        ctx: &Ctx<'_>,
        specs: &[String],
    ) -> crate::gitops::git::GitResult<Vec<Option<String>>> {
        let missing: Vec<String> = specs
            .iter()
            .filter(|s| !self.read.contains_key(*s))
            .cloned()
            .collect();
        if !missing.is_empty() {
            let texts = ctx.fleet.git().read_blobs(&missing)?;
            self.read.extend(missing.into_iter().zip(texts));
        }
        Ok(specs.iter().map(|s| self.read[s].clone()).collect())
    }
}

/// (source, identity, key id) → the manifests on main that hold it.
pub(super) fn main_references(ctx: &Ctx<'_>) -> MainRefs {
    let mut out = MainRefs::new();
    let scan = ctx.scan();
    for i in index(&scan.secrets, ctx.now()) {
        for f in &i.manifests {
            if let Some(k) = f.managed.as_ref().and_then(|m| m.key_id.as_deref()) {
                out.entry((i.source.clone(), i.identity.clone(), k.to_owned()))
                    .or_default()
                    .push(format!("{}:{}", crate::text::path(&f.file), f.doc.line));
            }
        }
    }
    out
}
