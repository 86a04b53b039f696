//! The `git` CLI as a subprocess (DESIGN §8).
//!
//! Argo CD, Kargo and jj drive git the same way: the user's SSH config, agents and
//! credential helpers keep working, and nothing here re-implements transport or auth.
//! Every call runs with `GIT_TERMINAL_PROMPT=0` (a missing credential fails instead of
//! hanging a CronJob) and `LC_ALL=C` (stable messages), keeps stderr for the error, and
//! never force-pushes: branches move fast-forward only, tags only with a lease.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
    /// A push was rejected because the remote moved (non-fast-forward or stale lease).
    #[error("push of {refname} to {remote} was rejected: the remote ref moved ({stderr})")]
    Rejected {
        /// Remote.
        remote: String,
        /// Ref being pushed.
        refname: String,
        /// git's message.
        stderr: String,
    },
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

/// A git work tree (or bare repo) driven through the CLI.
#[derive(Clone, Debug)]
pub struct Git {
    dir: PathBuf,
}

impl Git {
    /// Drives the repository at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Git { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new("git");
        c.arg("-C")
            .arg(&self.dir)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .env("GIT_EDITOR", "true")
            .env("GIT_MERGE_AUTOEDIT", "no")
            .stdin(Stdio::null());
        c
    }

    /// Runs git with `args`; returns stdout.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> GitResult<String> {
        self.run_input(args, None)
    }

    /// Runs git with `args`, feeding `input` on stdin; returns stdout.
    pub fn run_input<S: AsRef<OsStr>>(&self, args: &[S], input: Option<&str>) -> GitResult<String> {
        let mut c = self.command(args);
        let shown = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        tracing::debug!(target: "git", "git {shown}");
        let out = if let Some(input) = input {
            use std::io::Write as _;
            let mut child = c
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(GitError::Spawn)?;
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(input.as_bytes())
                .map_err(GitError::Spawn)?;
            child.wait_with_output().map_err(GitError::Spawn)?
        } else {
            c.output().map_err(GitError::Spawn)?
        };
        if !out.status.success() {
            return Err(GitError::Failed {
                args: shown,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                code: out.status.code(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `git rev-parse --verify <rev>^{commit}`; `None` when it does not exist.
    pub fn resolve(&self, rev: &str) -> GitResult<Option<Oid>> {
        match self.run(&[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ]) {
            Ok(s) => Ok(Some(s.trim().to_owned())),
            Err(GitError::Failed { code: Some(1), .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Fetches `refspecs` from `remote` (no tags unless asked for in a refspec).
    pub fn fetch(&self, remote: &str, refspecs: &[&str]) -> GitResult<()> {
        let mut args = vec![
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            remote,
        ];
        args.extend_from_slice(refspecs);
        self.run(&args).map(drop)
    }

    /// Every ref of `remote` (`git ls-remote --refs`), as (full name, commit). Fails when
    /// the remote is unreachable: a missing answer is never taken for a missing ref.
    pub fn ls_remote_all(
        &self,
        remote: &str,
    ) -> GitResult<std::collections::BTreeMap<String, Oid>> {
        let out = self.run(&["ls-remote", "--refs", remote])?;
        Ok(out
            .lines()
            .filter_map(|line| {
                let (oid, name) = line.split_once('\t')?;
                Some((name.to_owned(), oid.to_owned()))
            })
            .collect())
    }

    /// Whether `a` is an ancestor of (or equal to) `b`.
    pub fn is_ancestor(&self, a: &str, b: &str) -> GitResult<bool> {
        match self.run(&["merge-base", "--is-ancestor", a, b]) {
            Ok(_) => Ok(true),
            Err(GitError::Failed { code: Some(1), .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Number of commits in `a..b`.
    pub fn count(&self, a: &str, b: &str) -> GitResult<usize> {
        let args = ["rev-list", "--count", &format!("{a}..{b}")];
        let out = self.run(&args)?;
        out.trim().parse().map_err(|_| GitError::Parse {
            args: args.join(" "),
            message: format!("not a number: {}", out.trim()),
        })
    }

    /// Files changed between `a` and `b` (tree diff, repo-relative, `/`-separated).
    pub fn changed_files(&self, a: &str, b: &str) -> GitResult<Vec<String>> {
        let out = self.run(&["diff", "--name-only", "--no-renames", "-z", a, b, "--"])?;
        Ok(out
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Files a single commit changed relative to its first parent.
    pub fn commit_files(&self, commit: &str) -> GitResult<Vec<String>> {
        self.changed_files(&format!("{commit}^"), commit)
    }

    /// Stages `paths` (additions, changes and deletions) and commits them with `message`
    /// (trailers included). Returns the new commit.
    pub fn commit_paths(&self, paths: &[String], message: &str) -> GitResult<Oid> {
        let mut add = vec!["add".to_owned(), "--all".into(), "--".into()];
        add.extend(paths.iter().cloned());
        self.run(&add)?;
        let mut args = vec![
            "commit".to_owned(),
            "--quiet".into(),
            "--no-verify".into(),
            "-F".into(),
            "-".into(),
            "--".into(),
        ];
        args.extend(paths.iter().cloned());
        self.run_input(&args, Some(message))?;
        Ok(self.resolve("HEAD")?.expect("just committed"))
    }

    /// Pushes `oid` to `refs/heads/<branch>` on `remote` without force: git refuses a
    /// non-fast-forward update, which we report as [`GitError::Rejected`].
    pub fn push_branch(&self, remote: &str, oid: &str, branch: &str) -> GitResult<()> {
        let refname = format!("refs/heads/{branch}");
        self.push(remote, &[format!("{oid}:{refname}")], &refname)
    }

    /// Moves `refs/tags/<tag>` on `remote` to `oid` only if it still points at `old`
    /// (`None`: only if it does not exist) — `--force-with-lease`, never a blind force.
    pub fn push_tag_with_lease(
        &self,
        remote: &str,
        oid: &str,
        tag: &str,
        old: Option<&str>,
    ) -> GitResult<()> {
        let refname = format!("refs/tags/{tag}");
        let lease = format!("--force-with-lease={refname}:{}", old.unwrap_or(""));
        self.push(remote, &[lease, format!("{oid}:{refname}")], &refname)
    }

    fn push(&self, remote: &str, specs: &[String], refname: &str) -> GitResult<()> {
        // Options (the lease) before the remote, refspecs after it.
        let (opts, refspecs): (Vec<&String>, Vec<&String>) =
            specs.iter().partition(|s| s.starts_with("--"));
        let mut args: Vec<String> = vec!["push".into(), "--porcelain".into()];
        args.extend(opts.into_iter().cloned());
        args.push(remote.to_owned());
        args.extend(refspecs.into_iter().cloned());
        let out = self.command(&args).output().map_err(GitError::Spawn)?;
        if out.status.success() {
            return Ok(());
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        // --porcelain reports each ref as `<flag>\t<from>:<to>\t<summary> (<reason>)`.
        // `[rejected]` is git refusing a non-fast-forward or a stale lease (someone else
        // moved the ref); `[remote rejected]` is the server's hooks or permissions.
        let line = stdout
            .lines()
            .find(|l| l.starts_with('!'))
            .unwrap_or_default();
        if line.contains("[rejected]") {
            return Err(GitError::Rejected {
                remote: remote.to_owned(),
                refname: refname.to_owned(),
                stderr: line.rsplit('\t').next().unwrap_or(line).to_owned(),
            });
        }
        Err(GitError::Failed {
            args: args.join(" "),
            stderr: if line.is_empty() {
                stderr
            } else {
                format!("{}; {stderr}", line.rsplit('\t').next().unwrap_or(line))
            },
            code: out.status.code(),
        })
    }

    /// Adds a temporary detached worktree at `rev`; removed when the guard drops.
    pub fn temp_worktree(&self, rev: &str) -> GitResult<Worktree> {
        let dir = tempfile::Builder::new()
            .prefix("secret-manager-wt-")
            .tempdir()
            .map_err(GitError::Spawn)?;
        let path = dir.path().join("wt");
        self.run(&[
            OsStr::new("worktree"),
            OsStr::new("add"),
            OsStr::new("--quiet"),
            OsStr::new("--detach"),
            path.as_os_str(),
            OsStr::new(rev),
        ])?;
        Ok(Worktree {
            parent: self.clone(),
            git: Git::new(&path),
            _dir: dir,
        })
    }
}

/// A temporary worktree; removed (with `git worktree remove --force`) on drop.
pub struct Worktree {
    parent: Git,
    /// The worktree's own git handle.
    pub git: Git,
    _dir: tempfile::TempDir,
}

impl Drop for Worktree {
    fn drop(&mut self) {
        let _ = self.parent.run(&[
            OsStr::new("worktree"),
            OsStr::new("remove"),
            OsStr::new("--force"),
            self.git.dir().as_os_str(),
        ]);
        let _ = self.parent.run(&["worktree", "prune"]);
    }
}
