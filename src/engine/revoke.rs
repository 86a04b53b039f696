//! Revoke: for every record whose clusters all have the new key, wait out the grace
//! period and the optional gates, then delete (or disable) the old key and end the record
//! in one commit. With `revokeMode: disable` the key is disabled first and deleted on a
//! later run, once the grace period has passed again.

use super::context::Ctx;
use super::gate::Gate;
use super::gates;
use super::outcome::{Outcome, Said};
use super::plan::index;
use super::publish::record_step;
use super::report::{Action, EngineError, Phase, WaitingOn};
use super::truth::{PointerFiles, main_references, truth_allows};
use crate::config::RevokeMode;
use crate::journal::record::ts;
use crate::journal::{
    Change, RotationRecord, RotationState, TrailerAction, TrailerBlock, trailers,
};
use crate::provider::{KeyId, Revoke, Revoked};
use chrono::{DateTime, Utc};

/// What to do with one record this run.
enum Todo {
    /// Delete or disable the old key; with what a gate could not check, if anything.
    Revoke(Revoke, Option<String>),
    /// A deleted secret's key stays: other manifests still use it.
    Keep(Vec<String>),
}

/// ` (why)` after a revoke's detail when a gate could not look, else nothing.
fn note(blind: Option<&str>) -> String {
    blind.map(|why| format!(" ({why})")).unwrap_or_default()
}

/// Manifests on main that still hold the record's old key (for `delete` records).
fn still_referenced(ctx: &Ctx<'_>, rec: &RotationRecord) -> Vec<String> {
    let scan = ctx.scan();
    index(&scan.secrets, ctx.now())
        .into_iter()
        .filter(|i| i.source == rec.source && i.identity == rec.identity)
        .flat_map(|i| i.manifests)
        .filter(|f| {
            f.managed.as_ref().and_then(|m| m.key_id.as_deref()) == Some(rec.old_key_id.as_str())
        })
        .map(|f| format!("{}:{}", f.file.display(), f.doc.line))
        .collect()
}

/// When a record's old key may go, by its state and the stricter of what the staging run
/// promised and this run's flags: a later run (another shard, a hand run) never shortens
/// the grace period or turns disable into delete. Pure: no git, no provider, no clock.
#[derive(Debug, PartialEq, Eq)]
enum Schedule {
    /// Not on every pointer yet, or still in review: publishing's business.
    NotPublished,
    /// The grace period runs until `until`.
    Wait {
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        /// The key was disabled at `since` (this wait ends in its deletion).
        disabled: bool,
    },
    /// Due now: delete, or disable first; `disabled`: it was disabled on an earlier run
    /// (its gates were passed then).
    Due {
        since: DateTime<Utc>,
        how: Revoke,
        disabled: bool,
    },
}

fn schedule(
    rec: &RotationRecord,
    revoke_after: chrono::Duration,
    revoke_mode: RevokeMode,
    now: DateTime<Utc>,
) -> Schedule {
    let (after, mode) = match &rec.promised {
        Some(p) => (
            revoke_after.max(chrono::Duration::seconds(p.revoke_after_seconds)),
            if p.revoke_mode == RevokeMode::Disable {
                RevokeMode::Disable
            } else {
                revoke_mode
            },
        ),
        None => (revoke_after, revoke_mode),
    };
    let (since, how, disabled) = match rec.state() {
        RotationState::Staged { .. } | RotationState::Proposed { .. } => {
            return Schedule::NotPublished;
        }
        RotationState::Published { since } => (
            since,
            match mode {
                RevokeMode::Delete => Revoke::Delete,
                RevokeMode::Disable => Revoke::Disable,
            },
            false,
        ),
        RotationState::Disabled { since } => (since, Revoke::Delete, true),
    };
    let until = since + after;
    if now < until {
        Schedule::Wait {
            since,
            until,
            disabled,
        }
    } else {
        Schedule::Due {
            since,
            how,
            disabled,
        }
    }
}

