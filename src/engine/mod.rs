//! The rotation engine: `due → staged → published → revoked`, run as a closed loop.
//!
//! [`rotate`] is the whole order of a run; each phase lives in its own module and returns
//! what it produced — an [`outcome::Outcome`]: what goes on, its steps, its failures —
//! instead of calling the next phase or writing into the report:
//!
//! 1. **open** — fetch main (it must be reachable) and every cluster pointer (a remote
//!    that is not only fails the clusters on it), list the claims, and make a private
//!    worktree at main;
//! 2. [`recover`] — release claims of runs that died, deleting only the keys those runs
//!    minted and never committed;
//! 3. [`claims`] on the recorded rotations' credentials; in pull-request mode
//!    [`proposals`] (open pull requests wait, merged ones go on, closed ones are undone);
//!    then [`publish`] and [`revoke`] them (a rotation another run is advancing is
//!    `busy`);
//! 4. [`stage`] new rotations for the selected credentials (or [`delete`] the selected
//!    secrets): claim → mint → verify → seal → one commit on main, or, in pull-request
//!    mode, [`propose`]: a branch and a pull request;
//! 5. [`publish`] and [`revoke`] what was just staged (revoked at once only with a zero
//!    grace period), and release every claim the run holds.
//!
//! The on-disk contract every step relies on is [`crate::journal`]; git is driven only
//! through [`crate::gitops`].

mod consumers_gate;
mod context;
mod delete;
mod edits;
mod gate;
mod gates;
mod held;
mod hotfix;
mod kustomize;
mod mint;
mod outcome;
mod pipeline;
mod plan;
mod proposals;
mod propose;
mod publish;
mod recover;
mod report;
mod restore;
mod revoke;
mod rollback;
mod slots;
mod stage;
mod truth;

pub use consumers_gate::DEFAULT_KUBELET_SYNC_SECONDS;
pub use context::{Cancel, Signal};
pub(crate) use edits::field;
pub(crate) use held::{Got, take as take_claims};
pub(crate) use mint::{Minting, mint_verified, undo};
pub(crate) use plan::busy_reason;
pub use propose::{JOURNAL_REF, JOURNAL_TRACKING};
pub use report::{
    Action, During, EngineError, EngineResult, Failure, Phase, RotateReport, Step, WaitingOn,
};
pub(crate) use slots::key_limit_error;

use crate::config::{MainVia, RevokeMode};
use crate::forge::Forge;
use crate::gitops::Fleet;
use crate::gitops::batch::MainWriter;
use crate::journal::table::ClaimTable;
use crate::journal::{RotationRecord, RunId};
use crate::list::Filter;
use crate::providers::Providers;
use chrono::{DateTime, Utc};
use std::path::Path;

/// Called for every step (progress displays), and with `minted` progress events that are
/// not in the report while a batch's provider calls run; must be cheap.
pub type StepObserver = std::sync::Arc<dyn Fn(&Step) + Send + Sync>;

/// Called when a phase starts, with how many credentials it has to go through (progress
/// displays); must be cheap.
pub type PhaseObserver = std::sync::Arc<dyn Fn(Phase, usize) + Send + Sync>;

