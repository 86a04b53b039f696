//! `rotate --rollback`: take back a rotation whose new key cannot be delivered, while the
//! old key still works.
//!
//! A rollback is a rotation the other way round. For each selected rotation that is
//! staged or published (its old key not yet revoked or disabled), one commit on main:
//!
//! * every manifest the rotation rewrote gets back, from the parent of its staging
//!   commit, the ciphertexts and the key id, creation date and `sealedWith` annotations it
//!   had — a verified, byte-preserving edit of only those values (other changes made to
//!   the file since stay);
//! * the workloads the rotation restarted are restarted again, with the old key's hash;
//! * the rotation's record ends, and a rollback record starts whose new key is the old
//!   key and whose old key is the rotation's new key (`rollbackOf` says which rotation,
//!   and why), with the rotation's promise (grace period, revoke mode, gates).
//!
//! From there the ordinary publish and revoke take over: the pointers move to the
//! rollback commit, and once the grace period and the gates have passed (the consumers'
//! pods back on the old value, Argo CD synced at a revision that holds it) and git shows
//! every cluster holds the old key, the rotation's new key is revoked. A run that dies
//! part-way leaves either the rotation (nothing changed) or the rollback record: the
//! next run goes on from it. A rotation whose old key is gone cannot be rolled back —
//! only forward.
//!
//! In pull-request mode the rollback commit is proposed on a branch of its own instead;
//! the rotation is held (not advanced) while the rollback waits for review, ends when it is
//! merged, and carries on, marked `rollbackDeclined`, when it is closed (`proposals`).

use super::context::Ctx;
use super::edits;
use super::outcome::{Outcome, Said};
use super::plan::KeyGroup;
use super::report::{Action, EngineError, Phase, Step};
use super::restore::{find, only_mine, restore};
use crate::annotations::key_id_annotation;
use crate::journal::record::{RollbackOf, RotationState};
use crate::journal::{Change, RotationRecord, TrailerAction, trailers};
use crate::manifest::edit::{apply, write_in_worktree};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Why a rotation is rolled back by hand.
pub const BY_HAND: &str = "rolled back by hand (rotate --rollback)";

/// Why `rec` has missed `policy.publishDeadline` at `now`, if it has: still not on every
/// pointer, or still waiting on a gate, that long after staging (the grace period is the
/// tool's own wait and does not count; the caller checks only undelivered records).
fn overdue(ctx: &Ctx<'_>, rec: &RotationRecord, now: DateTime<Utc>) -> Option<String> {
    missed(rec, ctx.repo.config.publish_deadline?, now)
}

/// When `rec` has missed `policy.publishDeadline` at `now`: reports it (exit 14) — still
/// waiting on a gate (`waiting`, the gate's reason) or still not on its pending clusters —
/// and returns why, for the rollback.
pub(super) fn report_overdue(
    ctx: &Ctx<'_>,
    said: &mut Said,
    rec: &RotationRecord,
    now: DateTime<Utc>,
    waiting: Option<&str>,
) -> Option<String> {
    let late = overdue(ctx, rec, now)?;
    let (clusters, why) = match waiting {
        Some(reason) => (rec.clusters().join(", "), format!("{late}: {reason}")),
        None => {
            let pending = match rec.state() {
                RotationState::Staged { pending } => pending.join(", "),
                other => other.name().to_owned(),
            };
            let why = format!("{late}: still not on {pending}");
            (pending, why)
        }
    };
    said.fail(
        Phase::Gate,
        &rec.source,
        &rec.identity,
        None,
        EngineError::Gate {
            cluster: clusters,
            message: why.clone(),
        },
    );
    Some(why)
}

/// [`overdue`], pure: `rec` is still undelivered `deadline` after staging.
fn missed(rec: &RotationRecord, deadline: chrono::Duration, now: DateTime<Utc>) -> Option<String> {
    // A change waiting for review is `forge.maxOpenAge`'s business: no deadline failure
    // for it.
    let in_review = matches!(rec.state(), RotationState::Proposed { .. });
    (!rec.is_delete() && !in_review && rec.rollback_of.is_none() && now - rec.staged_at > deadline)
        .then(|| {
            format!(
                "not delivered within policy.publishDeadline ({}) of staging at {}",
                humantime::format_duration(deadline.to_std().unwrap_or_default()),
                crate::journal::record::ts(rec.staged_at)
            )
        })
}

