//! Exit codes (documented in docs/exit-codes.md). Cron alerting keys off these.

/// Success, including "nothing due".
pub const OK: u8 = 0;
/// A bug or an unexpected environment failure.
pub const INTERNAL: u8 = 1;
/// Bad command line or bad configuration; nothing was changed.
pub const USAGE: u8 = 2;
/// `lint` found problems.
pub const LINT_FINDINGS: u8 = 3;
/// A source could not be queried or failed its preflight; nothing was changed.
pub const PREFLIGHT: u8 = 10;
/// Minting, verifying or staging a new key failed; nothing was published for it.
pub const MINT: u8 = 11;
/// A git/publish step failed (remote unreachable, rejected, diverged); nothing was forced.
pub const PUBLISH: u8 = 12;
/// Revoking an old key failed; the new key is live and the old one still works.
pub const REVOKE: u8 = 13;

/// Maps an error to its exit code.
pub fn code_for(err: &anyhow::Error) -> u8 {
    let usage = err.chain().any(|cause| {
        cause.is::<secret_manager::config::ConfigError>()
            || cause.is::<secret_manager::RepoError>()
            || cause.is::<secret_manager::seal::SealError>()
            || cause.is::<UsageError>()
    });
    if usage {
        return USAGE;
    }
    if err.chain().any(|c| {
        c.is::<secret_manager::gitops::PublishError>()
            || c.is::<secret_manager::gitops::git::GitError>()
    }) {
        return PUBLISH;
    }
    INTERNAL
}

/// A problem with the arguments that clap cannot see (e.g. a bad duration).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
