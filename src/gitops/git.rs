//! Git: the `git` CLI as a subprocess for the network and for signing, and gix
//! in-process ([`super::objects`]) for local object work.
//!
//! Argo CD, Kargo and jj drive git the same way: the user's SSH config, agents and
//! credential helpers keep working, and nothing here re-implements transport or auth.
//! Every call runs with `GIT_TERMINAL_PROMPT=0` (a missing credential fails instead of
//! hanging a CronJob) and `LC_ALL=C` (stable messages), keeps stderr for the error, and
//! never force-pushes: branches move fast-forward only, tags only with a lease.

use super::push::porcelain_lines;
pub use super::push::{Lease, RefOutcome, RefUpdate, classify_rejection};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use super::types::{GitError, GitResult, Oid, TreeEntry};

mod trees;

/// A git work tree (or bare repo) driven through the CLI.
#[derive(Clone, Debug)]
pub struct Git {
    dir: PathBuf,
    sign: bool,
    /// The checkout's configured remote names, read once.
    remotes: std::sync::Arc<std::sync::OnceLock<Result<Vec<String>, std::sync::Arc<GitError>>>>,
    /// The object store in-process; `None` when gix cannot open the repository (the CLI
    /// does that work then) or `SECRET_MANAGER_GIT_OBJECTS=cli`.
    objects: std::sync::Arc<std::sync::OnceLock<Option<super::objects::Objects>>>,
    /// Author and committer of in-process commits, as git resolves them.
    idents: std::sync::Arc<
        std::sync::OnceLock<Result<super::objects::Idents, std::sync::Arc<GitError>>>,
    >,
}

/// Configuration every git child runs with, whatever the checkout or the environment
/// says: no hooks (a commit or checkout the tool makes never runs code from the
/// repository's config), no filesystem monitor, and no `ext::` transport. A remote's own
/// server-side hooks (a protected branch's pre-receive) still run: these settings are
/// not passed on to the receiving side.
const HARDENING: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "protocol.ext.allow=never",
];

