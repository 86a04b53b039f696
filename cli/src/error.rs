//! [`CommandError`]: what a command returns when it cannot do its job, and the one place
//! an error becomes words (the message, its causes, hints) and an exit code.
//!
//! Each library error converts with `From`, which decides its [`Kind`] by what the error
//! *is* — a bad configuration is the operator's to fix (2), a forge's 5xx is a publish
//! failure the next run retries (12) — so a command just writes `?`. Context added on the
//! way (`.context("--clone")`) changes the words, never the kind. The exit codes are
//! documented in docs/exit-codes.md; [`crate::exit`] holds their numbers.

use crate::exit;
use secret_manager::engine::{EngineError, Phase};
use std::fmt::Display;

/// The result of a command.
pub type Result<T, E = CommandError> = std::result::Result<T, E>;

/// A problem with the arguments that clap cannot see (e.g. a bad duration).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Who has to act, which decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The command line, the configuration or the repo's content is wrong; nothing was
    /// changed (2).
    Usage,
    /// A step of a rotation failed, as a per-credential failure of that phase would (10–15).
    Failed(Phase),
    /// A bug or an environment failure nobody anticipated (1).
    Internal,
}

/// An error that ended a command.
#[derive(Debug)]
pub struct CommandError {
    kind: Kind,
    error: anyhow::Error,
    hints: Vec<String>,
}

impl CommandError {
    /// An error of `kind`.
    pub fn new(kind: Kind, error: impl Into<anyhow::Error>) -> CommandError {
        CommandError {
            kind,
            error: error.into(),
            hints: Vec::new(),
        }
    }

    /// A problem with the arguments that clap cannot see (a bad duration, a missing
    /// `--yes`).
    pub fn usage(message: impl Into<String>) -> CommandError {
        CommandError::new(Kind::Usage, UsageError(message.into()))
    }

    /// An environment failure with no better kind (the stdout closed, a temporary
    /// directory that cannot be made).
    pub fn internal(error: impl Into<anyhow::Error>) -> CommandError {
        CommandError::new(Kind::Internal, error)
    }

    /// Adds a line the user reads after the error: what to do next.
    pub fn hint(mut self, hint: impl Into<String>) -> CommandError {
        self.hints.push(hint.into());
        self
    }

    /// Puts `context` in front of the message; the kind stays.
    pub fn context(self, context: impl Display + Send + Sync + 'static) -> CommandError {
        CommandError {
            error: self.error.context(context),
            ..self
        }
    }

    /// Who has to act.
    #[cfg(test)]
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self.kind {
            Kind::Usage => exit::USAGE,
            Kind::Failed(phase) => exit::for_phase(phase),
            Kind::Internal => exit::INTERNAL,
        }
    }

    /// The message with its causes (`a: b: c`), then one `hint:` line per hint. A cause
    /// the message already says (an error whose text includes its source) is not said
    /// twice.
    pub fn render(&self) -> Vec<String> {
        let mut message = String::new();
        for cause in self.error.chain() {
            let c = cause.to_string();
            if message.contains(&c) {
                continue;
            }
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&c);
        }
        let mut lines = vec![message];
        lines.extend(self.hints.iter().map(|h| format!("hint: {h}")));
        lines
    }

    /// Tells the user: the message as an error, each hint on its own line after it (a log
    /// record each with `--log-format json`).
    pub fn say(&self) {
        let mut lines = self.render().into_iter();
        if let Some(first) = lines.next() {
            crate::output::say(crate::output::Level::Error, &first);
        }
        for line in lines {
            crate::output::say(crate::output::Level::Info, &line);
        }
    }
}

/// `.context(...)` on a result whose error converts into a [`CommandError`].
pub trait Context<T> {
    /// Puts `context` in front of the error's message; the kind stays.
    fn context(self, context: impl Display + Send + Sync + 'static) -> Result<T>;
    /// As [`Context::context`], built only on failure.
    fn with_context<C: Display + Send + Sync + 'static>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<CommandError>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Display + Send + Sync + 'static) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }
    fn with_context<C: Display + Send + Sync + 'static>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| e.into().context(f()))
    }
}

