//! Pull-request mode: a change (new ciphertexts, or removed documents) goes to a branch
//! and a pull request instead of main. The records that track it go to the journal ref
//! *first*, so a run that dies at any later point leaves enough behind: a later run finds
//! the branch (and opens the pull request if it is missing) or, without a branch, deletes
//! the new keys and drops the records.

use super::context::Ctx;
use super::outcome::Said;
use super::report::{EngineError, Phase};
use crate::forge::NewPullRequest;
use crate::gitops::git::{GitError, Lease, RefOutcome, RefUpdate};
use crate::journal::record::IllegalTransition;
use crate::journal::record::ts;
use crate::journal::{Change, Ended, RotationRecord, TrailerAction, TrailerBlock, trailers};

pub use crate::journal::store::{JOURNAL_REF, JOURNAL_TRACKING, journal_target};

/// The marker the tool puts in its pull requests' bodies.
pub(super) fn marker(run: &str) -> String {
    format!("<!-- secret-manager:run={run} -->")
}

/// The body of a pull request: what a reviewer needs, ids only, then the marker and the
/// audit trailers.
pub(super) fn body(ctx: &Ctx<'_>, records: &[RotationRecord], blocks: &[TrailerBlock]) -> String {
    let mut b = String::new();
    let rollbacks: Vec<&RotationRecord> =
        records.iter().filter(|r| r.rollback_of.is_some()).collect();
    if !rollbacks.is_empty() {
        b.push_str("secret-manager proposes to **roll back**:\n\n");
        for r in &rollbacks {
            let of = r.rollback_of.as_ref().expect("a rollback");
            b.push_str(&format!(
                "* rotation `{}`: {}. Merging restores the old key `{}` in its manifests; once every cluster has it, the new key `{}` is revoked. Closing keeps both keys, and the old key stays until the rotation's gates pass.\n",
                of.rotation, of.reason, r.new_key_id, r.old_key_id
            ));
        }
        b.push('\n');
    }
    let rotations = records.iter().filter(|r| !r.is_delete()).count();
    let deletions = records.len() - rotations;
    b.push_str("secret-manager proposes ");
    if rotations > 0 {
        b.push_str(&format!("{rotations} credential rotation(s)"));
    }
    if deletions > 0 {
        b.push_str(&format!(
            "{}{deletions} deletion(s)",
            if rotations > 0 { " and " } else { "" }
        ));
    }
    b.push_str(". Only the listed values and the `secret-manager/` annotations change; no secret value appears here.\n\n");
    b.push_str(
        "| secret | file | source | identity | old key | new key |\n|---|---|---|---|---|---|\n",
    );
    for r in records {
        for m in &r.manifests {
            b.push_str(&format!(
                "| {}/{} | `{}` | {} | `{}` | `{}` | {} |\n",
                m.cluster,
                m.secret,
                m.file,
                r.source,
                r.identity,
                r.old_key_id,
                if r.is_delete() {
                    "(deleted)".to_owned()
                } else {
                    format!("`{}`", r.new_key_id)
                }
            ));
        }
    }
    let clusters: std::collections::BTreeSet<String> =
        records.iter().flat_map(RotationRecord::clusters).collect();
    let grace = humantime::format_duration(ctx.opts.revoke_after.to_std().unwrap_or_default());
    b.push_str("\nAfter this is merged, the next `secret-manager rotate` run:\n");
    b.push_str(&format!(
        "* publishes it to {} (each cluster's pointer moves fast-forward; a pointer behind unrelated changes gets a hot-fix pull request first);\n",
        clusters.into_iter().collect::<Vec<_>>().join(", ")
    ));
    let mut gates = vec![format!("{grace} after the last cluster has it")];
    if ctx.opts.require_synced {
        gates.push("each cluster's SealedSecret shows the new key with Synced=True".into());
    }
    if ctx.opts.require_argocd_synced {
        gates.push("each cluster's Argo CD application is Synced at a revision with the new key, and Healthy".into());
    }
    if ctx.opts.require_consumers_restarted {
        gates.push("every pod that reads the Secret runs with the new value".into());
    }
    if ctx.opts.gate_command.is_some() {
        gates.push("the operator's gate command passes for each cluster".into());
    }
    if ctx.opts.require_old_key_unused {
        gates.push("the old key is unused since publish".into());
    }
    b.push_str(&format!(
        "* then deletes{} the old key(s): {}.\n",
        if ctx.opts.revoke_mode == crate::config::RevokeMode::Disable {
            " (first disables)"
        } else {
            ""
        },
        gates.join(", and ")
    ));
    b.push_str("\nClosing this pull request without merging deletes the new key(s); the old keys stay.\n\n");
    b.push_str(&marker(&ctx.run.0));
    b.push_str("\n\n<details><summary>Audit trailers</summary>\n\n```\n");
    for blk in blocks {
        b.push_str(&blk.render());
    }
    b.push_str("```\n</details>\n");
    b
}

/// Writes `records` through the journal store and commits and pushes them.
pub(super) fn write_records(
    ctx: &Ctx<'_>,
    records: &[RotationRecord],
    message: &str,
) -> Result<(), EngineError> {
    let changes: Vec<Change<'_>> = records.iter().map(Change::Put).collect();
    ctx.store().commit(&changes, &[], message)?;
    Ok(())
}

