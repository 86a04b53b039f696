//! Stage: claim → mint → verify → seal → one commit on main. Returns the records it
//! committed; publishing them is the next phase's job.
//!
//! Order matters for safety. Nothing with a side effect happens before every check
//! without one has passed (provider preflight, certificates, remotes, key slots). The
//! claim is on the remote before the first mint, so a run that dies from here on leaves
//! enough behind for the next run to clean up. A key that is minted but cannot be staged
//! is deleted again ([`undo`]) — the one place that happens.

use super::claims::{self, Got, keep_fresh};
use super::context::Ctx;
use super::plan::{self, Credential};
use super::report::{Action, EngineError, Phase, Step};
use super::seal;
use crate::gitops::claims::Held;
use crate::journal::record::ts;
use crate::journal::{Claim, RotationRecord, TrailerAction, TrailerBlock, trailers};
use crate::provider::{KeyInfo, Minted, Provider, Revoke, Target};
use futures::StreamExt;
use std::collections::BTreeSet;
use std::sync::Arc;

/// A credential that passed every check without side effects.
struct Ready<'a> {
    cred: Credential<'a>,
    provider: Arc<dyn Provider>,
}

/// A credential this run holds a claim on.
struct Claimed<'a> {
    cred: Credential<'a>,
    provider: Arc<dyn Provider>,
    held: Held,
}

