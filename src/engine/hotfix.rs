//! Pull-request mode, publishing to a cluster whose pointer is behind unrelated changes on
//! main: the hot-fix (the pointer plus only the rotation) cannot be merged into main by a
//! push, so it goes to a branch and a pull request, and the pointer moves to the hot-fix
//! only once main contains it. That order means no cluster ever gets a commit main will
//! not get. Merge hot-fix pull requests with a merge commit: a squash or rebase gives main
//! a different commit, and the pointer then cannot follow.

use super::context::Ctx;
use super::propose::marker;
use super::report::EngineError;
use crate::forge::{NewPullRequest, PrState};
use crate::gitops::git::{Lease, RefUpdate};
use crate::gitops::{HotfixVia, PublishMode, PublishOutcome};
use crate::journal::RotationRecord;
use crate::journal::record::Hotfix;

/// What publishing to one cluster did.
pub(super) enum Outcome {
    /// The pointer has the change now (or had it).
    Moved(PublishOutcome),
    /// Waiting for a hot-fix pull request.
    Waiting(String),
    /// The hot-fix could not be made or proposed (reported for each record).
    Failed(EngineError),
}

/// Publishes `sha` to `cluster` for `members` in pull-request mode. Returns the outcome and
/// whether the members' records changed (a hot-fix proposed or settled).
pub(super) async fn publish(
    ctx: &Ctx<'_>,
    records: &mut [RotationRecord],
    members: &[usize],
    cluster: &str,
    sha: &str,
) -> (Outcome, bool) {
    let existing = members
        .iter()
        .find_map(|&i| records[i].hotfixes.get(cluster).cloned());
    match existing {
        Some(h) => settle(ctx, records, members, cluster, h).await,
        None => propose(ctx, records, members, cluster, sha).await,
    }
}

fn clear(records: &mut [RotationRecord], members: &[usize], cluster: &str) {
    for &i in members {
        records[i].hotfix_settled(cluster);
    }
}

/// A hot-fix is on its way: move the pointer once main has it.
async fn settle(
    ctx: &Ctx<'_>,
    records: &mut [RotationRecord],
    members: &[usize],
    cluster: &str,
    h: Hotfix,
) -> (Outcome, bool) {
    let main = ctx.fleet.main_tracking();
    if ctx
        .fleet
        .git()
        .is_ancestor(&h.commit, &main)
        .unwrap_or(false)
    {
        return match ctx.fleet.advance_to(cluster, &h.commit) {
            Ok(out) => {
                clear(records, members, cluster);
                delete_branch(ctx, &h.branch);
                (Outcome::Moved(out), true)
            }
            Err(e) => (Outcome::Failed(e.into()), false),
        };
    }
    let forge = ctx.forge.as_ref().expect("pull-request mode");
    let pr = match h.number {
        Some(n) => forge.get(n).await.map(Some),
        None => forge.find(&h.branch).await,
    };
    let url = h
        .url
        .clone()
        .unwrap_or_else(|| format!("the pull request of branch {}", h.branch));
    match pr {
        Err(e) => (Outcome::Failed(EngineError::Forge(e)), false),
        Ok(Some(pr)) if pr.state == PrState::Open => (
            Outcome::Waiting(format!(
                "waiting for the hot-fix pull request {}: {cluster}'s pointer is behind unrelated changes on main, so main takes the hot-fix before the cluster does",
                pr.url
            )),
            false,
        ),
        Ok(Some(pr)) if pr.state == PrState::Merged => (
            Outcome::Failed(EngineError::NotOnMain(format!(
                "the hot-fix {} was merged without a merge commit, so main does not contain commit {}; {cluster}'s pointer only moves to commits on main: merge hot-fix pull requests with a merge commit, or move the pointer with `secret-manager cluster promote {cluster}` once main is right",
                pr.url, h.commit
            ))),
            false,
        ),
        Ok(_) => {
            clear(records, members, cluster);
            delete_branch(ctx, &h.branch);
            (
                Outcome::Failed(EngineError::PullRequest(format!(
                    "the hot-fix {url} was closed without merging; {cluster} keeps the old key, and the next run proposes a new hot-fix"
                ))),
                true,
            )
        }
    }
}

/// No hot-fix yet: publish, and if a hot-fix is needed, propose it.
async fn propose(
    ctx: &Ctx<'_>,
    records: &mut [RotationRecord],
    members: &[usize],
    cluster: &str,
    sha: &str,
) -> (Outcome, bool) {
    let cfg = ctx.repo.config.forge.clone().expect("pull-request mode");
    let branch = format!(
        "{}hotfix-{cluster}-{}",
        cfg.branch_prefix,
        &sha[..12.min(sha.len())]
    );
    let out = match ctx
        .fleet
        .publish_with(cluster, sha, HotfixVia::Branch(&branch))
    {
        Ok(out) if out.mode == PublishMode::HotfixProposed => out,
        Ok(out) => return (Outcome::Moved(out), false),
        Err(e) => return (Outcome::Failed(e.into()), false),
    };
    let title = format!("secret-manager: hot-fix for {cluster}");
    let body = format!(
        "secret-manager publishes a credential rotation to {cluster}, whose pointer is behind changes on main that must not reach it yet.\n\n\
This branch is the cluster's current commit (`{}`) plus only the rotation (picked from `{sha}`). \
**Merge it with a merge commit**: once main contains this commit, the next `secret-manager rotate` run moves the cluster's pointer to exactly it — \
so the cluster never gets a commit main does not have. Closing it keeps the cluster on its old key; the next run proposes a new hot-fix.\n\n{}\n",
        out.from,
        marker(&ctx.run.0)
    );
    let forge = ctx.forge.as_ref().expect("pull-request mode");
    let pr = forge
        .open(&NewPullRequest {
            head: &branch,
            base: ctx.fleet.main_branch(),
            title: &title,
            body: &body,
            labels: &cfg.labels,
        })
        .await;
    let (number, url) = match pr {
        Ok(pr) => (Some(pr.number), Some(pr.url)),
        Err(e) => {
            tracing::warn!(error = %e, %branch, "the hot-fix pull request could not be opened; the next run tries again");
            (None, None)
        }
    };
    for &i in members {
        records[i].hotfix_proposed(
            cluster,
            Hotfix {
                commit: out.to.to_string(),
                branch: branch.clone(),
                number,
                url: url.clone(),
            },
        );
    }
    let detail = format!(
        "proposed the hot-fix {} for {cluster}: main takes it first, then the cluster",
        url.as_deref().unwrap_or(&branch)
    );
    (Outcome::Waiting(detail), true)
}

fn delete_branch(ctx: &Ctx<'_>, branch: &str) {
    let update = RefUpdate {
        src: None,
        dst: format!("refs/heads/{branch}"),
        lease: Lease::FastForward,
    };
    if let Err(e) = ctx
        .fleet
        .git()
        .push_refs(ctx.fleet.main_remote(), &[update])
    {
        tracing::warn!(error = %e, branch, "could not delete the hot-fix branch");
    }
}