/// Decides, per record, whether its old key goes now; reports waits and gate errors.
/// What to revoke, and which records a gate found failing (to roll back).
async fn decide(
    ctx: &Ctx<'_>,
    said: &mut Said,
    records: &[RotationRecord],
) -> (Vec<(usize, Todo)>, Vec<(usize, String)>) {
    let now = ctx.now();
    let mut todo = Vec::new();
    let mut failing = Vec::new();
    let mut main_refs = None;
    let mut files = None;
    for (i, rec) in records.iter().enumerate() {
        let (since, how, disabled) =
            match schedule(rec, ctx.opts.revoke_after, ctx.opts.revoke_mode, now) {
                Schedule::NotPublished => {
                    if let Some(why) = super::rollback::report_overdue(ctx, said, rec, now, None) {
                        failing.push((i, why));
                    }
                    continue;
                }
                Schedule::Wait {
                    since,
                    until,
                    disabled,
                } => {
                    let detail = if disabled {
                        format!(
                            "old key disabled since {}; deleted after {}",
                            ts(since),
                            ts(until)
                        )
                    } else {
                        format!(
                            "grace period: published since {}; revoke the old key after {}",
                            ts(since),
                            ts(until)
                        )
                    };
                    let mut s = record_step(rec, Action::Wait, rec.clusters(), detail);
                    s.waiting_on = Some(WaitingOn::Grace);
                    said.step(s);
                    continue;
                }
                Schedule::Due {
                    since,
                    how,
                    disabled,
                } => (since, how, disabled),
            };
        let mut blind = None;
        if !disabled {
            match gates::check(ctx, rec, since).await {
                Gate::Open => {}
                Gate::Blind(why) => blind = Some(why),
                Gate::Wait(on, reason) => {
                    if let Some(why) =
                        super::rollback::report_overdue(ctx, said, rec, now, Some(&reason))
                    {
                        failing.push((i, why));
                        continue;
                    }
                    let mut s = record_step(
                        rec,
                        Action::Wait,
                        rec.clusters(),
                        format!("{reason} (published since {})", ts(since)),
                    );
                    s.waiting_on = Some(on);
                    said.step(s);
                    continue;
                }
                Gate::Error { cluster, message } => {
                    let e = EngineError::Gate {
                        cluster: cluster.clone(),
                        message,
                    };
                    let c = (cluster != "-").then_some(cluster.as_str());
                    said.fail(Phase::Gate, &rec.source, &rec.identity, c, e);
                    continue;
                }
                Gate::Failed { cluster, message } => {
                    failing.push((i, format!("a gate failed on cluster {cluster}: {message}")));
                    let e = EngineError::Gate {
                        cluster: cluster.clone(),
                        message,
                    };
                    said.fail(Phase::Gate, &rec.source, &rec.identity, Some(&cluster), e);
                    continue;
                }
            }
        }
        if ctx.opts.dry_run {
            let verb = match how {
                Revoke::Delete => "delete",
                Revoke::Disable => "disable",
            };
            let s = record_step(
                rec,
                Action::Revoke,
                rec.clusters(),
                format!("{verb} the old key{}", note(blind.as_deref())),
            );
            said.step(s);
            continue;
        }
        if rec.is_delete() {
            let users = still_referenced(ctx, rec);
            if !users.is_empty() {
                todo.push((i, Todo::Keep(users)));
                continue;
            }
        }
        let refs = main_refs.get_or_insert_with(|| main_references(ctx));
        let files = files.get_or_insert_with(|| PointerFiles::prefetch(ctx, records));
        if let Err(why) = truth_allows(ctx, rec, refs, files) {
            let mut s = record_step(rec, Action::Wait, rec.clusters(), why.to_string());
            s.waiting_on = Some(WaitingOn::Pointers);
            said.step(s);
            continue;
        }
        todo.push((i, Todo::Revoke(how, blind)));
    }
    (todo, failing)
}

