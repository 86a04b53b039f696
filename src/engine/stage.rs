//! Stage: claim → mint → verify → seal → one commit on main. Returns the records it
//! committed; publishing them is the next phase's job.
//!
//! Order matters for safety. Nothing with a side effect happens before every check
//! without one has passed (provider preflight, certificates, remotes, key slots). The
//! claim is on the remote before the first mint, so a run that dies from here on leaves
//! enough behind for the next run to clean up. A key that is minted but cannot be staged
//! is deleted again ([`super::mint::undo`]) — the one place that happens.

use super::context::Ctx;
use super::edits;
use super::held::{self, Got, keep_fresh};
use super::mint::{abort, fail_and_abort, mint_one};
use super::outcome::{Outcome, Said};
use super::pipeline::{Claimed, MintFailure, MintOutcome, Ready};
use super::plan::{self, Credential};
use super::propose::propose;
use super::report::{Action, EngineError, Phase, Step};
use super::slots::{check_slots, slots};
use crate::journal::record::ts;
use crate::journal::{Claim, RotationRecord, TrailerAction, TrailerBlock, trailers};
use crate::provider::{KeyInfo, Provider};
use std::collections::BTreeSet;

/// The plan line of a credential.
fn plan_step(ctx: &Ctx<'_>, cred: &Credential<'_>) -> Step {
    let expanded = cred.groups.iter().any(|g| g.expanded);
    let n: usize = cred.groups.iter().map(|g| g.manifests.len()).sum();
    let mut detail = format!(
        "mint a new key, seal it into {n} manifest(s){}, publish to {}, then revoke the old key after {}",
        if expanded {
            " (expanded: every manifest holding this key)"
        } else {
            ""
        },
        cred.clusters().join(", "),
        humantime::format_duration(ctx.opts.revoke_after.to_std().unwrap_or_default())
    );
    detail.push_str(&super::gates::planned(ctx.opts, None));
    detail.push_str(&consumers_said(ctx, cred));
    if crate::db_logins::single_user(&cred.params) {
        detail.push_str(
            "; single user: the login's old password stops working at mint, consumers fail to log in until they run with the new value",
        );
    }
    cred.step(Action::Stage, detail)
}

/// What the stage does about the workloads that read the credential's Secrets (with
/// `consumers.restart`), for its plan line: those it restarts, those Reloader restarts,
/// and those it does not, with why.
fn consumers_said(ctx: &Ctx<'_>, cred: &Credential<'_>) -> String {
    use crate::consumers::Fate;
    let all: Vec<crate::consumers::Consumer> = cred
        .groups
        .iter()
        .flat_map(|g| edits::consumers(ctx, g))
        .collect();
    let of = |want: fn(&Fate) -> bool| -> Vec<String> {
        all.iter()
            .filter(|c| want(&c.fate))
            .map(|c| match &c.fate {
                Fate::Manual(why) => format!("{} ({why})", c.describe()),
                _ => c.describe(),
            })
            .collect()
    };
    let mut out = String::new();
    for (label, list) in [
        (
            "restarts",
            of(|f| matches!(f, Fate::Restart | Fate::Patch { .. })),
        ),
        ("restarted by Reloader", of(|f| *f == Fate::Reloader)),
        (
            "consumers not restarted by the tool",
            of(|f| matches!(f, Fate::Manual(_))),
        ),
    ] {
        if !list.is_empty() {
            out.push_str(&format!("; {label}: {}", list.join(", ")));
        }
    }
    out
}

/// Checks without side effects: provider, remotes, certificates, preflight.
async fn preflight<'a>(
    ctx: &mut Ctx<'_>,
    said: &mut Said,
    creds: Vec<Credential<'a>>,
) -> Vec<Ready<'a>> {
    let mut checked = Vec::new();
    'creds: for cred in creds {
        let provider = match ctx.providers.get(&cred.source).await {
            Ok(p) => p,
            Err(e) => {
                said.fail(
                    Phase::Preflight,
                    &cred.source,
                    &cred.identity,
                    None,
                    e.into(),
                );
                continue;
            }
        };
        if crate::db_logins::single_user(&cred.params)
            && !(ctx.opts.require_consumers_restarted || ctx.opts.allow_login_gap)
        {
            let e = EngineError::LoginGap {
                identity: cred.identity.clone(),
            };
            said.fail(Phase::Preflight, &cred.source, &cred.identity, None, e);
            continue;
        }
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
                said.fail(Phase::Publish, &cred.source, &cred.identity, Some(&c), e);
                continue 'creds;
            }
            if let Err(e) = ctx.cert(&c).await {
                said.fail(Phase::Preflight, &cred.source, &cred.identity, Some(&c), e);
                continue 'creds;
            }
        }
        checked.push(Ready { cred, provider });
    }
    let results: Vec<(Ready<'a>, Result<(), EngineError>)> =
        super::bounded(ctx.opts.concurrency, checked, |r| async move {
            let res = r
                .provider
                .preflight(&r.cred.target())
                .await
                .map_err(EngineError::from);
            (r, res)
        })
        .await;
    let mut ready = Vec::new();
    for (r, res) in results {
        match res {
            Ok(()) => ready.push(r),
            Err(e) => said.fail(Phase::Preflight, &r.cred.source, &r.cred.identity, None, e),
        }
    }
    ready
}

