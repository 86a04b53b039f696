//! Pull-request mode: where each proposed rotation's pull request stands.
//!
//! * **open** — the credential is busy, waiting for review (stale past
//!   `forge.maxOpenAge`); with `autoMerge` the forge is asked to merge it.
//! * **merged** — the change is on main (by a merge commit, a squash or a rebase: the
//!   staging commit is found on main by what it changed, not by the branch's commit id);
//!   the record goes on to publish and revoke. A merged change that no longer stands on main
//!   is reported and never revoked.
//! * **closed without merge** — the new keys never reached a cluster: they are deleted, the
//!   branch too, and the records dropped; the old keys are untouched.
//! * **no pull request** — the proposing run died: with its branch on the remote the pull
//!   request is opened now; without, the proposal is dropped as if closed.

use super::context::Ctx;
use super::outcome::{Outcome, Said};
use super::propose::{body, write_records};
use super::report::{Action, EngineError, Phase, Step};
use crate::forge::{NewPullRequest, PrState, PullRequest};
use crate::gitops::git::{Lease, RefUpdate};
use crate::journal::record::{IllegalTransition, ts};
use crate::journal::{
    Change, RotationRecord, RotationState, TrailerAction, TrailerBlock, trailers,
};
use crate::provider::{KeyId, Revoke};
use std::collections::BTreeMap;

/// Resolves every `Proposed` record; returns the records to advance now (merged ones as
/// `Staged`, every record in another state unchanged).
pub(super) async fn resolve(
    ctx: &mut Ctx<'_>,
    records: Vec<RotationRecord>,
) -> Outcome<Vec<RotationRecord>> {
    let mut said = ctx.said();
    if !ctx.pr_mode() {
        return said.with(records);
    }
    let (proposed, mut out): (Vec<RotationRecord>, Vec<RotationRecord>) = records
        .into_iter()
        .partition(|r| matches!(r.state(), RotationState::Proposed { .. }));
    let mut by_branch: BTreeMap<String, Vec<RotationRecord>> = BTreeMap::new();
    for r in proposed {
        let branch = r.proposal.as_ref().expect("proposed").branch.clone();
        by_branch.entry(branch).or_default().push(r);
    }
    for (branch, recs) in by_branch {
        if ctx.cancelled() {
            break;
        }
        out.extend(resolve_one(ctx, &mut said, &branch, recs).await);
    }
    said.with(out)
}

fn step(r: &RotationRecord, action: Action, detail: String) -> Step {
    let mut s = Step::new(action, &r.source, &r.identity, detail);
    s.old_key_id = Some(r.old_key_id.clone());
    s.new_key_id = (!r.new_key_id.is_empty()).then(|| r.new_key_id.clone());
    s.clusters = r.clusters();
    s.files = r.files();
    s
}

async fn resolve_one(
    ctx: &mut Ctx<'_>,
    said: &mut Said,
    branch: &str,
    recs: Vec<RotationRecord>,
) -> Vec<RotationRecord> {
    let forge = ctx.forge.as_ref().expect("pull-request mode");
    let number = recs.iter().find_map(|r| r.proposal.as_ref()?.number);
    let found = match number {
        Some(n) => forge.get(n).await.map(Some),
        None => forge.find(branch).await,
    };
    let pr = match found {
        Ok(pr) => pr,
        Err(e) => {
            said.fail_records(Phase::Publish, &recs, EngineError::Forge(e));
            return Vec::new();
        }
    };
    let Some(mut pr) = pr else {
        return no_pull_request(ctx, said, branch, recs).await;
    };
    let cfg = ctx.repo.config.forge.clone().expect("pull-request mode");
    if pr.state == PrState::Open && cfg.auto_merge {
        match forge.merge(pr.number).await {
            Ok(true) => {
                pr.state = PrState::Merged;
                let _ = ctx.fleet.fetch_main();
            }
            Ok(false) => {}
            Err(e) => said.fail_records(Phase::Publish, &recs, EngineError::Forge(e)),
        }
    }
    match pr.state {
        PrState::Open => {
            open(ctx, said, &pr, &recs, cfg.max_open_age);
            Vec::new()
        }
        PrState::Merged => merged(ctx, said, &pr, branch, recs),
        PrState::Closed => {
            let why = format!("pull request {} was closed without merging", pr.url);
            abandon(ctx, said, branch, recs, &why, true).await;
            Vec::new()
        }
    }
}