/// Default of `--concurrency`.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// Settings of one run.
#[derive(Clone)]
pub struct RotateOptions {
    /// Which secrets.
    pub filter: Filter,
    /// Grace period between publish and revoke (and between disable and delete).
    pub revoke_after: chrono::Duration,
    /// Delete or disable old keys.
    pub revoke_mode: RevokeMode,
    /// Plan only: no provider call with a side effect, no commit, no ref moves.
    pub dry_run: bool,
    /// Delete the selected SealedSecrets (and then their keys) instead of rotating.
    pub delete: bool,
    /// Roll back the selected rotations in flight instead of rotating: their old
    /// ciphertexts back on main, published, and their new keys revoked.
    pub rollback: bool,
    /// The reference time: the run's clock starts here and advances in real time, so that
    /// what a long run records (publish times) and its leases are true.
    pub now: DateTime<Utc>,
    /// Keep the run's clock at `now` instead (reproducible runs, `SECRET_MANAGER_NOW`):
    /// every time the run records or compares is exactly `now`. Claims are still renewed
    /// by wall-clock time.
    pub fixed_clock: bool,
    /// This run's id.
    pub run: RunId,
    /// Gate: revoke only when each cluster's SealedSecret shows the new key id with
    /// `Synced=True` at its current generation (checked with kubectl).
    pub require_synced: bool,
    /// Gate: revoke only when the source reports no use of the old key since publish.
    pub require_old_key_unused: bool,
    /// Gate: revoke only when each cluster's Argo CD application (`argocdApp` in its
    /// cluster-values) is Synced at a revision whose files hold the new key, and Healthy.
    pub require_argocd_synced: bool,
    /// Gate: revoke only when every pod that reads the rotated Secret has the new value
    /// (its template carries the stage's `rotated` hash, it started after publish, or it
    /// mounts the Secret as a whole volume and `kubelet_sync_period` has passed).
    pub require_consumers_restarted: bool,
    /// How long after publish a whole-volume Secret mount holds the new value.
    pub kubelet_sync_period: chrono::Duration,
    /// Rotate `strategy: single-user` database logins without the consumers gate: the
    /// operator accepts that consumers fail to log in from the mint until they run with
    /// the new value.
    pub allow_login_gap: bool,
    /// Gate: revoke only when this operator program passes for each cluster (exit 0;
    /// 75 waits, anything else fails). It reads a JSON description on stdin, never a value.
    pub gate_command: Option<std::path::PathBuf>,
    /// Credentials whose provider calls run at once (at least 1).
    pub concurrency: usize,
    /// Progress callback.
    pub observer: Option<StepObserver>,
    /// Progress callback at the start of each phase.
    pub phases: Option<PhaseObserver>,
    /// Set by a signal handler: stop starting new work.
    pub cancel: Option<Cancel>,
}

impl RotateOptions {
    /// Every managed secret, a 1 h grace period, delete mode, default concurrency.
    pub fn new(now: DateTime<Utc>) -> RotateOptions {
        RotateOptions {
            filter: Filter::default(),
            revoke_after: chrono::Duration::hours(1),
            revoke_mode: RevokeMode::Delete,
            dry_run: false,
            delete: false,
            rollback: false,
            now,
            fixed_clock: false,
            run: RunId::new(now),
            require_synced: false,
            require_old_key_unused: false,
            require_argocd_synced: false,
            require_consumers_restarted: false,
            kubelet_sync_period: chrono::Duration::seconds(
                consumers_gate::DEFAULT_KUBELET_SYNC_SECONDS,
            ),
            allow_login_gap: false,
            gate_command: None,
            concurrency: DEFAULT_CONCURRENCY,
            observer: None,
            phases: None,
            cancel: None,
        }
    }
}

impl std::fmt::Debug for RotateOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotateOptions")
            .field("filter", &self.filter)
            .field("revoke_after", &self.revoke_after)
            .field("dry_run", &self.dry_run)
            .field("delete", &self.delete)
            .field("run", &self.run)
            .finish_non_exhaustive()
    }
}

/// What a run staging a rotation promises: its grace period, revoke mode and gates.
pub(crate) fn promise(opts: &RotateOptions) -> crate::journal::record::Promise {
    crate::journal::record::Promise {
        revoke_after_seconds: opts.revoke_after.num_seconds(),
        revoke_mode: opts.revoke_mode,
        require_synced: opts.require_synced,
        require_old_key_unused: opts.require_old_key_unused,
        require_argocd_synced: opts.require_argocd_synced,
        require_consumers_restarted: opts.require_consumers_restarted,
        require_gate_command: opts.gate_command.is_some(),
    }
}

/// Whether `filter` covers the in-flight record `rec`: its source is selected and one of
/// its manifests is in the cluster, namespace and name selection. A run advances only the
/// rotations its selection covers; a run without a selection (or with just the source)
/// finishes every rotation of its sources, including those of runs that died.
pub fn selection_covers(filter: &crate::list::Filter, rec: &RotationRecord) -> bool {
    if !filter.sources.is_empty() && !filter.sources.contains(&rec.source) {
        return false;
    }
    rec.manifests.iter().any(|m| {
        let (ns, name) = m.secret.split_once('/').unwrap_or(("", m.secret.as_str()));
        filter.selects_cluster(&m.cluster)
            && filter.namespace.as_deref().is_none_or(|n| n == ns)
            && filter.name.as_ref().is_none_or(|g| g.is_match(name))
    })
}

