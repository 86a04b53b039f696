//! Exit codes (documented in docs/exit-codes.md). Cron alerting keys off these.

/// Success, including "nothing due".
pub const OK: u8 = 0;
/// A bug or an unexpected environment failure.
pub const INTERNAL: u8 = 1;
/// Bad command line or bad configuration; nothing was changed.
pub const USAGE: u8 = 2;
/// `lint` found problems.
pub const LINT_FINDINGS: u8 = 3;

/// Maps an error to its exit code.
pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause
            .downcast_ref::<secret_manager::config::ConfigError>()
            .is_some()
            || cause.downcast_ref::<UsageError>().is_some()
        {
            return USAGE;
        }
    }
    INTERNAL
}

/// A problem with the arguments that clap cannot see (e.g. a bad duration).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