/// Claims every credential in one push. Lost races are `busy`.
fn claim_all<'a>(
    ctx: &mut Ctx<'_>,
    said: &mut Said,
    ready: Vec<(Ready<'a>, Vec<KeyInfo>)>,
) -> Vec<Claimed<'a>> {
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
    let got = held::take(&ctx.claims, claims);
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
                said.step(s);
            }
            Got::Failed(e) => said.fail(Phase::Publish, &r.cred.source, &r.cred.identity, None, e),
        }
    }
    out
}

/// A credential sealed and written, waiting for the batch commit.
type Sealed<'a> = (MintOutcome<'a>, Vec<RotationRecord>);

/// Stage for every selected credential without a rotation in flight. Returns the
/// records committed to main (empty in a dry run).
pub(super) async fn stage(
    ctx: &mut Ctx<'_>,
    records: &[RotationRecord],
) -> Outcome<Vec<RotationRecord>> {
    let mut said = ctx.said();
    let scan = ctx.scan();
    let planned = plan::credentials(
        &scan.secrets,
        &plan::Planning {
            opts: ctx.opts,
            now: ctx.now(),
            records,
            claims: &ctx.listed_claims,
            run: &ctx.run,
        },
    );
    let creds = said.merge(planned);
    ctx.phase(Phase::Preflight, creds.len());
    let ready = preflight(ctx, &mut said, creds).await;
    if !ctx.opts.dry_run && !ready.is_empty() {
        ctx.phase(Phase::Mint, ready.len());
    }
    if ctx.opts.dry_run || ready.is_empty() || ctx.cancelled() {
        for r in ready {
            let s = if ctx.opts.dry_run {
                plan_step(ctx, &r.cred)
            } else {
                r.cred
                    .step(Action::Interrupted, "not started: the run was interrupted")
            };
            said.step(s);
        }
        return said.with(Vec::new());
    }
    let ready = slots(ctx, &mut said, ready).await;
    let listed: Vec<(String, Vec<KeyInfo>)> = ready
        .iter()
        .map(|(r, k)| (r.cred.id(), k.clone()))
        .collect();
    let claimed = claim_all(ctx, &mut said, ready);
    let claimed = check_slots(ctx, &mut said, claimed, &listed).await;
    let outcomes: Vec<Result<MintOutcome<'_>, MintFailure<'_>>> = {
        let c: &Ctx<'_> = ctx;
        super::bounded(c.opts.concurrency, claimed, |cl| mint_one(c, cl)).await
    };
    // A credential that failed undoes what it minted; the others go on.
    let mut good = Vec::new();
    for o in outcomes {
        match o {
            Ok(o) => good.push(o),
            Err(f) => fail_and_abort(ctx, &mut said, f.done, f.phase, f.error).await,
        }
    }
    if let Some(signal) = ctx.opts.cancel.as_ref().and_then(|c| c.get()) {
        let why = format!(
            "the run was interrupted by {} before staging",
            signal.name()
        );
        for o in &good {
            let s = o.claimed.cred.step(Action::Interrupted, why.clone());
            said.step(s);
        }
        abort(ctx, &mut said, good, &why).await;
        return said.with(Vec::new());
    }
    let (staged, paths) = seal_each(ctx, &mut said, good).await;
    if staged.is_empty() {
        return said.with(Vec::new());
    }
    let mut staged = staged;
    if let Err(e) = commit(ctx, &mut said, &mut staged, &paths).await {
        let why = report_not_staged(&mut said, &staged, e);
        // Not on main: nothing references the new keys. Delete them now.
        abort(
            ctx,
            &mut said,
            staged.into_iter().map(|(o, _)| o).collect(),
            &why,
        )
        .await;
        return said.with(Vec::new());
    }
    let mut out = Vec::new();
    for (o, recs) in staged {
        let mut s = plan_step(ctx, &o.claimed.cred);
        let new: Vec<String> = recs.iter().map(|r| r.new_key_id.clone()).collect();
        s.new_key_id = Some(new.join(","));
        s.done = true;
        if let Some(p) = recs.iter().find_map(|r| r.proposal.as_ref()) {
            s.action = Action::Propose;
            s.detail = format!(
                "proposed in {} (branch {}); after merge: {}",
                p.url
                    .as_deref()
                    .unwrap_or("a pull request the next run opens"),
                p.branch,
                s.detail.trim_start_matches("mint a new key, seal it into ")
            );
        }
        said.step(s);
        // Kept until the run ends: this run publishes and revokes what it staged.
        ctx.held.push(o.claimed.held);
        out.extend(recs);
    }
    crate::failpoint("after-stage");
    said.with(out)
}

