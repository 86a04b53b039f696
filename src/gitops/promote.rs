//! `cluster promote` (fast-forward along main) and `cluster reconcile` (bring a diverged
//! pointer back onto main's line).

use super::git::Oid;
use super::{Fleet, PublishError, PublishMode, PublishOutcome, PublishResult, pointer_ref};
use crate::inventory::Cluster;

/// What `cluster reconcile` would do for one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReconcilePlan {
    /// The pointer is on main's line: nothing to reconcile.
    OnMain {
        /// Where the pointer is.
        pointer: Oid,
    },
    /// The pointer has commits main lacks (a hot-fix): merge them into main, then move the
    /// pointer to the merge.
    Merge {
        /// Where the pointer is.
        pointer: Oid,
        /// How many of its commits main lacks.
        ahead: usize,
    },
}

impl Fleet {
    /// What [`Fleet::reconcile`] would do for cluster `id`, from a fresh fetch: an error
    /// when its remote cannot be reached or its pointer does not exist.
    pub fn plan_reconcile(&self, id: &str) -> PublishResult<ReconcilePlan> {
        let c = self.cluster(id);
        if let Some(reason) = self.fetch()?.get(&c.remote) {
            return Err(PublishError::RemoteUnavailable {
                cluster: c.id.clone(),
                remote: c.remote.clone(),
                reason: reason.clone(),
            });
        }
        let pointer = self
            .pointer(c)?
            .ok_or_else(|| PublishError::MissingPointer {
                cluster: c.id.clone(),
                refname: pointer_ref(c),
                remote: c.remote.clone(),
            })?;
        let main = self.main_tracking();
        if self.git.is_ancestor(&pointer, &main)? {
            return Ok(ReconcilePlan::OnMain { pointer });
        }
        Ok(ReconcilePlan::Merge {
            ahead: self.git.count(&main, &pointer)?,
            pointer,
        })
    }

    /// Fetches main and the pointer of `c`; fails when its remote is unavailable.
    fn fetch_for(&self, c: &Cluster) -> PublishResult<(Oid, Oid)> {
        let main = self.fetch_main()?;
        let p = self.current_pointer(c)?;
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
