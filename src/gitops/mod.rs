//! Cluster pointers and safe publishing.
//!
//! `main` on the dev remote is the source of truth. Each cluster follows it through a
//! pointer: a branch `cluster/<id>` that only ever moves fast-forward, or a tag
//! `tag/<name>` that moves with a lease. Prod clusters' pointers live on the prod remote.
//!
//! Publishing a change to a cluster must never ship unrelated work: moving a pointer from
//! P to T is allowed only when every file changed in P..T is part of the change, belongs to
//! another cluster, or lives under `.secret-manager/`. Otherwise the change is applied on
//! top of P as a hot-fix commit, merged back into main first, and the pointer moves to the
//! hot-fix, so the cluster branch never diverges from main.
//!
//! Every push that loses a race — git's own non-fast-forward check, a stale lease, or the
//! server's compare-and-swap — is re-read, re-decided and retried ([`RACE_RETRIES`]);
//! only hooks and permissions end an update.
//!
//! All work happens in temporary worktrees; the user's checkout is never touched.

pub mod batch;
pub mod checkout;
pub mod events;
pub mod git;
mod objects;
mod pointers;
mod promote;
mod push;
pub use pointers::HotfixVia;
pub use promote::ReconcilePlan;
mod status;
mod types;

use crate::inventory::{Cluster, Inventory, PointerKind};
use crate::provider::RetryPolicy;
use crate::scan::{Attribution, attribute};
use git::{Git, GitError, GitResult, Oid};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Directory for the tool's own state; changes under it never count as unrelated.
pub const STATE_DIR: &str = ".secret-manager/";

/// How many times a push that lost a race (to main, a pointer or a claim) is retried:
/// fetch, rebase or re-decide, push again, with the backoff of
/// [`RetryPolicy::GIT_RACE`] between attempts.
pub const RACE_RETRIES: u32 = RetryPolicy::GIT_RACE.max_attempts - 1;

/// The attempts of one push that may lose races, under [`RetryPolicy::GIT_RACE`].
#[derive(Debug)]
pub(crate) struct Races {
    attempt: u32,
    waited: std::time::Duration,
}

impl Races {
    pub(crate) fn new() -> Races {
        Races {
            attempt: 1,
            waited: std::time::Duration::ZERO,
        }
    }

    /// The attempt under way (1-based).
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// After a lost race: waits out the backoff (without stalling the runtime) and
    /// returns `true`, or `false` when the policy says to give up.
    pub(crate) fn lost(&mut self) -> bool {
        match RetryPolicy::GIT_RACE.backoff(self.attempt, None, self.waited) {
            Some(d) => {
                crate::blocking::sleep(d);
                self.waited += d;
                self.attempt += 1;
                true
            }
            None => false,
        }
    }
}

/// Errors of pointer operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// A git command failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The pointer ref does not exist on its remote.
    #[error(
        "cluster {cluster}: {refname} does not exist on remote {remote}; create it first (e.g. `git push {remote} <commit>:{refname}`)"
    )]
    MissingPointer {
        /// Cluster id.
        cluster: String,
        /// Full ref name.
        refname: String,
        /// The git remote (its name in the checkout).
        remote: String,
    },
    /// The pointer has commits main lacks: fast-forward is impossible.
    #[error(
        "cluster {cluster}: {refname} has diverged from {main} ({ahead} commit(s) not on {main}); run `secret-manager cluster reconcile {cluster}` first"
    )]
    Diverged {
        /// Cluster id.
        cluster: String,
        /// Pointer ref.
        refname: String,
        /// Main ref.
        main: String,
        /// Commits on the pointer that main lacks.
        ahead: usize,
    },
    /// The target revision is not on main.
    #[error("{rev} is not on {main}: cluster pointers only move along main")]
    NotOnMain {
        /// Revision.
        rev: String,
        /// Main ref.
        main: String,
    },
    /// A revision does not exist.
    #[error("unknown revision `{0}`")]
    UnknownRevision(String),
    /// Someone else kept moving the ref while we retried; nothing was overwritten.
    #[error(
        "cluster {cluster}: {refname} on {remote} kept moving while we were updating it ({attempts} attempts); nothing was overwritten, run again"
    )]
    Raced {
        /// Cluster id.
        cluster: String,
        /// Ref.
        refname: String,
        /// The git remote (its name in the checkout).
        remote: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The cluster's remote could not be reached when the run fetched.
    #[error("cluster {cluster}: remote {remote} is unavailable: {reason}")]
    RemoteUnavailable {
        /// Cluster id.
        cluster: String,
        /// The git remote (its name in the checkout).
        remote: String,
        /// Why.
        reason: String,
    },
    /// The hot-fix could not be applied or merged without conflicts.
    #[error(
        "cluster {cluster}: the change does not apply cleanly on top of {base} ({detail}); publish it by hand"
    )]
    Conflict {
        /// Cluster id.
        cluster: String,
        /// Base commit.
        base: String,
        /// git's message.
        detail: String,
    },
}

