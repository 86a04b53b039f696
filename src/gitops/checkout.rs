//! The operator's checkout against the remote's main.
//!
//! `list` reads the files of the checkout; `rotate` works from the main remote (it fetches
//! main and commits through a worktree of its own). When the two differ the operator sees
//! old keys after a rotation, or a manifest they never pushed is "nothing to do". This
//! module says how they differ — from the remote-tracking ref, without a fetch — and
//! fast-forwards a clean checkout of main after a rotation.

use super::Fleet;
use super::git::GitResult;

/// How the checkout's `HEAD` relates to the last fetched main.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckoutState {
    /// `<remote>/<branch>`, for messages.
    pub tracking: String,
    /// The command that brings the checkout up to date (works without an upstream).
    pub pull: String,
    /// Commits on the remote's main (as last fetched) that `HEAD` lacks.
    pub behind: usize,
    /// Commits of `HEAD` that are not on the remote's main.
    pub ahead: usize,
    /// Tracked files with changes that are not committed.
    pub dirty: bool,
    /// Whether `HEAD` is the main branch itself (not another branch, not detached).
    pub on_main: bool,
}

impl CheckoutState {
    /// What an operator should know before trusting `list`, or why `rotate` did not see a
    /// change; `None` when the checkout is main as last fetched.
    pub fn note(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.behind > 0 {
            parts.push(format!(
                "this checkout is {} commit(s) behind {} (as last fetched): it does not show the latest rotations; run `{}`",
                self.behind, self.tracking, self.pull
            ));
        }
        if self.ahead > 0 {
            parts.push(format!(
                "{} commit(s) of this checkout are not on {}: rotate works from {} and does not see them until they are pushed",
                self.ahead, self.tracking, self.tracking
            ));
        }
        if self.dirty {
            parts.push(format!(
                "this checkout has uncommitted changes: rotate works from {} and does not see them",
                self.tracking
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// The state of the fleet's checkout; `None` when it is not a git work tree or main was
/// never fetched.
pub fn state(fleet: &Fleet) -> Option<CheckoutState> {
    let git = fleet.git();
    if git
        .run(&["rev-parse", "--is-inside-work-tree"])
        .ok()?
        .trim()
        != "true"
    {
        return None;
    }
    let tracking_ref = fleet.main_tracking();
    git.resolve(&tracking_ref).ok()??;
    let head = git.resolve("HEAD").ok()??;
    let behind = git.count(&head, &tracking_ref).ok()?;
    let ahead = git.count(&tracking_ref, &head).ok()?;
    let dirty = !git
        .run(&["status", "--porcelain", "--untracked-files=no"])
        .ok()?
        .trim()
        .is_empty();
    let on_main = git
        .run(&["symbolic-ref", "--quiet", "--short", "HEAD"])
        .map(|b| b.trim() == fleet.main_branch())
        .unwrap_or(false);
    Some(CheckoutState {
        tracking: format!("{}/{}", fleet.main_remote(), fleet.main_branch()),
        pull: format!(
            "git pull --ff-only {} {}",
            fleet.main_remote(),
            fleet.main_branch()
        ),
        behind,
        ahead,
        dirty,
        on_main,
    })
}

/// After a rotation: fast-forwards the checkout to the fetched main when that is safe
/// (on the main branch, clean, nothing of its own); returns how many commits it moved.
/// `Ok(0)` when nothing was to do or it was not safe (see [`state`] to say why).
pub fn fast_forward(fleet: &Fleet) -> GitResult<usize> {
    let Some(s) = state(fleet) else {
        return Ok(0);
    };
    if !s.on_main || s.dirty || s.ahead > 0 || s.behind == 0 {
        return Ok(0);
    }
    fleet
        .git()
        .run(&["merge", "--ff-only", "--quiet", &fleet.main_tracking()])?;
    Ok(s.behind)
}

/// Why `--clone` could not give a checkout.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloneError {
    /// The URL carries a password or token: it would end up in argv and logs.
    #[error(
        "--clone URL must not contain credentials; use an SSH key (GIT_SSH_COMMAND) or an HTTPS credential helper (docs/cronjob.md)"
    )]
    Credentials,
    /// The directory holds something that is not a clone of the URL.
    #[error(
        "--clone: {dir} is not empty and is not a clone of {url}; give --repo an empty (or new) directory, or the clone an earlier --clone run made"
    )]
    NotThisClone {
        /// The directory asked for.
        dir: String,
        /// The URL asked for.
        url: String,
    },
    /// A `--clone-remote` that is not `NAME=URL` with a remote name (letters, digits,
    /// `.`, `_`, `-`, `/`).
    #[error("--clone-remote: expected NAME=URL with NAME a git remote name, got `{0}`")]
    Remote(String),
    /// Something that is not a repository URL or path (empty, or an option).
    #[error("--clone: `{0}` is not a repository URL or path")]
    NotAUrl(String),
    /// Reading or making the directory failed.
    #[error("--clone: {0}")]
    Io(#[from] std::io::Error),
    /// `git clone` or `git remote` failed.
    #[error("--clone: {0}")]
    Git(#[from] super::git::GitError),
}

/// Refuses a URL that carries a password or token (`https://user:token@host/...`, or any
/// user in an HTTP URL), and anything git would read as an option.
pub fn check_clone_url(url: &str) -> Result<(), CloneError> {
    if url.is_empty() || url.starts_with('-') {
        return Err(CloneError::NotAUrl(crate::text::escape(url).into_owned()));
    }
    let authority = url
        .split_once("://")
        .map(|(_, r)| r.split('/').next().unwrap_or_default());
    let userinfo = authority.and_then(|a| a.rsplit_once('@')).map(|(u, _)| u);
    if userinfo.is_some_and(|u| u.contains(':') || url.starts_with("http")) {
        return Err(CloneError::Credentials);
    }
    Ok(())
}

/// What [`clone_into`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cloned {
    /// A new clone of `branch`.
    Fresh,
    /// The clone an earlier run made into the same directory, of the same URL (a CronJob
    /// with a persistent volume): reused, since every run fetches what it needs.
    Reused,
}

/// `--clone`: clones `url` (its `branch`) into `dir`, or reuses the clone of the same URL
/// an earlier run left there — never another directory's content — and adds (or, reused,
/// sets) the `remotes` (`NAME=URL` each, checked like `url`).
pub fn clone_into(
    url: &str,
    branch: &str,
    dir: &std::path::Path,
    remotes: &[String],
) -> Result<Cloned, CloneError> {
    check_clone_url(url)?;
    let remotes: Vec<(&str, &str)> = remotes
        .iter()
        .map(|r| {
            r.split_once('=')
                .filter(|(name, _)| crate::names::RemoteName::parse(name).is_ok())
                .ok_or_else(|| CloneError::Remote(crate::text::escape(r).into_owned()))
        })
        .collect::<Result<_, _>>()?;
    for (_, u) in &remotes {
        check_clone_url(u)?;
    }
    let repo_git = super::git::Git::new(dir);
    let cloned = if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        let origin = repo_git
            .run(&["remote", "get-url", "origin"])
            .map(|u| u.trim().to_owned());
        if !(dir.join(".git").exists() && origin.as_deref().is_ok_and(|o| o == url)) {
            return Err(CloneError::NotThisClone {
                dir: dir.display().to_string(),
                url: url.to_owned(),
            });
        }
        tracing::info!(dir = %dir.display(), "reusing the clone from an earlier run");
        Cloned::Reused
    } else {
        let parent = dir.parent().unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(parent)?;
        tracing::info!(%branch, "cloning the config repo");
        super::git::Git::new(parent).run(&[
            std::ffi::OsStr::new("clone"),
            std::ffi::OsStr::new("--quiet"),
            std::ffi::OsStr::new("--branch"),
            std::ffi::OsStr::new(branch),
            std::ffi::OsStr::new("--"),
            std::ffi::OsStr::new(url),
            dir.as_os_str(),
        ])?;
        Cloned::Fresh
    };
    for (name, u) in remotes {
        let exists = cloned == Cloned::Reused && repo_git.run(&["remote", "get-url", name]).is_ok();
        let verb = if exists { "set-url" } else { "add" };
        repo_git.run(&["remote", verb, name, u])?;
    }
    Ok(cloned)
}

