//! Publishing one change to one cluster: fast-forward when nothing unrelated would ship
//! with it, otherwise a hot-fix on top of the pointer, merged back into main first.

use super::git::{GitError, GitResult, Oid};
use super::{Fleet, PublishError, PublishMode, PublishOutcome, PublishResult, pointer_ref};
use crate::inventory::Cluster;
use std::collections::BTreeSet;

/// Where a hot-fix goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HotfixVia<'a> {
    /// Merged into main at once, then the pointer moves (pushing to main).
    MergeIntoMain,
    /// Pushed to this branch for a pull request; the pointer does not move yet.
    Branch(&'a str),
}

/// One move, as the batch sees it: `None` when it is not the batch's (the one-cluster
/// path decides it); `Ok((mode, pointer))` when nothing is to push; `Err((from, to))`
/// for a fast-forward to push.
type Batchable = Option<Result<(PublishMode, Oid), (Oid, Oid)>>;

impl Fleet {
    /// Merges `other` into main with a merge commit and pushes it, rebuilding the merge on
    /// top of whatever a concurrent writer pushed. Returns the merge that landed.
    pub(super) fn merge_into_main(
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

    /// Publishes `change` (a commit reachable from main) to cluster `id`: reads the pointer
    /// afresh, then fast-forwards it, or makes a hot-fix when main holds unrelated changes
    /// for the cluster. A pointer that moves meanwhile is re-read and the decision made
    /// again; nothing is ever forced.
    pub fn publish(&self, id: &str, change: &str) -> PublishResult<PublishOutcome> {
        self.publish_with(id, change, HotfixVia::MergeIntoMain)
    }

    /// [`Fleet::publish`], with the hot-fix (if one is needed) going `via` main directly
    /// or, when main takes no pushes, to a branch for a pull request — the pointer then
    /// stays where it is until main has the hot-fix ([`Fleet::advance_to`]), so no cluster
    /// gets a commit main will not get.
    pub fn publish_with(
        &self,
        id: &str,
        change: &str,
        via: HotfixVia<'_>,
    ) -> PublishResult<PublishOutcome> {
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
                rev: change.to_string(),
                main: self.main_branch.clone(),
            });
        }
        let files: BTreeSet<String> = self.git.commit_files(&change)?.into_iter().collect();
        self.retry_races(c, || {
            let p = self.current_pointer(c)?;
            self.publish_from(c, &p, &change, &files, via)
        })
    }

    /// The fast-forward moves of many clusters at once: per remote, one fetch of its
    /// pointers and one push of every pointer that can fast-forward to its change, each
    /// under a lease on the commit it was read at (each ref succeeds or fails on its own;
    /// nothing is forced). Returns, per move, the outcome when the batch settled it
    /// (published already, moved, or refused for good), or `None` when the move needs
    /// [`Fleet::publish`]: a hot-fix, a pointer that moved meanwhile (retried alone there,
    /// with its backoff), a missing pointer or an unreachable remote (reported there).
    pub fn publish_fast_forwards(
        &self,
        moves: &[(String, String)],
    ) -> Vec<Option<PublishResult<PublishOutcome>>> {
        let mut out: Vec<Option<PublishResult<PublishOutcome>>> =
            (0..moves.len()).map(|_| None).collect();
        let Ok(Some(main)) = self.git.resolve(&self.main_tracking()) else {
            return out;
        };
        let mut by_remote: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
        for (i, (id, _)) in moves.iter().enumerate() {
            if let Some(c) = self.inventory.get(id) {
                by_remote.entry(c.remote.as_str()).or_default().push(i);
            }
        }
        let mut files_of: std::collections::BTreeMap<Oid, BTreeSet<String>> = Default::default();
        for (remote, idx) in by_remote {
            if self.fetch_pointers_of(remote).is_err() {
                continue;
            }
            let mut updates = Vec::new();
            let mut pending = Vec::new();
            for i in idx {
                let (id, change) = &moves[i];
                let c = self.cluster(id);
                let decided = (|| -> GitResult<Batchable> {
                    let Some(change) = self.git.resolve(change)? else {
                        return Ok(None);
                    };
                    if !self.git.is_ancestor(&change, &main)? {
                        return Ok(None);
                    }
                    let Some(p) = self.pointer(c)? else {
                        return Ok(None);
                    };
                    if !files_of.contains_key(&change) {
                        let files = self.git.commit_files(&change)?.into_iter().collect();
                        files_of.insert(change.clone(), files);
                    }
                    let files = &files_of[&change];
                    let own = self.files_for(c, files);
                    if self.git.is_ancestor(&change, &p)? || self.holds(&p, &change, &own)? {
                        return Ok(Some(Ok((PublishMode::AlreadyPublished, p))));
                    }
                    if self.git.is_ancestor(&p, &change)?
                        && self.unrelated(c, &p, &change, files)?.is_empty()
                    {
                        return Ok(Some(Err((p, change))));
                    }
                    Ok(None)
                })();
                match decided {
                    Ok(Some(Ok((mode, p)))) => {
                        out[i] = Some(Ok(PublishOutcome {
                            cluster: c.id.clone(),
                            mode,
                            from: p.clone(),
                            to: p,
                        }));
                    }
                    Ok(Some(Err((p, change)))) => {
                        updates.push(super::git::RefUpdate {
                            src: Some(change.clone()),
                            dst: pointer_ref(c),
                            lease: super::git::Lease::At(p.clone()),
                        });
                        pending.push((i, c, p, change));
                    }
                    // Anything else is decided (and reported) by the one-cluster path.
                    Ok(None) | Err(_) => {}
                }
            }
            if updates.is_empty() {
                continue;
            }
            let Ok(outcomes) = self.git.push_refs(remote, &updates) else {
                continue;
            };
            for ((i, c, p, change), o) in pending.into_iter().zip(outcomes) {
                match o {
                    super::git::RefOutcome::Updated => {
                        if self.git.set_ref(&Self::tracking(c), &change).is_err() {
                            continue;
                        }
                        out[i] = Some(Ok(PublishOutcome {
                            cluster: c.id.clone(),
                            mode: PublishMode::FastForward,
                            from: p,
                            to: change,
                        }));
                    }
                    // Another writer moved the pointer: re-read and retried alone.
                    super::git::RefOutcome::Lost(_) => {}
                    super::git::RefOutcome::Refused(reason) => {
                        out[i] = Some(Err(GitError::Refused {
                            remote: remote.to_owned(),
                            refname: pointer_ref(c),
                            reason,
                        }
                        .into()));
                    }
                }
            }
        }
        out
    }

    /// Moves cluster `id` forward to `commit` (a hot-fix main now contains): only when its
    /// pointer is an ancestor of `commit` and `commit` is on main.
    pub fn advance_to(&self, id: &str, commit: &str) -> PublishResult<PublishOutcome> {
        let c = self.cluster(id);
        let commit = &self
            .git
            .resolve(commit)?
            .ok_or_else(|| PublishError::UnknownRevision(commit.to_owned()))?;
        let main = self
            .git
            .resolve(&self.main_tracking())?
            .expect("main fetched");
        if !self.git.is_ancestor(commit, &main)? {
            return Err(PublishError::NotOnMain {
                rev: commit.to_string(),
                main: self.main_branch.clone(),
            });
        }
        self.retry_races(c, || {
            let p = self.current_pointer(c)?;
            let outcome = |mode| PublishOutcome {
                cluster: c.id.clone(),
                mode,
                from: p.clone(),
                to: commit.clone(),
            };
            if self.git.is_ancestor(commit, &p)? {
                return Ok(outcome(PublishMode::AlreadyPublished));
            }
            if !self.git.is_ancestor(&p, commit)? {
                return Err(PublishError::Diverged {
                    cluster: c.id.clone(),
                    refname: pointer_ref(c),
                    main: self.main_branch.clone(),
                    ahead: self.git.count(commit, &p)?,
                });
            }
            self.move_pointer(c, &p, commit)?;
            Ok(outcome(PublishMode::FastForward))
        })
    }

    fn publish_from(
        &self,
        c: &Cluster,
        p: &Oid,
        change: &Oid,
        files: &BTreeSet<String>,
        via: HotfixVia<'_>,
    ) -> PublishResult<PublishOutcome> {
        let outcome = |mode, to: &Oid| PublishOutcome {
            cluster: c.id.clone(),
            mode,
            from: p.clone(),
            to: to.clone(),
        };
        // Published already when the pointer has the change itself, or (after a hot-fix,
        // which is a copy) when its tree holds every changed file as the change left it —
        // or every changed manifest, the tool's own state aside: a rollback for a cluster
        // that never got the rotation changes nothing there.
        let own = self.files_for(c, files);
        let manifests: BTreeSet<String> = own
            .iter()
            .filter(|f| !f.starts_with(super::STATE_DIR))
            .cloned()
            .collect();
        if self.git.is_ancestor(change, p)?
            || self.holds(p, change, &own)?
            || (!manifests.is_empty() && self.holds(p, change, &manifests)?)
        {
            return Ok(outcome(PublishMode::AlreadyPublished, p));
        }
        if self.git.is_ancestor(p, change)? && self.unrelated(c, p, change, files)?.is_empty() {
            self.move_pointer(c, p, change)?;
            return Ok(outcome(PublishMode::FastForward, change));
        }
        // Hot-fix: the change on top of P, merged into main, then the pointer moves to it.
        let hotfix = if own.len() == files.len() {
            self.hotfix(c, p, change)?
        } else {
            self.hotfix_of(c, p, change, &own)?
        };
        if let HotfixVia::Branch(branch) = via {
            // Main takes no pushes: the hot-fix waits on a branch for its pull request.
            let update = super::git::RefUpdate {
                src: Some(hotfix.clone()),
                dst: format!("refs/heads/{branch}"),
                lease: super::git::Lease::FastForward,
            };
            match self.git.push_refs(&self.main_remote, &[update])?.pop() {
                Some(super::git::RefOutcome::Updated) => {}
                Some(super::git::RefOutcome::Lost(r) | super::git::RefOutcome::Refused(r)) => {
                    return Err(GitError::Refused {
                        remote: self.main_remote.clone(),
                        refname: format!("refs/heads/{branch}"),
                        reason: r,
                    }
                    .into());
                }
                None => unreachable!("one outcome per update"),
            }
            return Ok(outcome(PublishMode::HotfixProposed, &hotfix));
        }
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
        let files: Vec<String> = files.iter().cloned().collect();
        self.git.same_paths(rev, change, &files)
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

    /// `change` cherry-picked onto `base` (a hot-fix). A merge commit (a pull request
    /// merged with one) is picked against its first parent: what the merge brought to main.
    fn hotfix(&self, c: &Cluster, base: &str, change: &str) -> PublishResult<Oid> {
        let parents = self
            .git
            .run(&["rev-list", "--parents", "-n", "1", change])?;
        let merge = parents.split_whitespace().count() > 2;
        let mut args = vec!["cherry-pick", "-x", "--allow-empty"];
        if merge {
            args.extend(["-m", "1"]);
        }
        args.push(change);
        self.in_worktree(c, base, &args, &["cherry-pick", "--abort"])
    }

    /// Like [`Self::hotfix`], for a change that also touched other clusters' files (one
    /// commit of a batch): only `files` (this cluster's part) are applied onto `base`,
    /// three-way like a cherry-pick, and committed with the change's message, author and
    /// the `(cherry picked from commit …)` line `cherry-pick -x` writes. Picking the whole
    /// commit would conflict wherever another cluster's file differs at this pointer.
    fn hotfix_of(
        &self,
        c: &Cluster,
        base: &str,
        change: &str,
        files: &BTreeSet<String>,
    ) -> PublishResult<Oid> {
        let mut diff: Vec<String> = ["diff", "--binary", "--full-index", "--no-renames"]
            .map(str::to_owned)
            .to_vec();
        diff.extend([format!("{change}^1"), change.to_owned(), "--".to_owned()]);
        diff.extend(files.iter().cloned());
        let mut patch = self.git.run(&diff)?;
        if !patch.ends_with('\n') {
            patch.push('\n');
        }
        let message = self.git.run(&["log", "-1", "--format=%B", change])?;
        let message = format!(
            "{}\n(cherry picked from commit {change})\n",
            message.trim_end()
        );
        let wt = self.git.temp_worktree(base)?;
        let conflict = |detail: String| {
            let _ = wt.git.run(&["reset", "--quiet", "--hard"]);
            PublishError::Conflict {
                cluster: c.id.clone(),
                base: base.to_owned(),
                detail,
            }
        };
        let steps: [(&[&str], Option<&str>); 3] = [
            (&["apply", "--index", "--3way", "-"], Some(&patch)),
            // The change's authorship (as cherry-pick keeps it), then its message with the
            // pick line.
            (&["commit", "--quiet", "--no-verify", "-C", change], None),
            (
                &["commit", "--quiet", "--no-verify", "--amend", "-F", "-"],
                Some(&message),
            ),
        ];
        for (args, input) in steps {
            match wt.git.run_input(args, input) {
                Ok(_) => {}
                Err(GitError::Failed { stderr, .. }) => return Err(conflict(stderr)),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(wt.git.resolve("HEAD")?.expect("HEAD"))
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
}