/// Result alias.
pub type PublishResult<T> = Result<T, PublishError>;

/// How a publish moved the pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PublishMode {
    /// The pointer moved forward along main to the change.
    FastForward,
    /// The change was committed on top of the pointer, merged into main, and the pointer
    /// moved to it.
    Hotfix,
    /// The pointer already contained the change.
    AlreadyPublished,
    /// Pull-request mode: the change was committed on top of the pointer and pushed to a
    /// branch; the pointer moves once main has it.
    HotfixProposed,
}

impl std::fmt::Display for PublishMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PublishMode::FastForward => "fast-forward",
            PublishMode::Hotfix => {
                "hot-fix (main holds changes not for this cluster: the change went on top of the pointer and was merged back into main)"
            }
            PublishMode::AlreadyPublished => "already published",
            PublishMode::HotfixProposed => "hot-fix proposed (the pointer moves once main has it)",
        })
    }
}

/// Result of [`Fleet::publish`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishOutcome {
    /// Cluster id.
    pub cluster: String,
    /// How.
    pub mode: PublishMode,
    /// Pointer before.
    pub from: Oid,
    /// Pointer after.
    pub to: Oid,
}

/// One row of `cluster status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// Cluster id.
    pub cluster: String,
    /// `branch` or `tag`.
    pub pointer: PointerKind,
    /// Full ref name on the remote.
    #[serde(rename = "ref")]
    pub refname: String,
    /// Remote holding the pointer.
    pub remote: String,
    /// Commit the pointer is at (`None` when the ref is missing).
    pub commit: Option<Oid>,
    /// Commits on main the cluster does not have yet.
    pub behind_main: Option<usize>,
    /// Commits on the pointer that main does not have.
    pub ahead_of_main: Option<usize>,
    /// Whether the pointer left main (a hot-fix not merged back).
    pub diverged: bool,
    /// Whether main holds changes for this cluster that a promote would ship.
    pub pending_unrelated: bool,
    /// Why the row is incomplete (its remote could not be reached), if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What [`Fleet::fetch`] could not reach: remote name → git's error. Clusters on these
/// remotes cannot be published to in this run; everything else can.
pub type Unavailable = BTreeMap<String, String>;

/// A ref the tool writes by fast-forward: where it lives and where it is tracked locally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefTarget {
    /// The git remote (its name in the checkout).
    pub remote: String,
    /// Full ref name on the remote.
    pub refname: String,
    /// Local tracking ref.
    pub tracking: String,
}

/// The fleet's pointers, driven from one local clone.
#[derive(Debug, Clone)]
pub struct Fleet {
    git: Git,
    inventory: Inventory,
    main_remote: String,
    main_branch: String,
}

