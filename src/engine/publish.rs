//! Publish: for every staged record, move each cluster pointer that lacks its staging
//! commit (one pointer move per cluster and distinct commit), then record the publish
//! times in one commit. Returns the records as main now has them.

use super::context::Ctx;
use super::hotfix;
use super::outcome::{Outcome, Said};
use super::report::{Action, EngineError, Phase, Step};
use crate::gitops::PublishError;
use crate::journal::store::staging_commits;
use crate::journal::{Change, RotationRecord, RotationState, TrailerAction, trailers};
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

/// Indices of records per (cluster, staging commit): one pointer move each.
type Moves = BTreeMap<(String, String), Vec<usize>>;

/// What a run moved: record index → (cluster, how).
type Moved = BTreeMap<usize, Vec<(String, String)>>;

/// One staged record's move: its index, and its staging commit with the clusters that
/// lack it (`None`: the commit is not found).
type PendingMove = (usize, Option<(String, Vec<String>)>);

/// Publishes every `Staged` record. Records in other states pass through unchanged;
/// a record whose publish could not be recorded is left out (the next run finds its
/// pointers already moved and records it then), so that nothing is revoked on a state
/// main does not have.
pub(super) async fn publish(
    ctx: &mut Ctx<'_>,
    mut records: Vec<RotationRecord>,
) -> Outcome<Vec<RotationRecord>> {
    let mut said = ctx.said();
    let staged: Vec<usize> = (0..records.len())
        .filter(|&i| matches!(records[i].state(), RotationState::Staged { .. }))
        .collect();
    if staged.is_empty() {
        return said.with(records);
    }
    ctx.phase(Phase::Publish, staged.len());
    let (moves, mut blocked) = plan_moves(ctx, &mut said, &records, &staged);
    let (mut moved, touched) =
        move_pointers(ctx, &mut said, &mut records, moves, &mut blocked).await;
    crate::failpoint("after-publish");
    // Records whose hot-fix changed are written too (no pointer moved for them).
    for i in touched {
        moved.entry(i).or_default();
    }
    if !moved.is_empty() && !record(ctx, &mut said, &records, &moved) {
        blocked.extend(moved.keys());
    }
    said.with(drop_indices(records, &blocked))
}

/// The pointer moves the staged records need, and the records that cannot move (no
/// staging commit, or a dry run, which only reports).
fn plan_moves(
    ctx: &Ctx<'_>,
    said: &mut Said,
    records: &[RotationRecord],
    staged: &[usize],
) -> (Moves, BTreeSet<usize>) {
    let mut blocked: BTreeSet<usize> = BTreeSet::new();
    let mut moves = Moves::new();
    let commits = match staging_commits(ctx.writer.git()) {
        Ok(c) => c,
        Err(e) => {
            let who = staged
                .iter()
                .map(|&i| (records[i].source.as_str(), records[i].identity.as_str()));
            said.fail_all(Phase::Publish, who, None, EngineError::Git(e));
            return (moves, staged.iter().copied().collect());
        }
    };
    for (i, planned) in pending_moves(records, staged, &commits) {
        let rec = &records[i];
        let Some((sha, pending)) = planned else {
            let e = EngineError::NoStagingCommit { record: rec.path() };
            said.fail(Phase::Publish, &rec.source, &rec.identity, None, e);
            blocked.insert(i);
            continue;
        };
        if ctx.opts.dry_run {
            let detail = format!("move the pointers to include {}", &sha[..12.min(sha.len())]);
            let s = record_step(rec, Action::Publish, pending, detail);
            said.step(s);
            blocked.insert(i);
            continue;
        }
        for c in pending {
            moves.entry((c, sha.clone())).or_default().push(i);
        }
    }
    (moves, blocked)
}

/// For each staged record: its staging commit and the clusters whose pointers still lack
/// it, or `None` when the commit is not found. The commit is the one the pull request's
/// merge made (pull-request mode, found when the merge was noticed), else the one on main
/// that added the record file (`commits`: record path → commit). Pure.
fn pending_moves<C: std::fmt::Display>(
    records: &[RotationRecord],
    staged: &[usize],
    commits: &BTreeMap<String, C>,
) -> Vec<PendingMove> {
    staged
        .iter()
        .filter_map(|&i| {
            let rec = &records[i];
            let RotationState::Staged { pending } = rec.state() else {
                return None;
            };
            let sha = rec
                .staging_commit
                .clone()
                .or_else(|| commits.get(&rec.path()).map(ToString::to_string));
            Some((i, sha.map(|sha| (sha, pending))))
        })
        .collect()
}

