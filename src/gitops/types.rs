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
        /// The git remote (its name in the checkout).
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
        /// The git remote (its name in the checkout).
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

/// A git object id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits, checked when it is
/// made — from git's own output, never from repo content unchecked — so an id can be put
/// on a git command line or in a lease (`--force-with-lease=<ref>:<oid>`) as it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Oid(String);

impl Oid {
    /// `s` (trimmed, lowercased) if it is a full object id.
    pub fn parse(s: &str) -> Option<Oid> {
        let s = s.trim();
        ((s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Oid(s.to_ascii_lowercase()))
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An id git printed for `what`; anything else is a parse error, not an id.
    pub(crate) fn from_git(printed: &str, what: &str) -> GitResult<Oid> {
        Oid::parse(printed).ok_or_else(|| GitError::Parse {
            args: what.to_owned(),
            message: format!(
                "`{}` is not an object id",
                crate::text::escape_cut(printed.trim(), 80)
            ),
        })
    }
}

impl From<gix::ObjectId> for Oid {
    fn from(id: gix::ObjectId) -> Oid {
        Oid(id.to_string())
    }
}

impl std::ops::Deref for Oid {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Oid {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for Oid {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_ref()
    }
}

impl std::borrow::Borrow<str> for Oid {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Oid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Oid> for String {
    fn from(o: Oid) -> String {
        o.0
    }
}

impl PartialEq<str> for Oid {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Oid {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for Oid {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<Oid> for String {
    fn eq(&self, other: &Oid) -> bool {
        *self == other.0
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oid_is_only_what_git_prints_for_one() {
        let sha1 = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(Oid::parse(sha1).unwrap(), sha1);
        assert_eq!(
            Oid::parse(&format!(" {}\n", sha1.to_uppercase())).unwrap(),
            sha1
        );
        assert!(Oid::parse(&"a".repeat(64)).is_some());
        // Not ids: a short id, a ref, an option, a range, text with the right length.
        for not in [
            "0123456",
            "refs/heads/main",
            "--upload-pack=touch /tmp/x",
            "a..b",
            &"g".repeat(40),
            &"a".repeat(41),
        ] {
            assert_eq!(Oid::parse(not), None, "{not}");
        }
        let e = Oid::from_git("--exec\u{1b}[2J", "rev-parse").unwrap_err();
        assert!(!e.to_string().contains('\u{1b}'), "{e}");
    }
}
