//! The journal store: the worktree where rotation records live (main's, or the journal
//! ref's in pull-request mode), and the only code that writes or removes a record file.
//!
//! Every phase changes records the same way: it says what happens to which record
//! ([`Change::Put`] a new or updated record, [`Change::End`] a rotation that is over) and
//! the store writes the files — all of them or none: a failure part-way puts back the
//! files it had already written, so a worktree never holds half a batch — then commits
//! them (with whatever else the phase edited in the same worktree) and pushes. Reading
//! records at a ref without a checkout ([`load_records_at`]) and finding their staging commits
//! ([`staging_commits`]) are here too, so the record format itself ([`super::record`])
//! knows nothing of git.

use super::lifecycle::Ended;
use super::record::{RECORDS_DIR, RotationRecord};
use crate::config::{ConfigResult, from_yaml};
use crate::gitops::batch::MainWriter;
use crate::gitops::git::{Git, GitResult, Oid};
use crate::gitops::{Fleet, PublishError, PublishResult, RefTarget};

/// The journal ref in pull-request mode: the records, outside main (which takes only
/// reviewed changes).
pub const JOURNAL_REF: &str = "refs/secret-manager/journal";

/// Where the journal ref is tracked locally.
pub const JOURNAL_TRACKING: &str = "refs/secret-manager/remote-journal";

/// The journal ref on the fleet's main remote.
pub fn journal_target(fleet: &Fleet) -> RefTarget {
    RefTarget {
        remote: fleet.main_remote().to_owned(),
        refname: JOURNAL_REF.into(),
        tracking: JOURNAL_TRACKING.into(),
    }
}

/// The rotations in flight, for commands that show them (`list`, `keys`).
#[derive(Debug, Default)]
pub struct InFlight {
    /// Every record that could be read, in path order.
    pub records: Vec<RotationRecord>,
    /// What could not be read (the records shown may be incomplete), for a warning.
    pub unread: Option<String>,
}

/// The rotations in flight as the main remote last showed them: the records on main as
/// last fetched (the checkout's when main was never fetched) and, in pull-request mode,
/// those on the journal ref — fetched now when `fetch_journal`, else as last fetched. A
/// journal ref that cannot be fetched is reported in [`InFlight::unread`]; a record that
/// does not parse is an error (it names the file).
pub fn in_flight(fleet: &Fleet, checkout: &Path, fetch_journal: bool) -> ConfigResult<InFlight> {
    let tracking = fleet.main_tracking();
    let mut out = InFlight {
        records: match fleet.git().resolve(&tracking) {
            Ok(Some(_)) => load_records_at(fleet.git(), &tracking)?,
            _ => load_records(checkout)?,
        },
        unread: None,
    };
    let target = journal_target(fleet);
    let journal = if fetch_journal {
        fleet.fetch_target(&target)
    } else {
        fleet.git().resolve(JOURNAL_TRACKING)
    };
    match journal {
        Ok(Some(_)) => out
            .records
            .extend(load_records_at(fleet.git(), JOURNAL_TRACKING)?),
        Ok(None) => {}
        Err(e) => out.unread = Some(format!("cannot read {JOURNAL_REF} ({e})")),
    }
    Ok(out)
}
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What happens to one record.
#[derive(Clone, Copy, Debug)]
pub enum Change<'r> {
    /// Written: a new record, or one whose state moved (published, disabled, proposed).
    Put(&'r RotationRecord),
    /// Removed: the rotation is over (revoked, abandoned, deleted); the audit trail keeps
    /// its history. Only an [`Ended`] record is removed.
    End(&'r Ended),
}

impl Change<'_> {
    fn record(&self) -> &RotationRecord {
        match self {
            Change::Put(r) => r,
            Change::End(r) => r,
        }
    }
}

/// A record file that could not be written or removed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct StoreError {
    /// The record's repo-relative path.
    pub path: String,
    /// What the filesystem said.
    #[source]
    pub source: std::io::Error,
}