/// Moves each pointer once per staging commit; records the publish time in memory.
/// Returns what moved, and the records whose hot-fix state changed (pull-request mode).
async fn move_pointers(
    ctx: &mut Ctx<'_>,
    said: &mut Said,
    records: &mut [RotationRecord],
    moves: Moves,
    blocked: &mut BTreeSet<usize>,
) -> (Moved, BTreeSet<usize>) {
    let now = ctx.now();
    let mut moved = Moved::new();
    let mut touched = BTreeSet::new();
    let mut fast = batch_fast_forwards(ctx, &moves);
    for ((cluster, sha), members) in moves {
        if ctx.cancelled() {
            blocked.extend(&members);
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
            None if ctx.pr_mode() => {
                let (outcome, changed) =
                    hotfix::publish(ctx, records, &members, &cluster, &sha).await;
                if changed {
                    touched.extend(&members);
                }
                match outcome {
                    hotfix::Outcome::Moved(out) => Ok(out),
                    hotfix::Outcome::Waiting(detail) => {
                        blocked.extend(&members);
                        for &i in &members {
                            let mut s = record_step(
                                &records[i],
                                Action::Wait,
                                vec![cluster.clone()],
                                detail.clone(),
                            );
                            s.waiting_on = Some(super::report::WaitingOn::Hotfix);
                            said.step(s);
                        }
                        continue;
                    }
                    hotfix::Outcome::Failed(e) => {
                        blocked.extend(&members);
                        let who = members
                            .iter()
                            .map(|&i| (records[i].source.as_str(), records[i].identity.as_str()));
                        said.fail_all(Phase::Publish, who, Some(&cluster), e);
                        continue;
                    }
                }
            }
            None => match fast.remove(&(cluster.clone(), sha.clone())) {
                Some(settled) => settled,
                None => ctx.fleet.publish(&cluster, &sha),
            },
        };
        match result {
            Ok(out) => {
                let short = |s: &str| s[..12.min(s.len())].to_owned();
                let detail = format!("{} {} -> {}", out.mode, short(&out.from), short(&out.to));
                for &i in &members {
                    if let Err(e) = records[i].apply(|l| l.publish(&cluster, now)) {
                        let (source, identity) =
                            (records[i].source.clone(), records[i].identity.clone());
                        said.fail(Phase::Publish, &source, &identity, Some(&cluster), e.into());
                        continue;
                    }
                    moved
                        .entry(i)
                        .or_default()
                        .push((cluster.clone(), detail.clone()));
                }
            }
            Err(e) => {
                blocked.extend(&members);
                let who = members
                    .iter()
                    .map(|&i| (records[i].source.as_str(), records[i].identity.as_str()));
                said.fail_all(Phase::Publish, who, Some(&cluster), EngineError::Publish(e));
            }
        }
    }
    (moved, touched)
}

/// The fast-forwards of every cluster at once (one fetch and one push per remote), for
/// the moves that are a cluster's only one this run; what the batch cannot settle is
/// left to the one-cluster path.
fn batch_fast_forwards(
    ctx: &Ctx<'_>,
    moves: &Moves,
) -> BTreeMap<(String, String), crate::gitops::PublishResult<crate::gitops::PublishOutcome>> {
    if ctx.pr_mode() || ctx.cancelled() {
        return BTreeMap::new();
    }
    let mut per_cluster: BTreeMap<&str, usize> = BTreeMap::new();
    for (cluster, _) in moves.keys() {
        *per_cluster.entry(cluster).or_default() += 1;
    }
    let batch: Vec<(String, String)> = moves
        .keys()
        .filter(|(cluster, _)| {
            per_cluster[cluster.as_str()] == 1
                && ctx
                    .repo
                    .inventory
                    .get(cluster)
                    .is_some_and(|c| !ctx.unavailable.contains_key(&c.remote))
        })
        .cloned()
        .collect();
    if batch.is_empty() {
        return BTreeMap::new();
    }
    let settled = ctx.fleet.publish_fast_forwards(&batch);
    batch
        .into_iter()
        .zip(settled)
        .filter_map(|(k, r)| r.map(|r| (k, r)))
        .collect()
}