/// Waiting for review: busy, or stale past `maxOpenAge`.
fn open(
    ctx: &mut Ctx<'_>,
    said: &mut Said,
    pr: &PullRequest,
    recs: &[RotationRecord],
    max: Option<chrono::Duration>,
) {
    let since = recs
        .iter()
        .find_map(|r| r.proposal.as_ref().map(|p| p.opened_at))
        .or(pr.created_at)
        .unwrap_or_else(|| ctx.now());
    let detail = format!("waiting for review: {} (open since {})", pr.url, ts(since));
    if let Some(max) = max
        && ctx.now() - since > max
    {
        let e = EngineError::Stale(format!(
            "{} has waited for review since {} (more than forge.maxOpenAge, {}); merge or close it",
            pr.url,
            ts(since),
            humantime::format_duration(max.to_std().unwrap_or_default())
        ));
        said.fail_records(Phase::Review, recs, e);
    }
    for r in recs {
        let s = step(r, Action::Busy, detail.clone());
        said.step(s);
    }
}

/// Finds the commit on `main` that brought a record's change: the newest first-parent
/// commit that changed how often its key id appears in its files (a merge commit, a
/// squash, or the last rebased commit), and checks the change still stands at `main`.
fn staging_commit(ctx: &Ctx<'_>, main: &str, r: &RotationRecord) -> Result<String, NotAsMerged> {
    let git = ctx.writer.git();
    let needle = if r.is_delete() {
        &r.old_key_id
    } else {
        &r.new_key_id
    };
    let esc = |s: &str| crate::text::escape(s).into_owned();
    let mut args = vec![
        "log".to_owned(),
        "--first-parent".into(),
        "--format=%H".into(),
        "-1".into(),
        format!("-S{needle}"),
        main.to_owned(),
        "--".into(),
    ];
    args.extend(r.files());
    let sha = git.run(&args)?.trim().to_owned();
    if sha.is_empty() {
        return Err(NotAsMerged::NoCommit {
            key: esc(needle),
            files: esc(&r.files().join(", ")),
        });
    }
    for f in r.files() {
        let text = git
            .run(&["show", &format!("{main}:{f}")])
            .unwrap_or_default();
        let holds = text.contains(needle.as_str());
        if r.is_delete() == holds {
            let (file, key) = (esc(&f), esc(needle));
            return Err(if r.is_delete() {
                NotAsMerged::StillHolds { file, key }
            } else {
                NotAsMerged::NoLongerHolds { file, key }
            });
        }
    }
    Ok(sha)
}