/// Full ref name of a cluster's pointer on its remote.
pub fn pointer_ref(c: &Cluster) -> String {
    match c.pointer {
        PointerKind::Branch => format!("refs/heads/{}", c.pointer_ref),
        PointerKind::Tag => format!("refs/tags/{}", c.pointer_ref),
    }
}

impl Fleet {
    /// A fleet driven from the clone at `repo`.
    pub fn new(repo: &crate::Repo) -> Fleet {
        let git = Git::new(&repo.root);
        let sign = repo.config.git_sign || git.configured_to_sign();
        Fleet {
            git: git.signing(sign),
            inventory: repo.inventory.clone(),
            main_remote: repo.config.main_remote.clone(),
            main_branch: repo.config.main_branch.clone(),
        }
    }

    /// The git handle of the local clone.
    pub fn git(&self) -> &Git {
        &self.git
    }

    /// The remote that holds main.
    pub fn main_remote(&self) -> &str {
        &self.main_remote
    }

    /// The main branch's name.
    pub fn main_branch(&self) -> &str {
        &self.main_branch
    }

    /// The clusters.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// `refs/remotes/<main_remote>/<main_branch>`.
    pub fn main_tracking(&self) -> String {
        format!("refs/remotes/{}/{}", self.main_remote, self.main_branch)
    }

    fn tracking(c: &Cluster) -> String {
        format!("refs/secret-manager/pointers/{}", c.id)
    }

    /// The local copy of `c`'s pointer as the run last fetched it.
    pub fn pointer_tracking(c: &Cluster) -> String {
        Self::tracking(c)
    }

    /// Fetches main (which must work) and every pointer (into private refs) from their
    /// remotes. A pointer remote that cannot be reached does not fail the fetch: it is
    /// returned, so that only the clusters that need it fail.
    pub fn fetch(&self) -> GitResult<Unavailable> {
        self.fetch_main()?;
        let remotes: BTreeSet<&str> = self
            .inventory
            .clusters
            .iter()
            .map(|c| c.remote.as_str())
            .collect();
        let mut unavailable = Unavailable::new();
        for remote in remotes {
            if let Err(e) = self.fetch_pointers_of(remote) {
                // Reported by the clusters that need it (once per remote); git's advice
                // after its first line ("Please make sure you have the correct access
                // rights...") is the same for every remote.
                tracing::debug!(remote, error = %e, "remote unavailable; its clusters are skipped");
                let text = e.to_string();
                let first = text.lines().next().unwrap_or_default().trim_end();
                unavailable.insert(remote.to_owned(), first.to_owned());
            }
        }
        Ok(unavailable)
    }

    /// Fetches main from its remote into the tracking ref; returns it.
    pub fn fetch_main(&self) -> GitResult<Oid> {
        self.git.fetch(
            &self.main_remote,
            &[&format!(
                "+refs/heads/{b}:{t}",
                b = self.main_branch,
                t = self.main_tracking()
            )],
        )?;
        Ok(self
            .git
            .resolve(&self.main_tracking())?
            .expect("main was just fetched"))
    }

    fn fetch_pointers_of(&self, remote: &str) -> GitResult<()> {
        let present = self.git.ls_remote_all(remote)?;
        let mut specs = Vec::new();
        for c in self
            .inventory
            .clusters
            .iter()
            .filter(|c| c.remote == remote)
        {
            if present.contains_key(&pointer_ref(c)) {
                specs.push(format!("+{}:{}", pointer_ref(c), Self::tracking(c)));
            } else if self.git.resolve(&Self::tracking(c))?.is_some() {
                // The pointer was deleted on the remote: forget our copy.
                self.git.delete_ref(&Self::tracking(c))?;
            }
        }
        if !specs.is_empty() {
            let refs: Vec<&str> = specs.iter().map(String::as_str).collect();
            self.git.fetch(remote, &refs)?;
        }
        Ok(())
    }

