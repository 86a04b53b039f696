//! The audit event log: `refs/secret-manager/audit` on the main remote.
//!
//! Some things the tool does leave nothing on main: it deletes a key a dead run minted
//! and never committed, rolls back its own mint when staging fails, or releases a dead
//! run's claim. Each of those is still an audit event. They are appended to this ref — a
//! linear chain of empty-tree commits whose messages carry the usual `Secret-Manager-*`
//! trailers — so that `audit export` finds them, whether main accepts direct pushes or
//! only reviewed pull requests. Appends are compare-and-swap pushes, retried on a race.

use super::git::{Git, GitError, GitResult, Lease, Oid, RefOutcome, RefUpdate};
use super::{Fleet, Races};

/// The event log's ref on the main remote.
pub const EVENTS_REF: &str = "refs/secret-manager/audit";

/// Where the event log is mirrored locally for `audit export`.
pub const EVENTS_MIRROR: &str = "refs/secret-manager/remote-audit";

/// Appends to and reads the event log.
#[derive(Clone, Debug)]
pub struct EventLog {
    git: Git,
    remote: String,
}

impl EventLog {
    /// The log on the fleet's main remote.
    pub fn new(fleet: &Fleet) -> EventLog {
        EventLog {
            git: fleet.git().clone(),
            remote: fleet.main_remote().to_owned(),
        }
    }

    /// Fetches the log into [`EVENTS_MIRROR`]; returns its tip, `None` when it is empty.
    pub fn fetch(&self) -> GitResult<Option<Oid>> {
        let present = self.git.ls_remote_all(&self.remote)?;
        match present.get(EVENTS_REF) {
            Some(_) => {
                self.git
                    .fetch(&self.remote, &[&format!("+{EVENTS_REF}:{EVENTS_MIRROR}")])?;
                self.git.resolve(EVENTS_MIRROR)
            }
            None => Ok(None),
        }
    }

    /// Appends one event commit with `message` (subject, blank line, trailer blocks).
    pub fn append(&self, message: &str) -> GitResult<Oid> {
        let mut races = Races::new();
        loop {
            let tip = self.fetch()?;
            let parents: Vec<&str> = tip.iter().map(Oid::as_str).collect();
            let commit = self.git.commit_files_tree(&[], &parents, message)?;
            let update = RefUpdate {
                src: Some(commit.clone()),
                dst: EVENTS_REF.into(),
                lease: tip.clone().map_or(Lease::Absent, Lease::At),
            };
            match self.git.push_refs(&self.remote, &[update])?.pop() {
                Some(RefOutcome::Updated) => return Ok(commit),
                Some(RefOutcome::Lost(reason)) => {
                    tracing::info!(attempt = races.attempt(), %reason, "audit log moved; retrying");
                    if !races.lost() {
                        return Err(GitError::Rejected {
                            remote: self.remote.clone(),
                            refname: EVENTS_REF.into(),
                            stderr: reason,
                        });
                    }
                }
                Some(RefOutcome::Refused(reason)) => {
                    return Err(GitError::Refused {
                        remote: self.remote.clone(),
                        refname: EVENTS_REF.into(),
                        reason,
                    });
                }
                None => unreachable!("one outcome per update"),
            }
        }
    }
}
