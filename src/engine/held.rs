//! This run's claims (the format is in [`crate::journal::claim`]): taken before the run
//! mints for a credential or advances its record, kept fresh while it works, released when
//! the run is done with it. A credential another run holds is `busy`.

use super::context::Ctx;
use super::outcome::Outcome;
use super::report::{Action, EngineError, EngineResult, Phase, Step};
use crate::journal::table::{ClaimTable, Held, Taken};
use crate::journal::{Claim, RotationRecord, credential_id};
use chrono::Utc;
use std::collections::BTreeMap;

/// What taking one claim gave.
pub(crate) enum Got {
    /// The claim is ours.
    Held(Held),
    /// Another run has it.
    Busy,
    /// The remote refused the ref, or the push failed.
    Failed(EngineError),
}

/// Pushes every claim to `table` in one push, each only if its credential has none yet:
/// the one way a run — a rotation's stage, a run advancing records, `create` — takes
/// claims.
pub(crate) fn take(table: &ClaimTable, claims: Vec<Claim>) -> Vec<Got> {
    let n = claims.len();
    let refnames: Vec<String> = claims.iter().map(|c| c.refname(table.prefix())).collect();
    match table.create(claims) {
        Ok(outcomes) => outcomes
            .into_iter()
            .zip(refnames)
            .map(|(t, refname)| match t {
                Taken::Won(h) => Got::Held(*h),
                Taken::Lost => Got::Busy,
                Taken::Refused(reason) => Got::Failed(EngineError::ClaimRefused {
                    refname,
                    prefix: table.prefix().to_owned(),
                    reason,
                }),
            })
            .collect(),
        Err(e) => {
            let msg = format!("pushing the claims failed: {e}");
            let mut first = Some(EngineError::Git(e));
            (0..n)
                .map(|_| {
                    Got::Failed(
                        first
                            .take()
                            .unwrap_or_else(|| EngineError::Batch(msg.clone())),
                    )
                })
                .collect()
        }
    }
}

/// Renews `held` when less than half its lease is left (by the run's clock or the wall
/// clock); `Err` when another run took it over meanwhile.
pub(super) fn keep_fresh(ctx: &Ctx<'_>, held: &mut Held) -> EngineResult<()> {
    let now = ctx.now();
    let wall = Utc::now();
    let half = ctx.lease / 2;
    let minting = held.claim.mints;
    if held.claim.expires_at - now > half && (!minting || held.claim.mints_before - wall > half) {
        return Ok(());
    }
    let mut c = held.claim.clone();
    c.expires_at = now + ctx.lease;
    if minting {
        c.mints_before = wall + ctx.lease;
    }
    match ctx.claims.replace(&held.refname, &held.commit, c)? {
        Taken::Won(h) => {
            *held = *h;
            Ok(())
        }
        Taken::Lost => Err(EngineError::ClaimLost {
            refname: held.refname.clone(),
        }),
        Taken::Refused(reason) => Err(EngineError::ClaimRefused {
            refname: held.refname.clone(),
            prefix: ctx.claims.prefix().to_owned(),
            reason,
        }),
    }
}

/// Deletes claims this run holds; one that cannot be deleted runs out with its lease.
pub(super) fn release(ctx: &mut Ctx<'_>, held: &[Held]) {
    ctx.held
        .retain(|h| !held.iter().any(|r| r.refname == h.refname));
    match ctx.claims.release(held) {
        Ok(left) => {
            for (refname, why) in left {
                tracing::warn!(%refname, %why, "claim not released; it runs out with its lease");
            }
        }
        Err(e) => tracing::warn!(error = %e, "claims not released; they run out with their lease"),
    }
}

/// Releases every claim the run still holds (at its end).
pub(super) fn release_all(ctx: &mut Ctx<'_>) {
    let held = std::mem::take(&mut ctx.held);
    release(ctx, &held);
}

/// Claims the credentials of `records` (one claim each, in one push) so that no two runs
/// publish or revoke the same rotation at once. Returns the records this run may advance;
/// the others are reported `busy`. A dry run claims nothing.
pub(super) fn for_records(
    ctx: &mut Ctx<'_>,
    records: Vec<RotationRecord>,
) -> Outcome<Vec<RotationRecord>> {
    let mut said = ctx.said();
    if records.is_empty() || ctx.opts.dry_run {
        return said.with(records);
    }
    // Per credential: None = ours to advance; Some(why) = not this run's.
    let mut status: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut wanted: Vec<(String, Claim)> = Vec::new();
    for r in &records {
        let id = credential_id(&r.source, &r.identity);
        if status.contains_key(&id) || wanted.iter().any(|(w, _)| *w == id) {
            continue;
        }
        if ctx
            .held
            .iter()
            .any(|h| h.refname.ends_with(&format!("/{id}")))
        {
            status.insert(id, None);
            continue;
        }
        if let Some(who) = crate::journal::table::claimed_by(&ctx.listed_claims, &id) {
            status.insert(id, Some(format!("another run is working on it: {who}")));
            continue;
        }
        let c = Claim::advance(
            &ctx.run,
            &r.source,
            &r.identity,
            &r.params,
            ctx.now(),
            ctx.lease,
        );
        wanted.push((id, c));
    }
    let ids: Vec<String> = wanted.iter().map(|(id, _)| id.clone()).collect();
    let got = take(&ctx.claims, wanted.into_iter().map(|(_, c)| c).collect());
    for (id, g) in ids.into_iter().zip(got) {
        let s = match g {
            Got::Held(h) => {
                ctx.held.push(h);
                None
            }
            Got::Busy => Some("another run claimed it at the same moment".to_owned()),
            Got::Failed(e) => {
                let r = records
                    .iter()
                    .find(|r| credential_id(&r.source, &r.identity) == id)
                    .expect("wanted comes from records");
                said.fail(Phase::Publish, &r.source, &r.identity, None, e);
                Some(String::new())
            }
        };
        status.insert(id, s);
    }
    let mut out = Vec::new();
    for r in records {
        match status.get(&credential_id(&r.source, &r.identity)) {
            Some(None) => out.push(r),
            Some(Some(why)) if !why.is_empty() => {
                let mut s = Step::new(Action::Busy, &r.source, &r.identity, why.clone());
                s.old_key_id = Some(r.old_key_id.clone());
                s.clusters = r.clusters();
                s.files = r.files();
                said.step(s);
            }
            _ => {}
        }
    }
    said.with(out)
}
