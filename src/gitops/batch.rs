//! [`MainWriter`]: every write the engine makes to main — or, in pull-request mode, to
//! the journal ref — goes through here.
//!
//! The engine edits files in a temporary worktree at the remote ref (the user's checkout
//! is never touched), then asks for one commit and push per phase. The writer commits,
//! pushes without force, and when another writer got there first — any lost race, client
//! or server side — fetches, rebases and tries again with jittered backoff. A rebase that
//! conflicts is aborted and reported; nothing is half-applied.

use super::git::{Git, GitError, GitResult, Oid, Worktree};
use super::{Fleet, PublishError, PublishResult, RefTarget};
use std::path::Path;

/// Commits and pushes one ref from a private worktree.
pub struct MainWriter {
    fleet: Fleet,
    wt: Worktree,
    target: RefTarget,
}

impl std::fmt::Debug for MainWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MainWriter")
            .field("dir", &self.wt.git.dir())
            .finish_non_exhaustive()
    }
}

/// Refuses a worktree whose `.secret-manager/` is, or holds, a symlink: the tool writes
/// its records there, and a committed symlink would make it write (and read) outside the
/// repo.
fn refuse_symlinks(dir: &Path) -> GitResult<()> {
    match crate::fsx::find_symlink(dir, Path::new(super::STATE_DIR.trim_end_matches('/'))) {
        None => Ok(()),
        Some(p) => Err(GitError::Unsafe {
            message: format!(
                "{} is a symlink; the tool's state under {} must be plain files and directories: remove the symlink from main (nothing was written)",
                crate::text::path(p.strip_prefix(dir).unwrap_or(&p)),
                super::STATE_DIR
            ),
        }),
    }
}

impl MainWriter {
    /// A worktree at the fleet's main as last fetched.
    pub fn open(fleet: &Fleet) -> GitResult<MainWriter> {
        let wt = fleet.git().temp_worktree(&fleet.main_tracking())?;
        refuse_symlinks(wt.git.dir())?;
        Ok(MainWriter {
            fleet: fleet.clone(),
            wt,
            target: fleet.main_target(),
        })
    }

    /// A worktree at `target` (fetched now). A ref the remote does not have yet starts as
    /// an empty root commit, made locally; the first push creates it.
    pub fn open_ref(fleet: &Fleet, target: RefTarget) -> GitResult<MainWriter> {
        let tip = match fleet.fetch_target(&target)? {
            Some(t) => t,
            None => {
                let root = fleet.git().commit_files_tree(
                    &[],
                    &[],
                    &format!("secret-manager: start {}\n", target.refname),
                )?;
                fleet.git().set_ref(&target.tracking, &root)?;
                root
            }
        };
        let wt = fleet.git().temp_worktree(&tip)?;
        refuse_symlinks(wt.git.dir())?;
        Ok(MainWriter {
            fleet: fleet.clone(),
            wt,
            target,
        })
    }

    /// Where the engine reads and edits files.
    pub fn dir(&self) -> &Path {
        self.wt.git.dir()
    }

    /// The worktree's git (for read-only lookups such as the staging commits).
    pub fn git(&self) -> &Git {
        &self.wt.git
    }

    /// The commit the worktree is at.
    pub fn head(&self) -> GitResult<Oid> {
        Ok(self.wt.git.resolve("HEAD")?.expect("worktree has a HEAD"))
    }

    /// Commits `paths` (additions, changes, deletions) with `message` and pushes main,
    /// rebasing onto whatever another writer pushed meanwhile. Returns the commit that
    /// landed; on an error the worktree is back at its last landed commit.
    pub fn commit_and_push(&self, paths: &[String], message: &str) -> PublishResult<Oid> {
        let wt = &self.wt.git;
        let before = self.head()?;
        let result = wt
            .commit_paths(paths, message)
            .map_err(PublishError::from)
            .and_then(|commit| {
                self.fleet
                    .push_with_retry(&self.target, commit, |new_main| {
                        // Replay our commit on top of what the other writer pushed.
                        if let Err(e) = wt.run(&["rebase", "--quiet", new_main]) {
                            let _ = wt.run(&["rebase", "--abort"]);
                            return Err(match e {
                                GitError::Failed { stderr, .. } => PublishError::Conflict {
                                    cluster: "main".into(),
                                    base: new_main.to_owned(),
                                    detail: stderr,
                                },
                                e => e.into(),
                            });
                        }
                        refuse_symlinks(wt.dir())?;
                        Ok(wt.resolve("HEAD")?.expect("HEAD after rebase"))
                    })
            });
        if result.is_err() {
            let _ = wt.run(&["reset", "--quiet", "--hard", &before]);
            let _ = wt.run(&["clean", "--quiet", "-fd"]);
        }
        result
    }

    /// Drops every uncommitted change in the worktree (edits of a credential that failed).
    pub fn discard(&self) -> GitResult<()> {
        self.wt.git.run(&["reset", "--quiet", "--hard", "HEAD"])?;
        self.wt.git.run(&["clean", "--quiet", "-fd"])?;
        Ok(())
    }

    /// After a push whose outcome is unknown (the connection died after sending): whether
    /// the remote main now holds `path` (a record file only our commit adds).
    pub fn landed(&self, path: &str) -> bool {
        self.fleet.fetch_target(&self.target).is_ok_and(|tip| {
            tip.is_some_and(|tip| {
                self.wt
                    .git
                    .run(&["cat-file", "-e", &format!("{tip}:{path}")])
                    .is_ok()
            })
        })
    }

    /// Moves the worktree to the remote ref as it is now (to re-read what others wrote).
    /// Only when nothing is uncommitted.
    pub fn refresh(&self) -> GitResult<Oid> {
        let tip = self
            .fleet
            .fetch_target(&self.target)?
            .unwrap_or(self.head()?);
        self.wt.git.run(&["reset", "--quiet", "--hard", &tip])?;
        refuse_symlinks(self.wt.git.dir())?;
        Ok(tip)
    }

    /// Commits `paths` in the worktree without pushing (pull-request mode: the commit goes
    /// to a branch); returns it.
    pub fn commit_local(&self, paths: &[String], message: &str) -> GitResult<Oid> {
        self.wt.git.commit_paths(paths, message)
    }

    /// Moves the worktree back to `rev`, dropping local commits and changes.
    pub fn reset_to(&self, rev: &str) -> GitResult<()> {
        self.wt.git.run(&["reset", "--quiet", "--hard", rev])?;
        self.wt.git.run(&["clean", "--quiet", "-fd"])?;
        Ok(())
    }
}