    /// Fetches one cluster's pointer afresh; a pointer its remote does not have is
    /// [`PublishError::MissingPointer`].
    fn current_pointer(&self, c: &Cluster) -> PublishResult<Oid> {
        self.refresh_pointer(c)?
            .ok_or_else(|| PublishError::MissingPointer {
                cluster: c.id.clone(),
                refname: pointer_ref(c),
                remote: c.remote.clone(),
            })
    }

    /// Fetches one cluster's pointer afresh; `None` when the ref does not exist there.
    fn refresh_pointer(&self, c: &Cluster) -> GitResult<Option<Oid>> {
        let present = self.git.ls_remote_all(&c.remote)?;
        match present.get(&pointer_ref(c)) {
            Some(_) => {
                self.git.fetch(
                    &c.remote,
                    &[&format!("+{}:{}", pointer_ref(c), Self::tracking(c))],
                )?;
                self.pointer(c)
            }
            None => {
                if self.git.resolve(&Self::tracking(c))?.is_some() {
                    self.git.delete_ref(&Self::tracking(c))?;
                }
                Ok(None)
            }
        }
    }

    /// The pointer's commit as last fetched.
    pub fn pointer(&self, c: &Cluster) -> GitResult<Option<Oid>> {
        self.git.resolve(&Self::tracking(c))
    }

    fn cluster(&self, id: &str) -> &Cluster {
        self.inventory
            .get(id)
            .expect("caller checked the cluster id")
    }

    /// The part of a change's `files` that reaches `cluster`: its own files, shared files
    /// and the tool's state. Another cluster's file is not its business — and may not even
    /// exist at its pointer (a secret added for one cluster, not yet published to another).
    fn files_for(&self, cluster: &Cluster, files: &BTreeSet<String>) -> BTreeSet<String> {
        let ids: BTreeSet<String> = self.inventory.ids().map(str::to_owned).collect();
        files
            .iter()
            .filter(|f| {
                f.starts_with(STATE_DIR)
                    || match attribute(std::path::Path::new(f), &ids) {
                        Attribution::Cluster(c) => c == cluster.id,
                        Attribution::Shared => true,
                        Attribution::Ambiguous(v) => v.contains(&cluster.id),
                    }
            })
            .cloned()
            .collect()
    }

    /// Files in `from..to` that would reach `cluster` but are not part of `allowed`.
    fn unrelated(
        &self,
        cluster: &Cluster,
        from: &str,
        to: &str,
        allowed: &BTreeSet<String>,
    ) -> GitResult<Vec<String>> {
        let ids: BTreeSet<String> = self.inventory.ids().map(str::to_owned).collect();
        Ok(self
            .git
            .changed_files(from, to)?
            .into_iter()
            .filter(|f| !allowed.contains(f) && !f.starts_with(STATE_DIR))
            .filter(|f| match attribute(std::path::Path::new(f), &ids) {
                Attribution::Cluster(c) => c == cluster.id,
                Attribution::Shared => true,
                Attribution::Ambiguous(v) => v.contains(&cluster.id),
            })
            .collect())
    }

    /// Moves the pointer of `c` from `old` to `new` on its remote: fast-forward for
    /// branches, a lease for tags. Never forces. A lost race is returned as
    /// [`GitError::Rejected`] for the caller to re-decide.
    fn move_pointer(&self, c: &Cluster, old: &str, new: &str) -> GitResult<()> {
        match c.pointer {
            PointerKind::Branch => self.git.push_branch(&c.remote, new, &c.pointer_ref)?,
            PointerKind::Tag => {
                self.git
                    .push_tag_with_lease(&c.remote, new, &c.pointer_ref, Some(old))?
            }
        }
        // Keep our private tracking ref in step.
        self.git.set_ref(&Self::tracking(c), new)?;
        Ok(())
    }