/// A batch of record changes that did not land.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A file could not be written (nothing was committed; the worktree is as before).
    #[error(transparent)]
    Write(#[from] StoreError),
    /// The commit or its push failed (the worktree is back at its last landed commit).
    #[error(transparent)]
    Push(#[from] PublishError),
}

/// The journal's worktree, borrowed from the writer that commits it.
#[derive(Clone, Copy, Debug)]
pub struct Store<'w> {
    writer: &'w MainWriter,
}

impl<'w> Store<'w> {
    /// The store in `writer`'s worktree.
    pub fn new(writer: &'w MainWriter) -> Store<'w> {
        Store { writer }
    }

    /// The worktree's directory.
    pub fn dir(&self) -> &'w Path {
        self.writer.dir()
    }

    /// Every record in the worktree, parsed, sorted by path.
    pub fn records(&self) -> ConfigResult<Vec<RotationRecord>> {
        load_records(self.dir())
    }

    /// Writes `changes` — all of them, or none: on a failure the files already written
    /// are put back as they were. Returns the paths to commit.
    pub fn write(&self, changes: &[Change<'_>]) -> Result<Vec<String>, StoreError> {
        write_changes(self.dir(), changes)
    }

    /// Writes `changes` and commits them together with `also` (files the phase edited in
    /// the same worktree: the manifests of a stage or deletion) under `message`, pushed.
    pub fn commit(
        &self,
        changes: &[Change<'_>],
        also: &[String],
        message: &str,
    ) -> Result<Oid, CommitError> {
        let mut paths = also.to_vec();
        paths.extend(self.write(changes)?);
        Ok(self.writer.commit_and_push(&paths, message)?)
    }

    /// Commits `paths` already written by [`Store::write`] (with anything else edited in
    /// the worktree) under `message`, pushed.
    pub fn commit_written(&self, paths: &[String], message: &str) -> PublishResult<Oid> {
        self.writer.commit_and_push(paths, message)
    }
}

/// [`Store::write`] in the worktree at `dir`.
fn write_changes(dir: &Path, changes: &[Change<'_>]) -> Result<Vec<String>, StoreError> {
    let mut before: Vec<(PathBuf, Option<Vec<u8>>)> = Vec::new();
    let mut paths = Vec::new();
    for c in changes {
        let rel = c.record().path();
        let path = dir.join(&rel);
        let old = std::fs::read(&path).ok();
        if let Err(source) = write_one(&path, c) {
            for (p, old) in before.into_iter().rev() {
                let _ = match old {
                    Some(bytes) => crate::manifest::edit::write_in_worktree(&p, &bytes),
                    None => std::fs::remove_file(&p),
                };
            }
            return Err(StoreError { path: rel, source });
        }
        before.push((path, old));
        paths.push(rel);
    }
    Ok(paths)
}

fn write_one(path: &Path, change: &Change<'_>) -> std::io::Result<()> {
    match change {
        Change::Put(r) => {
            std::fs::create_dir_all(path.parent().expect("records have a directory"))?;
            crate::manifest::edit::write_in_worktree(path, r.to_yaml().as_bytes())
        }
        Change::End(_) => match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

/// Loads every record under `root` (a checkout of main), sorted by path.
pub fn load_records(root: &Path) -> ConfigResult<Vec<RotationRecord>> {
    let dir = root.join(RECORDS_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let rel = p.strip_prefix(root).unwrap_or(&p).to_path_buf();
        // Records are repo content: a symlink out of the repo or a FIFO is an error.
        let Some(src) = crate::fsx::read_text_in_repo(root, &rel, crate::fsx::MAX_CONFIG_BYTES)?
        else {
            continue;
        };
        out.push(from_yaml::<RotationRecord>(&rel, &src)?);
    }
    Ok(out)
}

/// Loads every record at `rev` (e.g. the journal ref) without a checkout.
pub fn load_records_at(git: &Git, rev: &str) -> ConfigResult<Vec<RotationRecord>> {
    let listing = git
        .run(&["ls-tree", "-r", "--name-only", rev, "--", RECORDS_DIR])
        .unwrap_or_default();
    let paths: Vec<String> = listing
        .lines()
        .filter(|p| p.ends_with(".yaml"))
        .map(str::to_owned)
        .collect();
    let blobs = git
        .read_blobs(
            &paths
                .iter()
                .map(|p| format!("{rev}:{p}"))
                .collect::<Vec<_>>(),
        )
        .unwrap_or_default();
    let mut out = Vec::new();
    for (p, blob) in paths.iter().zip(blobs) {
        if let Some(src) = blob {
            out.push(from_yaml::<RotationRecord>(Path::new(p), &src)?);
        }
    }
    Ok(out)
}

/// The staging commit of every record file at `HEAD`: the newest first-parent commit that
/// added it, found in one `git log` (a per-record lookup costs a process and a history
/// walk each — seconds for a thousand records). A squash or rebase merge of a pull
/// request is found the same way: by the record, not by the branch's commit id.
pub fn staging_commits(git: &Git) -> GitResult<BTreeMap<String, Oid>> {
    let out = git.run(&[
        "log",
        "--first-parent",
        // A rollback ends one record and adds another like it in the same commit: that
        // is an addition, not a rename.
        "--no-renames",
        "--diff-filter=A",
        "--format=%x1e%H",
        "--name-only",
        "--",
        RECORDS_DIR,
    ])?;
    let mut map = BTreeMap::new();
    for entry in out.split('\x1e').filter(|e| !e.trim().is_empty()) {
        let mut lines = entry.lines().map(str::trim).filter(|l| !l.is_empty());
        let Some(sha) = lines.next() else { continue };
        for path in lines {
            if let Some(oid) = Oid::parse(sha) {
                map.entry(path.to_owned()).or_insert(oid);
            }
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> RotationRecord {
        let rel = "testdata/journal/v1-published.yaml";
        let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap();
        let mut r: RotationRecord = from_yaml(Path::new(rel), &src).unwrap();
        r.id = id.into();
        r
    }

    #[test]
    fn a_batch_is_written_whole_or_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, c) = (record("a"), record("b"), record("c"));
        // `c` exists; `a` is new; `b` cannot be written (a directory is in its place).
        write_changes(d.path(), &[Change::Put(&c)]).unwrap();
        let c_before = std::fs::read(d.path().join(c.path())).unwrap();
        std::fs::create_dir_all(d.path().join(b.path())).unwrap();
        let mut c2 = c.clone();
        c2.disabled_at = Some("2026-12-01T00:00:00Z".parse().unwrap());
        let e = write_changes(
            d.path(),
            &[Change::Put(&a), Change::Put(&c2), Change::Put(&b)],
        )
        .unwrap_err();
        assert_eq!(e.path, b.path());
        // Nothing of the batch is left: `a` is gone again, `c` is as it was.
        assert!(!d.path().join(a.path()).exists());
        assert_eq!(std::fs::read(d.path().join(c.path())).unwrap(), c_before);
        // The same batch without the obstacle lands, and ends are idempotent.
        std::fs::remove_dir(d.path().join(b.path())).unwrap();
        let paths = write_changes(
            d.path(),
            &[Change::Put(&a), Change::Put(&c2), Change::Put(&b)],
        )
        .unwrap();
        assert_eq!(paths, [a.path(), c.path(), b.path()]);
        let loaded = load_records(d.path()).unwrap();
        assert_eq!(loaded.len(), 3);
        assert!(
            loaded
                .iter()
                .any(|r| r.id == "c" && r.disabled_at.is_some())
        );
        let a = a.lifecycle().end();
        write_changes(d.path(), &[Change::End(&a), Change::End(&a)]).unwrap();
        assert_eq!(load_records(d.path()).unwrap().len(), 2);
    }
}
