//! Publish: for every staged record, move each cluster pointer that lacks its staging
//! commit (one pointer move per cluster and distinct commit), then record the publish
//! times in one commit. Returns the records as main now has them.

use super::context::Ctx;
use super::report::{Action, EngineError, Phase, Step};
use crate::gitops::PublishError;
use crate::journal::record::staging_commits;
use crate::journal::{RotationRecord, RotationState, TrailerAction, trailers};
use std::collections::{BTreeMap, BTreeSet};

pub(super) fn record_step(
    rec: &RotationRecord,
    action: Action,
    clusters: Vec<String>,
    detail: String,
) -> Step {
    let mut s = Step::new(action, &rec.source, &rec.identity, detail);
    s.old_key_id = Some(rec.old_key_id.clone());
    s.new_key_id = (!rec.new_key_id.is_empty()).then(|| rec.new_key_id.clone());
    s.clusters = clusters;
    s.files = rec.files();
    s
}

/// Publishes every `Staged` record. Records in other states pass through unchanged;
/// a record whose publish could not be recorded is left out (the next run finds its
/// pointers already moved and records it then), so that nothing is revoked on a state
/// main does not have.
pub(super) fn publish(ctx: &mut Ctx<'_>, mut records: Vec<RotationRecord>) -> Vec<RotationRecord> {
    let staged: Vec<usize> = (0..records.len())
        .filter(|&i| matches!(records[i].state(), RotationState::Staged { .. }))
        .collect();
    if staged.is_empty() {
        return records;
    }
    let commits = match staging_commits(ctx.writer.git()) {
        Ok(c) => c,
        Err(e) => {
            let msg = e.to_string();
            let mut first = Some(EngineError::Git(e));
            for &i in &staged {
                let r = &records[i];
                let err = first
                    .take()
                    .unwrap_or_else(|| EngineError::Batch(msg.clone()));
                ctx.fail(Phase::Publish, &r.source, &r.identity, None, err);
            }
            let keep: BTreeSet<usize> = staged.into_iter().collect();
            return drop_indices(records, &keep);
        }
    };
    let mut blocked: BTreeSet<usize> = BTreeSet::new();
    // (cluster, staging commit) → records.
    let mut moves: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for &i in &staged {
        let rec = &records[i];
        let RotationState::Staged { pending } = rec.state() else {
            continue;
        };
        let Some(sha) = commits.get(&rec.path()).cloned() else {
            let e = EngineError::NoStagingCommit { record: rec.path() };
            ctx.fail(Phase::Publish, &rec.source, &rec.identity, None, e);
            blocked.insert(i);
            continue;
        };
        if ctx.opts.dry_run {
            let s = record_step(
                rec,
                Action::Publish,
                pending,
                format!("move the pointers to include {}", &sha[..12.min(sha.len())]),
            );
            ctx.step(s);
            blocked.insert(i);
            continue;
        }
        for c in pending {
            moves.entry((c, sha.clone())).or_default().push(i);
        }
    }
    let now = ctx.now();
    let mut newly: BTreeMap<usize, Vec<(String, String)>> = BTreeMap::new();
    for ((cluster, sha), members) in moves {
        if ctx.cancelled() {
            for &i in &members {
                blocked.insert(i);
            }
            continue;
        }
        let remote = ctx
            .repo
            .inventory
            .get(&cluster)
            .map(|c| c.remote.clone())
            .unwrap_or_default();
        let result = match ctx.unavailable.get(&remote) {
            Some(reason) => Err(PublishError::RemoteUnavailable {
                cluster: cluster.clone(),
                remote: remote.clone(),
                reason: reason.clone(),
            }),
            None => ctx.fleet.publish(&cluster, &sha),
        };
        match result {
            Ok(out) => {
                let detail = format!(
                    "{:?} {} -> {}",
                    out.mode,
                    &out.from[..12.min(out.from.len())],
                    &out.to[..12.min(out.to.len())]
                );
                for &i in &members {
                    records[i].published_at.insert(cluster.clone(), now);
                    newly
                        .entry(i)
                        .or_default()
                        .push((cluster.clone(), detail.clone()));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                let mut first = Some(EngineError::Publish(e));
                for &i in &members {
                    blocked.insert(i);
                    let r = &records[i];
                    let err = first
                        .take()
                        .unwrap_or_else(|| EngineError::Batch(msg.clone()));
                    ctx.fail(Phase::Publish, &r.source, &r.identity, Some(&cluster), err);
                }
            }
        }
    }
    crate::failpoint("after-publish");
    if newly.is_empty() {
        return drop_indices(records, &blocked);
    }
    // Record the publications in one commit.
    let mut paths = Vec::new();
    let mut blocks = Vec::new();
    let mut clusters = BTreeSet::new();
    for (&i, moved) in &newly {
        let rec = &records[i];
        if let Err(source) = std::fs::write(ctx.writer.dir().join(rec.path()), rec.to_yaml()) {
            let _ = ctx.writer.discard();
            let e = EngineError::Io {
                path: rec.path(),
                source,
            };
            ctx.fail(Phase::Publish, &rec.source, &rec.identity, None, e);
            let all: BTreeSet<usize> = newly.keys().copied().chain(blocked).collect();
            return drop_indices(records, &all);
        }
        let names: Vec<String> = moved.iter().map(|(c, _)| c.clone()).collect();
        let mut b = rec.trailer(TrailerAction::Publish);
        b.published = rec.published_trailers(&names);
        blocks.push(b);
        clusters.extend(names);
        paths.push(rec.path());
    }
    let clusters: Vec<String> = clusters.into_iter().collect();
    let subject = if newly.len() == 1 {
        let i = *newly.keys().next().expect("one");
        format!(
            "secret-manager: published rotation {} to {}",
            records[i].id,
            clusters.join(", ")
        )
    } else {
        format!(
            "secret-manager: published {} rotations to {}",
            newly.len(),
            clusters.join(", ")
        )
    };
    if let Err(e) = ctx
        .writer
        .commit_and_push(&paths, &trailers::message(&subject, &blocks))
    {
        let msg = e.to_string();
        let mut first = Some(EngineError::Publish(e));
        for &i in newly.keys() {
            let r = &records[i];
            let err = first
                .take()
                .unwrap_or_else(|| EngineError::Batch(msg.clone()));
            ctx.fail(Phase::Publish, &r.source, &r.identity, None, err);
        }
        let all: BTreeSet<usize> = newly.keys().copied().chain(blocked).collect();
        return drop_indices(records, &all);
    }
    for (&i, moved) in &newly {
        for (c, detail) in moved {
            let mut s = record_step(
                &records[i],
                Action::Publish,
                vec![c.clone()],
                detail.clone(),
            );
            s.done = true;
            ctx.step(s);
        }
    }
    drop_indices(records, &blocked)
}

fn drop_indices(records: Vec<RotationRecord>, drop: &BTreeSet<usize>) -> Vec<RotationRecord> {
    records
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !drop.contains(i))
        .map(|(_, r)| r)
        .collect()
}