/// Why a merged pull request's change is not on main as it was merged.
#[derive(Debug, thiserror::Error)]
enum NotAsMerged {
    #[error(transparent)]
    Git(#[from] crate::gitops::git::GitError),
    #[error("no commit on main changes {key} in {files}")]
    NoCommit { key: String, files: String },
    #[error("{file} still holds key {key}")]
    StillHolds { file: String, key: String },
    #[error("{file} no longer holds key {key}")]
    NoLongerHolds { file: String, key: String },
}

/// Merged: the records continue as staged, from the commit the merge made.
fn merged(
    ctx: &mut Ctx<'_>,
    said: &mut Said,
    pr: &PullRequest,
    branch: &str,
    recs: Vec<RotationRecord>,
) -> Vec<RotationRecord> {
    let main = match ctx.fleet.fetch_main() {
        Ok(m) => m,
        Err(e) => {
            said.fail_records(Phase::Publish, &recs, e.into());
            return Vec::new();
        }
    };
    let _ = ctx.writer.reset_to(&main);
    let mut out = Vec::new();
    for mut r in recs {
        match staging_commit(ctx, &main, &r) {
            Ok(sha) => {
                match r.apply(|l| Ok::<_, IllegalTransition>(l.proposed("merge")?.merged(&sha))) {
                    Ok(()) => {
                        if r.rollback_of.is_some() && !end_rolled_back(ctx, said, &r) {
                            continue;
                        }
                        out.push(r)
                    }
                    Err(e) => said.fail(Phase::Publish, &r.source, &r.identity, None, e.into()),
                }
            }
            Err(why) => {
                let e = EngineError::NotOnMain(format!(
                    "{} was merged, but its change is not on main as merged ({why}); nothing is published or revoked. Restore the change on main, or delete {} from {} (and the new key {} at the source)",
                    pr.url,
                    r.path(),
                    super::propose::JOURNAL_REF,
                    r.new_key_id
                ));
                said.fail(Phase::Publish, &r.source, &r.identity, None, e);
            }
        }
    }
    delete_branch(ctx, branch);
    out
}

/// A merged rollback `back`: the rotation it takes back ends (its change is undone on
/// main; the rollback record carries on). False when that could not be written: the
/// rollback waits for the next run.
fn end_rolled_back(ctx: &mut Ctx<'_>, said: &mut Said, back: &RotationRecord) -> bool {
    let of = back.rollback_of.as_ref().expect("a rollback");
    let records = match ctx.records() {
        Ok(r) => r,
        Err(e) => {
            said.fail(Phase::Publish, &back.source, &back.identity, None, e);
            return false;
        }
    };
    let Some(rotation) = records.into_iter().find(|r| r.id == of.rotation) else {
        return true;
    };
    let ended = rotation.lifecycle().end();
    let msg = format!(
        "secret-manager: rotation {} ends, its rollback was merged\n",
        of.rotation
    );
    match ctx.store().commit(&[Change::End(&ended)], &[], &msg) {
        Ok(_) => true,
        Err(e) => {
            said.fail(Phase::Publish, &back.source, &back.identity, None, e.into());
            false
        }
    }
}

/// No pull request for the branch: the proposing run died after writing the records.
async fn no_pull_request(
    ctx: &mut Ctx<'_>,
    said: &mut Said,
    branch: &str,
    mut recs: Vec<RotationRecord>,
) -> Vec<RotationRecord> {
    let exists = ctx
        .fleet
        .git()
        .ls_remote_all(ctx.fleet.main_remote())
        .is_ok_and(|refs| refs.contains_key(&format!("refs/heads/{branch}")));
    if !exists {
        let why = format!("branch {branch} was never pushed (the proposing run died)");
        abandon(ctx, said, branch, recs, &why, false).await;
        return Vec::new();
    }
    let cfg = ctx.repo.config.forge.clone().expect("pull-request mode");
    let title = format!("secret-manager: rotate {} credential(s)", recs.len());
    let blocks: Vec<TrailerBlock> = recs
        .iter()
        .map(|r| r.trailer(TrailerAction::Stage))
        .collect();
    let text = body(ctx, &recs, &blocks);
    let forge = ctx.forge.as_ref().expect("pull-request mode");
    let opened = forge
        .open(&NewPullRequest {
            head: branch,
            base: ctx.fleet.main_branch(),
            title: &title,
            body: &text,
            labels: &cfg.labels,
        })
        .await;
    match opened {
        Ok(pr) => {
            for r in recs.iter_mut() {
                // The records of an open branch are `Proposed`: one that is not stays as
                // it was, and the run says so.
                if let Err(e) = r.apply(|l| {
                    Ok::<_, IllegalTransition>(
                        l.proposed("record the pull request of")?
                            .opened(pr.number, &pr.url),
                    )
                }) {
                    tracing::warn!(error = %e, "record left as it was");
                }
            }
            let _ = write_records(
                ctx,
                &recs,
                &format!("secret-manager: opened {} for {branch}\n", pr.url),
            );
            for r in &recs {
                let s = step(
                    r,
                    Action::Busy,
                    format!(
                        "opened {} (the run that proposed it stopped before); waiting for review",
                        pr.url
                    ),
                );
                said.step(s);
            }
        }
        Err(e) => said.fail_records(Phase::Publish, &recs, EngineError::Forge(e)),
    }
    Vec::new()
}

/// Deletes the proposal's new keys (they never reached a cluster), its branch and records.
/// A rollback's record ends without deleting anything; `declines` (a reviewer closed it)
/// marks the rotation it would have taken back.
async fn abandon(
    ctx: &mut Ctx<'_>,
    said: &mut Said,
    branch: &str,
    recs: Vec<RotationRecord>,
    why: &str,
    declines: bool,
) {
    let mut blocks = Vec::new();
    let mut ended = Vec::new();
    let mut declined: Vec<RotationRecord> = Vec::new();
    for r in &recs {
        let detail = if let Some(of) = &r.rollback_of {
            // Its "new key" is the rotation's old key, which the cluster may still need:
            // nothing is deleted. A reviewer who closed it declined the rollback: the
            // rotation is not rolled back again by itself.
            if declines
                && let Ok(all) = ctx.records()
                && let Some(mut rotation) = all.into_iter().find(|x| x.id == of.rotation)
            {
                rotation.rollback_declined =
                    Some(format!("{why} (rollback declined {})", ts(ctx.now())));
                declined.push(rotation);
            }
            format!(
                "{why}; rollback of rotation {} not done: both keys stay, and the rotation's old key {} stays until its gates pass",
                of.rotation, r.new_key_id
            )
        } else if r.is_delete() {
            format!("{why}; nothing was deleted")
        } else {
            if !r.new_key_id.is_empty() {
                let provider = match ctx.providers.get(&r.source).await {
                    Ok(p) => p,
                    Err(e) => {
                        said.fail(Phase::Revoke, &r.source, &r.identity, None, e.into());
                        continue;
                    }
                };
                if let Err(e) = provider
                    .revoke(&r.target(), &KeyId(r.new_key_id.clone()), Revoke::Delete)
                    .await
                {
                    // Keep the record: the next run tries again.
                    said.fail(Phase::Revoke, &r.source, &r.identity, None, e.into());
                    continue;
                }
            }
            format!(
                "{why}; deleted the new key {}, the old key is untouched",
                r.new_key_id
            )
        };
        let mut s = step(r, Action::Abandon, detail.clone());
        s.done = true;
        said.step(s);
        let mut b = r.trailer(TrailerAction::Abandon);
        b.reason = Some(detail);
        blocks.push(b);
        ended.push(r.clone().lifecycle().end());
    }
    if !ended.is_empty() {
        let msg = trailers::message(
            &format!("secret-manager: abandoned the proposal on {branch}"),
            &blocks,
        );
        // A record that cannot be removed stays: the next run abandons it again (the key
        // delete is idempotent) and retries.
        let mut changes: Vec<Change<'_>> = ended.iter().map(Change::End).collect();
        changes.extend(declined.iter().map(Change::Put));
        if let Err(e) = ctx.store().commit(&changes, &[], &msg) {
            said.fail_records(Phase::Publish, &recs, e.into());
        }
    }
    delete_branch(ctx, branch);
}

/// Deletes the tool's branch on the main remote, if it is still there.
fn delete_branch(ctx: &Ctx<'_>, branch: &str) {
    let refname = format!("refs/heads/{branch}");
    let present = ctx
        .fleet
        .git()
        .ls_remote_all(ctx.fleet.main_remote())
        .is_ok_and(|r| r.contains_key(&refname));
    if !present {
        return;
    }
    let update = RefUpdate {
        src: None,
        dst: refname,
        lease: Lease::FastForward,
    };
    if let Err(e) = ctx
        .fleet
        .git()
        .push_refs(ctx.fleet.main_remote(), &[update])
    {
        tracing::warn!(error = %e, branch, "could not delete the branch");
    }
}
