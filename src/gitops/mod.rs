//! Cluster pointers and safe publishing (DESIGN §8, seed §4).
//!
//! `main` on the dev remote is the source of truth. Each cluster follows it through a
//! pointer: a branch `cluster/<id>` that only ever moves fast-forward, or a tag
//! `tag/<name>` that moves with a lease. Prod clusters' pointers live on the prod remote.
//!
//! Publishing a change to a cluster must never ship unrelated work: moving a pointer from
//! P to T is allowed only when every file changed in P..T is part of the change, belongs to
//! another cluster, or lives under `.secret-manager/`. Otherwise the change is applied on
//! top of P as a hot-fix commit, merged back into main first, and the pointer moves to the
//! hot-fix (seed §4.3), so the cluster branch never diverges from main.
//!
//! All work happens in temporary worktrees; the user's checkout is never touched.

pub mod git;

use crate::inventory::{Cluster, Inventory, PointerKind};
use crate::scan::{Attribution, attribute};
use git::{Git, GitError, GitResult, Oid};
use serde::Serialize;
use std::collections::BTreeSet;

/// Directory for the tool's own state; changes under it never count as unrelated.
pub const STATE_DIR: &str = ".secret-manager/";

/// How many times a push to main is rebased and retried after a concurrent writer won.
pub const PUSH_RETRIES: usize = 5;

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
    /// Someone else moved the ref at the same time; nothing was overwritten.
    #[error(
        "cluster {cluster}: {refname} on {remote} moved while we were updating it; nothing was overwritten, run again"
    )]
    Raced {
        /// Cluster id.
        cluster: String,
        /// Ref.
        refname: String,
        /// Remote.
        remote: String,
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
}

/// The fleet's pointers, driven from one local clone.
#[derive(Debug)]
pub struct Fleet<'a> {
    git: Git,
    inventory: &'a Inventory,
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

