//! Exit codes (documented in docs/exit-codes.md) and the one place errors and reports map
//! to them. Cron alerting keys off these.

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
/// denied); the old key stays until someone fixes it.
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

/// Maps an error that ended a command to its exit code.
pub fn code_for(err: &anyhow::Error) -> u8 {
    use secret_manager::engine::EngineError;
    let usage = err.chain().any(|cause| {
        cause.is::<secret_manager::config::ConfigError>()
            || cause.is::<secret_manager::RepoError>()
            || cause.is::<secret_manager::seal::SealError>()
            // --merge-into refusals: the file or the input is not what an edit can take.
            || cause.is::<secret_manager::seal::ops::MergeError>()
            || cause.is::<secret_manager::manifest::edit::EditError>()
            || cause.is::<UsageError>()
    });
    if usage {
        return USAGE;
    }
    if let Some(e) = err.chain().find_map(|c| c.downcast_ref::<EngineError>()) {
        return match e {
            EngineError::Config(_)
            | EngineError::Main(
                secret_manager::MainError::Config(_) | secret_manager::MainError::Moved(_),
            )
            | EngineError::Signing(_) => USAGE,
            EngineError::Forge(f) | EngineError::NotProposed { source: f, .. }
                if f.is_configuration() =>
            {
                USAGE
            }
            EngineError::Provider(_) => PREFLIGHT,
            _ => PUBLISH,
        };
    }
    if let Some(c) = err
        .chain()
        .find_map(|c| c.downcast_ref::<secret_manager::create::CreateError>())
    {
        return match c {
            secret_manager::create::CreateError::Invalid(_) => USAGE,
            secret_manager::create::CreateError::Failed { phase, .. } => for_phase(*phase),
            _ => INTERNAL,
        };
    }
    // A revision the user named that is not there, or not on main: their input.
    if err.chain().any(|c| {
        matches!(
            c.downcast_ref::<secret_manager::gitops::PublishError>(),
            Some(
                secret_manager::gitops::PublishError::UnknownRevision(_)
                    | secret_manager::gitops::PublishError::NotOnMain { .. }
            )
        )
    }) {
        return USAGE;
    }
    if err.chain().any(|c| {
        c.is::<secret_manager::gitops::PublishError>()
            || c.is::<secret_manager::gitops::git::GitError>()
    }) {
        return PUBLISH;
    }
    if let Some(f) = err
        .chain()
        .find_map(|c| c.downcast_ref::<secret_manager::forge::ForgeError>())
    {
        return if f.is_configuration() { USAGE } else { PUBLISH };
    }
    if err
        .chain()
        .any(|c| c.is::<secret_manager::provider::ProviderError>())
    {
        return PREFLIGHT;
    }
    INTERNAL
}

/// A problem with the arguments that clap cannot see (e.g. a bad duration).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    /// A forge that fails or refuses one request is a publish failure the next run
    /// retries (12); only what the operator must fix — credentials, the API URL — is a
    /// usage error (2).
    #[test]
    fn forge_errors_are_usage_errors_only_when_the_operator_must_act() {
        use secret_manager::engine::EngineError;
        use secret_manager::forge::ForgeError;
        let server = || ForgeError::Failed {
            forge: "github",
            what: "POST /repos/o/r/pulls".into(),
            status: 502,
            message: "Bad Gateway".into(),
        };
        let no_creds = || ForgeError::NoCredentials {
            forge: "github",
            hint: "set GITHUB_TOKEN",
        };
        assert_eq!(code_for(&EngineError::Forge(server()).into()), PUBLISH);
        assert_eq!(
            code_for(
                &EngineError::NotProposed {
                    branch: "secret-manager/x".into(),
                    source: server()
                }
                .into()
            ),
            PUBLISH
        );
        assert_eq!(code_for(&anyhow::Error::new(server())), PUBLISH);
        assert_eq!(code_for(&EngineError::Forge(no_creds()).into()), USAGE);
        assert_eq!(code_for(&anyhow::Error::new(no_creds())), USAGE);
        let limited = ForgeError::RateLimited {
            forge: "gitlab",
            what: "GET /api/v4/projects/1/merge_requests".into(),
            reset_in: 3600,
            waited: 0,
        };
        assert_eq!(code_for(&EngineError::Forge(limited).into()), PUBLISH);
    }

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
