//! Claim refs on the main remote (the format is in [`crate::journal::claim`]).
//!
//! Every update is one `git push` with a lease, so the server decides atomically: create
//! only if absent, replace or delete only if the ref is still at the commit we read.
//! Several claims go in one push; each ref succeeds or fails on its own. The claims a run
//! takes at once share one commit (a file per claim), so a batch of 3,000 claims sends one
//! commit, one tree and 3,000 small blobs, not 3,000 of each.

use super::Fleet;
use super::git::{Git, GitResult, Lease, Oid, RefOutcome, RefUpdate};
use crate::journal::{Claim, credential_id};

/// Where fetched claims are mirrored in the local clone.
const MIRROR: &str = "refs/secret-manager/remote-claims/";

/// A claim as read from the remote.
#[derive(Clone, Debug)]
pub struct Listed {
    /// Full ref name on the remote.
    pub refname: String,
    /// The claim commit.
    pub commit: Oid,
    /// The parsed `claim.yaml`, or why it could not be read.
    pub claim: Result<Claim, String>,
}

/// A claim this run holds: its ref and commit (the lease for the next update).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// Full ref name on the remote.
    pub refname: String,
    /// The claim commit on the remote.
    pub commit: Oid,
    /// The claim.
    pub claim: Claim,
}

/// The outcome of taking one claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Taken {
    /// The claim is ours.
    Won(Box<Held>),
    /// Another run holds it (or took it over first).
    Lost,
    /// The remote refused the ref (hook, permission): final.
    Refused(String),
}

/// Claim refs on one remote.
#[derive(Clone, Debug)]
pub struct ClaimRefs {
    git: Git,
    remote: String,
    prefix: String,
}

impl ClaimRefs {
    /// Claims under `prefix` on the fleet's main remote.
    pub fn new(fleet: &Fleet, prefix: &str) -> ClaimRefs {
        ClaimRefs {
            git: fleet.git().clone(),
            remote: fleet.main_remote().to_owned(),
            prefix: prefix.to_owned(),
        }
    }

