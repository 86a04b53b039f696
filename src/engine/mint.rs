//! Mint → verify for each claimed credential, and the one undo: a key this run minted
//! but cannot stage is deleted again, recorded in the audit log, and its claim released.

use super::context::Ctx;
use super::held::{self, keep_fresh};
use super::outcome::Said;
use super::pipeline::{Claimed, MintFailure, MintOutcome};
use super::report::{Action, EngineError, Phase, Step};
use crate::journal::{TrailerAction, TrailerBlock};
use crate::provider::{Minted, Provider, Revoke, Target};

/// What [`undo`] did: its step, the audit block when the key is gone, the error if not.
pub(crate) type Undone = (Step, Option<TrailerBlock>, Option<EngineError>);

/// Deletes this run's own new `key` again because it could not be staged. Returns the
/// step (and, when the key is gone, its audit block); a failure leaves the key to the
/// claim's recovery by a later run.
pub(crate) async fn undo(
    provider: &dyn Provider,
    target: &Target,
    identity: &str,
    run: &str,
    key: &str,
    why: &str,
) -> Undone {
    let mut s = Step::new(
        Action::Undo,
        &target.source,
        identity,
        format!("deleted this run's new key again: {why}"),
    );
    s.new_key_id = Some(key.to_owned());
    match provider
        .revoke(
            target,
            &crate::provider::KeyId(key.to_owned()),
            Revoke::Delete,
        )
        .await
    {
        Ok(_) => {
            s.done = true;
            let mut b = TrailerBlock::new(TrailerAction::Undo);
            b.run = Some(run.to_owned());
            b.source = Some(target.source.clone());
            b.identity = Some(identity.to_owned());
            b.new_key = Some(key.to_owned());
            b.reason = Some(why.to_owned());
            (s, Some(b), None)
        }
        Err(e) => {
            s.detail = format!(
                "could not delete this run's new key {key} ({e}); its claim stays, and the next run deletes it after the lease"
            );
            (s, None, Some(e.into()))
        }
    }
}

/// Why [`mint_verified`] has no key to give.
pub(crate) enum Minting {
    /// Nothing was minted.
    Failed(EngineError),
    /// A key was minted and does not work: it exists, and must be undone.
    Unverified(Minted, EngineError),
}

/// Mints one key and verifies it works: the one mint step of a rotation's stage and of
/// `create`. A key that does not verify comes back with the error, for the undo.
pub(crate) async fn mint_verified(
    provider: &dyn Provider,
    target: &Target,
) -> Result<Minted, Minting> {
    crate::failpoint("before-mint");
    let m = provider
        .mint(target)
        .await
        .map_err(|e| Minting::Failed(e.into()))?;
    crate::failpoint("after-mint");
    match provider.verify(&m).await {
        Ok(()) => Ok(m),
        Err(source) => {
            let key = m.key_id.0.clone();
            Err(Minting::Unverified(m, EngineError::Verify { key, source }))
        }
    }
}

/// Mints and verifies one key per group of a claimed credential.
pub(super) async fn mint_one<'a>(
    ctx: &Ctx<'_>,
    mut claimed: Claimed<'a>,
) -> Result<MintOutcome<'a>, MintFailure<'a>> {
    let stop = |claimed, minted, error| MintFailure {
        done: MintOutcome { claimed, minted },
        phase: Phase::Mint,
        error,
    };
    let target = claimed.cred.target();
    let mut minted = Vec::new();
    for i in 0..claimed.cred.groups.len() {
        if ctx.cancelled() {
            break;
        }
        if let Err(e) = keep_fresh(ctx, &mut claimed.held) {
            return Err(stop(claimed, minted, e));
        }
        let m = match mint_verified(claimed.provider.as_ref(), &target).await {
            Ok(m) => m,
            Err(Minting::Failed(e)) => return Err(stop(claimed, minted, e)),
            Err(Minting::Unverified(m, e)) => {
                minted.push((i, m));
                return Err(stop(claimed, minted, e));
            }
        };
        let mut s = claimed
            .cred
            .step(Action::Minted, "new key minted and verified");
        s.new_key_id = Some(m.key_id.0.clone());
        s.done = true;
        ctx.progress(&s);
        minted.push((i, m));
    }
    Ok(MintOutcome { claimed, minted })
}

/// Undoes every minted key of `outcomes` and releases their claims. Failures to say why
/// are the caller's to report.
pub(super) async fn abort(
    ctx: &mut Ctx<'_>,
    said: &mut Said,
    outcomes: Vec<MintOutcome<'_>>,
    why: &str,
) {
    let run = ctx.run.0.clone();
    let undone: Vec<Vec<Undone>> = super::bounded(ctx.opts.concurrency, &outcomes, |o| {
        let run = run.clone();
        async move {
            let target = o.claimed.cred.target();
            let mut v = Vec::new();
            for (_, m) in &o.minted {
                v.push(
                    undo(
                        o.claimed.provider.as_ref(),
                        &target,
                        &o.claimed.cred.identity,
                        &run,
                        &m.key_id.0,
                        why,
                    )
                    .await,
                );
            }
            v
        }
    })
    .await;
    let mut events = Vec::new();
    let mut releasable = Vec::new();
    for (results, o) in undone.into_iter().zip(&outcomes) {
        let mut all_gone = true;
        for (step, block, err) in results {
            said.step(step);
            events.extend(block);
            if let Some(e) = err {
                all_gone = false;
                let c = &o.claimed.cred;
                said.fail(Phase::Mint, &c.source, &c.identity, None, e);
            }
        }
        // A key that could not be deleted keeps its claim: the next run cleans it up.
        if all_gone {
            releasable.push(o.claimed.held.clone());
        }
    }
    ctx.record_events(
        said,
        "secret-manager: deleted new keys that could not be staged",
        events,
    );
    held::release(ctx, &releasable);
}

/// Reports `error` for the credential of `o`, then undoes it.
pub(super) async fn fail_and_abort(
    ctx: &mut Ctx<'_>,
    said: &mut Said,
    o: MintOutcome<'_>,
    phase: Phase,
    error: EngineError,
) {
    let why = error.to_string();
    let c = &o.claimed.cred;
    said.fail(phase, &c.source, &c.identity, None, error);
    abort(ctx, said, vec![o], &why).await;
}