/// The records publishing could not advance (`blocked`) that have missed
/// `policy.publishDeadline`: each a failure (exit 14), and rolled back.
pub(super) async fn past_deadline(
    ctx: &mut Ctx<'_>,
    blocked: Vec<RotationRecord>,
) -> Outcome<Vec<RotationRecord>> {
    let mut said = ctx.said();
    let now = ctx.now();
    let mut todo = Vec::new();
    for rec in blocked {
        if let Some(why) = report_overdue(ctx, &mut said, &rec, now, None) {
            todo.push((rec, why));
        }
    }
    let back = said.merge(on_failure(ctx, todo).await);
    said.with(back)
}

/// Rolls back the rotations a gate found failing or that missed `policy.publishDeadline`
/// (`todo`: the record, and why), while their old keys still work: the same commit as
/// `--rollback` (in pull-request mode, proposed). Not for a rollback itself (only forward
/// from there), not in a dry run, not with `policy.rollbackOnFailure: false` (there the
/// failure stands, and someone must look), not again once a reviewer declined it.
/// Returns the rollback records.
pub(super) async fn on_failure(
    ctx: &mut Ctx<'_>,
    todo: Vec<(RotationRecord, String)>,
) -> Outcome<Vec<RotationRecord>> {
    let mut said = ctx.said();
    if todo.is_empty() || ctx.opts.dry_run || !ctx.repo.config.rollback_on_failure {
        return said.with(Vec::new());
    }
    let mut kept = Vec::new();
    for (r, why) in todo {
        if r.rollback_of.is_some() || r.is_delete() {
            continue;
        }
        if let Some(declined) = &r.rollback_declined {
            let s = step(
                &r,
                format!(
                    "not rolled back ({}): {declined}; the old key stays until the gates pass, or `rotate --rollback` takes it back",
                    crate::text::escape_cut(&why, 300)
                ),
            );
            said.step(s);
            continue;
        }
        kept.push((r, why));
    }
    let back = roll_back(ctx, &mut said, kept).await;
    said.with(back)
}

/// One rollback commit for each of `todo` (a record this run holds, and why), each
/// reported as a done `rollback` step. Returns the rollback records.
async fn roll_back(
    ctx: &mut Ctx<'_>,
    said: &mut Said,
    todo: Vec<(RotationRecord, String)>,
) -> Vec<RotationRecord> {
    if todo.is_empty() {
        return Vec::new();
    }
    let commits = match crate::journal::store::staging_commits(ctx.writer.git()) {
        Ok(c) => c,
        Err(e) => {
            let recs: Vec<RotationRecord> = todo.into_iter().map(|(r, _)| r).collect();
            said.fail_records(Phase::Publish, &recs, e.into());
            return Vec::new();
        }
    };
    let scan = ctx.scan();
    let mut out = Vec::new();
    for (rec, reason) in todo {
        if ctx.cancelled() {
            break;
        }
        match one(ctx, said, &rec, &commits, &scan.secrets, &reason).await {
            Ok(back) if matches!(back.state(), RotationState::Proposed { .. }) => {
                let pr = back
                    .proposal
                    .as_ref()
                    .and_then(|p| p.url.clone().or_else(|| Some(p.branch.clone())))
                    .unwrap_or_default();
                let mut s = step(
                    &rec,
                    format!(
                        "rollback proposed ({}): {pr}; once merged, the old key {} goes back to {} and the new key {} is revoked. Until then the rotation waits, its old key kept",
                        crate::text::escape_cut(&reason, 300),
                        rec.old_key_id,
                        rec.clusters().join(", "),
                        rec.new_key_id,
                    ),
                );
                s.done = true;
                said.step(s);
            }
            Ok(back) => {
                let mut s = step(
                    &rec,
                    format!(
                        "rolled back ({}): the old key {} is restored on main; the new key {} is revoked once {} have it",
                        crate::text::escape_cut(&reason, 300),
                        rec.old_key_id,
                        rec.new_key_id,
                        rec.clusters().join(", ")
                    ),
                );
                s.done = true;
                said.step(s);
                out.push(back);
            }
            Err(e) => said.fail(Phase::Publish, &rec.source, &rec.identity, None, e),
        }
    }
    out
}

