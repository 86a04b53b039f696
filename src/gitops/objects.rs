//! Local git work in-process, with gix: reading and writing blobs, trees and commits,
//! resolving refs, ancestry and tree diffs. A run does this thousands of times (a claim
//! commit per credential, ancestry and diffs per cluster); as `git` children it was most
//! of a large run's CPU. Fetch, push and signed commits stay on the CLI ([`super::git`]).
//!
//! [`Git`](super::git::Git) decides per call whether to come here: always for the work
//! below, unless the repository cannot be opened by gix (then the CLI does it, as before)
//! or `SECRET_MANAGER_GIT_OBJECTS=cli` asks for the CLI (benchmarks compare the two).

use super::types::{GitError, GitResult, Oid, TreeEntry};
use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::objs::FindExt as _;
use std::path::Path;

/// The object store of one repository (its linked worktrees share it).
pub(crate) struct Objects {
    repo: gix::ThreadSafeRepository,
    /// Repository handles with their object caches, reused across calls: a fresh handle
    /// per call would inflate the same commits and trees from the pack every time.
    pool: std::sync::Mutex<Vec<gix::Repository>>,
}

/// Object cache per handle: the commits and trees a run reads again and again.
const OBJECT_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// A pooled handle, returned to the pool when dropped.
pub(crate) struct Handle<'a> {
    repo: Option<gix::Repository>,
    pool: &'a std::sync::Mutex<Vec<gix::Repository>>,
}

impl std::ops::Deref for Handle<'_> {
    type Target = gix::Repository;
    fn deref(&self) -> &gix::Repository {
        self.repo
            .as_ref()
            .expect("a handle holds its repository until dropped")
    }
}

impl Drop for Handle<'_> {
    fn drop(&mut self) {
        if let (Some(r), Ok(mut pool)) = (self.repo.take(), self.pool.lock()) {
            pool.push(r);
        }
    }
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects").finish_non_exhaustive()
    }
}

fn err(what: &str, e: impl std::fmt::Display) -> GitError {
    GitError::Parse {
        args: format!("(in-process) {what}"),
        message: e.to_string(),
    }
}

fn hex(s: &str) -> Option<ObjectId> {
    (s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| ObjectId::from_hex(s.as_bytes()).ok())
        .flatten()
}

/// Who a commit is by: `git var`'s answer (environment, then config, as git decides),
/// parsed once per repository.
#[derive(Clone, Debug)]
pub(crate) struct Idents {
    pub author: gix::actor::Signature,
    pub committer: gix::actor::Signature,
}

