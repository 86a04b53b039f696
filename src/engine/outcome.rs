//! What a part of the run produced, as a value: what goes on to the next part, the steps it
//! reports, and what failed. Every part of a run returns an [`Outcome`]; it reports
//! nothing into shared state. `rotate()` hands each outcome to the run's report
//! ([`RunReport::absorb`]), which stamps each failure with the part of the run it happened
//! in — so no part labels itself, and a decision that reads only what it is given can be
//! tested without a remote, a provider or a clock.

use super::StepObserver;
use super::report::{During, EngineError, Failure, Phase, RotateReport, Step};
use crate::journal::RotationRecord;

/// One failure, before the run says where it happened.
#[derive(Debug)]
pub(crate) struct Failed {
    /// What kind of step failed (it decides the exit code).
    pub phase: Phase,
    /// The credential's source.
    pub source: String,
    /// The credential's identity.
    pub identity: String,
    /// The cluster, when the failure is one cluster's.
    pub cluster: Option<String>,
    /// Why.
    pub error: EngineError,
}

/// What a part of the run produced.
pub(crate) struct Outcome<T> {
    /// What goes on to the next part.
    pub advanced: T,
    /// What it reports, in order.
    pub steps: Vec<Step>,
    /// What failed.
    pub failed: Vec<Failed>,
    /// Told of each step as it is reported (progress displays), not only when the part
    /// ends.
    observer: Option<StepObserver>,
}

/// What a part reports while it works, before it knows what it advances: helpers take
/// `&mut Said` and the part ends with [`Outcome::with`].
pub(crate) type Said = Outcome<()>;

impl<T: std::fmt::Debug> std::fmt::Debug for Outcome<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome")
            .field("advanced", &self.advanced)
            .field("steps", &self.steps)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<T> Outcome<T> {
    /// An outcome that advances `advanced` and says nothing yet.
    pub fn new(advanced: T) -> Outcome<T> {
        Outcome {
            advanced,
            steps: Vec::new(),
            failed: Vec::new(),
            observer: None,
        }
    }

    /// The same, telling `observer` of each step as it is reported.
    pub fn observed(advanced: T, observer: Option<StepObserver>) -> Outcome<T> {
        Outcome {
            observer,
            ..Outcome::new(advanced)
        }
    }

    /// What was said so far, now advancing `advanced`.
    pub fn with<U>(self, advanced: U) -> Outcome<U> {
        Outcome {
            advanced,
            steps: self.steps,
            failed: self.failed,
            observer: self.observer,
        }
    }

    /// Takes what a sub-part said into this outcome and returns what it advanced.
    pub fn merge<U>(&mut self, o: Outcome<U>) -> U {
        for s in o.steps {
            if o.observer.is_some() {
                // Told and logged when it was said.
                self.steps.push(s);
            } else {
                self.step(s);
            }
        }
        self.failed.extend(o.failed);
        o.advanced
    }

    /// Reports `s` (and tells the observer at once).
    pub fn step(&mut self, s: Step) {
        self.progress(&s);
        tracing::info!(
            action = %s.action,
            source = %s.source,
            identity = %s.identity,
            old_key = s.old_key_id.as_deref(),
            new_key = s.new_key_id.as_deref(),
            clusters = %s.clusters.join(","),
            files = %s.files.join(","),
            done = s.done,
            detail = %s.detail,
            "step"
        );
        self.steps.push(s);
    }

    /// Tells the observer only: progress that is not part of the report.
    pub fn progress(&self, s: &Step) {
        if let Some(o) = &self.observer {
            o(s);
        }
    }

    /// Reports a failure of the credential `source`/`identity`.
    pub fn fail(
        &mut self,
        phase: Phase,
        source: &str,
        identity: &str,
        cluster: Option<&str>,
        error: EngineError,
    ) {
        self.failed.push(Failed {
            phase,
            source: source.to_owned(),
            identity: identity.to_owned(),
            cluster: cluster.map(str::to_owned),
            error,
        });
    }

    /// One error that fails several credentials (a batch commit, a shared pointer): the
    /// first carries `error`, the others say the batch failed with the same message.
    pub fn fail_all<'r>(
        &mut self,
        phase: Phase,
        who: impl IntoIterator<Item = (&'r str, &'r str)>,
        cluster: Option<&str>,
        error: EngineError,
    ) {
        let msg = error.to_string();
        let mut first = Some(error);
        for (source, identity) in who {
            let e = first
                .take()
                .unwrap_or_else(|| EngineError::Batch(msg.clone()));
            self.fail(phase, source, identity, cluster, e);
        }
    }

    /// [`Outcome::fail_all`] for the credentials of `records`.
    pub fn fail_records(&mut self, phase: Phase, records: &[RotationRecord], error: EngineError) {
        self.fail_all(
            phase,
            records
                .iter()
                .map(|r| (r.source.as_str(), r.identity.as_str())),
            None,
            error,
        );
    }
}

/// The run's report as it is built: `rotate()` says which part of the run is in progress
/// ([`RunReport::enter`]) and hands it each part's outcome.
pub(super) struct RunReport {
    during: During,
    pub report: RotateReport,
}

impl RunReport {
    /// The report of the run `run`, before any part started.
    pub fn new(run: String) -> RunReport {
        RunReport {
            during: During::Open,
            report: RotateReport {
                run,
                ..RotateReport::default()
            },
        }
    }

    /// `rotate()` hands the run to `part`: failures from here on say they happened
    /// during it.
    pub fn enter(&mut self, part: During) {
        self.during = part;
    }

    /// Takes what a part of the run produced into the report (its steps, then its
    /// failures, stamped with the part in progress) and returns what goes on.
    pub fn absorb<T>(&mut self, o: Outcome<T>) -> T {
        self.report.steps.extend(o.steps);
        for f in o.failed {
            // Said once, by the command that renders the report (a line per failure, in
            // text or as a JSON event): here only for `-vv`.
            tracing::debug!(phase = ?f.phase, during = %self.during, source = %f.source, identity = %f.identity, cluster = f.cluster.as_deref(), error = %f.error, "rotation failed");
            self.report.failures.push(Failure {
                phase: f.phase,
                during: self.during,
                source: f.source,
                identity: f.identity,
                cluster: f.cluster,
                error: f.error,
            });
        }
        o.advanced
    }
}