/// Errors of the operator's input: the command line, the configuration, the repo.
macro_rules! usage_errors {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for CommandError {
            fn from(e: $t) -> CommandError {
                CommandError::new(Kind::Usage, e)
            }
        }
    )*};
}
usage_errors!(
    UsageError,
    secret_manager::config::ConfigError,
    secret_manager::RepoError,
    secret_manager::seal::SealError,
    // --merge-into refusals: the file or the input is not what an edit can take.
    secret_manager::seal::ops::MergeError,
    secret_manager::manifest::edit::EditError,
    secret_manager::duration::DurationError,
);

/// The environment failed under us: a write to stdout, a temporary file.
macro_rules! internal_errors {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for CommandError {
            fn from(e: $t) -> CommandError {
                CommandError::new(Kind::Internal, e)
            }
        }
    )*};
}
internal_errors!(
    std::io::Error,
    serde_json::Error,
    std::fmt::Error,
    csv::Error,
    serde_saphyr::SerializeError,
);

impl From<EngineError> for CommandError {
    fn from(e: EngineError) -> CommandError {
        use secret_manager::MainError;
        let kind = match &e {
            EngineError::Config(_)
            | EngineError::Main(MainError::Config(_) | MainError::Moved(_))
            | EngineError::Signing(_) => Kind::Usage,
            EngineError::Forge(f) | EngineError::NotProposed { source: f, .. }
                if f.is_configuration() =>
            {
                Kind::Usage
            }
            EngineError::Provider(_) => Kind::Failed(Phase::Preflight),
            _ => Kind::Failed(Phase::Publish),
        };
        CommandError::new(kind, e)
    }
}

impl From<secret_manager::MainError> for CommandError {
    fn from(e: secret_manager::MainError) -> CommandError {
        EngineError::Main(e).into()
    }
}

impl From<secret_manager::create::CreateError> for CommandError {
    fn from(e: secret_manager::create::CreateError) -> CommandError {
        use secret_manager::create::CreateError;
        let kind = match &e {
            CreateError::Invalid(_) => Kind::Usage,
            CreateError::Failed { phase, .. } => Kind::Failed(*phase),
            _ => Kind::Internal,
        };
        CommandError::new(kind, e)
    }
}

impl From<secret_manager::gitops::PublishError> for CommandError {
    fn from(e: secret_manager::gitops::PublishError) -> CommandError {
        use secret_manager::gitops::PublishError;
        let kind = match &e {
            // A revision the user named that is not there, or not on main: their input.
            PublishError::UnknownRevision(_) | PublishError::NotOnMain { .. } => Kind::Usage,
            _ => Kind::Failed(Phase::Publish),
        };
        CommandError::new(kind, e)
    }
}

impl From<secret_manager::gitops::checkout::CloneError> for CommandError {
    /// What the operator gave (a URL with credentials, a directory that holds something
    /// else, a malformed remote) is theirs to fix; a clone that fails is a git failure; a
    /// directory that cannot be read, the environment's.
    fn from(e: secret_manager::gitops::checkout::CloneError) -> CommandError {
        use secret_manager::gitops::checkout::CloneError;
        let kind = match &e {
            CloneError::Credentials
            | CloneError::NotThisClone { .. }
            | CloneError::Remote(_)
            | CloneError::NotAUrl(_) => Kind::Usage,
            CloneError::Io(_) => Kind::Internal,
            _ => Kind::Failed(Phase::Publish),
        };
        CommandError::new(kind, e)
    }
}

impl From<secret_manager::gitops::git::GitError> for CommandError {
    fn from(e: secret_manager::gitops::git::GitError) -> CommandError {
        CommandError::new(Kind::Failed(Phase::Publish), e)
    }
}

impl From<secret_manager::forge::ForgeError> for CommandError {
    /// Only what the operator must fix (credentials, the API URL) is a usage error; a
    /// forge that fails or refuses one request is a publish failure the next run retries.
    fn from(e: secret_manager::forge::ForgeError) -> CommandError {
        let kind = if e.is_configuration() {
            Kind::Usage
        } else {
            Kind::Failed(Phase::Publish)
        };
        CommandError::new(kind, e)
    }
}