/// Parses `Name <email> 1700000000 +0100` (the output of `git var GIT_*_IDENT`).
pub(crate) fn parse_ident(line: &str) -> Option<gix::actor::Signature> {
    let line = line.trim_end();
    let (name, rest) = line.split_once(" <")?;
    let (email, when) = rest.split_once("> ")?;
    let mut parts = when.split(' ');
    let seconds: i64 = parts.next()?.parse().ok()?;
    let tz = parts.next()?;
    let sign = if tz.starts_with('-') { -1 } else { 1 };
    let digits = tz.trim_start_matches(['+', '-']);
    if digits.len() != 4 {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    Some(gix::actor::Signature {
        name: name.into(),
        email: email.into(),
        time: gix::date::Time {
            seconds,
            offset: sign * (hours * 3600 + minutes * 60),
        },
    })
}

impl Objects {
    /// Opens the repository at `dir` (a work tree, a linked worktree or a bare repo),
    /// reading its own config only: no global or system config, no environment overrides.
    pub(crate) fn open(dir: &Path) -> GitResult<Objects> {
        let repo = gix::ThreadSafeRepository::open_opts(dir, gix::open::Options::isolated())
            .map_err(|e| err("open", e))?;
        Ok(Objects {
            repo,
            pool: Default::default(),
        })
    }

    fn local(&self) -> Handle<'_> {
        let pooled = self.pool.lock().ok().and_then(|mut p| p.pop());
        let repo = pooled.unwrap_or_else(|| {
            let mut r = self.repo.to_thread_local();
            r.object_cache_size(OBJECT_CACHE_BYTES);
            r
        });
        Handle {
            repo: Some(repo),
            pool: &self.pool,
        }
    }

    /// The commit `rev` names: a full ref name, `HEAD`, or a full hex id, optionally
    /// followed by `^` (first parent). `Ok(None)` when it does not exist. `Err` for any
    /// other syntax, which the caller leaves to the CLI.
    pub(crate) fn resolve(&self, rev: &str) -> GitResult<Option<ObjectId>> {
        let repo = self.local();
        let (base, parent) = match rev.strip_suffix('^') {
            Some(b) => (b, true),
            None => (rev, false),
        };
        let id = if let Some(id) = hex(base) {
            if !repo.has_object(id) {
                return Ok(None);
            }
            id
        } else if base == "HEAD" || base.starts_with("refs/") {
            if base.contains(['\n', '\0', ' ', '~', ':', '?', '*', '[', '\\'])
                || base.contains("..")
            {
                return Err(err("resolve", format!("not a plain ref: {base}")));
            }
            match repo
                .try_find_reference(base)
                .map_err(|e| err("resolve", e))?
            {
                Some(mut r) => match r.peel_to_id() {
                    Ok(id) => id.detach(),
                    Err(e) => return Err(err("resolve", e)),
                },
                None => return Ok(None),
            }
        } else {
            return Err(err("resolve", format!("left to git: {base}")));
        };
        let Ok(object) = repo.find_object(id) else {
            return Ok(None);
        };
        let Ok(commit) = object.peel_to_commit() else {
            return Ok(None);
        };
        if parent {
            return Ok(commit.parent_ids().next().map(|p| p.detach()));
        }
        Ok(Some(commit.id))
    }

    fn commit_id(&self, rev: &str) -> GitResult<ObjectId> {
        self.resolve(rev)?
            .ok_or_else(|| err("resolve", format!("no such commit: {rev}")))
    }

    /// Whether `a` is an ancestor of (or equal to) `b`.
    pub(crate) fn is_ancestor(&self, a: &str, b: &str) -> GitResult<bool> {
        let (a, b) = (self.commit_id(a)?, self.commit_id(b)?);
        if a == b {
            return Ok(true);
        }
        let repo = self.local();
        match repo.merge_base(a, b) {
            Ok(base) => Ok(base.is_some_and(|base| base.detach() == a)),
            Err(e) => Err(err("merge-base", e)),
        }
    }

    /// Number of commits reachable from `b` and not from `a` (`git rev-list --count a..b`).
    pub(crate) fn count(&self, a: &str, b: &str) -> GitResult<usize> {
        let (a, b) = (self.commit_id(a)?, self.commit_id(b)?);
        let repo = self.local();
        let walk = repo
            .rev_walk([b])
            .with_hidden([a])
            .all()
            .map_err(|e| err("rev-list", e))?;
        let mut n = 0;
        for info in walk {
            info.map_err(|e| err("rev-list", e))?;
            n += 1;
        }
        Ok(n)
    }

    fn tree_of(repo: &gix::Repository, commit: ObjectId) -> GitResult<ObjectId> {
        let c = repo
            .find_object(commit)
            .map_err(|e| err("read commit", e))?
            .try_into_commit()
            .map_err(|e| err("read commit", e))?;
        c.tree_id()
            .map(|t| t.detach())
            .map_err(|e| err("read tree", e))
    }

    /// Files (blobs, links, submodules; never directories) that differ between the trees
    /// of `a` and `b`, repo-relative and `/`-separated (`git diff --name-only
    /// --no-renames`), sorted.
    pub(crate) fn changed_files(&self, a: &str, b: &str) -> GitResult<Vec<String>> {
        let (a, b) = (self.commit_id(a)?, self.commit_id(b)?);
        let repo = self.local();
        let (ta, tb) = (Self::tree_of(&repo, a)?, Self::tree_of(&repo, b)?);
        if ta == tb {
            return Ok(Vec::new());
        }
        let (mut buf_a, mut buf_b) = (Vec::new(), Vec::new());
        let lhs = repo
            .objects
            .find_tree_iter(&ta, &mut buf_a)
            .map_err(|e| err("read tree", e))?;
        let rhs = repo
            .objects
            .find_tree_iter(&tb, &mut buf_b)
            .map_err(|e| err("read tree", e))?;
        let mut rec = gix::diff::tree::Recorder::default()
            .track_location(Some(gix::diff::tree::recorder::Location::Path));
        gix::diff::tree(
            lhs,
            rhs,
            gix::diff::tree::State::default(),
            &repo.objects,
            &mut rec,
        )
        .map_err(|e| err("diff", e))?;
        use gix::diff::tree::recorder::Change;
        let mut out: Vec<String> = rec
            .records
            .into_iter()
            .filter_map(|c| match c {
                Change::Addition {
                    entry_mode, path, ..
                }
                | Change::Deletion {
                    entry_mode, path, ..
                } => (!entry_mode.is_tree()).then_some(path),
                Change::Modification {
                    previous_entry_mode,
                    entry_mode,
                    path,
                    ..
                } => (!(entry_mode.is_tree() && previous_entry_mode.is_tree())).then_some(path),
            })
            .map(|p| p.to_str_lossy().into_owned())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Whether every one of `paths` is the same (same blob and mode, or absent in both)
    /// in the trees of `a` and `b`. Paths are exact, never pathspec patterns.
    pub(crate) fn same_paths(&self, a: &str, b: &str, paths: &[String]) -> GitResult<bool> {
        let (a, b) = (self.commit_id(a)?, self.commit_id(b)?);
        let repo = self.local();
        let tree = |c: ObjectId| -> GitResult<gix::Tree<'_>> {
            Ok(repo
                .find_object(Self::tree_of(&repo, c)?)
                .map_err(|e| err("read tree", e))?
                .into_tree())
        };
        let (ta, tb) = (tree(a)?, tree(b)?);
        if ta.id == tb.id {
            return Ok(true);
        }
        for p in paths {
            let ea = ta
                .lookup_entry_by_path(p)
                .map_err(|e| err("read tree", e))?;
            let eb = tb
                .lookup_entry_by_path(p)
                .map_err(|e| err("read tree", e))?;
            let key =
                |e: Option<gix::object::tree::Entry<'_>>| e.map(|e| (e.mode(), e.object_id()));
            if key(ea) != key(eb) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Points the local ref `name` at `target` (created or moved, whatever it held).
    pub(crate) fn set_ref(&self, name: &str, target: &str) -> GitResult<()> {
        let id = hex(target).ok_or_else(|| err("update-ref", format!("not an id: {target}")))?;
        self.local()
            .reference(
                name,
                id,
                gix::refs::transaction::PreviousValue::Any,
                "secret-manager",
            )
            .map(drop)
            .map_err(|e| err("update-ref", e))
    }

    /// Deletes the local ref `name` if it exists.
    pub(crate) fn delete_ref(&self, name: &str) -> GitResult<()> {
        match self
            .local()
            .try_find_reference(name)
            .map_err(|e| err("update-ref -d", e))?
        {
            Some(r) => r.delete().map_err(|e| err("update-ref -d", e)),
            None => Ok(()),
        }
    }

    /// Stores `content` as a blob.
    pub(crate) fn write_blob(&self, content: &[u8]) -> GitResult<Oid> {
        let repo = self.local();
        repo.write_blob(content)
            .map(|id| Oid::from(id.detach()))
            .map_err(|e| err("write blob", e))
    }

    /// The top level of `rev`'s tree, as stored (names sorted as git sorts them);
    /// `Ok(None)` when `rev` does not exist; `Err` when the tree object is larger than
    /// `limit` bytes (checked before it is read).
    pub(crate) fn tree_entries(&self, rev: &str, limit: u64) -> GitResult<Option<Vec<TreeEntry>>> {
        let Some(commit) = self.resolve(rev)? else {
            return Ok(None);
        };
        let repo = self.local();
        let tree = Self::tree_of(&repo, commit)?;
        let size = repo
            .find_header(tree)
            .map_err(|e| err("read tree", e))?
            .size();
        if size > limit {
            return Err(err(
                "read tree",
                format!("the tree of {rev} is {size} bytes, over the limit of {limit}"),
            ));
        }
        let tree = repo
            .find_object(tree)
            .map_err(|e| err("read tree", e))?
            .into_tree();
        let decoded = tree.decode().map_err(|e| err("read tree", e))?;
        Ok(Some(
            decoded
                .entries
                .iter()
                .map(|e| TreeEntry {
                    name: e.filename.to_str_lossy().into_owned(),
                    mode: u32::from(e.mode.value()),
                    oid: Oid::from(e.oid.to_owned()),
                })
                .collect(),
        ))
    }

    /// A commit whose whole tree is `entries` (one level, any modes), with `parents` and
    /// `message`, by `idents`.
    pub(crate) fn commit_tree(
        &self,
        entries: &[TreeEntry],
        parents: &[&str],
        message: &str,
        idents: &Idents,
    ) -> GitResult<Oid> {
        let repo = self.local();
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            if e.name.is_empty() || e.name.contains(['/', '\0']) || e.name == "." || e.name == ".."
            {
                return Err(err("mktree", format!("not a file name: {:?}", e.name)));
            }
            out.push(gix::objs::tree::Entry {
                mode: gix::objs::tree::EntryMode::try_from(e.mode)
                    .map_err(|_| err("mktree", format!("not a tree entry mode: {:o}", e.mode)))?,
                filename: e.name.as_str().into(),
                oid: hex(&e.oid)
                    .ok_or_else(|| err("mktree", format!("not an object id: {}", e.oid)))?,
            });
        }
        // git's order: a directory sorts as if its name ended in `/`.
        out.sort();
        self.write_commit(
            &repo,
            gix::objs::Tree { entries: out },
            parents,
            message,
            idents,
        )
    }

    fn write_commit(
        &self,
        repo: &gix::Repository,
        tree: gix::objs::Tree,
        parents: &[&str],
        message: &str,
        idents: &Idents,
    ) -> GitResult<Oid> {
        let tree = repo
            .write_object(tree)
            .map_err(|e| err("write tree", e))?
            .detach();
        let mut parent_ids = Vec::with_capacity(parents.len());
        for p in parents {
            parent_ids.push(self.commit_id(p)?);
        }
        let commit = gix::objs::Commit {
            tree,
            parents: parent_ids.into(),
            author: idents.author.clone(),
            committer: idents.committer.clone(),
            encoding: None,
            message: message.into(),
            extra_headers: Vec::new(),
        };
        repo.write_object(&commit)
            .map(|id| Oid::from(id.detach()))
            .map_err(|e| err("write commit", e))
    }

    /// The content of each blob in `oids`; `None` where it is missing, not a blob, or
    /// larger than `limit` bytes (its size is read from the header, the blob is not).
    pub(crate) fn read_blob_ids(
        &self,
        oids: &[Oid],
        limit: u64,
    ) -> GitResult<Vec<Option<Vec<u8>>>> {
        let repo = self.local();
        let mut out = Vec::with_capacity(oids.len());
        for o in oids {
            let Some(id) = hex(o) else {
                return Err(err("read", format!("not an object id: {o}")));
            };
            let header = repo.try_find_header(id).map_err(|e| err("read", e))?;
            match header {
                Some(h) if h.kind() == gix::object::Kind::Blob && h.size() <= limit => {
                    let data = repo
                        .find_object(id)
                        .map_err(|e| err("read blob", e))?
                        .detach()
                        .data;
                    out.push(Some(data));
                }
                _ => out.push(None),
            }
        }
        Ok(out)
    }

    /// The text of `<rev>:<path>` for each spec (`rev` a commit id or ref; `path`
    /// repo-relative); `None` where it does not exist or is not a blob. Each rev is
    /// resolved and each tree decoded once per call, however many specs share them (a
    /// revoke reads thousands of files from the same few commits).
    pub(crate) fn read_blobs(&self, specs: &[String]) -> GitResult<Vec<Option<String>>> {
        use std::collections::HashMap;
        type Entries = HashMap<Vec<u8>, (gix::objs::tree::EntryMode, ObjectId)>;
        let repo = self.local();
        let mut roots: HashMap<&str, Option<ObjectId>> = HashMap::new();
        let mut trees: HashMap<ObjectId, Entries> = HashMap::new();
        let mut out = Vec::with_capacity(specs.len());
        for spec in specs {
            let Some((rev, path)) = spec.split_once(':') else {
                return Err(err("read", format!("not <rev>:<path>: {spec}")));
            };
            let root = match roots.get(rev) {
                Some(r) => *r,
                None => {
                    let r = match self.resolve(rev)? {
                        Some(commit) => Some(Self::tree_of(&repo, commit)?),
                        None => None,
                    };
                    roots.insert(rev, r);
                    r
                }
            };
            let Some(mut tree) = root else {
                out.push(None);
                continue;
            };
            let parts: Vec<&str> = path.split('/').collect();
            let mut blob = None;
            for (i, part) in parts.iter().enumerate() {
                if let std::collections::hash_map::Entry::Vacant(e) = trees.entry(tree) {
                    let t = repo
                        .find_object(tree)
                        .map_err(|e| err("read tree", e))?
                        .into_tree();
                    let decoded = t.decode().map_err(|e| err("read tree", e))?;
                    let entries: Entries = decoded
                        .entries
                        .iter()
                        .map(|e| (e.filename.to_vec(), (e.mode, e.oid.to_owned())))
                        .collect();
                    e.insert(entries);
                }
                match trees[&tree].get(part.as_bytes()) {
                    Some((mode, oid)) if i + 1 == parts.len() => {
                        if mode.is_blob() {
                            blob = Some(*oid);
                        }
                    }
                    Some((mode, oid)) if mode.is_tree() => tree = *oid,
                    _ => break,
                }
            }
            let text = match blob {
                Some(id) => Some(
                    repo.find_object(id)
                        .map_err(|e| err("read blob", e))?
                        .detach()
                        .data,
                ),
                None => None,
            };
            out.push(text.map(|b| String::from_utf8_lossy(&b).into_owned()));
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "objects_tests.rs"]
mod tests;