    /// The ref prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Every claim on the remote (fetched into a local mirror; deleted ones pruned).
    pub fn list(&self) -> GitResult<Vec<Listed>> {
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
        let refs: Vec<(String, String)> = out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(oid, name)| {
                (
                    oid.to_owned(),
                    format!("{}{}", self.prefix, name.trim_start_matches(MIRROR)),
                )
            })
            .collect();
        // A claim commit holds `claim.yaml` (one claim: a takeover, a renewal) or
        // `<credential-id>.yaml` per claim of a batch, every ref of which points at it.
        let specs: Vec<String> = refs
            .iter()
            .flat_map(|(oid, name)| {
                let id = name.trim_start_matches(&self.prefix);
                [format!("{oid}:claim.yaml"), format!("{oid}:{id}.yaml")]
            })
            .collect();
        let mut blobs = self.git.read_blobs(&specs)?.into_iter();
        Ok(refs
            .into_iter()
            .map(|(commit, refname)| {
                let single = blobs.next().flatten();
                let batched = blobs.next().flatten();
                let id = refname.trim_start_matches(&self.prefix).to_owned();
                let claim = match (single, batched) {
                    (Some(text), _) => Claim::from_yaml(&format!("{refname}:claim.yaml"), &text)
                        .map_err(|e| e.to_string()),
                    (None, Some(text)) => Claim::from_yaml(&format!("{refname}:{id}.yaml"), &text)
                        .map_err(|e| e.to_string()),
                    (None, None) => Err(format!("{refname} has no claim.yaml nor {id}.yaml")),
                };
                Listed {
                    refname,
                    commit,
                    claim,
                }
            })
            .collect())
    }

    fn commit_for(&self, claim: &Claim) -> GitResult<Oid> {
        let blob = self.git.write_blob(&claim.to_yaml())?;
        let message = format!(
            "secret-manager: claim {} ({}) for run {}\n",
            claim.identity, claim.source, claim.run
        );
        self.git
            .commit_files_tree(&[("claim.yaml", blob.as_str())], &[], &message)
    }

    /// One commit for a batch of claims: `<credential-id>.yaml` each, so that every claim
    /// ref of the batch can point at it (one commit and one tree for the push, however
    /// many claims).
    fn commit_for_batch(&self, claims: &[Claim]) -> GitResult<Oid> {
        let mut files = std::collections::BTreeMap::new();
        for c in claims {
            let name = format!("{}.yaml", credential_id(&c.source, &c.identity));
            files.insert(name, self.git.write_blob(&c.to_yaml())?);
        }
        let listing: Vec<(&str, &str)> = files
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_str()))
            .collect();
        let run = claims
            .first()
            .map(|c| c.run.to_string())
            .unwrap_or_default();
        let message = format!(
            "secret-manager: claim {} credentials for run {run}\n",
            claims.len()
        );
        self.git.commit_files_tree(&listing, &[], &message)
    }

    fn push(&self, updates: Vec<(RefUpdate, Option<Claim>)>) -> GitResult<Vec<Taken>> {
        let refs: Vec<RefUpdate> = updates.iter().map(|(u, _)| u.clone()).collect();
        let outcomes = self.git.push_refs(&self.remote, &refs)?;
        Ok(updates
            .into_iter()
            .zip(outcomes)
            .map(|((u, claim), o)| match o {
                RefOutcome::Updated => Taken::Won(Box::new(Held {
                    refname: u.dst,
                    commit: u.src.unwrap_or_default(),
                    claim: claim.expect("a won update carries its claim"),
                })),
                RefOutcome::Lost(_) => Taken::Lost,
                RefOutcome::Refused(reason) => Taken::Refused(reason),
            })
            .collect())
    }

    /// Creates every claim in one push, each only if its ref does not exist yet. A single
    /// claim is its own commit (`claim.yaml`); a batch shares one commit.
    pub fn create(&self, claims: Vec<Claim>) -> GitResult<Vec<Taken>> {
        let commit = match claims.as_slice() {
            [] => return Ok(Vec::new()),
            [one] => self.commit_for(one)?,
            many => self.commit_for_batch(many)?,
        };
        let updates = claims
            .into_iter()
            .map(|c| {
                (
                    RefUpdate {
                        src: Some(commit.clone()),
                        dst: c.refname(&self.prefix),
                        lease: Lease::Absent,
                    },
                    Some(c),
                )
            })
            .collect();
        self.push(updates)
    }

    /// Replaces the claim at `old` with `claim` only if the remote still has `old`
    /// (taking over an expired claim, or renewing our own).
    pub fn replace(&self, refname: &str, old: &str, claim: Claim) -> GitResult<Taken> {
        let commit = self.commit_for(&claim)?;
        let mut out = self.push(vec![(
            RefUpdate {
                src: Some(commit),
                dst: refname.to_owned(),
                lease: Lease::At(old.to_owned()),
            },
            Some(claim),
        )])?;
        Ok(out.pop().expect("one outcome"))
    }

    /// Deletes each held claim, only if it is still at the commit we hold. Returns the
    /// refs that could not be deleted, with why (another run took them over, or the
    /// remote refused).
    pub fn release(&self, held: &[Held]) -> GitResult<Vec<(String, String)>> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let refs: Vec<RefUpdate> = held
            .iter()
            .map(|h| RefUpdate {
                src: None,
                dst: h.refname.clone(),
                lease: Lease::At(h.commit.clone()),
            })
            .collect();
        let outcomes = self.git.push_refs(&self.remote, &refs)?;
        Ok(held
            .iter()
            .zip(outcomes)
            .filter_map(|(h, o)| match o {
                RefOutcome::Updated => None,
                RefOutcome::Lost(r) | RefOutcome::Refused(r) => Some((h.refname.clone(), r)),
            })
            .collect())
    }
}
