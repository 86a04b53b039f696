//! The operator's checkout against the remote's main.
//!
//! `list` reads the files of the checkout; `rotate` works from the main remote (it fetches
//! main and commits through a worktree of its own). When the two differ the operator sees
//! old keys after a rotation, or a manifest they never pushed is "nothing to do". This
//! module says how they differ — from the remote-tracking ref, without a fetch — and
//! fast-forwards a clean checkout of main after a rotation.

use super::Fleet;
use super::git::GitResult;

/// How the checkout's `HEAD` relates to the last fetched main.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckoutState {
    /// `<remote>/<branch>`, for messages.
    pub tracking: String,
    /// The command that brings the checkout up to date (works without an upstream).
    pub pull: String,
    /// Commits on the remote's main (as last fetched) that `HEAD` lacks.
    pub behind: usize,
    /// Commits of `HEAD` that are not on the remote's main.
    pub ahead: usize,
    /// Tracked files with changes that are not committed.
    pub dirty: bool,
    /// Whether `HEAD` is the main branch itself (not another branch, not detached).
    pub on_main: bool,
}

impl CheckoutState {
    /// What an operator should know before trusting `list`, or why `rotate` did not see a
    /// change; `None` when the checkout is main as last fetched.
    pub fn note(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.behind > 0 {
            parts.push(format!(
                "this checkout is {} commit(s) behind {} (as last fetched): it does not show the latest rotations; run `{}`",
                self.behind, self.tracking, self.pull
            ));
        }
        if self.ahead > 0 {
            parts.push(format!(
                "{} commit(s) of this checkout are not on {}: rotate works from {} and does not see them until they are pushed",
                self.ahead, self.tracking, self.tracking
            ));
        }
        if self.dirty {
            parts.push(format!(
                "this checkout has uncommitted changes: rotate works from {} and does not see them",
                self.tracking
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// The state of the fleet's checkout; `None` when it is not a git work tree or main was
/// never fetched.
pub fn state(fleet: &Fleet) -> Option<CheckoutState> {
    let git = fleet.git();
    if git
        .run(&["rev-parse", "--is-inside-work-tree"])
        .ok()?
        .trim()
        != "true"
    {
        return None;
    }
    let tracking_ref = fleet.main_tracking();
    git.resolve(&tracking_ref).ok()??;
    let head = git.resolve("HEAD").ok()??;
    let behind = git.count(&head, &tracking_ref).ok()?;
    let ahead = git.count(&tracking_ref, &head).ok()?;
    let dirty = !git
        .run(&["status", "--porcelain", "--untracked-files=no"])
        .ok()?
        .trim()
        .is_empty();
    let on_main = git
        .run(&["symbolic-ref", "--quiet", "--short", "HEAD"])
        .map(|b| b.trim() == fleet.main_branch())
        .unwrap_or(false);
    Some(CheckoutState {
        tracking: format!("{}/{}", fleet.main_remote(), fleet.main_branch()),
        pull: format!(
            "git pull --ff-only {} {}",
            fleet.main_remote(),
            fleet.main_branch()
        ),
        behind,
        ahead,
        dirty,
        on_main,
    })
}

/// After a rotation: fast-forwards the checkout to the fetched main when that is safe
/// (on the main branch, clean, nothing of its own); returns how many commits it moved.
/// `Ok(0)` when nothing was to do or it was not safe (see [`state`] to say why).
pub fn fast_forward(fleet: &Fleet) -> GitResult<usize> {
    let Some(s) = state(fleet) else {
        return Ok(0);
    };
    if !s.on_main || s.dirty || s.ahead > 0 || s.behind == 0 {
        return Ok(0);
    }
    fleet
        .git()
        .run(&["merge", "--ff-only", "--quiet", &fleet.main_tracking()])?;
    Ok(s.behind)
}