/// Which of `records` a run selecting `filter` rolls back: the selected rotations whose
/// old key still works. The others are failures that say what to do instead. Pure.
fn candidates(
    filter: &crate::list::Filter,
    records: &[RotationRecord],
) -> Outcome<Vec<RotationRecord>> {
    let mut out = Outcome::new(Vec::new());
    for r in records
        .iter()
        .filter(|r| super::selection_covers(filter, r))
    {
        let refused = if r.is_delete() {
            Some("a deletion, not a rotation: restore the manifests from git".to_owned())
        } else if let Some(of) = &r.rollback_of {
            Some(format!(
                "already the rollback of {}: only forward from here",
                of.rotation
            ))
        } else if let Some(b) = records
            .iter()
            .find(|b| b.rollback_of.as_ref().is_some_and(|o| o.rotation == r.id))
        {
            Some(format!(
                "its rollback {} is under way already",
                b.proposal
                    .as_ref()
                    .and_then(|p| p.url.clone())
                    .unwrap_or_else(|| b.id.clone())
            ))
        } else {
            match r.state() {
                RotationState::Staged { .. } | RotationState::Published { .. } => None,
                RotationState::Proposed { .. } => Some(
                    "its change waits in a pull request: close it, and the next run deletes the new key".into(),
                ),
                RotationState::Disabled { .. } => Some(format!(
                    "its old key {} is disabled already: only forward",
                    r.old_key_id
                )),
            }
        };
        match refused {
            None => out.advanced.push(r.clone()),
            Some(why) => out.fail(
                Phase::Preflight,
                &r.source,
                &r.identity,
                None,
                EngineError::Rollback(format!("rotation {}: cannot roll back: {why}", r.id)),
            ),
        }
    }
    out
}

fn step(rec: &RotationRecord, detail: String) -> Step {
    let mut s = Step::new(Action::Rollback, &rec.source, &rec.identity, detail);
    s.old_key_id = Some(rec.new_key_id.clone());
    s.new_key_id = Some(rec.old_key_id.clone());
    s.clusters = rec.clusters();
    s.files = rec.files();
    s
}

/// Rolls back the selected rotations: one commit each (see the module documentation).
/// Returns the rollback records, for this run's publish and revoke.
pub(super) async fn stage(
    ctx: &mut Ctx<'_>,
    records: &[RotationRecord],
) -> Outcome<Vec<RotationRecord>> {
    let mut said = ctx.said();
    let todo = said.merge(candidates(&ctx.opts.filter, records));
    let grace = humantime::format_duration(ctx.opts.revoke_after.to_std().unwrap_or_default());
    if ctx.opts.dry_run {
        for r in &todo {
            let s = step(
                r,
                format!(
                    "restore the old key {} in {} manifest(s), publish to {}, then revoke the new key {} after {grace}{}",
                    r.old_key_id,
                    r.manifests.len(),
                    r.clusters().join(", "),
                    r.new_key_id,
                    super::gates::planned(ctx.opts, r.promised.as_ref())
                ),
            );
            said.step(s);
        }
        return said.with(Vec::new());
    }
    let todo = said
        .merge(super::held::for_records(ctx, todo))
        .into_iter()
        .map(|r| (r, BY_HAND.to_owned()))
        .collect();
    let back = roll_back(ctx, &mut said, todo).await;
    said.with(back)
}