/// Revokes the old keys of every record that is due and ends those records.
/// Revokes what is due; rolls back what a gate found failing. Returns the rollback
/// records started, for the run to publish.
pub(super) async fn revoke(
    ctx: &mut Ctx<'_>,
    mut records: Vec<RotationRecord>,
) -> Outcome<Vec<RotationRecord>> {
    let mut said = ctx.said();
    if records.is_empty() || ctx.cancelled() {
        return said.with(Vec::new());
    }
    let (todo, failing) = decide(ctx, &mut said, &records).await;
    let failing = failing
        .into_iter()
        .map(|(i, why)| (records[i].clone(), why))
        .collect();
    let rollbacks = said.merge(super::rollback::on_failure(ctx, failing).await);
    if todo.is_empty() {
        return said.with(rollbacks);
    }
    ctx.phase(Phase::Revoke, todo.len());
    let (done, gone) = call_sources(ctx, &mut said, &records, todo).await;
    if done.is_empty() {
        return said.with(rollbacks);
    }
    crate::failpoint("after-revoke");
    commit(ctx, &mut said, &mut records, done, &gone);
    said.with(rollbacks)
}

/// The provider calls, `concurrency` at a time. Returns what succeeded, and which of
/// those found the key already gone at the source.
async fn call_sources(
    ctx: &Ctx<'_>,
    said: &mut Said,
    records: &[RotationRecord],
    todo: Vec<(usize, Todo)>,
) -> (Vec<(usize, Todo)>, std::collections::BTreeSet<usize>) {
    let providers = ctx.providers;
    let calls: Vec<(usize, Todo, Result<Revoked, EngineError>)> =
        super::bounded(ctx.opts.concurrency, todo, |(i, t)| {
            let rec = &records[i];
            async move {
                let result = match &t {
                    Todo::Keep(_) => Ok(Revoked::Done),
                    Todo::Revoke(how, _) => match providers.get(&rec.source).await {
                        Ok(p) => p
                            .revoke(&rec.target(), &KeyId(rec.old_key_id.clone()), *how)
                            .await
                            .map_err(EngineError::from),
                        Err(e) => Err(e.into()),
                    },
                };
                (i, t, result)
            }
        })
        .await;
    let mut done = Vec::new();
    let mut gone = std::collections::BTreeSet::new();
    for (i, t, r) in calls {
        match r {
            Ok(revoked) => {
                if revoked == Revoked::AlreadyGone {
                    gone.insert(i);
                }
                done.push((i, t))
            }
            Err(e) => {
                let rec = &records[i];
                said.fail(Phase::Revoke, &rec.source, &rec.identity, None, e);
            }
        }
    }
    (done, gone)
}

/// The subject of the revoke commit.
fn subject(records: &[RotationRecord], done: &[(usize, Todo)]) -> String {
    let n = |f: fn(&Todo) -> bool| done.iter().filter(|(_, t)| f(t)).count();
    let revoked = n(|t| matches!(t, Todo::Revoke(Revoke::Delete, _)));
    let disabled = n(|t| matches!(t, Todo::Revoke(Revoke::Disable, _)));
    let kept = n(|t| matches!(t, Todo::Keep(_)));
    match done {
        [(i, Todo::Keep(_))] => format!(
            "secret-manager: deleted {} (key kept: still used)",
            records[*i].identity
        ),
        [(i, _)] => {
            let rec = &records[*i];
            format!(
                "secret-manager: {} {} key of {} ({})",
                if disabled == 1 { "disabled" } else { "revoked" },
                if rec.is_delete() {
                    "the deleted secret's"
                } else {
                    "old"
                },
                rec.identity,
                rec.source
            )
        }
        _ => {
            let mut parts = Vec::new();
            if revoked > 0 {
                parts.push(format!("revoked the old keys of {revoked} rotations"));
            }
            if disabled > 0 {
                parts.push(format!("disabled the old keys of {disabled} rotations"));
            }
            if kept > 0 {
                parts.push(format!("kept {kept} still-used key(s) of deleted secrets"));
            }
            format!("secret-manager: {}", parts.join(" and "))
        }
    }
}