#[cfg(test)]
mod tests {
    use super::{CloneError, check_clone_url, clone_into};

    /// A password or token in a URL is refused (it would reach argv and logs); an SSH user
    /// is not a secret.
    #[test]
    fn a_url_with_credentials_is_refused() {
        for bad in [
            "https://bot:ghp_token@github.com/org/config.git",
            "https://x-access-token@github.com/org/config.git",
            "http://user@git.example/config.git",
            "ssh://git:secret@git.example/config.git",
        ] {
            assert!(
                matches!(check_clone_url(bad), Err(CloneError::Credentials)),
                "{bad}"
            );
        }
        for good in [
            "https://github.com/org/config.git",
            "ssh://git@github.com/org/config.git",
            "git@github.com:org/config.git",
            "/srv/git/config.git",
        ] {
            assert!(check_clone_url(good).is_ok(), "{good}");
        }
    }

    /// A malformed `--clone-remote` (one whose name is an option or a path), one with
    /// credentials, or a URL git would read as an option stops before anything is cloned
    /// or created.
    #[test]
    fn bad_remotes_are_refused_before_the_clone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("config");
        let url = "/nonexistent/config.git";
        let e = clone_into(url, "main", &dir, &["prod".into()]).unwrap_err();
        assert!(matches!(e, CloneError::Remote(ref r) if r == "prod"), "{e}");
        let e = clone_into(url, "main", &dir, &["prod=https://u:t@h/x".into()]).unwrap_err();
        assert!(matches!(e, CloneError::Credentials), "{e}");
        for hostile in [
            "--upload-pack=touch x=/srv/git/c.git",
            "=/srv/git/c.git",
            "../x=/srv",
        ] {
            let e = clone_into(url, "main", &dir, &[hostile.into()]).unwrap_err();
            assert!(matches!(e, CloneError::Remote(_)), "{hostile}: {e}");
        }
        for hostile in ["--upload-pack=touch /tmp/x", "-oProxyCommand=x", ""] {
            let e = clone_into(hostile, "main", &dir, &[]).unwrap_err();
            assert!(matches!(e, CloneError::NotAUrl(_)), "{hostile}: {e}");
        }
        assert!(!dir.exists());
    }
}
