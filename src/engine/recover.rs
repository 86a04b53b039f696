//! Recovery: claims whose lease ran out belong to runs that died. For each, this run
//! takes the claim over (by lease, so two recovering runs never both act), deletes the
//! keys that claim's run minted and never committed — and no other key — records that in
//! the audit log, and releases the claim.

use super::context::Ctx;
use super::held;
use super::outcome::{Outcome, Said};
use super::plan::index;
use super::report::{Action, EngineError, Phase, Step};
use crate::journal::table::{Held, Taken};
use crate::journal::{Claim, RotationRecord, TrailerAction, TrailerBlock, record::ts};
use crate::provider::{KeyInfo, Provider, Revoke, Target};
use std::collections::BTreeSet;

/// Every key of (source, identity) that main references: manifests and records.
fn referenced(ctx: &Ctx<'_>, c: &Claim, records: &[RotationRecord]) -> BTreeSet<String> {
    let scan = ctx.scan();
    let mut keys: BTreeSet<String> = index(&scan.secrets, ctx.now())
        .into_iter()
        .filter(|i| i.source == c.source && i.identity == c.identity)
        .flat_map(|i| i.target.referenced.into_iter().map(|k| k.0))
        .collect();
    for r in records
        .iter()
        .filter(|r| r.source == c.source && r.identity == c.identity)
    {
        keys.insert(r.old_key_id.clone());
        if !r.new_key_id.is_empty() {
            keys.insert(r.new_key_id.clone());
        }
    }
    keys
}

/// The longest mint window a run's claim can legitimately have: a run renews its claims
/// while it works, so a long run's window spans several leases, but not more than this.
const MAX_WINDOW_LEASES: i32 = 6;

/// Whether a dead claim may direct a clean-up. Claims live under `refs/secret-manager/`,
/// outside branch protection: whoever can push a ref can write one. So the claim is only
/// believed for what main confirms: the identity it names must be a credential on main
/// with exactly those parameters (never another user or account), and its mint window
/// must be one a run could have held. Otherwise nothing is deleted.
fn credible(ctx: &Ctx<'_>, c: &Claim) -> Result<(), Unbelieved> {
    let window = c.mints_before - c.mints_after;
    if window < chrono::Duration::zero() || window > ctx.lease * MAX_WINDOW_LEASES {
        return Err(Unbelieved::Window {
            from: ts(c.mints_after),
            to: ts(c.mints_before),
        });
    }
    let scan = ctx.scan();
    let on_main = index(&scan.secrets, ctx.now())
        .into_iter()
        .find(|i| i.source == c.source && i.identity == c.identity);
    match on_main {
        Some(i) if i.target.params == c.params => Ok(()),
        Some(_) => Err(Unbelieved::OtherParams),
        None => Err(Unbelieved::NotOnMain),
    }
}

/// Why a dead claim is not believed (nothing is deleted for it).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum Unbelieved {
    #[error("its mint window ({from} to {to}) is longer than any run holds a claim")]
    Window { from: String, to: String },
    #[error("its identity parameters differ from the credential's on main")]
    OtherParams,
    #[error("main has no credential with its identity")]
    NotOnMain,
}

/// Cleans up after every expired claim. Advances nothing: the credentials are free again
/// afterwards, and staging picks them up like any other.
pub(super) async fn expired_claims(ctx: &mut Ctx<'_>, records: &[RotationRecord]) -> Outcome<()> {
    let mut said = ctx.said();
    let now = ctx.now();
    let expired: Vec<(String, crate::gitops::git::Oid, Claim)> = ctx
        .listed_claims
        .iter()
        .filter_map(|l| {
            let c = l.claim.as_ref().ok()?;
            // A run never holds a claim more than one lease ahead of its clock; one that
            // says otherwise was not written by a run, and must not block the credential.
            let implausible = c.expires_at > now + ctx.lease + chrono::Duration::minutes(5);
            (c.expired(now) || implausible)
                .then(|| (l.refname.clone(), l.commit.clone(), c.clone()))
        })
        .collect();
    let mut events = Vec::new();
    for (refname, commit, dead) in expired {
        if ctx.cancelled() {
            break;
        }
        if let Some(blocks) = recover_one(ctx, &mut said, records, &refname, &commit, dead).await {
            events.extend(blocks);
        }
    }
    ctx.record_events(
        &mut said,
        "secret-manager: cleaned up after interrupted runs",
        events,
    );
    said
}

