//! What a part of the run produced, as a value: what goes on to the next part, the steps it
//! reports, and what failed. A part that returns an [`Outcome`] reads only what it is given
//! and changes nothing shared; `rotate()` hands the outcome to the run's report
//! ([`super::context::Ctx::absorb`]), which stamps each failure with the part of the run it
//! happened in. So the decision can be tested without a remote, a provider or a clock.

use super::report::{EngineError, Phase, Step};

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
#[derive(Debug)]
pub(crate) struct Outcome<T> {
    /// What goes on to the next part.
    pub advanced: T,
    /// What it reports, in order.
    pub steps: Vec<Step>,
    /// What failed.
    pub failed: Vec<Failed>,
}

impl<T> Outcome<T> {
    /// An outcome that advances `advanced` and says nothing yet.
    pub fn new(advanced: T) -> Outcome<T> {
        Outcome {
            advanced,
            steps: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// Reports `s`.
    pub fn step(&mut self, s: Step) {
        self.steps.push(s);
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
}
