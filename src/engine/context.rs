//! What one run works with from part to part: the remote view, the writer, the journal
//! store, the claims it holds, the providers and the clock. What a part reports is not
//! here: each part returns an [`Outcome`](super::outcome::Outcome).

use super::RotateOptions;
use super::outcome::{Outcome, Said};
use super::report::{EngineError, Phase, Step};
use crate::gitops::batch::MainWriter;
use crate::gitops::events::EventLog;
use crate::gitops::{Fleet, Unavailable};
use crate::journal::table::{ClaimTable, Listed};
use crate::journal::{RotationRecord, RunId, TrailerBlock, trailers};
use crate::providers::Providers;
use crate::seal::SealingCert;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// A signal that asks a run to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (a pod eviction).
    Terminate,
}

impl Signal {
    /// `SIGINT` or `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }
}

/// Shared flag a signal handler sets; the engine stops starting new work once it is set,
/// finishes or undoes the step in flight, and returns its report.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicU8>);

impl Cancel {
    /// Records `signal` (the first one wins).
    pub fn signal(&self, signal: Signal) {
        let v = match signal {
            Signal::Interrupt => 2,
            Signal::Terminate => 15,
        };
        let _ = self
            .0
            .compare_exchange(0, v, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The signal received, if any.
    pub fn get(&self) -> Option<Signal> {
        match self.0.load(Ordering::SeqCst) {
            2 => Some(Signal::Interrupt),
            15 => Some(Signal::Terminate),
            _ => None,
        }
    }
}

/// A clock that starts at the run's reference time and advances with real time, so leases
/// and deadlines work even when the reference time is pinned (`SECRET_MANAGER_NOW`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Clock {
    base: DateTime<Utc>,
    started: Option<std::time::Instant>,
}

impl Clock {
    /// Starts at `base`; stays there when `fixed`.
    pub(super) fn new(base: DateTime<Utc>, fixed: bool) -> Clock {
        Clock {
            base,
            started: (!fixed).then(std::time::Instant::now),
        }
    }

    pub(super) fn now(&self) -> DateTime<Utc> {
        match self.started {
            Some(s) => self.base + chrono::Duration::from_std(s.elapsed()).unwrap_or_default(),
            None => self.base,
        }
    }
}

pub(super) struct Ctx<'a> {
    pub opts: &'a RotateOptions,
    pub providers: &'a Providers,
    pub run: RunId,
    pub clock: Clock,
    pub fleet: Fleet,
    /// A worktree at main: manifests are edited here (and, pushing to main, records too).
    pub writer: MainWriter,
    /// Pull-request mode: a worktree at the journal ref, where the records live.
    pub journal: Option<MainWriter>,
    /// Pull-request mode: the forge.
    pub forge: Option<crate::forge::Forge>,
    pub claims: ClaimTable,
    pub events: EventLog,
    /// The config repo as main has it (config, inventory), opened on the worktree.
    pub repo: crate::Repo,
    pub unavailable: Unavailable,
    /// Claims on the remote when the run started.
    pub listed_claims: Vec<Listed>,
    pub lease: chrono::Duration,
    /// Claims this run holds (released when the run ends).
    pub held: Vec<crate::journal::table::Held>,
    /// Each cluster's certificate, or why it cannot be used (said for every credential).
    certs: BTreeMap<String, Result<SealingCert, Arc<crate::RepoError>>>,
    /// Main's SealedSecrets as the run found them, for the certificates' continuity
    /// (scanned once, when the first certificate is needed).
    cert_scan: Option<Vec<crate::scan::Found>>,
}