async fn recover_one(
    ctx: &mut Ctx<'_>,
    said: &mut Said,
    records: &[RotationRecord],
    refname: &str,
    commit: &crate::gitops::git::Oid,
    dead: Claim,
) -> Option<Vec<TrailerBlock>> {
    let (source, identity) = (dead.source.clone(), dead.identity.clone());
    let landed = records.iter().any(|r| {
        r.source == source && r.identity == identity && r.run.as_ref() == Some(&dead.run.0)
    });
    let target = Target {
        source: source.clone(),
        params: dead.params.clone(),
        current_key: None,
        referenced: Vec::new(),
    };
    let refs = referenced(ctx, &dead, records);
    let credible = credible(ctx, &dead);
    if let Err(why) = &credible {
        let detail = format!(
            "the claim of run {} is not believed ({why}); no key is deleted for it",
            crate::text::escape(&dead.run.0)
        );
        let mut s = Step::new(Action::Wait, &source, &identity, detail);
        s.waiting_on = Some(super::report::WaitingOn::Claim);
        said.step(s);
    }
    let provider = match ctx.providers.get(&source).await {
        Ok(p) => p,
        Err(e) => {
            said.fail(Phase::Preflight, &source, &identity, None, e.into());
            return None;
        }
    };
    if ctx.opts.dry_run {
        if credible.is_err() {
            return None;
        }
        if let Ok(keys) = provider.keys(&target).await {
            for k in keys.iter().filter(|k| dead.owns(k, &refs)) {
                let detail = format!("delete a key run {} minted and never committed", dead.run);
                let mut s = Step::new(Action::Cleanup, &source, &identity, detail);
                s.old_key_id = Some(k.id.0.clone());
                said.step(s);
            }
        }
        return None;
    }
    let held = take_over(ctx, said, refname, commit, &dead)?;
    let mut blocks = Vec::new();
    if !landed {
        // A claim that mints nothing (a run advancing a record) leaves nothing to clean.
        let keys = if dead.mints && credible.is_ok() {
            match provider.keys(&target).await {
                Ok(k) => k,
                Err(e) => {
                    // Keep the claim (with the dead run's window): the next run tries again.
                    said.fail(Phase::Preflight, &source, &identity, None, e.into());
                    return None;
                }
            }
        } else {
            Vec::new()
        };
        let orphans: Vec<KeyInfo> = keys.into_iter().filter(|k| dead.owns(k, &refs)).collect();
        let all_gone = clean(
            ctx,
            said,
            provider.as_ref(),
            &target,
            &dead,
            &orphans,
            &mut blocks,
        )
        .await;
        if !all_gone {
            // Keep the claim: the next run deletes what is left, under the same window.
            return Some(blocks);
        }
        blocks.push(abandon_block(ctx, &dead));
        let detail = format!("released the claim of run {}, which died", dead.run);
        let mut s = Step::new(Action::Abandon, &source, &identity, detail);
        s.done = true;
        said.step(s);
    }
    held::release(ctx, &[held]);
    // The credential is free again: staging may claim it in this same run.
    ctx.listed_claims.retain(|l| l.refname != refname);
    Some(blocks)
}

/// Takes the dead run's claim over (by lease), keeping its window: from here on no other
/// run acts on the credential. `None` when another run was first or the remote refused.
fn take_over(
    ctx: &Ctx<'_>,
    said: &mut Said,
    refname: &str,
    commit: &crate::gitops::git::Oid,
    dead: &Claim,
) -> Option<Held> {
    let mut mine = dead.clone();
    mine.run = ctx.run.clone();
    mine.claimed_at = ctx.now();
    mine.expires_at = ctx.now() + ctx.lease;
    mine.took_over = Some(dead.run.clone());
    let (source, identity) = (&dead.source, &dead.identity);
    match ctx.claims.replace(refname, commit, mine) {
        Ok(Taken::Won(h)) => Some(*h),
        Ok(Taken::Lost) => {
            let detail = format!("another run is cleaning up after run {}", dead.run);
            let s = Step::new(Action::Busy, source, identity, detail);
            said.step(s);
            None
        }
        Ok(Taken::Refused(reason)) => {
            let e = EngineError::ClaimRefused {
                refname: refname.to_owned(),
                prefix: ctx.claims.prefix().to_owned(),
                reason,
            };
            said.fail(Phase::Publish, source, identity, None, e);
            None
        }
        Err(e) => {
            said.fail(Phase::Publish, source, identity, None, e.into());
            None
        }
    }
}

/// Deletes `orphans` (the dead run's keys); true when every one is gone.
async fn clean(
    ctx: &Ctx<'_>,
    said: &mut Said,
    provider: &dyn Provider,
    target: &Target,
    dead: &Claim,
    orphans: &[KeyInfo],
    blocks: &mut Vec<TrailerBlock>,
) -> bool {
    let (source, identity) = (&dead.source, &dead.identity);
    let mut all_gone = true;
    for k in orphans {
        let created = k.created.map(ts).unwrap_or_default();
        let detail = format!(
            "deleted key created {created} by run {}, which died before committing it",
            dead.run
        );
        let mut s = Step::new(Action::Cleanup, source, identity, detail);
        s.old_key_id = Some(k.id.0.clone());
        match provider.revoke(target, &k.id, Revoke::Delete).await {
            Ok(_) => {
                s.done = true;
                let mut b = TrailerBlock::new(TrailerAction::Cleanup);
                b.run = Some(dead.run.0.clone());
                b.source = Some(source.clone());
                b.identity = Some(identity.clone());
                b.old_key = Some(k.id.0.clone());
                b.reason = Some(format!(
                    "minted under the claim of run {} (created {created}), never committed; deleted by run {}",
                    dead.run, ctx.run
                ));
                blocks.push(b);
            }
            Err(e) => {
                all_gone = false;
                said.fail(Phase::Revoke, source, identity, None, e.into());
            }
        }
        said.step(s);
    }
    all_gone
}

/// The audit block of releasing a dead run's claim.
fn abandon_block(ctx: &Ctx<'_>, dead: &Claim) -> TrailerBlock {
    let mut b = TrailerBlock::new(TrailerAction::Abandon);
    b.run = Some(dead.run.0.clone());
    b.claimed = Some(ts(dead.claimed_at));
    b.source = Some(dead.source.clone());
    b.identity = Some(dead.identity.clone());
    b.reason = Some(format!(
        "{}; lease ran out at {}; released by run {}",
        dead.describe(),
        ts(dead.expires_at),
        ctx.run
    ));
    b
}