/// Seals and edits, credential by credential (several may share a file). Returns the
/// sealed credentials and every path to commit.
async fn seal_each<'a>(
    ctx: &mut Ctx<'_>,
    said: &mut Said,
    good: Vec<MintOutcome<'a>>,
) -> (Vec<Sealed<'a>>, Vec<String>) {
    let mut staged: Vec<Sealed<'a>> = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for mut o in good {
        if let Err(e) = keep_fresh(ctx, &mut o.claimed.held) {
            fail_and_abort(ctx, said, o, Phase::Mint, e).await;
            continue;
        }
        let claimed_at = o.claimed.held.claim.claimed_at;
        match edits::credential(ctx, &o.claimed.cred, &o.minted, claimed_at).await {
            Ok((recs, files)) => {
                for f in files
                    .into_iter()
                    .chain(recs.iter().map(RotationRecord::path))
                {
                    if seen.insert(f.clone()) {
                        paths.push(f);
                    }
                }
                staged.push((o, recs));
            }
            Err(e) => fail_and_abort(ctx, said, o, Phase::Mint, e).await,
        }
    }
    (staged, paths)
}

/// The one stage commit for the whole batch, pushed to main — or, in pull-request mode,
/// proposed on a branch (the records then name the pull request). `Err` when it did not
/// land; the caller reports every credential of the batch and undoes their keys.
async fn commit(
    ctx: &mut Ctx<'_>,
    said: &mut Said,
    staged: &mut [Sealed<'_>],
    paths: &[String],
) -> Result<(), NotStaged> {
    let (subject, blocks) = stage_message(staged);
    crate::failpoint("before-commit");
    if ctx.pr_mode() {
        let records: Vec<String> = staged
            .iter()
            .flat_map(|(_, r)| r.iter().map(RotationRecord::path))
            .collect();
        let manifests: Vec<String> = paths
            .iter()
            .filter(|p| !records.contains(p))
            .cloned()
            .collect();
        let mut recs: Vec<RotationRecord> = staged.iter().flat_map(|(_, r)| r.clone()).collect();
        propose(ctx, said, &mut recs, &manifests, &subject, &blocks)
            .await
            .map_err(NotStaged::Proposal)?;
        for (_, rs) in staged.iter_mut() {
            for r in rs.iter_mut() {
                if let Some(p) = recs.iter().find(|q| q.id == r.id) {
                    // The same record, now `Proposed`.
                    *r = p.clone();
                }
            }
        }
        return Ok(());
    }
    let message = trailers::message(&subject, &blocks);
    let Err(e) = ctx.writer.commit_and_push(paths, &message) else {
        return Ok(());
    };
    // Did it land anyway (the connection died after the remote took it)?
    if ctx.writer.landed(&staged[0].1[0].path()) {
        let _ = ctx.writer.refresh();
        return Ok(());
    }
    Err(NotStaged::Main(e))
}

/// Why the stage commit did not land.
#[derive(Debug, thiserror::Error)]
enum NotStaged {
    /// Pull-request mode: the change could not be proposed.
    #[error("proposing the rotation failed: {0}")]
    Proposal(#[source] EngineError),
    /// The commit did not reach main.
    #[error("committing the staged rotation to main failed: {0}{hint}", hint = main_hint(.0))]
    Main(#[source] crate::gitops::PublishError),
}

/// What to do when main refused the commit for good.
fn main_hint(e: &crate::gitops::PublishError) -> &'static str {
    if matches!(
        e,
        crate::gitops::PublishError::Git(crate::gitops::git::GitError::Refused { .. })
    ) {
        "; if main only takes reviewed changes, set mainVia: pull-request in .secret-manager.yaml (docs/pull-requests.md)"
    } else {
        ""
    }
}

/// Reports every credential of a batch whose stage commit did not land; returns why, for
/// the undo of their keys.
fn report_not_staged(said: &mut Said, staged: &[Sealed<'_>], e: NotStaged) -> String {
    let why = e.to_string();
    let who: Vec<(String, String)> = staged
        .iter()
        .map(|(o, _)| {
            (
                o.claimed.cred.source.clone(),
                o.claimed.cred.identity.clone(),
            )
        })
        .collect();
    let who = || who.iter().map(|(s, i)| (s.as_str(), i.as_str()));
    match e {
        // The forge's or the journal's own error, said once for the batch.
        NotStaged::Proposal(e) => said.fail_all(Phase::Publish, who(), None, e),
        NotStaged::Main(_) => {
            for (source, identity) in who() {
                said.fail(
                    Phase::Publish,
                    source,
                    identity,
                    None,
                    EngineError::Batch(why.clone()),
                );
            }
        }
    }
    why
}

/// The stage commit's message: one trailer block per record.
fn stage_message(staged: &[(MintOutcome<'_>, Vec<RotationRecord>)]) -> (String, Vec<TrailerBlock>) {
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
    (subject, blocks)
}