impl From<secret_manager::provider::ProviderError> for CommandError {
    fn from(e: secret_manager::provider::ProviderError) -> CommandError {
        CommandError::new(Kind::Failed(Phase::Preflight), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secret_manager::forge::ForgeError;

    fn server() -> ForgeError {
        ForgeError::Failed {
            forge: "github",
            what: "POST /repos/o/r/pulls".into(),
            status: 502,
            message: "Bad Gateway".into(),
        }
    }

    fn no_creds() -> ForgeError {
        ForgeError::NoCredentials {
            forge: "github",
            hint: "set GITHUB_TOKEN",
        }
    }

    /// A forge that fails or refuses one request is a publish failure the next run
    /// retries (12), however it arrives; only what the operator must fix — credentials,
    /// the API URL — is a usage error (2).
    #[test]
    fn forge_errors_are_usage_errors_only_when_the_operator_must_act() {
        let code = |e: CommandError| e.exit_code();
        assert_eq!(code(EngineError::Forge(server()).into()), exit::PUBLISH);
        let not_proposed = EngineError::NotProposed {
            branch: "secret-manager/x".into(),
            source: server(),
        };
        assert_eq!(code(not_proposed.into()), exit::PUBLISH);
        assert_eq!(code(server().into()), exit::PUBLISH);
        assert_eq!(code(EngineError::Forge(no_creds()).into()), exit::USAGE);
        assert_eq!(code(no_creds().into()), exit::USAGE);
        let limited = ForgeError::RateLimited {
            forge: "gitlab",
            what: "GET /api/v4/projects/1/merge_requests".into(),
            reset_in: 3600,
            waited: 0,
        };
        assert_eq!(code(EngineError::Forge(limited).into()), exit::PUBLISH);
    }

    /// Context changes the words, never who has to act; hints follow the message.
    #[test]
    fn context_keeps_the_kind_and_hints_come_last() {
        let e = CommandError::from(no_creds())
            .context("opening the pull request")
            .hint("see docs/pull-requests.md");
        assert_eq!(e.kind(), Kind::Usage);
        assert_eq!(e.exit_code(), exit::USAGE);
        let lines = e.render();
        assert!(
            lines[0].starts_with("opening the pull request: "),
            "context first: {lines:?}"
        );
        assert!(
            lines[0].contains("GITHUB_TOKEN"),
            "the cause stays: {lines:?}"
        );
        assert_eq!(lines[1..], ["hint: see docs/pull-requests.md"]);
        let r: std::result::Result<(), std::io::Error> = Err(std::io::Error::other("disk full"));
        let e = r.context("writing out.yaml").unwrap_err();
        assert_eq!(e.exit_code(), exit::INTERNAL);
        assert_eq!(e.render(), ["writing out.yaml: disk full"]);
    }

    /// An error whose message already includes its source (`CreateError`'s does) says
    /// it once.
    #[test]
    fn a_cause_already_said_is_not_repeated() {
        use secret_manager::create::CreateError;
        let e = CreateError::Failed {
            phase: Phase::Mint,
            error: Box::new(EngineError::Signing(
                secret_manager::gitops::git::GitError::Failed {
                    args: "commit-tree -S".into(),
                    stderr: "no key".into(),
                    code: Some(128),
                },
            )),
            undo: Some("rolled back".into()),
        };
        let lines = CommandError::from(e).context("create").render();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].matches("no key").count(), 1, "{lines:?}");
        assert!(lines[0].starts_with("create: "), "{lines:?}");
        assert!(lines[0].ends_with("; rolled back"), "{lines:?}");
    }

    /// A failed create keeps the phase that failed as its code.
    #[test]
    fn a_failed_step_keeps_its_phase() {
        use secret_manager::create::CreateError;
        let e = CreateError::Invalid("no such cluster".into());
        assert_eq!(CommandError::from(e).exit_code(), exit::USAGE);
        let e = secret_manager::provider::ProviderError::UnknownSource {
            name: "vault".into(),
        };
        assert_eq!(CommandError::from(e).exit_code(), exit::PREFLIGHT);
    }
}