    /// Runs `attempt` (which fetches what it needs, decides and pushes) until it does
    /// not lose a race, at most [`RACE_RETRIES`] more times, backing off in between.
    fn retry_races<T>(
        &self,
        c: &Cluster,
        mut attempt: impl FnMut() -> PublishResult<T>,
    ) -> PublishResult<T> {
        let mut races = Races::new();
        loop {
            match attempt() {
                Err(PublishError::Git(GitError::Rejected { stderr, .. })) => {
                    let n = races.attempt();
                    tracing::info!(cluster = %c.id, attempt = n, reason = %stderr, "pointer moved under us; re-reading it");
                    if !races.lost() {
                        return Err(PublishError::Raced {
                            cluster: c.id.clone(),
                            refname: pointer_ref(c),
                            remote: c.remote.clone(),
                            attempts: n,
                        });
                    }
                }
                other => return other,
            }
        }
    }

    /// The ref main lives in, as a push target.
    pub fn main_target(&self) -> RefTarget {
        RefTarget {
            remote: self.main_remote.clone(),
            refname: format!("refs/heads/{}", self.main_branch),
            tracking: self.main_tracking(),
        }
    }

    /// Fetches `t` into its tracking ref; returns it, `None` when the remote has no such ref.
    pub fn fetch_target(&self, t: &RefTarget) -> GitResult<Option<Oid>> {
        let present = self.git.ls_remote_all(&t.remote)?;
        if !present.contains_key(&t.refname) {
            return Ok(None);
        }
        self.git
            .fetch(&t.remote, &[&format!("+{}:{}", t.refname, t.tracking)])?;
        self.git.resolve(&t.tracking)
    }

    /// Pushes `commit` (which has the remote's current tip as an ancestor, or is built by
    /// `rebuild` on top of it) to main. When another writer got there first — git's own
    /// non-fast-forward check or the server's compare-and-swap — it fetches main, calls
    /// `rebuild` with the new main and tries again, up to [`RACE_RETRIES`] times with
    /// jittered backoff. Hooks and permissions are final. Returns what landed.
    pub fn push_main_with_retry(
        &self,
        commit: Oid,
        rebuild: impl FnMut(&str) -> PublishResult<Oid>,
    ) -> PublishResult<Oid> {
        self.push_with_retry(&self.main_target(), commit, rebuild)
    }

    /// [`Fleet::push_main_with_retry`] for any ref that only moves forward.
    pub fn push_with_retry(
        &self,
        t: &RefTarget,
        mut commit: Oid,
        mut rebuild: impl FnMut(&str) -> PublishResult<Oid>,
    ) -> PublishResult<Oid> {
        let mut races = Races::new();
        loop {
            let update = git::RefUpdate {
                src: Some(commit.clone()),
                dst: t.refname.clone(),
                lease: git::Lease::FastForward,
            };
            let outcome = self.git.push_refs(&t.remote, &[update])?.pop();
            match outcome {
                Some(git::RefOutcome::Updated) => {
                    self.git.set_ref(&t.tracking, &commit)?;
                    return Ok(commit);
                }
                Some(git::RefOutcome::Lost(reason)) => {
                    tracing::info!(attempt = races.attempt(), %reason, refname = %t.refname, "the ref moved on the remote; rebasing and retrying");
                    if !races.lost() {
                        return Err(GitError::Rejected {
                            remote: t.remote.clone(),
                            refname: t.refname.clone(),
                            stderr: reason,
                        }
                        .into());
                    }
                    let tip = self.fetch_target(t)?.ok_or_else(|| GitError::Rejected {
                        remote: t.remote.clone(),
                        refname: t.refname.clone(),
                        stderr: "the ref disappeared while we pushed".into(),
                    })?;
                    commit = rebuild(&tip)?;
                }
                Some(git::RefOutcome::Refused(reason)) => {
                    return Err(GitError::Refused {
                        remote: t.remote.clone(),
                        refname: t.refname.clone(),
                        reason,
                    }
                    .into());
                }
                None => unreachable!("one outcome per update"),
            }
        }
    }
}