/// The rollback commit of `rec` on main; in pull-request mode proposed on its own branch
/// instead (`rec` then stays as it is, held back by the run, until the rollback is merged).
async fn one(
    ctx: &mut Ctx<'_>,
    said: &mut Said,
    rec: &RotationRecord,
    commits: &BTreeMap<String, crate::gitops::git::Oid>,
    found: &[crate::scan::Found],
    reason: &str,
) -> Result<RotationRecord, EngineError> {
    let staging = match (&rec.staging_commit, commits.get(&rec.path())) {
        (Some(c), _) => c.clone(),
        (None, Some(c)) => c.to_string(),
        (None, None) => {
            return Err(EngineError::NoStagingCommit { record: rec.path() });
        }
    };
    let prefix = ctx.prefix().to_owned();
    let key_annotation = format!("{prefix}{}", key_id_annotation(&rec.source));
    let specs: Vec<String> = rec
        .manifests
        .iter()
        .flat_map(|m| {
            [
                format!("{staging}^:{}", m.file),
                format!("{staging}:{}", m.file),
            ]
        })
        .collect();
    let blobs = ctx.writer.git().read_blobs(&specs)?;
    let before: Vec<(Option<String>, Option<String>)> = blobs
        .chunks(2)
        .map(|c| (c[0].clone(), c.get(1).cloned().flatten()))
        .collect();
    let dir = ctx.writer.dir().to_path_buf();
    let mut contents: BTreeMap<String, String> = BTreeMap::new();
    let mut originals: BTreeMap<String, String> = BTreeMap::new();
    for (m, (old, staged)) in rec.manifests.iter().zip(before) {
        let err = |message: String| EngineError::Rollback(format!("{}: {message}", m.file));
        let old = old.ok_or_else(|| err("the file did not exist before the rotation".into()))?;
        let was = find(&old, &m.secret).ok_or_else(|| {
            err(format!(
                "{} is not in the file before the rotation",
                m.secret
            ))
        })?;
        if was.template_annotations.get(&key_annotation) != Some(&rec.old_key_id) {
            return Err(err(format!(
                "before the rotation, {} did not hold the old key {}; restore it by hand",
                m.secret, rec.old_key_id
            )));
        }
        let text = match contents.get(&m.file) {
            Some(t) => t.clone(),
            None => {
                let t = crate::fsx::read_text_in_repo(
                    &dir,
                    std::path::Path::new(&m.file),
                    crate::fsx::MAX_MANIFEST_BYTES,
                )
                .map_err(|e| err(e.to_string()))?
                .ok_or_else(|| err("the file is gone from main".into()))?;
                originals.insert(m.file.clone(), t.clone());
                t
            }
        };
        let mine: Vec<usize> = rec
            .manifests
            .iter()
            .filter(|n| n.file == m.file)
            .map(|n| n.document)
            .collect();
        let out = if staged.as_deref() == originals.get(&m.file).map(String::as_str)
            && staged.as_deref() == Some(text.as_str())
            && only_mine(&old, &text, &mine)
        {
            // Untouched since the rotation, and only this rotation's: back whole.
            old.clone()
        } else {
            let is = find(&text, &m.secret)
                .ok_or_else(|| err(format!("{} is gone from the file on main", m.secret)))?;
            apply(&text, &restore(&was, &is, &prefix, &key_annotation))
                .map_err(|e| err(e.to_string()))?
        };
        contents.insert(m.file.clone(), out);
    }
    // The workloads the rotation restarted go back to the old value too.
    let group = KeyGroup {
        old_key: rec.new_key_id.clone(),
        manifests: found
            .iter()
            .filter(|f| {
                rec.manifests.iter().any(|m| {
                    f.file == std::path::Path::new(&m.file) && f.doc.doc_index == m.document
                })
            })
            .collect(),
        expanded: false,
    };
    edits::restart_consumers(ctx, &group, &rec.old_key_id, &mut contents, &mut originals)?;
    let now = ctx.now();
    let mut back = rec.clone();
    back.id = format!("{}-rollback", rec.id);
    std::mem::swap(&mut back.old_key_id, &mut back.new_key_id);
    back.staged_at = now;
    back.published_at.clear();
    back.run = Some(ctx.run.0.clone());
    back.claimed_at = Some(now);
    back.disabled_at = None;
    back.proposal = None;
    back.staging_commit = None;
    back.hotfixes.clear();
    back.rollback_of = Some(RollbackOf {
        rotation: rec.id.clone(),
        reason: reason.to_owned(),
        at: now,
    });
    let mut written: Vec<String> = Vec::new();
    let put_back = |written: &[String]| {
        for f in written {
            match originals.get(f) {
                Some(t) => {
                    let _ = write_in_worktree(&dir.join(f), t.as_bytes());
                }
                None => {
                    let _ = std::fs::remove_file(dir.join(f));
                }
            }
        }
    };
    for (file, text) in &contents {
        if let Err(e) = write_in_worktree(&dir.join(file), text.as_bytes()) {
            put_back(&written);
            return Err(EngineError::Edit {
                file: file.clone(),
                message: e.to_string(),
            });
        }
        written.push(file.clone());
    }
    let ended = rec.clone().lifecycle().end();
    let mut block = back.trailer(TrailerAction::Rollback);
    block.reason = Some(format!("{reason}: rotation {}", rec.id));
    let message = trailers::message(
        &format!(
            "secret-manager: roll back rotation of {} ({}) for {}",
            rec.identity,
            rec.source,
            rec.clusters().join(", ")
        ),
        &[block],
    );
    crate::failpoint("before-rollback-commit");
    if ctx.pr_mode() {
        let branch = super::propose::branch(ctx, &format!("rollback-{}", rec.id));
        let mut recs = [back];
        let subject = message.lines().next().unwrap_or_default().to_owned();
        let block = recs[0].trailer(TrailerAction::Rollback);
        let mut block = block;
        block.reason = Some(format!("{reason}: rotation {}", rec.id));
        if let Err(e) =
            super::propose::propose_on(ctx, said, &branch, &mut recs, &written, &subject, &[block])
                .await
        {
            put_back(&written);
            return Err(e);
        }
        let [back] = recs;
        return Ok(back);
    }
    if let Err(e) = ctx.store().commit(
        &[Change::End(&ended), Change::Put(&back)],
        &written,
        &message,
    ) {
        put_back(&written);
        return Err(e.into());
    }
    Ok(back)
}

#[cfg(test)]
#[path = "rollback_tests.rs"]
mod tests;
