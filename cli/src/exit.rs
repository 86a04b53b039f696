//! Exit codes (documented in docs/exit-codes.md) and how a run's report maps to them;
//! an error that ends a command maps in [`crate::error`]. Cron alerting keys off these.

use secret_manager::engine::{Phase, RotateReport};

/// Success, including "nothing due" and "busy: another run has it".
pub const OK: u8 = 0;
/// A bug or an unexpected environment failure.
pub const INTERNAL: u8 = 1;
/// Bad command line or bad configuration; nothing was changed.
pub const USAGE: u8 = 2;
/// `lint` found problems; `seal --validate`: the controller cannot decrypt it.
pub const LINT_FINDINGS: u8 = 3;
/// A source could not be queried or failed its preflight; nothing was changed.
pub const PREFLIGHT: u8 = 10;
/// Minting, verifying or staging a new key failed; nothing was published for it.
pub const MINT: u8 = 11;
/// A git/publish step failed (remote unreachable, hook or permission, lost races past the
/// retry bound); nothing was forced.
pub const PUBLISH: u8 = 12;
/// Revoking an old key failed; the new key is live and the old one still works.
pub const REVOKE: u8 = 13;
/// A revocation gate cannot be evaluated (kubectl missing, unknown context, access
/// denied) or fails (Argo CD shows the application Degraded after the change); the old
/// key stays until someone fixes it.
pub const GATE: u8 = 14;
/// Pull-request mode: a pull request has waited for review longer than
/// `forge.maxOpenAge`; nothing else failed.
pub const STALE_REVIEW: u8 = 15;
/// `--metrics-file` or `--pushgateway` failed after a run that itself succeeded (a failed
/// run keeps its own code): without its metrics a successful run would look like a
/// missing one.
pub const METRICS: u8 = 16;
/// Stopped by SIGINT (128 + 2).
pub const INTERRUPTED: u8 = 130;
/// Stopped by SIGTERM (128 + 15).
pub const TERMINATED: u8 = 143;

/// The code of a failure in `phase`.
pub fn for_phase(phase: Phase) -> u8 {
    match phase {
        Phase::Preflight => PREFLIGHT,
        Phase::Mint => MINT,
        Phase::Publish => PUBLISH,
        Phase::Review => STALE_REVIEW,
        Phase::Gate => GATE,
        Phase::Revoke => REVOKE,
    }
}

/// The code of a rotate/delete run: a signal wins, then the latest failed phase.
pub fn for_report(report: &RotateReport) -> u8 {
    match report.interrupted.as_deref() {
        Some("SIGINT") => return INTERRUPTED,
        Some(_) => return TERMINATED,
        None => {}
    }
    report.worst_phase().map_or(OK, for_phase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_phase_and_signals_decide() {
        let mut r = RotateReport::default();
        assert_eq!(for_report(&r), OK);
        r.interrupted = Some("SIGTERM".into());
        assert_eq!(for_report(&r), TERMINATED);
        r.interrupted = Some("SIGINT".into());
        assert_eq!(for_report(&r), INTERRUPTED);
        assert!(for_phase(Phase::Preflight) < for_phase(Phase::Mint));
        assert!(for_phase(Phase::Mint) < for_phase(Phase::Publish));
        assert_eq!(for_phase(Phase::Gate), GATE);
        assert_eq!(for_phase(Phase::Revoke), REVOKE);
    }
}