impl<'a> Ctx<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        opts: &'a RotateOptions,
        providers: &'a Providers,
        fleet: Fleet,
        writer: MainWriter,
        journal: Option<MainWriter>,
        forge: Option<crate::forge::Forge>,
        repo: crate::Repo,
        unavailable: Unavailable,
        listed_claims: Vec<Listed>,
    ) -> Ctx<'a> {
        let claims = ClaimTable::new(&fleet, &repo.config.claim_ref_prefix);
        let events = EventLog::new(&fleet);
        Ctx {
            opts,
            providers,
            run: opts.run.clone(),
            clock: Clock::new(opts.now, opts.fixed_clock),
            lease: repo.config.claim_lease,
            fleet,
            writer,
            journal,
            forge,
            claims,
            events,
            repo,
            unavailable,
            listed_claims,
            held: Vec::new(),
            certs: BTreeMap::new(),
            cert_scan: None,
        }
    }

    /// The run's clock: the reference time plus what has elapsed since the start.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The annotation prefix.
    pub fn prefix(&self) -> &str {
        &self.repo.config.annotation_prefix
    }

    /// Whether a signal asked the run to stop.
    pub fn cancelled(&self) -> bool {
        self.opts.cancel.as_ref().and_then(Cancel::get).is_some()
    }

    /// An empty outcome for a part of the run to report into: its steps reach the
    /// progress observer as they are said.
    pub fn said(&self) -> Said {
        Outcome::observed((), self.opts.observer.clone())
    }

    /// Tells the phase observer that `phase` starts with `items` credentials.
    pub fn phase(&self, phase: Phase, items: usize) {
        if let Some(o) = &self.opts.phases {
            o(phase, items);
        }
    }

    /// Tells the observer only (progress that is not part of the report).
    pub fn progress(&self, s: &Step) {
        if let Some(o) = &self.opts.observer {
            o(s);
        }
    }

    /// The validated sealing certificate of `cluster` (loaded once per run).
    pub async fn cert(&mut self, cluster: &str) -> Result<SealingCert, EngineError> {
        if !self.certs.contains_key(cluster) {
            if self.cert_scan.is_none() {
                self.cert_scan = Some(self.scan().secrets);
            }
            let found = self.cert_scan.as_deref().unwrap_or_default();
            let c = match crate::seal::trust::Pins::from_env() {
                Ok(pins) => self
                    .repo
                    .trusted_sealing_cert(cluster, self.opts.now, found, &pins)
                    .await
                    .map_err(Arc::new),
                Err(e) => Err(Arc::new(crate::seal::trust::Untrusted::from(e).into())),
            };
            self.certs.insert(cluster.to_owned(), c);
        }
        self.certs[cluster]
            .clone()
            .map_err(EngineError::Certificate)
    }

    /// Where the records live: the journal ref's worktree in pull-request mode, main's
    /// otherwise.
    pub fn journal(&self) -> &MainWriter {
        self.journal.as_ref().unwrap_or(&self.writer)
    }

    /// Whether changes reach main by pull request.
    pub fn pr_mode(&self) -> bool {
        self.forge.is_some()
    }

    /// The journal store: where the records live, and the only writer of record files.
    pub fn store(&self) -> crate::journal::Store<'_> {
        crate::journal::Store::new(self.journal())
    }

    /// The records, as the journal's worktree has them.
    pub fn records(&self) -> Result<Vec<RotationRecord>, EngineError> {
        Ok(self.store().records()?)
    }

    /// A scan of main as the worktree has it.
    pub fn scan(&self) -> crate::scan::ScanReport {
        self.repo.scan()
    }

    /// Appends audit events that leave nothing on main (cleanups, undos, abandoned
    /// claims) to the event log. A failure is logged and reported: the key operations
    /// themselves already happened and are in this run's report.
    pub fn record_events(&self, said: &mut Said, subject: &str, blocks: Vec<TrailerBlock>) {
        if blocks.is_empty() || self.opts.dry_run {
            return;
        }
        let message = trailers::message(subject, &blocks);
        if let Err(e) = self.events.append(&message) {
            let b = &blocks[0];
            let (source, identity) = (
                b.source.clone().unwrap_or_default(),
                b.identity.clone().unwrap_or_default(),
            );
            tracing::warn!(error = %e, "could not append to the audit log {}", crate::gitops::events::EVENTS_REF);
            said.fail(
                Phase::Publish,
                &source,
                &identity,
                None,
                EngineError::Git(e),
            );
        }
    }
}