/// What minting did for one claimed credential.
struct MintOutcome<'a> {
    claimed: Claimed<'a>,
    /// (group index, new key), verified.
    minted: Vec<(usize, Minted)>,
    /// Why it stopped, if it did (the keys in `minted` must then be undone).
    error: Option<(Phase, EngineError)>,
}

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
        Ok(()) => {
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

/// Describes why every key of a full identity stays, for the key-limit error.
fn key_limit(cred: &Credential<'_>, keys: &[KeyInfo], limit: u32) -> EngineError {
    let mut foreign = Vec::new();
    let described: Vec<String> = keys
        .iter()
        .map(|k| {
            let holders: Vec<String> = cred
                .groups
                .iter()
                .flat_map(|g| &g.manifests)
                .filter(|f| f.managed.as_ref().and_then(|m| m.key_id.as_deref()) == Some(&k.id.0))
                .map(|f| format!("{}:{}", f.file.display(), f.doc.line))
                .collect();
            if cred.referenced.contains(&k.id.0) {
                if holders.is_empty() {
                    format!("{} (held by another manifest)", k.id)
                } else {
                    format!("{} (held by {})", k.id, holders.join(", "))
                }
            } else {
                foreign.push(k.id.0.clone());
                format!(
                    "{} (created {}, referenced by no manifest: not minted by secret-manager)",
                    k.id,
                    k.created
                        .map(ts)
                        .unwrap_or_else(|| "at an unknown time".into())
                )
            }
        })
        .collect();
    let hint = if foreign.is_empty() {
        "every key is in use; finish the other rotation of this identity, or give the manifests that hold different keys the same one".into()
    } else {
        format!(
            "if {} is unused (`secret-manager keys` shows its last use), delete or deactivate it yourself, then run again",
            foreign.join(" and ")
        )
    };
    EngineError::KeyLimit {
        identity: cred.identity.clone(),
        count: keys.len(),
        limit,
        keys: described.join("; "),
        hint,
    }
}

/// The plan line of a credential.
fn plan_step(ctx: &Ctx<'_>, cred: &Credential<'_>) -> Step {
    let expanded = cred.groups.iter().any(|g| g.expanded);
    let n: usize = cred.groups.iter().map(|g| g.manifests.len()).sum();
    cred.step(
        Action::Stage,
        format!(
            "mint a new key, seal it into {n} manifest(s){}, publish to {}, then revoke the old key after {}",
            if expanded {
                " (expanded: every manifest holding this key)"
            } else {
                ""
            },
            cred.clusters().join(", "),
            humantime::format_duration(ctx.opts.revoke_after.to_std().unwrap_or_default())
        ),
    )
}

/// Checks without side effects: provider, remotes, certificates, preflight.
async fn preflight<'a>(ctx: &mut Ctx<'_>, creds: Vec<Credential<'a>>) -> Vec<Ready<'a>> {
    let mut checked = Vec::new();
    'creds: for cred in creds {
        let provider = match ctx.providers.get(&cred.source).await {
            Ok(p) => p,
            Err(e) => {
                ctx.fail(
                    Phase::Preflight,
                    &cred.source,
                    &cred.identity,
                    None,
                    e.into(),
                );
                continue;
            }
        };
        for c in cred.clusters() {
            let remote = ctx
                .repo
                .inventory
                .get(&c)
                .map(|c| c.remote.clone())
                .unwrap_or_default();
            if let Some(reason) = ctx.unavailable.get(&remote).cloned() {
                let e = EngineError::Publish(crate::gitops::PublishError::RemoteUnavailable {
                    cluster: c.clone(),
                    remote,
                    reason,
                });
                ctx.fail(Phase::Publish, &cred.source, &cred.identity, Some(&c), e);
                continue 'creds;
            }
            if let Err(e) = ctx.cert(&c).await {
                ctx.fail(Phase::Preflight, &cred.source, &cred.identity, Some(&c), e);
                continue 'creds;
            }
        }
        checked.push(Ready { cred, provider });
    }
    let results: Vec<(Ready<'a>, Result<(), EngineError>)> = futures::stream::iter(checked)
        .map(|r| async move {
            let res = r
                .provider
                .preflight(&r.cred.target())
                .await
                .map_err(EngineError::from);
            (r, res)
        })
        .buffered(ctx.opts.concurrency.max(1))
        .collect()
        .await;
    let mut ready = Vec::new();
    for (r, res) in results {
        match res {
            Ok(()) => ready.push(r),
            Err(e) => ctx.fail(Phase::Preflight, &r.cred.source, &r.cred.identity, None, e),
        }
    }
    ready
}

/// Lists each identity's keys (read-only) and stops those that would exceed the key
/// limit; returns the rest with their keys (the claim's `keysBefore`).
async fn slots<'a>(ctx: &mut Ctx<'_>, ready: Vec<Ready<'a>>) -> Vec<(Ready<'a>, Vec<KeyInfo>)> {
    let listed: Vec<(Ready<'a>, Result<Vec<KeyInfo>, EngineError>)> = futures::stream::iter(ready)
        .map(|r| async move {
            let keys = r
                .provider
                .keys(&r.cred.target())
                .await
                .map_err(EngineError::from);
            (r, keys)
        })
        .buffered(ctx.opts.concurrency.max(1))
        .collect()
        .await;
    let mut out = Vec::new();
    for (r, keys) in listed {
        match keys {
            Ok(k) => out.push((r, k)),
            Err(e) => ctx.fail(Phase::Preflight, &r.cred.source, &r.cred.identity, None, e),
        }
    }
    out
}

/// Whether minting a key per group would exceed the source's limit.
fn over_limit(r: &Ready<'_>, keys: &[KeyInfo]) -> Option<u32> {
    r.provider
        .capabilities()
        .max_keys_per_identity
        .filter(|&limit| keys.len() + r.cred.groups.len() > limit as usize)
}

/// The key-slot check, after the claim: an identity that looked full may only have been
/// full because another run was minting for it (then the claim was lost: busy), so a
/// full identity whose claim this run won is listed again before it is reported.
async fn check_slots<'a>(
    ctx: &mut Ctx<'_>,
    claimed: Vec<Claimed<'a>>,
    listed: &[(String, Vec<KeyInfo>)],
) -> Vec<Claimed<'a>> {
    let mut out = Vec::new();
    let mut release = Vec::new();
    for c in claimed {
        let id = c.cred.id();
        let keys = listed
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, k)| k.clone())
            .unwrap_or_default();
        let ready = Ready {
            cred: c.cred.clone(),
            provider: c.provider.clone(),
        };
        if over_limit(&ready, &keys).is_none() {
            out.push(c);
            continue;
        }
        let fresh = match c.provider.keys(&c.cred.target()).await {
            Ok(k) => k,
            Err(e) => {
                ctx.fail(
                    Phase::Preflight,
                    &c.cred.source,
                    &c.cred.identity,
                    None,
                    e.into(),
                );
                release.push(c.held);
                continue;
            }
        };
        match over_limit(&ready, &fresh) {
            None => out.push(c),
            Some(limit) => {
                let e = key_limit(&c.cred, &fresh, limit);
                ctx.fail(Phase::Mint, &c.cred.source, &c.cred.identity, None, e);
                release.push(c.held);
            }
        }
    }
    claims::release(ctx, &release);
    out
}

