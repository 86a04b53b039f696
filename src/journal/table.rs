//! Claims on the main remote (the format is in [`crate::journal::claim`]).
//!
//! Every claim lives in one **claims table**: the ref `<prefix>table` (by default
//! `refs/secret-manager/claims/table`) points at a commit whose tree holds one file per
//! claimed credential, `<credential-id>.yaml`. Every change — take, renew, take over,
//! release, for one claim or a batch of thousands — is one new table commit pushed with a
//! lease on the table's previous commit, so the server applies it as one atomic
//! compare-and-swap. A run whose push loses the race re-reads the table and applies its
//! change again: a claim another run took meanwhile is `Lost` (busy), never overwritten.
//! Each change checks the entry it touches — "absent" to take, "still this blob" to renew,
//! take over or release — exactly as a lease on a ref per claim did, so the outcome is one
//! of the orders in which the runs could have pushed their claims one by one.
//!
//! Why a table and not a ref per claim (the layout of earlier versions): a git server
//! spends its time per ref — 3,000 claims were 3,000 loose ref files created and deleted
//! on the server, ~14 s of a 3,000-credential run — while the table is one ref, whatever
//! the batch. Table commits have no parent: the ref holds the claims in flight, not their
//! history (the audit trail is on main), so a fresh clone fetches what is live and the
//! server can drop the rest.
//!
//! **Claims of earlier versions** (`<prefix><credential-id>` refs) are still read: a
//! credential with such a ref is busy, and a dead run's ref is taken over into the table
//! in one atomic push (delete the ref by lease, add the entry). Earlier versions do not
//! read the table, so runs of both must not overlap (docs/rotation.md, "Upgrading").

use super::{Claim, credential_id};
use crate::gitops::Fleet;
use crate::gitops::Races;
use crate::gitops::git::{Git, GitError, GitResult, Lease, Oid, RefOutcome, RefUpdate, TreeEntry};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Where fetched claims are mirrored in the local clone.
const MIRROR: &str = "refs/secret-manager/remote-claims/";

/// The table's name under the claims prefix. A credential id always ends in `-` and 16
/// hex digits, so no claim of an earlier version can have this name.
const TABLE: &str = "table";

/// The largest claim file read from the table; a claim is a few hundred bytes.
const MAX_CLAIM_BYTES: u64 = 64 * 1024;

/// The largest claims table read: ~1,000,000 claims (a file name and an id are ~70
/// bytes). A bigger table is not the tool's; reading it is refused, not attempted.
const MAX_TABLE_BYTES: u64 = 64 * 1024 * 1024;

/// Mode of a regular file in a git tree.
const FILE_MODE: u32 = 0o100644;

/// A claim as read from the remote.
#[derive(Clone, Debug)]
pub struct Listed {
    /// Where the claim lives: `<prefix><credential-id>` (an entry of the table, or the
    /// ref of an earlier version's claim).
    pub refname: String,
    /// The version of the claim a lease compares: the entry's blob in the table, or the
    /// commit of an earlier version's ref.
    pub commit: Oid,
    /// The parsed claim, or why it could not be read.
    pub claim: Result<Claim, Unreadable>,
    /// Whether it is an earlier version's claim ref rather than an entry of the table.
    pub legacy: bool,
}

/// Who holds credential `id` among `listed` (the claims on the remote), described for a
/// `busy` message — or why that claim cannot be read; `None` when nobody does.
pub fn claimed_by(listed: &[Listed], id: &str) -> Option<String> {
    let l = listed
        .iter()
        .find(|l| l.refname.ends_with(&format!("/{id}")))?;
    Some(match &l.claim {
        Ok(c) => c.describe(),
        Err(e) => e.to_string(),
    })
}