/// Commits the new publish times in one commit; false when that failed (reported).
fn record(ctx: &Ctx<'_>, said: &mut Said, records: &[RotationRecord], moved: &Moved) -> bool {
    let who = || {
        moved
            .keys()
            .map(|&i| (records[i].source.as_str(), records[i].identity.as_str()))
    };
    let mut changes = Vec::new();
    let mut blocks = Vec::new();
    let mut clusters = BTreeSet::new();
    for (&i, m) in moved {
        let rec = &records[i];
        changes.push(Change::Put(rec));
        let names: Vec<String> = m.iter().map(|(c, _)| c.clone()).collect();
        if names.is_empty() {
            // Only its hot-fix state changed (pull-request mode).
            continue;
        }
        let mut b = rec.trailer(TrailerAction::Publish);
        b.published = rec.published_trailers(&names);
        blocks.push(b);
        clusters.extend(names);
    }
    let clusters: Vec<String> = clusters.into_iter().collect();
    let subject = match moved.keys().next() {
        _ if clusters.is_empty() => format!(
            "secret-manager: {} rotation(s) wait for hot-fix pull requests",
            moved.len()
        ),
        Some(&i) if moved.len() == 1 => format!(
            "secret-manager: published rotation {} to {}",
            records[i].id,
            clusters.join(", ")
        ),
        _ => format!(
            "secret-manager: published {} rotations to {}",
            blocks.len(),
            clusters.join(", ")
        ),
    };
    if let Err(e) = ctx
        .store()
        .commit(&changes, &[], &trailers::message(&subject, &blocks))
    {
        said.fail_all(Phase::Publish, who(), None, e.into());
        return false;
    }
    for (&i, m) in moved {
        for (c, detail) in m {
            let mut s = record_step(
                &records[i],
                Action::Publish,
                vec![c.clone()],
                detail.clone(),
            );
            s.done = true;
            said.step(s);
        }
    }
    true
}

fn drop_indices(records: Vec<RotationRecord>, drop: &BTreeSet<usize>) -> Vec<RotationRecord> {
    records
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !drop.contains(i))
        .map(|(_, r)| r)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::pending_moves;
    use crate::journal::record::{RecordKind, RecordManifest, RotationRecord};
    use std::collections::BTreeMap;

    fn record(id: &str, clusters: &[&str]) -> RotationRecord {
        RotationRecord {
            version: 1,
            id: id.into(),
            kind: RecordKind::Rotate,
            source: "aws".into(),
            identity: format!("123456789012/{id}"),
            params: Default::default(),
            old_key_id: "AKIAOLD".into(),
            new_key_id: "AKIANEW".into(),
            staged_at: "2026-12-01T10:00:00Z".parse().unwrap(),
            manifests: clusters
                .iter()
                .map(|c| RecordManifest {
                    file: format!("applications/{id}/overlays/{c}/s.yaml"),
                    document: 0,
                    cluster: (*c).into(),
                    secret: format!("ns/{id}"),
                })
                .collect(),
            published_at: Default::default(),
            operator: None,
            run: None,
            claimed_at: None,
            disabled_at: None,
            proposal: None,
            staging_commit: None,
            hotfixes: Default::default(),
            promised: None,
            rollback_of: None,
            rollback_declined: None,
        }
    }

    /// Only the clusters still lacking the change move; a merged pull request's commit
    /// wins over main's log; a record whose commit is nowhere is said, not guessed; a
    /// record that is not staged is no move at all.
    #[test]
    fn each_staged_record_moves_the_pointers_that_lack_its_commit() {
        let mut half = record("half", &["dev1", "prod1"]);
        half.apply(|l| l.publish("dev1", "2026-12-01T10:05:00Z".parse().unwrap()))
            .unwrap();
        let mut merged = record("merged", &["dev1"]);
        merged.staging_commit = Some("c0ffee".into());
        let lost = record("lost", &["dev1"]);
        let mut done = record("done", &["dev1"]);
        done.apply(|l| l.publish("dev1", "2026-12-01T10:05:00Z".parse().unwrap()))
            .unwrap();
        let records = vec![half, merged, lost, done];
        let commits: BTreeMap<String, &str> = [
            (records[0].path(), "aaa111"),
            (records[1].path(), "bbb222"),
            (records[3].path(), "ddd444"),
        ]
        .into_iter()
        .collect();
        let planned = pending_moves(&records, &[0, 1, 2, 3], &commits);
        assert_eq!(
            planned,
            vec![
                (0, Some(("aaa111".to_owned(), vec!["prod1".to_owned()]))),
                (1, Some(("c0ffee".to_owned(), vec!["dev1".to_owned()]))),
                (2, None),
            ]
        );
    }
}
