//! The git layer's shared vocabulary — errors, ids, tree entries — in a module of its own,
//! so the CLI runner ([`super::git`]), the in-process object store ([`super::objects`])
//! and the push protocol ([`super::push`]) each depend on it and not on one another.

/// A git failure: the command and what git said.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitError {
    /// git could not be started.
    #[error("cannot run git: {0}; install git and make sure it is on PATH")]
    Spawn(std::io::Error),
    /// git exited non-zero.
    #[error("`git {args}` failed: {stderr}")]
    Failed {
        /// Arguments (never contain secrets).
        args: String,
        /// git's stderr, trimmed.
        stderr: String,
        /// Exit code.
        code: Option<i32>,
    },
    /// A push lost a race: the remote ref moved (non-fast-forward, stale lease, or the
    /// server's compare-and-swap failed because another push landed first).
    #[error("push of {refname} to {remote} was rejected: the remote ref moved ({stderr})")]
    Rejected {
        /// Remote.
        remote: String,
        /// Ref being pushed.
        refname: String,
        /// git's message.
        stderr: String,
    },
    /// The remote refused the push for good: a hook declined it or the credentials lack
    /// the permission. Retrying changes nothing.
    #[error("push of {refname} to {remote} was refused by the remote: {reason}")]
    Refused {
        /// Remote.
        remote: String,
        /// Ref being pushed.
        refname: String,
        /// What the remote said (hook output included).
        reason: String,
    },
    /// The repo named a remote this checkout does not have (or something that is not a
    /// remote name at all: a URL, a path, an option).
    #[error("{message}")]
    UnknownRemote {
        /// What is wrong and what to do.
        message: String,
    },
    /// The worktree holds something the tool will not write through (a symlink where
    /// its state lives).
    #[error("{message}")]
    Unsafe {
        /// What and where.
        message: String,
    },
    /// A failure found once and kept (the checkout's remotes, git's identities), said
    /// again to every caller.
    #[error(transparent)]
    Shared(std::sync::Arc<GitError>),
    /// Output was not what we expected.
    #[error("unexpected output from `git {args}`: {message}")]
    Parse {
        /// Arguments.
        args: String,
        /// What was wrong.
        message: String,
    },
}

/// Result alias.
pub type GitResult<T> = Result<T, GitError>;

/// A commit id (full hex).
pub type Oid = String;

/// One entry of a tree's top level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    /// The file name (no `/`).
    pub name: String,
    /// The mode as git stores it (`0o100644` a file, `0o040000` a directory, ...).
    pub mode: u32,
    /// The object the entry names.
    pub oid: Oid,
}