/// Proposes the uncommitted manifest edits in main's worktree (`manifests`) and the
/// `records` they belong to: the records go to the journal with the branch named, the
/// commit goes to that branch, a pull request is opened, and the records get its number.
/// On `Err` nothing was proposed (the caller undoes the new keys).
pub(super) async fn propose(
    ctx: &mut Ctx<'_>,
    said: &mut Said,
    records: &mut [RotationRecord],
    manifests: &[String],
    subject: &str,
    blocks: &[TrailerBlock],
) -> Result<(), EngineError> {
    let branch = branch(ctx, &format!("rotate-{}", ctx.run));
    propose_on(ctx, said, &branch, records, manifests, subject, blocks).await
}

/// The tool's branch `name` (under `forge.branchPrefix`).
pub(super) fn branch(ctx: &Ctx<'_>, name: &str) -> String {
    let prefix = ctx
        .repo
        .config
        .forge
        .as_ref()
        .map_or("", |c| c.branch_prefix.as_str());
    format!("{prefix}{name}")
}

/// [`propose`] on `branch`.
pub(super) async fn propose_on(
    ctx: &mut Ctx<'_>,
    said: &mut Said,
    branch: &str,
    records: &mut [RotationRecord],
    manifests: &[String],
    subject: &str,
    blocks: &[TrailerBlock],
) -> Result<(), EngineError> {
    let forge = ctx.forge.as_ref().expect("pull-request mode has a forge");
    let cfg = ctx
        .repo
        .config
        .forge
        .clone()
        .expect("pull-request mode has a forge block");
    let branch = branch.to_owned();
    let main = ctx.writer.head()?;
    let commit = ctx
        .writer
        .commit_local(manifests, &trailers::message(subject, blocks))?;
    let now = ctx.now();
    for r in records.iter_mut() {
        if let Err(e) = r.apply(|l| l.staged("propose")?.propose(&branch, now)) {
            let _ = ctx.writer.reset_to(&main);
            return Err(e.into());
        }
    }
    // 1. The journal first: from here on a dying run leaves a record naming the branch.
    let journal_msg = format!(
        "secret-manager: propose {} rotation(s) on {branch}\n",
        records.len()
    );
    if let Err(e) = write_records(ctx, records, &journal_msg) {
        let _ = ctx.writer.reset_to(&main);
        let _ = ctx.journal().discard();
        return Err(e);
    }
    // 2. The branch.
    let update = RefUpdate {
        src: Some(commit),
        dst: format!("refs/heads/{branch}"),
        lease: Lease::Absent,
    };
    let pushed = ctx
        .fleet
        .git()
        .push_refs(ctx.fleet.main_remote(), &[update]);
    let _ = ctx.writer.reset_to(&main);
    match pushed.map(|mut o| o.pop()) {
        Ok(Some(RefOutcome::Updated)) => {}
        other => {
            let reason = match other {
                Ok(Some(RefOutcome::Lost(r) | RefOutcome::Refused(r))) => r,
                Err(e) => e.to_string(),
                _ => "no answer".into(),
            };
            // Drop the records again (best effort: else the next run drops them).
            let ended: Vec<Ended> = records
                .iter()
                .map(|r| r.clone().lifecycle().end())
                .collect();
            let changes: Vec<Change<'_>> = ended.iter().map(Change::End).collect();
            let _ = ctx.store().commit(
                &changes,
                &[],
                &format!("secret-manager: drop the proposal on {branch} (the branch could not be pushed)\n"),
            );
            return Err(EngineError::Git(GitError::Refused {
                remote: ctx.fleet.main_remote().to_owned(),
                refname: format!("refs/heads/{branch}"),
                reason,
            }));
        }
    }
    // 3. The pull request. If this fails the branch stands; the next run opens it.
    let body = body(ctx, records, blocks);
    let pr = forge
        .open(&NewPullRequest {
            head: &branch,
            base: ctx.fleet.main_branch(),
            title: &subject.replacen("stage rotation of", "rotate", 1),
            body: &body,
            labels: &cfg.labels,
        })
        .await;
    let pr = match pr {
        Ok(pr) => pr,
        Err(e) => {
            said.fail_records(
                Phase::Publish,
                records,
                EngineError::NotProposed {
                    branch: branch.to_string(),
                    source: e,
                },
            );
            return Ok(());
        }
    };
    // 4. The records learn the pull request.
    let mut blocks = Vec::new();
    for r in records.iter_mut() {
        // Each record was proposed above (or the run returned).
        r.apply(|l| {
            Ok::<_, IllegalTransition>(
                l.proposed("record the pull request of")?
                    .opened(pr.number, &pr.url),
            )
        })?;
        let mut b = r.trailer(TrailerAction::Propose);
        b.reason = Some(format!(
            "pull request {} on branch {branch}, opened {}",
            pr.url,
            ts(now)
        ));
        blocks.push(b);
    }
    let msg = trailers::message(
        &format!("secret-manager: proposed {} in {}", records.len(), pr.url),
        &blocks,
    );
    if let Err(e) = write_records(ctx, records, &msg) {
        tracing::warn!(error = %e, "the records do not name the pull request yet; the next run finds it by its branch");
    }
    Ok(())
}