/// Why a claim on the remote cannot be read (its credential stays busy until someone
/// looks). Names from the table are escaped when the error is made.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Unreadable {
    /// An earlier version's claim ref without a claim file.
    #[error("{refname} has no claim.yaml nor {id}.yaml")]
    Missing {
        /// The ref.
        refname: String,
        /// The credential id.
        id: String,
    },
    /// A table entry that is not a regular file (a tree, a symlink, a submodule).
    #[error("{at} is not a regular file")]
    NotAFile {
        /// `<table ref>:<entry>`.
        at: String,
    },
    /// A table entry over the size a claim may have, or gone.
    #[error("{at} cannot be read (missing, or larger than {MAX_CLAIM_BYTES} bytes)")]
    TooLarge {
        /// `<table ref>:<entry>`.
        at: String,
    },
    /// Not a claim.
    #[error(transparent)]
    Parse(std::sync::Arc<crate::config::ConfigError>),
}

fn parsed(c: crate::config::ConfigResult<Claim>) -> Result<Claim, Unreadable> {
    c.map_err(|e| Unreadable::Parse(std::sync::Arc::new(e)))
}

/// A claim this run holds: where it lives and its version (the lease for the next
/// update).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// `<prefix><credential-id>`.
    pub refname: String,
    /// The claim's blob in the table.
    pub commit: Oid,
    /// What the claim says, as this run wrote it (lease, window, keys before).
    pub claim: Claim,
}

/// The outcome of taking one claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Taken {
    /// The claim is ours.
    Won(Box<Held>),
    /// Another run holds it (or took it over first).
    Lost,
    /// The remote refused the table's update (hook, permission): final.
    Refused(String),
}

/// The table as last read or written: its commit and entries, and the claim refs of
/// earlier versions.
#[derive(Clone, Debug, Default)]
struct Snapshot {
    /// The table's commit on the remote; `None` when there is no table yet.
    tip: Option<Oid>,
    /// Every entry of the table, by name (claims and anything else found there, which
    /// is carried over untouched).
    entries: BTreeMap<String, TreeEntry>,
    /// Claim refs of earlier versions: full ref name → commit.
    legacy: BTreeMap<String, Oid>,
}

/// One change to a claim.
enum Op {
    /// Take `claim`, only if nobody holds its credential.
    Create(Claim),
    /// Replace the claim at `name` with `claim`, only if it is still at `expect`.
    Replace {
        name: String,
        expect: Oid,
        claim: Claim,
    },
    /// End the claim at `name`, only if it is still at `expect`.
    Delete { name: String, expect: Oid },
}

/// What one [`Op`] did.
enum Applied {
    /// Applied: the claim's new blob (`None` for a delete).
    Done(Option<Oid>),
    /// The entry was not as expected: another run was first.
    Lost,
    /// The remote refused the push.
    Refused(String),
}

/// The claims on one remote.
#[derive(Clone, Debug)]
pub struct ClaimTable {
    git: Git,
    remote: String,
    prefix: String,
    /// Shared by clones: one run's view of the table, refreshed when a push loses.
    snapshot: Arc<Mutex<Option<Snapshot>>>,
}

impl ClaimTable {
    /// Claims under `prefix` on the fleet's main remote.
    pub fn new(fleet: &Fleet, prefix: &str) -> ClaimTable {
        ClaimTable::on(fleet.git().clone(), fleet.main_remote(), prefix)
    }

    /// Claims under `prefix` on `remote`, through `git`.
    pub(crate) fn on(git: Git, remote: &str, prefix: &str) -> ClaimTable {
        ClaimTable {
            git,
            remote: remote.to_owned(),
            prefix: prefix.to_owned(),
            snapshot: Arc::default(),
        }
    }

    /// The ref prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The table's ref on the remote.
    pub fn table_ref(&self) -> String {
        format!("{}{TABLE}", self.prefix)
    }