/// Runs one closed-loop pass over the repo cloned at `clone`. An `Err` means the run could
/// not start (configuration, main unreachable); everything after that is reported per
/// credential in the report.
pub async fn rotate(
    clone: &Path,
    providers: &Providers,
    opts: &RotateOptions,
) -> Result<RotateReport, EngineError> {
    // The checkout only says where main is; every setting the run acts on (remotes,
    // inventory, pointers, claims, signing) comes from the fetched main.
    let repo = crate::Repo::main_of(clone)?;
    let fleet = Fleet::new(&repo);
    fleet.git().check_signing().map_err(EngineError::Signing)?;
    let unavailable = fleet.fetch()?;
    let claims = ClaimTable::new(&fleet, &repo.config.claim_ref_prefix).list()?;
    let writer = MainWriter::open(&fleet)?;
    let main = crate::Repo::open(writer.dir())?;
    // Pull-request mode: the forge, and the journal on its own ref (main takes no pushes).
    let (journal, forge) = match (&main.config.main_via, &main.config.forge) {
        (MainVia::PullRequest, Some(cfg)) => {
            let forge = Forge::from_env(cfg)?;
            let journal = MainWriter::open_ref(&fleet, propose::journal_target(&fleet))?;
            (Some(journal), Some(forge))
        }
        _ => (None, None),
    };
    let mut ctx = context::Ctx::new(
        opts,
        providers,
        fleet,
        writer,
        journal,
        forge,
        main,
        unavailable,
        claims,
    );
    let records = ctx.records()?;
    let mut run = outcome::RunReport::new(opts.run.to_string());

    // Each part is entered here, and only here: a failure says which part it happened
    // in (`During`) besides what failed (`Phase`, set where the error is understood).
    run.enter(During::Recover);
    run.absorb(recover::expired_claims(&mut ctx, &records).await);
    // In-flight rotations outside this run's selection are another run's to advance: its
    // flags (a shorter --revoke-after, no gate) must not reach them.
    // A rollback takes back what it selects before anything advances it.
    // A rotation whose rollback waits for review (pull-request mode) is held where it is:
    // neither published further nor revoked, until the rollback is merged or closed.
    let rolling_back: std::collections::BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r.rollback_of.as_ref().map(|o| o.rotation.as_str()))
        .collect();
    let covered: Vec<RotationRecord> = records
        .iter()
        .filter(|r| {
            !opts.rollback
                && selection_covers(&opts.filter, r)
                && !rolling_back.contains(r.id.as_str())
        })
        .cloned()
        .collect();
    run.enter(During::Resume);
    let existing = run.absorb(held::for_records(&mut ctx, covered));
    run.enter(During::Review);
    let existing = run.absorb(proposals::resolve(&mut ctx, existing).await);
    run.enter(During::Publish);
    let waiting = existing.clone();
    let existing = run.absorb(publish::publish(&mut ctx, existing).await);
    run.enter(During::Revoke);
    // What publishing could not advance may have missed its deadline: rolled back.
    let blocked = waiting
        .into_iter()
        .filter(|w| !existing.iter().any(|e| e.id == w.id))
        .collect();
    let mut rolled_back = run.absorb(rollback::past_deadline(&mut ctx, blocked).await);
    rolled_back.extend(run.absorb(revoke::revoke(&mut ctx, existing).await));
    let new = if opts.rollback {
        run.enter(During::Rollback);
        run.absorb(rollback::stage(&mut ctx, &records).await)
    } else if opts.delete {
        run.enter(During::Delete);
        run.absorb(delete::stage(&mut ctx, &records).await)
    } else {
        run.enter(During::Stage);
        run.absorb(stage::stage(&mut ctx, &records).await)
    };
    run.enter(During::Publish);
    let new = run.absorb(publish::publish(&mut ctx, new).await);
    run.enter(During::Revoke);
    rolled_back.extend(run.absorb(revoke::revoke(&mut ctx, new).await));
    // Rotations a gate found failing were rolled back: their old values go out now; their
    // new keys go after the grace period, on a later run.
    if !rolled_back.is_empty() {
        run.enter(During::Publish);
        run.absorb(publish::publish(&mut ctx, rolled_back).await);
    }
    run.enter(During::Release);
    held::release_all(&mut ctx);

    let mut report = run.report;
    report.interrupted = opts
        .cancel
        .as_ref()
        .and_then(Cancel::get)
        .map(|s| s.name().to_owned());
    Ok(report)
}

/// Runs `f` over `items` with at most `limit` (at least one) in flight; the results in the
/// order of `items`. The one way the engine calls a provider for many credentials.
pub(crate) async fn bounded<I, T, F, Fut>(limit: usize, items: I, f: F) -> Vec<T>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    use futures::StreamExt as _;
    futures::stream::iter(items)
        .map(f)
        .buffered(limit.max(1))
        .collect()
        .await
}