/// Claims every credential in one push. Lost races are `busy`.
fn claim_all<'a>(ctx: &mut Ctx<'_>, ready: Vec<(Ready<'a>, Vec<KeyInfo>)>) -> Vec<Claimed<'a>> {
    let now = ctx.now();
    let claims: Vec<Claim> = ready
        .iter()
        .map(|(r, keys)| {
            Claim::new(
                &ctx.run,
                &r.cred.source,
                &r.cred.identity,
                &r.cred.params,
                r.cred.old_keys(),
                keys.iter().map(|k| k.id.0.clone()).collect(),
                now,
                ctx.lease,
            )
        })
        .collect();
    let got = claims::take(ctx, claims);
    let mut out = Vec::new();
    for ((r, _), g) in ready.into_iter().zip(got) {
        match g {
            Got::Held(held) => out.push(Claimed {
                cred: r.cred,
                provider: r.provider,
                held,
            }),
            Got::Busy => {
                let s = r.cred.step(
                    Action::Busy,
                    "another run claimed this credential at the same moment",
                );
                ctx.step(s);
            }
            Got::Failed(e) => ctx.fail(Phase::Publish, &r.cred.source, &r.cred.identity, None, e),
        }
    }
    out
}

/// Mints and verifies one key per group of a claimed credential.
async fn mint_one<'a>(ctx: &Ctx<'_>, mut claimed: Claimed<'a>) -> MintOutcome<'a> {
    let target = claimed.cred.target();
    let mut minted = Vec::new();
    for i in 0..claimed.cred.groups.len() {
        if ctx.cancelled() {
            break;
        }
        if let Err(e) = keep_fresh(ctx, &mut claimed.held) {
            return MintOutcome {
                claimed,
                minted,
                error: Some((Phase::Mint, e)),
            };
        }
        crate::failpoint("before-mint");
        let m = match claimed.provider.mint(&target).await {
            Ok(m) => m,
            Err(e) => {
                return MintOutcome {
                    claimed,
                    minted,
                    error: Some((Phase::Mint, e.into())),
                };
            }
        };
        crate::failpoint("after-mint");
        if let Err(e) = claimed.provider.verify(&m).await {
            let key = m.key_id.0.clone();
            minted.push((i, m));
            return MintOutcome {
                claimed,
                minted,
                error: Some((Phase::Mint, EngineError::Verify { key, source: e })),
            };
        }
        let mut s = claimed
            .cred
            .step(Action::Minted, "new key minted and verified");
        s.new_key_id = Some(m.key_id.0.clone());
        s.done = true;
        ctx.progress(&s);
        minted.push((i, m));
    }
    MintOutcome {
        claimed,
        minted,
        error: None,
    }
}

/// Undoes every minted key of `outcomes` and releases their claims. Failures to say why
/// are the caller's to report.
async fn abort(ctx: &mut Ctx<'_>, outcomes: Vec<MintOutcome<'_>>, why: &str) {
    let run = ctx.run.0.clone();
    let undone: Vec<Vec<Undone>> = futures::stream::iter(&outcomes)
        .map(|o| {
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
        .buffered(ctx.opts.concurrency.max(1))
        .collect()
        .await;
    let mut events = Vec::new();
    let mut releasable = Vec::new();
    for (results, o) in undone.into_iter().zip(&outcomes) {
        let mut all_gone = true;
        for (step, block, err) in results {
            ctx.step(step);
            events.extend(block);
            if let Some(e) = err {
                all_gone = false;
                let c = &o.claimed.cred;
                ctx.fail(Phase::Mint, &c.source, &c.identity, None, e);
            }
        }
        // A key that could not be deleted keeps its claim: the next run cleans it up.
        if all_gone {
            releasable.push(o.claimed.held.clone());
        }
    }
    ctx.record_events(
        "secret-manager: deleted new keys that could not be staged",
        events,
    );
    claims::release(ctx, &releasable);
}

/// Reports `error` for the credential of `o`, then undoes it.
async fn fail_and_abort(ctx: &mut Ctx<'_>, o: MintOutcome<'_>, phase: Phase, error: EngineError) {
    let why = error.to_string();
    let c = &o.claimed.cred;
    ctx.fail(phase, &c.source, &c.identity, None, error);
    abort(ctx, vec![o], &why).await;
}

/// Stage for every selected credential without a rotation in flight. Returns the
/// records committed to main (empty in a dry run).
pub(super) async fn stage(ctx: &mut Ctx<'_>, records: &[RotationRecord]) -> Vec<RotationRecord> {
    let scan = ctx.scan();
    let creds = plan::credentials(ctx, &scan.secrets, records);
    let ready = preflight(ctx, creds).await;
    if ctx.opts.dry_run {
        for r in &ready {
            let s = plan_step(ctx, &r.cred);
            ctx.step(s);
        }
        return Vec::new();
    }
    if ready.is_empty() {
        return Vec::new();
    }
    if ctx.cancelled() {
        for r in ready {
            let s = r
                .cred
                .step(Action::Interrupted, "not started: the run was interrupted");
            ctx.step(s);
        }
        return Vec::new();
    }
    let ready = slots(ctx, ready).await;
    let listed: Vec<(String, Vec<KeyInfo>)> = ready
        .iter()
        .map(|(r, k)| (r.cred.id(), k.clone()))
        .collect();
    let claimed = claim_all(ctx, ready);
    let claimed = check_slots(ctx, claimed, &listed).await;
    if claimed.is_empty() {
        return Vec::new();
    }
    let outcomes: Vec<MintOutcome<'_>> = {
        let c: &Ctx<'_> = ctx;
        futures::stream::iter(claimed)
            .map(|cl| mint_one(c, cl))
            .buffered(c.opts.concurrency.max(1))
            .collect()
            .await
    };
    // A credential that failed undoes what it minted; the others go on.
    let mut good = Vec::new();
    for mut o in outcomes {
        match o.error.take() {
            Some((phase, e)) => fail_and_abort(ctx, o, phase, e).await,
            None => good.push(o),
        }
    }
    if let Some(signal) = ctx.opts.cancel.as_ref().and_then(|c| c.get()) {
        let why = format!(
            "the run was interrupted by {} before staging",
            signal.name()
        );
        for o in &good {
            let s = o.claimed.cred.step(Action::Interrupted, why.clone());
            ctx.step(s);
        }
        abort(ctx, good, &why).await;
        return Vec::new();
    }
    // Seal and edit, credential by credential (several may share a file).
    let mut staged: Vec<(MintOutcome<'_>, Vec<RotationRecord>)> = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    for mut o in good {
        if let Err(e) = keep_fresh(ctx, &mut o.claimed.held) {
            fail_and_abort(ctx, o, Phase::Mint, e).await;
            continue;
        }
        let claimed_at = o.claimed.held.claim.claimed_at;
        match seal::credential(ctx, &o.claimed.cred, &o.minted, claimed_at).await {
            Ok((recs, files)) => {
                for f in files
                    .into_iter()
                    .chain(recs.iter().map(RotationRecord::path))
                {
                    if !paths.contains(&f) {
                        paths.push(f);
                    }
                }
                staged.push((o, recs));
            }
            Err(e) => fail_and_abort(ctx, o, Phase::Mint, e).await,
        }
    }
    if staged.is_empty() {
        return Vec::new();
    }
    let message = stage_message(&staged);
    crate::failpoint("before-commit");
    if let Err(e) = ctx.writer.commit_and_push(&paths, &message) {
        // Did it land anyway (the connection died after the remote took it)?
        let first = staged[0].1[0].path();
        if !ctx.writer.landed(&first) {
            let why = format!("committing the staged rotation to main failed: {e}");
            let mut error = Some(EngineError::Publish(e));
            let outcomes: Vec<MintOutcome<'_>> = staged.into_iter().map(|(o, _)| o).collect();
            for o in &outcomes {
                let c = &o.claimed.cred;
                // The first credential carries the error; the batch's others say so.
                let e = error
                    .take()
                    .unwrap_or_else(|| EngineError::Batch(why.clone()));
                ctx.fail(Phase::Publish, &c.source, &c.identity, None, e);
            }
            abort(ctx, outcomes, &why).await;
            return Vec::new();
        }
        let _ = ctx.writer.refresh();
    }
    let mut out = Vec::new();
    for (o, recs) in staged {
        let mut s = plan_step(ctx, &o.claimed.cred);
        s.new_key_id = Some(
            recs.iter()
                .map(|r| r.new_key_id.clone())
                .collect::<Vec<_>>()
                .join(","),
        );
        s.done = true;
        ctx.step(s);
        // Kept until the run ends: this run publishes and revokes what it staged.
        ctx.held.push(o.claimed.held);
        out.extend(recs);
    }
    crate::failpoint("after-stage");
    out
}

/// The stage commit's message: one trailer block per record.
fn stage_message(staged: &[(MintOutcome<'_>, Vec<RotationRecord>)]) -> String {
    let recs: Vec<&RotationRecord> = staged.iter().flat_map(|(_, r)| r).collect();
    let clusters: BTreeSet<String> = recs.iter().flat_map(|r| r.clusters()).collect();
    let clusters: Vec<String> = clusters.into_iter().collect();
    let blocks: Vec<TrailerBlock> = recs
        .iter()
        .map(|r| {
            let mut b = r.trailer(TrailerAction::Stage);
            b.claimed = r.claimed_at.map(ts);
            b
        })
        .collect();
    let subject = if recs.len() == 1 {
        format!(
            "secret-manager: stage rotation of {} ({}) for {}",
            recs[0].identity,
            recs[0].source,
            clusters.join(", ")
        )
    } else {
        format!(
            "secret-manager: stage rotation of {} credentials for {}",
            recs.len(),
            clusters.join(", ")
        )
    };
    trailers::message(&subject, &blocks)
}