    fn id_of<'a>(&self, refname: &'a str) -> &'a str {
        refname.strip_prefix(&self.prefix).unwrap_or(refname)
    }

    /// Fetches the claims (the table and any refs of earlier versions) into the local
    /// mirror, deleted ones pruned, and reads the table's entries.
    fn fetch(&self) -> GitResult<Snapshot> {
        self.git.check_remote(&self.remote)?;
        self.git.run(&[
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--prune",
            "--end-of-options",
            &self.remote,
            &format!("+{}*:{MIRROR}*", self.prefix),
        ])?;
        let out = self
            .git
            .run(&["for-each-ref", "--format=%(objectname) %(refname)", MIRROR])?;
        let mut snap = Snapshot::default();
        for (oid, name) in out.lines().filter_map(|l| l.split_once(' ')) {
            let oid = Oid::from_git(oid, "for-each-ref")?;
            let id = name.trim_start_matches(MIRROR);
            if id == TABLE {
                snap.tip = Some(oid);
            } else {
                snap.legacy.insert(format!("{}{id}", self.prefix), oid);
            }
        }
        if let Some(tip) = &snap.tip {
            let entries = self
                .git
                .tree_entries(tip, MAX_TABLE_BYTES)?
                .unwrap_or_default();
            snap.entries = entries.into_iter().map(|e| (e.name.clone(), e)).collect();
        }
        *self.snapshot.lock().expect("claims snapshot") = Some(snap.clone());
        Ok(snap)
    }

    /// The last snapshot, or a fresh one.
    fn current(&self) -> GitResult<Snapshot> {
        let cached = self.snapshot.lock().expect("claims snapshot").clone();
        match cached {
            Some(s) => Ok(s),
            None => self.fetch(),
        }
    }

    /// Every claim on the remote (fetched into a local mirror; deleted ones pruned).
    pub fn list(&self) -> GitResult<Vec<Listed>> {
        let snap = self.fetch()?;
        let mut listed = Vec::new();
        // Earlier versions: a commit holding `claim.yaml` (one claim) or
        // `<credential-id>.yaml` per claim of a batch, every ref of which points at it.
        let specs: Vec<String> = snap
            .legacy
            .iter()
            .flat_map(|(name, oid)| {
                let id = self.id_of(name);
                [format!("{oid}:claim.yaml"), format!("{oid}:{id}.yaml")]
            })
            .collect();
        let mut blobs = self.git.read_blobs(&specs)?.into_iter();
        for (refname, commit) in &snap.legacy {
            let single = blobs.next().flatten();
            let batched = blobs.next().flatten();
            let id = self.id_of(refname);
            let claim = match (single, batched) {
                (Some(text), _) => {
                    parsed(Claim::from_yaml(&format!("{refname}:claim.yaml"), &text))
                }
                (None, Some(text)) => {
                    parsed(Claim::from_yaml(&format!("{refname}:{id}.yaml"), &text))
                }
                (None, None) => Err(Unreadable::Missing {
                    refname: crate::text::escape(refname).into_owned(),
                    id: crate::text::escape(id).into_owned(),
                }),
            };
            listed.push(Listed {
                refname: refname.clone(),
                commit: commit.clone(),
                claim,
                legacy: true,
            });
        }
        // The table: every `<credential-id>.yaml`; other names are not claims.
        let claims: Vec<&TreeEntry> = snap
            .entries
            .values()
            .filter(|e| e.name.ends_with(".yaml"))
            .collect();
        let oids: Vec<Oid> = claims
            .iter()
            .filter(|e| e.mode == FILE_MODE)
            .map(|e| e.oid.clone())
            .collect();
        let mut texts = self.git.read_blob_ids(&oids, MAX_CLAIM_BYTES)?.into_iter();
        let table = self.table_ref();
        for e in claims {
            let id = e.name.trim_end_matches(".yaml");
            let at = format!("{table}:{}", crate::text::escape(&e.name));
            let claim = if e.mode != FILE_MODE {
                Err(Unreadable::NotAFile { at })
            } else {
                match texts.next().flatten() {
                    Some(text) => parsed(Claim::from_yaml(&at, &text)),
                    None => Err(Unreadable::TooLarge { at }),
                }
            };
            listed.push(Listed {
                refname: format!("{}{id}", self.prefix),
                commit: e.oid.clone(),
                claim,
                legacy: false,
            });
        }
        Ok(listed)
    }

    /// Applies `ops` to the table in one push, re-reading the table and applying them
    /// again when another run's push came first. Returns each op's outcome, in order.
    fn apply(&self, ops: &[Op]) -> GitResult<Vec<Applied>> {
        let mut races = Races::new();
        loop {
            let snap = self.current()?;
            let mut entries = snap.entries.clone();
            let mut legacy_deletes: Vec<RefUpdate> = Vec::new();
            let mut outcomes = Vec::with_capacity(ops.len());
            let mut changed = false;
            for op in ops {
                let applied = match op {
                    Op::Create(claim) => {
                        let id = credential_id(&claim.source, &claim.identity);
                        let name = format!("{id}.yaml");
                        let legacy = format!("{}{id}", self.prefix);
                        if entries.contains_key(&name) || snap.legacy.contains_key(&legacy) {
                            Applied::Lost
                        } else {
                            let blob = self.git.write_blob(&claim.to_yaml())?;
                            entries.insert(name.clone(), file(&name, &blob));
                            Applied::Done(Some(blob))
                        }
                    }
                    Op::Replace {
                        name,
                        expect,
                        claim,
                    } => {
                        let file_name = format!("{}.yaml", self.id_of(name));
                        if let Some(c) = self.take_entry(&entries, &snap, name, expect) {
                            let blob = self.git.write_blob(&claim.to_yaml())?;
                            entries.insert(file_name.clone(), file(&file_name, &blob));
                            if let Some(d) = c {
                                legacy_deletes.push(d);
                            }
                            Applied::Done(Some(blob))
                        } else {
                            Applied::Lost
                        }
                    }
                    Op::Delete { name, expect } => {
                        if let Some(c) = self.take_entry(&entries, &snap, name, expect) {
                            entries.remove(&format!("{}.yaml", self.id_of(name)));
                            if let Some(d) = c {
                                legacy_deletes.push(d);
                            }
                            Applied::Done(None)
                        } else {
                            Applied::Lost
                        }
                    }
                };
                changed |= matches!(applied, Applied::Done(_));
                outcomes.push(applied);
            }
            if !changed {
                return Ok(outcomes);
            }
            let listing: Vec<TreeEntry> = entries.values().cloned().collect();
            let message = format!("secret-manager: {} claims\n", listing.len());
            let commit = self.git.commit_tree(&listing, &[], &message)?;
            let mut updates = vec![RefUpdate {
                src: Some(commit.clone()),
                dst: self.table_ref(),
                lease: match &snap.tip {
                    Some(t) => Lease::At(t.clone()),
                    None => Lease::Absent,
                },
            }];
            updates.extend(legacy_deletes.iter().cloned());
            let results = if updates.len() == 1 {
                self.git.push_refs(&self.remote, &updates)?
            } else {
                self.git.push_refs_atomic(&self.remote, &updates)?
            };
            let refused = results.iter().find_map(|r| match r {
                RefOutcome::Refused(why) => Some(why.clone()),
                _ => None,
            });
            let lost = results.iter().any(|r| matches!(r, RefOutcome::Lost(_)));
            if lost {
                // Another run changed the table (or an old claim ref) first: read it again.
                *self.snapshot.lock().expect("claims snapshot") = None;
                if !races.lost() {
                    return Err(GitError::Rejected {
                        remote: self.remote.clone(),
                        refname: self.table_ref(),
                        stderr: format!(
                            "the claims table kept changing under {} attempts",
                            races.attempt()
                        ),
                    });
                }
                continue;
            }
            if let Some(why) = refused {
                return Ok(outcomes
                    .into_iter()
                    .map(|o| match o {
                        Applied::Done(_) => Applied::Refused(why.clone()),
                        other => other,
                    })
                    .collect());
            }
            let mut snap = snap;
            snap.tip = Some(commit);
            snap.entries = entries;
            for d in &legacy_deletes {
                snap.legacy.remove(&d.dst);
            }
            *self.snapshot.lock().expect("claims snapshot") = Some(snap);
            return Ok(outcomes);
        }
    }

    /// Whether the claim at `name` is still at `expect`: `Some(None)` for a table entry,
    /// `Some(Some(delete))` for an earlier version's ref (to be deleted by lease in the
    /// same push), `None` when it is not.
    fn take_entry(
        &self,
        entries: &BTreeMap<String, TreeEntry>,
        snap: &Snapshot,
        name: &str,
        expect: &Oid,
    ) -> Option<Option<RefUpdate>> {
        let file_name = format!("{}.yaml", self.id_of(name));
        if let Some(e) = entries.get(&file_name) {
            return (&e.oid == expect).then_some(None);
        }
        match snap.legacy.get(name) {
            Some(commit) if commit == expect => Some(Some(RefUpdate {
                src: None,
                dst: name.to_owned(),
                lease: Lease::At(expect.clone()),
            })),
            _ => None,
        }
    }

    fn taken(&self, applied: Applied, claim: Claim) -> Taken {
        match applied {
            // A take or a replacement writes the claim's blob; only a release has none.
            Applied::Done(None) => Taken::Lost,
            Applied::Done(Some(blob)) => Taken::Won(Box::new(Held {
                refname: format!(
                    "{}{}",
                    self.prefix,
                    credential_id(&claim.source, &claim.identity)
                ),
                commit: blob,
                claim,
            })),
            Applied::Lost => Taken::Lost,
            Applied::Refused(why) => Taken::Refused(why),
        }
    }

    /// Takes every claim in one table update, each only if nobody holds its credential.
    pub fn create(&self, claims: Vec<Claim>) -> GitResult<Vec<Taken>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let ops: Vec<Op> = claims.iter().cloned().map(Op::Create).collect();
        let applied = self.apply(&ops)?;
        Ok(applied
            .into_iter()
            .zip(claims)
            .map(|(a, c)| self.taken(a, c))
            .collect())
    }

    /// Replaces the claim at `refname` with `claim` only if it is still at `old` (taking
    /// over an expired claim, or renewing our own).
    pub fn replace(&self, refname: &str, old: &Oid, claim: Claim) -> GitResult<Taken> {
        let op = Op::Replace {
            name: refname.to_owned(),
            expect: old.clone(),
            claim: claim.clone(),
        };
        let applied = self.apply(std::slice::from_ref(&op))?;
        let a = applied.into_iter().next().expect("one outcome");
        Ok(self.taken(a, claim))
    }

    /// Ends each held claim, only if it is still the one we hold, in one table update.
    /// Returns the claims that could not be ended, with why (another run took them over,
    /// or the remote refused).
    pub fn release(&self, held: &[Held]) -> GitResult<Vec<(String, String)>> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let ops: Vec<Op> = held
            .iter()
            .map(|h| Op::Delete {
                name: h.refname.clone(),
                expect: h.commit.clone(),
            })
            .collect();
        let applied = self.apply(&ops)?;
        Ok(held
            .iter()
            .zip(applied)
            .filter_map(|(h, a)| match a {
                Applied::Done(_) => None,
                Applied::Lost => Some((h.refname.clone(), "another run took it over".to_owned())),
                Applied::Refused(why) => Some((h.refname.clone(), why)),
            })
            .collect())
    }
}

fn file(name: &str, blob: &Oid) -> TreeEntry {
    TreeEntry {
        name: name.to_owned(),
        mode: FILE_MODE,
        oid: blob.clone(),
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