/// Ends (or, when disabling, updates) the records in one commit and reports each step.
fn commit(
    ctx: &Ctx<'_>,
    said: &mut Said,
    records: &mut [RotationRecord],
    done: Vec<(usize, Todo)>,
    gone: &std::collections::BTreeSet<usize>,
) {
    let now = ctx.now();
    let mut paths = Vec::new();
    let mut blocks: Vec<TrailerBlock> = Vec::new();
    // A record that cannot be written or removed is not committed: the key is revoked
    // (idempotent), and the next run records it.
    let mut unwritten: Vec<(usize, String)> = Vec::new();
    for (i, t) in &done {
        let rec = &mut records[*i];
        let was_disabled = matches!(rec.state(), RotationState::Disabled { .. });
        // Disabling writes the record as `Disabled`; anything else ends it.
        let written = match t {
            Todo::Revoke(Revoke::Disable, _) => {
                match rec.clone().lifecycle().published("disable the old key of") {
                    Ok(published) => {
                        let disabled = published.disable(now);
                        let w = ctx.store().write(&[Change::Put(&disabled)]);
                        if w.is_ok() {
                            *rec = disabled.into_record();
                        }
                        w
                    }
                    Err(e) => {
                        unwritten.push((*i, e.to_string()));
                        continue;
                    }
                }
            }
            _ => ctx
                .store()
                .write(&[Change::End(&rec.clone().lifecycle().end())]),
        };
        match written {
            Ok(p) => paths.extend(p),
            Err(e) => {
                unwritten.push((*i, e.to_string()));
                continue;
            }
        }
        let mut b = match t {
            Todo::Revoke(Revoke::Disable, _) => {
                let mut b = rec.trailer(TrailerAction::Revoke);
                b.reason =
                    Some("old key disabled; deleted once the grace period has passed again".into());
                b
            }
            Todo::Revoke(Revoke::Delete, _) => rec.trailer(if was_disabled {
                TrailerAction::DeleteDisabled
            } else {
                TrailerAction::Revoke
            }),
            Todo::Keep(users) => {
                let mut b = rec.trailer(TrailerAction::RevokeSkipped);
                b.reason = Some(format!("still used by {}", users.join(", ")));
                b
            }
        };
        if !matches!(t, Todo::Keep(_)) {
            b.published = rec.published_trailers(&rec.clusters());
        }
        blocks.push(b);
    }
    let done: Vec<(usize, Todo)> = done
        .into_iter()
        .filter(|(i, _)| !unwritten.iter().any(|(u, _)| u == i))
        .collect();
    for (i, why) in unwritten {
        let rec = &records[i];
        said.fail(
            Phase::Revoke,
            &rec.source,
            &rec.identity,
            None,
            EngineError::Batch(format!(
                "old key revoked, but its record could not be updated ({why}); the next run records it"
            )),
        );
    }
    if done.is_empty() {
        return;
    }
    let message = trailers::message(&subject(records, &done), &blocks);
    if let Err(e) = ctx.store().commit_written(&paths, &message) {
        // The keys are revoked; the records stay and the next run revokes again
        // (idempotent) and retries the commit.
        let msg = format!(
            "old key revoked, but recording it on main failed ({e}); the next run records it"
        );
        for (i, _) in &done {
            let rec = &records[*i];
            said.fail(
                Phase::Revoke,
                &rec.source,
                &rec.identity,
                None,
                EngineError::Batch(msg.clone()),
            );
        }
        return;
    }
    for (i, t) in done {
        let rec = &records[i];
        let (action, detail) = match &t {
            Todo::Revoke(Revoke::Disable, blind) => (
                Action::Revoke,
                format!(
                    "disabled old key {}; deleted after {}{}",
                    rec.old_key_id,
                    ts(now + ctx.opts.revoke_after),
                    note(blind.as_deref())
                ),
            ),
            Todo::Revoke(Revoke::Delete, _) if gone.contains(&i) => (
                Action::Revoke,
                format!(
                    "old key {} was already gone at the source (deleted outside this run); nothing to delete",
                    rec.old_key_id
                ),
            ),
            Todo::Revoke(Revoke::Delete, blind) => (
                Action::Revoke,
                format!(
                    "deleted old key {}{}",
                    rec.old_key_id,
                    note(blind.as_deref())
                ),
            ),
            Todo::Keep(users) => (
                Action::Skip,
                format!("old key kept: still used by {}", users.join(", ")),
            ),
        };
        let mut s = record_step(rec, action, rec.clusters(), detail);
        s.done = true;
        said.step(s);
    }
}

#[cfg(test)]
#[path = "revoke_tests.rs"]
mod tests;