impl<'a> Fleet<'a> {
    /// A fleet driven from the clone at `repo`.
    pub fn new(repo: &crate::Repo) -> Fleet<'_> {
        Fleet {
            git: Git::new(&repo.root),
            inventory: &repo.inventory,
            main_remote: repo.config.main_remote.clone(),
            main_branch: repo.config.main_branch.clone(),
        }
    }

    /// The git handle of the local clone.
    pub fn git(&self) -> &Git {
        &self.git
    }

    /// `refs/remotes/<main_remote>/<main_branch>`.
    pub fn main_tracking(&self) -> String {
        format!("refs/remotes/{}/{}", self.main_remote, self.main_branch)
    }

    fn tracking(c: &Cluster) -> String {
        format!("refs/secret-manager/pointers/{}", c.id)
    }

    /// Fetches main and every pointer (into private refs) from their remotes.
    pub fn fetch(&self) -> GitResult<()> {
        self.git.fetch(
            &self.main_remote,
            &[&format!(
                "+refs/heads/{b}:refs/remotes/{r}/{b}",
                b = self.main_branch,
                r = self.main_remote
            )],
        )?;
        let remotes: BTreeSet<&str> = self
            .inventory
            .clusters
            .iter()
            .map(|c| c.remote.as_str())
            .collect();
        for remote in remotes {
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
        }
        Ok(())
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

    /// Status of every cluster (fetches first).
    pub fn status(&self) -> PublishResult<Vec<ClusterStatus>> {
        self.fetch()?;
        let main = self.main_tracking();
        self.inventory
            .clusters
            .iter()
            .map(|c| {
                let commit = self.pointer(c)?;
                let (behind, ahead, pending) = match &commit {
                    Some(p) => {
                        let behind = self.git.count(p, &main)?;
                        let ahead = self.git.count(&main, p)?;
                        let base = self.git.run(&["merge-base", p, &main])?.trim().to_owned();
                        let pending = !self
                            .unrelated(c, &base, &main, &BTreeSet::new())?
                            .is_empty();
                        (Some(behind), Some(ahead), pending)
                    }
                    None => (None, None, false),
                };
                Ok(ClusterStatus {
                    cluster: c.id.clone(),
                    pointer: c.pointer,
                    refname: pointer_ref(c),
                    remote: c.remote.clone(),
                    commit,
                    behind_main: behind,
                    ahead_of_main: ahead,
                    diverged: ahead.is_some_and(|a| a > 0),
                    pending_unrelated: pending,
                })
            })
            .collect()
    }

    /// Moves the pointer of `c` from `old` to `new` on its remote: fast-forward for
    /// branches, a lease for tags. Never forces.
    fn move_pointer(&self, c: &Cluster, old: &str, new: &str) -> PublishResult<()> {
        let raced = |e: GitError| match e {
            GitError::Rejected { .. } => PublishError::Raced {
                cluster: c.id.clone(),
                refname: pointer_ref(c),
                remote: c.remote.clone(),
            },
            e => PublishError::Git(e),
        };
        match c.pointer {
            PointerKind::Branch => self
                .git
                .push_branch(&c.remote, new, &c.pointer_ref)
                .map_err(raced)?,
            PointerKind::Tag => self
                .git
                .push_tag_with_lease(&c.remote, new, &c.pointer_ref, Some(old))
                .map_err(raced)?,
        }
        // Keep our private tracking ref in step.
        self.git.run(&["update-ref", &Self::tracking(c), new])?;
        Ok(())
    }

    fn require_pointer(&self, c: &Cluster) -> PublishResult<Oid> {
        self.pointer(c)?
            .ok_or_else(|| PublishError::MissingPointer {
                cluster: c.id.clone(),
                refname: pointer_ref(c),
                remote: c.remote.clone(),
            })
    }

    /// Pushes `commit` (which has the current remote main as an ancestor, or is built
    /// by `rebuild` on top of it) to main, rebasing and retrying when a concurrent writer
    /// got there first. Returns the commit that landed.
    pub fn push_main_with_retry(
        &self,
        mut commit: Oid,
        mut rebuild: impl FnMut(&str) -> PublishResult<Oid>,
    ) -> PublishResult<Oid> {
        for attempt in 0..=PUSH_RETRIES {
            match self
                .git
                .push_branch(&self.main_remote, &commit, &self.main_branch)
            {
                Ok(()) => {
                    self.git
                        .run(&["update-ref", &self.main_tracking(), &commit])?;
                    return Ok(commit);
                }
                Err(GitError::Rejected { .. }) if attempt < PUSH_RETRIES => {
                    tracing::info!(attempt, "main moved on the remote; rebasing and retrying");
                    self.git.fetch(
                        &self.main_remote,
                        &[&format!(
                            "+refs/heads/{b}:{t}",
                            b = self.main_branch,
                            t = self.main_tracking()
                        )],
                    )?;
                    let new_main = self
                        .git
                        .resolve(&self.main_tracking())?
                        .expect("fetched main");
                    commit = rebuild(&new_main)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        unreachable!("the loop returns on the last attempt")
    }

    /// Fetches, then returns the pointer of `c` (which must exist) and main.
    fn fetched(&self, c: &Cluster) -> PublishResult<(Oid, Oid)> {
        self.fetch()?;
        let p = self.require_pointer(c)?;
        let main = self
            .git
            .resolve(&self.main_tracking())?
            .expect("main fetched");
        Ok((p, main))
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

    /// Publishes `change` (a single-parent commit reachable from main) to cluster `id`.
    pub fn publish(&self, id: &str, change: &str) -> PublishResult<PublishOutcome> {
        let c = self.cluster(id);
        let (p, main) = self.fetched(c)?;
        let change = self
            .git
            .resolve(change)?
            .ok_or_else(|| PublishError::UnknownRevision(change.to_owned()))?;
        if !self.git.is_ancestor(&change, &main)? {
            return Err(PublishError::NotOnMain {
                rev: change,
                main: self.main_branch.clone(),
            });
        }
        let outcome = |mode, to: Oid| PublishOutcome {
            cluster: c.id.clone(),
            mode,
            from: p.clone(),
            to,
        };
        let files: BTreeSet<String> = self.git.commit_files(&change)?.into_iter().collect();
        // Published already when the pointer has the change itself, or (after a hot-fix,
        // which is a copy) when its tree holds every changed file as the change left it.
        if self.git.is_ancestor(&change, &p)? || self.holds(&p, &change, &files)? {
            return Ok(outcome(PublishMode::AlreadyPublished, p.clone()));
        }
        if self.git.is_ancestor(&p, &change)? && self.unrelated(c, &p, &change, &files)?.is_empty()
        {
            self.move_pointer(c, &p, &change)?;
            return Ok(outcome(PublishMode::FastForward, change));
        }
        // Hot-fix: the change on top of P, merged into main, then the pointer moves to it.
        let hotfix = self.hotfix(c, &p, &change)?;
        let merge_msg = format!(
            "Merge hot-fix for {} into {}\n\nSecret-Manager-Action: merge-hotfix\nSecret-Manager-Cluster: {}\n",
            c.id, self.main_branch, c.id
        );
        let merged_main = self.merge_into_main(c, &main, &hotfix, &merge_msg)?;
        debug_assert!(self.git.is_ancestor(&hotfix, &merged_main)?);
        self.move_pointer(c, &p, &hotfix)?;
        Ok(outcome(PublishMode::Hotfix, hotfix))
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

    /// What [`Fleet::promote`] would do: (from, to).
    pub fn plan_promote(&self, id: &str, to: Option<&str>) -> PublishResult<(Oid, Oid)> {
        let c = self.cluster(id);
        self.fetch()?;
        let p = self.require_pointer(c)?;
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

    /// Fast-forwards cluster `id` to `to` (default: main), seed §4.2.
    pub fn promote(&self, id: &str, to: Option<&str>) -> PublishResult<PublishOutcome> {
        let (p, target) = self.plan_promote(id, to)?;
        let c = self.cluster(id);
        if p == target {
            return Ok(PublishOutcome {
                cluster: c.id.clone(),
                mode: PublishMode::AlreadyPublished,
                from: p,
                to: target,
            });
        }
        self.move_pointer(c, &p, &target)?;
        Ok(PublishOutcome {
            cluster: c.id.clone(),
            mode: PublishMode::FastForward,
            from: p,
            to: target,
        })
    }

    /// Seed §4.3: merge the cluster pointer into main (non-fast-forward), push main, then
    /// fast-forward the pointer to the merge. Returns the new pointer commit, or `None`
    /// when the pointer had not diverged.
    pub fn reconcile(&self, id: &str) -> PublishResult<Option<PublishOutcome>> {
        let c = self.cluster(id);
        let (p, main) = self.fetched(c)?;
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
    }
}
