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
pub mod claims;
pub mod events;
pub mod git;

use crate::inventory::{Cluster, Inventory, PointerKind};
use crate::scan::{Attribution, attribute};
use git::{Git, GitError, GitResult, Oid};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Directory for the tool's own state; changes under it never count as unrelated.
pub const STATE_DIR: &str = ".secret-manager/";

/// How many times a push that lost a race (to main, a pointer or a claim) is retried:
/// fetch, rebase or re-decide, push again, with jittered backoff between attempts.
pub const RACE_RETRIES: u32 = 10;

/// Delay before retry `attempt` (1-based) after a lost race: uniform in
/// `[0, min(2 s, 50 ms * 2^(attempt-1))]`, so pods that collided spread out.
pub fn race_backoff(attempt: u32) -> std::time::Duration {
    use rand::Rng as _;
    let cap = 50u64
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(16))
        .min(2_000);
    std::time::Duration::from_millis(rand::thread_rng().gen_range(0..=cap))
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
        /// Remote.
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
        /// Remote.
        remote: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The cluster's remote could not be reached when the run fetched.
    #[error("cluster {cluster}: remote {remote} is unavailable: {reason}")]
    RemoteUnavailable {
        /// Cluster id.
        cluster: String,
        /// Remote.
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
        Fleet {
            git: Git::new(&repo.root),
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
                tracing::warn!(remote, error = %e, "remote unavailable; its clusters are skipped");
                unavailable.insert(remote.to_owned(), e.to_string());
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
                self.git.run(&["update-ref", "-d", &Self::tracking(c)])?;
            }
        }
        if !specs.is_empty() {
            let refs: Vec<&str> = specs.iter().map(String::as_str).collect();
            self.git.fetch(remote, &refs)?;
        }
        Ok(())
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
                    self.git.run(&["update-ref", "-d", &Self::tracking(c)])?;
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

    /// Status of every cluster (fetches first). A cluster whose remote cannot be reached
    /// gets a row with `error` set and no commit data; the others are complete.
    pub fn status(&self) -> PublishResult<Vec<ClusterStatus>> {
        let unavailable = self.fetch()?;
        let main = self.main_tracking();
        self.inventory
            .clusters
            .iter()
            .map(|c| {
                let mut row = ClusterStatus {
                    cluster: c.id.clone(),
                    pointer: c.pointer,
                    refname: pointer_ref(c),
                    remote: c.remote.clone(),
                    commit: None,
                    behind_main: None,
                    ahead_of_main: None,
                    diverged: false,
                    pending_unrelated: false,
                    error: unavailable
                        .get(&c.remote)
                        .map(|e| format!("remote {} unavailable: {e}", c.remote)),
                };
                if row.error.is_some() {
                    return Ok(row);
                }
                row.commit = self.pointer(c)?;
                if let Some(p) = &row.commit {
                    let behind = self.git.count(p, &main)?;
                    let ahead = self.git.count(&main, p)?;
                    let base = self.git.run(&["merge-base", p, &main])?.trim().to_owned();
                    row.pending_unrelated = !self
                        .unrelated(c, &base, &main, &BTreeSet::new())?
                        .is_empty();
                    row.behind_main = Some(behind);
                    row.ahead_of_main = Some(ahead);
                    row.diverged = ahead > 0;
                }
                Ok(row)
            })
            .collect()
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
        self.git.run(&["update-ref", &Self::tracking(c), new])?;
        Ok(())
    }

    /// Runs `attempt` (which fetches what it needs, decides and pushes) until it does
    /// not lose a race, at most [`RACE_RETRIES`] more times, backing off in between.
    fn retry_races<T>(
        &self,
        c: &Cluster,
        mut attempt: impl FnMut() -> PublishResult<T>,
    ) -> PublishResult<T> {
        for n in 1..=RACE_RETRIES + 1 {
            match attempt() {
                Err(PublishError::Git(GitError::Rejected { stderr, .. })) if n <= RACE_RETRIES => {
                    tracing::info!(cluster = %c.id, attempt = n, reason = %stderr, "pointer moved under us; re-reading it");
                    std::thread::sleep(race_backoff(n));
                }
                Err(PublishError::Git(GitError::Rejected { .. })) => {
                    return Err(PublishError::Raced {
                        cluster: c.id.clone(),
                        refname: pointer_ref(c),
                        remote: c.remote.clone(),
                        attempts: n,
                    });
                }
                other => return other,
            }
        }
        unreachable!("the loop returns on the last attempt")
    }

    /// Pushes `commit` (which has the current remote main as an ancestor, or is built
    /// by `rebuild` on top of it) to main. When another writer got there first — git's
    /// own non-fast-forward check or the server's compare-and-swap — it fetches main,
    /// calls `rebuild` with the new main and tries again, up to [`RACE_RETRIES`] times
    /// with jittered backoff. Hooks and permissions are final. Returns what landed.
    pub fn push_main_with_retry(
        &self,
        mut commit: Oid,
        mut rebuild: impl FnMut(&str) -> PublishResult<Oid>,
    ) -> PublishResult<Oid> {
        for attempt in 1..=RACE_RETRIES + 1 {
            match self
                .git
                .push_branch(&self.main_remote, &commit, &self.main_branch)
            {
                Ok(()) => {
                    self.git
                        .run(&["update-ref", &self.main_tracking(), &commit])?;
                    return Ok(commit);
                }
                Err(GitError::Rejected { stderr, .. }) if attempt <= RACE_RETRIES => {
                    tracing::info!(attempt, reason = %stderr, "main moved on the remote; rebasing and retrying");
                    std::thread::sleep(race_backoff(attempt));
                    let new_main = self.fetch_main()?;
                    commit = rebuild(&new_main)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        unreachable!("the loop returns on the last attempt")
    }

    /// Merges `other` into main with a merge commit and pushes it, rebuilding the merge on
    /// top of whatever a concurrent writer pushed. Returns the merge that landed.
    fn merge_into_main(
        &self,
        c: &Cluster,
        main: &str,
        other: &str,
        message: &str,
    ) -> PublishResult<Oid> {
        self.push_main_with_retry(self.merge_commit(main, other, message, c)?, |new_main| {
            self.merge_commit(new_main, other, message, c)
        })
    }

    /// Publishes `change` (a single-parent commit reachable from main) to cluster `id`:
    /// reads the pointer afresh, then fast-forwards it, or makes a hot-fix when main holds
    /// unrelated changes for the cluster. A pointer that moves meanwhile is re-read and the
    /// decision made again; nothing is ever forced.
    pub fn publish(&self, id: &str, change: &str) -> PublishResult<PublishOutcome> {
        let c = self.cluster(id);
        let change = self
            .git
            .resolve(change)?
            .ok_or_else(|| PublishError::UnknownRevision(change.to_owned()))?;
        let main = self
            .git
            .resolve(&self.main_tracking())?
            .expect("main fetched");
        if !self.git.is_ancestor(&change, &main)? {
            return Err(PublishError::NotOnMain {
                rev: change,
                main: self.main_branch.clone(),
            });
        }
        let files: BTreeSet<String> = self.git.commit_files(&change)?.into_iter().collect();
        self.retry_races(c, || {
            let p = self
                .refresh_pointer(c)?
                .ok_or_else(|| PublishError::MissingPointer {
                    cluster: c.id.clone(),
                    refname: pointer_ref(c),
                    remote: c.remote.clone(),
                })?;
            self.publish_from(c, &p, &change, &files)
        })
    }

    fn publish_from(
        &self,
        c: &Cluster,
        p: &str,
        change: &str,
        files: &BTreeSet<String>,
    ) -> PublishResult<PublishOutcome> {
        let outcome = |mode, to: &str| PublishOutcome {
            cluster: c.id.clone(),
            mode,
            from: p.to_owned(),
            to: to.to_owned(),
        };
        // Published already when the pointer has the change itself, or (after a hot-fix,
        // which is a copy) when its tree holds every changed file as the change left it.
        if self.git.is_ancestor(change, p)? || self.holds(p, change, files)? {
            return Ok(outcome(PublishMode::AlreadyPublished, p));
        }
        if self.git.is_ancestor(p, change)? && self.unrelated(c, p, change, files)?.is_empty() {
            self.move_pointer(c, p, change)?;
            return Ok(outcome(PublishMode::FastForward, change));
        }
        // Hot-fix: the change on top of P, merged into main, then the pointer moves to it.
        let hotfix = self.hotfix(c, p, change)?;
        let merge_msg = format!(
            "Merge hot-fix for {} into {}\n\nSecret-Manager-Action: merge-hotfix\nSecret-Manager-Cluster: {}\n",
            c.id, self.main_branch, c.id
        );
        let main = self.fetch_main()?;
        let merged_main = self.merge_into_main(c, &main, &hotfix, &merge_msg)?;
        debug_assert!(self.git.is_ancestor(&hotfix, &merged_main)?);
        self.move_pointer(c, p, &hotfix)?;
        Ok(outcome(PublishMode::Hotfix, &hotfix))
    }

    /// Whether `rev`'s tree has every one of `files` exactly as `change` left it.
    fn holds(&self, rev: &str, change: &str, files: &BTreeSet<String>) -> GitResult<bool> {
        let mut args = vec![
            "diff".to_owned(),
            "--quiet".into(),
            rev.to_owned(),
            change.to_owned(),
            "--".into(),
        ];
        args.extend(files.iter().cloned());
        match self.git.run(&args) {
            Ok(_) => Ok(true),
            Err(GitError::Failed { code: Some(1), .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Runs `git <args>` in a temporary worktree at `base` and returns the new HEAD. On
    /// failure the operation is aborted (`git <abort>`) and reported as a conflict.
    fn in_worktree(
        &self,
        c: &Cluster,
        base: &str,
        args: &[&str],
        abort: &[&str],
    ) -> PublishResult<Oid> {
        let wt = self.git.temp_worktree(base)?;
        match wt.git.run(args) {
            Ok(_) => Ok(wt.git.resolve("HEAD")?.expect("HEAD")),
            Err(GitError::Failed { stderr, .. }) => {
                let _ = wt.git.run(abort);
                Err(PublishError::Conflict {
                    cluster: c.id.clone(),
                    base: base.to_owned(),
                    detail: stderr,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `change` cherry-picked onto `base` (a hot-fix).
    fn hotfix(&self, c: &Cluster, base: &str, change: &str) -> PublishResult<Oid> {
        self.in_worktree(
            c,
            base,
            &["cherry-pick", "-x", "--allow-empty", change],
            &["cherry-pick", "--abort"],
        )
    }

    /// A non-fast-forward merge of `other` into `into`.
    fn merge_commit(
        &self,
        into: &str,
        other: &str,
        message: &str,
        c: &Cluster,
    ) -> PublishResult<Oid> {
        self.in_worktree(
            c,
            into,
            &["merge", "--no-ff", "--no-edit", "-m", message, other],
            &["merge", "--abort"],
        )
    }

    /// Fetches main and the pointer of `c`; fails when its remote is unavailable.
    fn fetch_for(&self, c: &Cluster) -> PublishResult<(Oid, Oid)> {
        let main = self.fetch_main()?;
        let p = self
            .refresh_pointer(c)?
            .ok_or_else(|| PublishError::MissingPointer {
                cluster: c.id.clone(),
                refname: pointer_ref(c),
                remote: c.remote.clone(),
            })?;
        Ok((p, main))
    }

    /// What [`Fleet::promote`] would do: (from, to).
    pub fn plan_promote(&self, id: &str, to: Option<&str>) -> PublishResult<(Oid, Oid)> {
        let c = self.cluster(id);
        let (p, _) = self.fetch_for(c)?;
        let main_ref = self.main_tracking();
        let target_rev = to.unwrap_or(&main_ref);
        let target = self
            .git
            .resolve(target_rev)?
            .ok_or_else(|| PublishError::UnknownRevision(target_rev.to_owned()))?;
        if !self.git.is_ancestor(&target, &main_ref)? {
            return Err(PublishError::NotOnMain {
                rev: target_rev.to_owned(),
                main: self.main_branch.clone(),
            });
        }
        if !self.git.is_ancestor(&p, &target)? {
            return Err(PublishError::Diverged {
                cluster: c.id.clone(),
                refname: pointer_ref(c),
                main: self.main_branch.clone(),
                ahead: self.git.count(&main_ref, &p)?,
            });
        }
        Ok((p, target))
    }

    /// Fast-forwards cluster `id` to `to` (default: main's head on its remote). When the
    /// pointer moves meanwhile, the plan is made again from where it is now.
    pub fn promote(&self, id: &str, to: Option<&str>) -> PublishResult<PublishOutcome> {
        let c = self.cluster(id);
        self.retry_races(c, || {
            let (p, target) = self.plan_promote(id, to)?;
            if p == target || self.git.is_ancestor(&target, &p)? {
                return Ok(PublishOutcome {
                    cluster: c.id.clone(),
                    mode: PublishMode::AlreadyPublished,
                    from: p.clone(),
                    to: p,
                });
            }
            self.move_pointer(c, &p, &target)?;
            Ok(PublishOutcome {
                cluster: c.id.clone(),
                mode: PublishMode::FastForward,
                from: p,
                to: target,
            })
        })
    }

    /// After a hot-fix: merge the cluster pointer into main (non-fast-forward), push main,
    /// then fast-forward the pointer to the merge, so the cluster is back on main's line.
    /// Returns the new pointer commit, or `None` when the pointer had not diverged.
    pub fn reconcile(&self, id: &str) -> PublishResult<Option<PublishOutcome>> {
        let c = self.cluster(id);
        self.retry_races(c, || {
            let (p, main) = self.fetch_for(c)?;
            if self.git.is_ancestor(&p, &main)? {
                return Ok(None);
            }
            let msg = format!(
                "Reconcile {} into {}\n\nSecret-Manager-Action: reconcile\nSecret-Manager-Cluster: {}\n",
                pointer_ref(c),
                self.main_branch,
                c.id
            );
            let merged = self.merge_into_main(c, &main, &p, &msg)?;
            self.move_pointer(c, &p, &merged)?;
            Ok(Some(PublishOutcome {
                cluster: c.id.clone(),
                mode: PublishMode::FastForward,
                from: p,
                to: merged,
            }))
        })
    }
}