impl Git {
    /// Drives the repository at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Git {
            dir: dir.into(),
            sign: false,
            remotes: Default::default(),
            objects: Default::default(),
            idents: Default::default(),
        }
    }

    /// The same repository with every object operation through the git CLI (what a
    /// repository gix cannot open gets): tests hold the two paths to the same answers.
    #[cfg(test)]
    pub(crate) fn cli_only(self) -> Self {
        let _ = self.objects.set(None);
        self
    }

    /// The in-process object store, opened on first use.
    fn objects(&self) -> Option<&super::objects::Objects> {
        self.objects
            .get_or_init(|| {
                if std::env::var("SECRET_MANAGER_GIT_OBJECTS").is_ok_and(|v| v == "cli") {
                    return None;
                }
                super::objects::Objects::open(&self.dir)
                    .inspect_err(|e| tracing::debug!(error = %e, "git objects through the CLI"))
                    .ok()
            })
            .as_ref()
    }

    /// Author and committer for an in-process commit: `git var`'s (environment, then
    /// config), asked once; the time is now unless `GIT_*_DATE` fixes it.
    fn idents(&self) -> GitResult<super::objects::Idents> {
        let cached = self.idents.get_or_init(|| {
            let one = |var: &str| -> GitResult<gix::actor::Signature> {
                let line = self.run(&["var", var])?;
                super::objects::parse_ident(&line).ok_or_else(|| GitError::Parse {
                    args: format!("var {var}"),
                    message: format!("printed `{}`", crate::text::escape(line.trim())),
                })
            };
            let idents = (|| {
                Ok(super::objects::Idents {
                    author: one("GIT_AUTHOR_IDENT")?,
                    committer: one("GIT_COMMITTER_IDENT")?,
                })
            })();
            idents.map_err(std::sync::Arc::new)
        });
        let mut idents = cached.clone().map_err(GitError::Shared)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        if std::env::var_os("GIT_AUTHOR_DATE").is_none() {
            idents.author.time.seconds = now;
        }
        if std::env::var_os("GIT_COMMITTER_DATE").is_none() {
            idents.committer.time.seconds = now;
        }
        Ok(idents)
    }

    /// Signs every commit this handle makes (`commit.gpgSign=true` for git's own commits,
    /// `-S` for `commit-tree`), with whatever `gpg.format` and `user.signingKey` say.
    pub fn signing(mut self, sign: bool) -> Self {
        self.sign = sign;
        self
    }

    /// Whether commits are signed.
    pub fn signs(&self) -> bool {
        self.sign
    }

    /// Whether git's own configuration (`commit.gpgSign`) asks for signed commits.
    pub fn configured_to_sign(&self) -> bool {
        self.run(&["config", "--type=bool", "--get", "commit.gpgsign"])
            .is_ok_and(|v| v.trim() == "true")
    }

    /// Proves that this handle can sign: signs a throwaway commit (written to the object
    /// store, never referenced). A run that must sign calls this before it changes
    /// anything.
    pub fn check_signing(&self) -> GitResult<()> {
        if !self.sign {
            return Ok(());
        }
        self.commit_files_tree(&[], &[], "secret-manager: signing check\n")
            .map(drop)
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
        // Its own process group: a terminal's Ctrl-C reaches the tool (which finishes the
        // step in flight), not a push in the middle of its work.
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        for h in HARDENING {
            c.arg("-c").arg(h);
        }
        if self.sign {
            c.arg("-c").arg("commit.gpgSign=true");
        }
        c.arg("-C")
            .arg(&self.dir)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .env("GIT_EDITOR", "true")
            .env("GIT_MERGE_AUTOEDIT", "no")
            // Paths are paths: a file named `*` or `:(exclude)x` in the repo is that file,
            // never a pattern or pathspec magic (`--literal-pathspecs` for every child).
            .env("GIT_LITERAL_PATHSPECS", "1")
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
            crate::blocking::run(|| child.wait_with_output()).map_err(GitError::Spawn)?
        } else {
            crate::blocking::run(|| c.output()).map_err(GitError::Spawn)?
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
        if let Some(o) = self.objects()
            && let Ok(found) = o.resolve(rev)
        {
            return Ok(found.map(Oid::from));
        }
        match self.run(&[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ]) {
            Ok(s) => Ok(Some(Oid::from_git(&s, "rev-parse")?)),
            Err(GitError::Failed { code: Some(1), .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Checks that `remote` is the name of a remote this checkout has configured. The
    /// repo only ever *names* remotes; a URL or a path in its place would make git send
    /// the credential helper's token wherever the repo says, and a leading `-` would be
    /// an option. Every call that talks to a remote goes through here first.
    pub fn check_remote(&self, remote: &str) -> GitResult<()> {
        if let Err(e) = crate::names::RemoteName::parse(remote) {
            return Err(GitError::UnknownRemote {
                message: e.to_string(),
            });
        }
        let known = self.remotes.get_or_init(|| {
            self.run(&["remote"])
                .map(|out| out.lines().map(str::to_owned).collect())
                .map_err(std::sync::Arc::new)
        });
        match known {
            Ok(names) if names.iter().any(|n| n == remote) => Ok(()),
            Ok(names) => Err(GitError::UnknownRemote {
                message: format!(
                    "remote `{remote}` is not configured in this checkout (it has: {}); add it with `git remote add {remote} <url>`",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
            }),
            Err(e) => Err(GitError::UnknownRemote {
                message: format!("cannot list the checkout's remotes: {e}"),
            }),
        }
    }

    /// Fetches `refspecs` from `remote` (no tags unless asked for in a refspec).
    pub fn fetch(&self, remote: &str, refspecs: &[&str]) -> GitResult<()> {
        self.check_remote(remote)?;
        let mut args = vec![
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--end-of-options",
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
        self.check_remote(remote)?;
        let out = self.run(&["ls-remote", "--refs", "--end-of-options", remote])?;
        Ok(out
            .lines()
            .filter_map(|line| {
                let (oid, name) = line.split_once('\t')?;
                Some((name.to_owned(), Oid::parse(oid)?))
            })
            .collect())
    }

    /// Whether `a` is an ancestor of (or equal to) `b`.
    pub fn is_ancestor(&self, a: &str, b: &str) -> GitResult<bool> {
        if let Some(o) = self.objects()
            && let Ok(yes) = o.is_ancestor(a, b)
        {
            return Ok(yes);
        }
        match self.run(&["merge-base", "--is-ancestor", a, b]) {
            Ok(_) => Ok(true),
            Err(GitError::Failed { code: Some(1), .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Number of commits in `a..b`.
    pub fn count(&self, a: &str, b: &str) -> GitResult<usize> {
        if let Some(o) = self.objects()
            && let Ok(n) = o.count(a, b)
        {
            return Ok(n);
        }
        let args = ["rev-list", "--count", &format!("{a}..{b}")];
        let out = self.run(&args)?;
        out.trim().parse().map_err(|_| GitError::Parse {
            args: args.join(" "),
            message: format!("not a number: {}", out.trim()),
        })
    }

    /// Files changed between `a` and `b` (tree diff, repo-relative, `/`-separated).
    pub fn changed_files(&self, a: &str, b: &str) -> GitResult<Vec<String>> {
        if let Some(o) = self.objects()
            && let Ok(files) = o.changed_files(a, b)
        {
            return Ok(files);
        }
        let out = self.run(&["diff", "--name-only", "--no-renames", "-z", a, b, "--"])?;
        Ok(out
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Whether each of `paths` is the same in `a` and `b` (`git diff --quiet a b --
    /// paths`, with the paths taken literally).
    pub fn same_paths(&self, a: &str, b: &str, paths: &[String]) -> GitResult<bool> {
        if let Some(o) = self.objects()
            && let Ok(same) = o.same_paths(a, b, paths)
        {
            return Ok(same);
        }
        let mut args = vec![
            "diff".to_owned(),
            "--quiet".into(),
            a.to_owned(),
            b.to_owned(),
            "--".into(),
        ];
        args.extend(paths.iter().cloned());
        match self.run(&args) {
            Ok(_) => Ok(true),
            Err(GitError::Failed { code: Some(1), .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Points the local ref `name` at `target` (`git update-ref name target`).
    pub fn set_ref(&self, name: &str, target: &str) -> GitResult<()> {
        if let Some(o) = self.objects()
            && o.set_ref(name, target).is_ok()
        {
            return Ok(());
        }
        self.run(&["update-ref", name, target]).map(drop)
    }

    /// Deletes the local ref `name` (`git update-ref -d name`).
    pub fn delete_ref(&self, name: &str) -> GitResult<()> {
        if let Some(o) = self.objects()
            && o.delete_ref(name).is_ok()
        {
            return Ok(());
        }
        self.run(&["update-ref", "-d", name]).map(drop)
    }

    /// Files a single commit changed relative to its first parent.
    pub fn commit_files(&self, commit: &str) -> GitResult<Vec<String>> {
        self.changed_files(&format!("{commit}^"), commit)
    }

    /// Stages `paths` (additions, changes and deletions) and commits them with `message`
    /// (trailers included). Returns the new commit. Nothing else is committed: the index
    /// matches `HEAD` before (every commit of the tool goes through here, and a failed
    /// one puts the index back) and only `paths` are staged.
    ///
    /// Files go in by name through `git update-index --stdin`, not as pathspecs to
    /// `git add`/`git commit --`: git matches every index entry against every pathspec,
    /// which at 10,000 credentials (20,000 paths in a 20,000-file tree) was most of the
    /// run's CPU.
    pub fn commit_paths(&self, paths: &[String], message: &str) -> GitResult<Oid> {
        if paths.iter().any(|p| self.dir.join(p).is_dir()) {
            // A directory is a pathspec: everything under it.
            let mut add = vec!["add".to_owned(), "--all".into(), "--".into()];
            add.extend(paths.iter().cloned());
            self.run(&add)?;
        } else {
            let input: String = paths.iter().map(|p| format!("{p}\0")).collect();
            self.run_input(
                &["update-index", "--add", "--remove", "-z", "--stdin"],
                Some(&input),
            )?;
        }
        let committed = self.run_input(
            &["commit", "--quiet", "--no-verify", "-F", "-"],
            Some(message),
        );
        if let Err(e) = committed {
            // Unstage: the next commit must carry only its own paths.
            let _ = self.run(&["reset", "--quiet"]);
            return Err(e);
        }
        Ok(self.resolve("HEAD")?.expect("just committed"))
    }

    /// Pushes `oid` to `refs/heads/<branch>` on `remote` without force: git refuses a
    /// non-fast-forward update. A lost race is [`GitError::Rejected`]; a hook or a missing
    /// permission is [`GitError::Refused`].
    pub fn push_branch(&self, remote: &str, oid: &str, branch: &str) -> GitResult<()> {
        self.push_one(
            remote,
            RefUpdate {
                src: Some(Oid::from_git(oid, "push")?),
                dst: format!("refs/heads/{branch}"),
                lease: Lease::FastForward,
            },
        )
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
        self.push_one(
            remote,
            RefUpdate {
                src: Some(Oid::from_git(oid, "push")?),
                dst: format!("refs/tags/{tag}"),
                lease: match old {
                    Some(o) => Lease::At(Oid::from_git(o, "push")?),
                    None => Lease::Absent,
                },
            },
        )
    }

    fn push_one(&self, remote: &str, update: RefUpdate) -> GitResult<()> {
        let refname = update.dst.clone();
        let mut out = self.push_refs(remote, std::slice::from_ref(&update))?;
        match out.pop().expect("one outcome per update") {
            RefOutcome::Updated => Ok(()),
            RefOutcome::Lost(reason) => Err(GitError::Rejected {
                remote: remote.to_owned(),
                refname,
                stderr: reason,
            }),
            RefOutcome::Refused(reason) => Err(GitError::Refused {
                remote: remote.to_owned(),
                refname,
                reason,
            }),
        }
    }

    /// Pushes several ref updates in one `git push` (not atomic: each ref succeeds or fails
    /// on its own) and reports each one's outcome, in the order given. Never forces: a
    /// branch moves fast-forward, anything else only under its lease. Fails as a whole only
    /// when git could not talk to the remote at all.
    pub fn push_refs(&self, remote: &str, updates: &[RefUpdate]) -> GitResult<Vec<RefOutcome>> {
        self.push_refs_with(remote, updates, false)
    }

    /// [`Self::push_refs`] with `--atomic`: the remote applies every update or none. When
    /// one is rejected, the others report why (git's "atomic push failed"); a caller reads
    /// the first `Lost` or `Refused` as the outcome of the whole push.
    pub fn push_refs_atomic(
        &self,
        remote: &str,
        updates: &[RefUpdate],
    ) -> GitResult<Vec<RefOutcome>> {
        self.push_refs_with(remote, updates, true)
    }

    fn push_refs_with(
        &self,
        remote: &str,
        updates: &[RefUpdate],
        atomic: bool,
    ) -> GitResult<Vec<RefOutcome>> {
        self.check_remote(remote)?;
        let mut args: Vec<String> = vec!["push".into(), "--porcelain".into()];
        if atomic {
            args.push("--atomic".into());
        }
        for u in updates {
            match &u.lease {
                Lease::FastForward => {}
                Lease::Absent => args.push(format!("--force-with-lease={}:", u.dst)),
                Lease::At(old) => args.push(format!("--force-with-lease={}:{old}", u.dst)),
            }
        }
        args.push("--end-of-options".into());
        args.push(remote.to_owned());
        for u in updates {
            args.push(format!("{}:{}", u.src.as_deref().unwrap_or(""), u.dst));
        }
        let shown = args.join(" ");
        tracing::debug!(target: "git", "git {shown}");
        let mut c = self.command(&args);
        let out = crate::blocking::run(|| c.output()).map_err(GitError::Spawn)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        let lines = porcelain_lines(&stdout);
        if lines.is_empty() {
            return Err(GitError::Failed {
                args: shown,
                stderr,
                code: out.status.code(),
            });
        }
        Ok(updates
            .iter()
            .map(|u| match lines.iter().find(|(_, to, _)| *to == u.dst) {
                Some(('!', _, summary)) => classify_rejection(summary, &stderr),
                Some(_) => RefOutcome::Updated,
                // git names every ref it tried; a missing line means it never got that far.
                None => RefOutcome::Refused(if stderr.is_empty() {
                    "git did not report this ref".into()
                } else {
                    stderr.clone()
                }),
            })
            .collect())
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
            git: Git::new(&path).signing(self.sign),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_request_with_a_line_break_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let git = Git::new(d.path());
        let e = git
            .read_blobs(&["HEAD:a.yaml\nHEAD:b.yaml".to_owned()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("line break"), "{e}");
    }
}
