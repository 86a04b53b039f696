//! Objects through [`Git`]: blobs, trees and commits written and read in-process (gix,
//! [`crate::gitops::objects`]) or, where gix cannot open the repository, a commit must be
//! signed, or `SECRET_MANAGER_GIT_OBJECTS=cli` asks, through git children.

use super::{Git, GitError, GitResult, Oid, TreeEntry};
use std::process::Stdio;

impl Git {
    /// Stores `content` as a blob; returns its id.
    pub fn write_blob(&self, content: &str) -> GitResult<Oid> {
        if let Some(o) = self.objects() {
            return o.write_blob(content.as_bytes());
        }
        Oid::from_git(
            &self.run_input(&["hash-object", "-w", "--stdin"], Some(content))?,
            "hash-object",
        )
    }

    /// A commit with `files` (name → blob id, one level) as its whole tree, `parents`
    /// and `message`; returns its id. Nothing is checked out and no ref moves.
    pub fn commit_files_tree(
        &self,
        files: &[(&str, &str)],
        parents: &[&str],
        message: &str,
    ) -> GitResult<Oid> {
        // Signed commits go through `git commit-tree -S` (the configured signing program).
        let entries: Vec<TreeEntry> = files
            .iter()
            .map(|(name, blob)| {
                Ok(TreeEntry {
                    name: (*name).to_owned(),
                    mode: 0o100644,
                    oid: Oid::from_git(blob, "commit-tree")?,
                })
            })
            .collect::<GitResult<_>>()?;
        self.commit_tree(&entries, parents, message)
    }

    /// The top level of `rev`'s tree; `Ok(None)` when `rev` does not exist; `Err` when
    /// the tree object is larger than `limit` bytes (checked before it is read).
    pub fn tree_entries(&self, rev: &str, limit: u64) -> GitResult<Option<Vec<TreeEntry>>> {
        if let Some(o) = self.objects() {
            return o.tree_entries(rev, limit);
        }
        let Some(commit) = self.resolve(rev)? else {
            return Ok(None);
        };
        let size: u64 = self
            .run(&["cat-file", "-s", &format!("{commit}^{{tree}}")])?
            .trim()
            .parse()
            .map_err(|_| GitError::Parse {
                args: "cat-file -s".into(),
                message: "not a size".into(),
            })?;
        if size > limit {
            return Err(GitError::Parse {
                args: "ls-tree".into(),
                message: format!("the tree of {rev} is {size} bytes, over the limit of {limit}"),
            });
        }
        let out = self.run(&["ls-tree", "-z", "--full-tree", &commit])?;
        let mut entries = Vec::new();
        for item in out.split('\0').filter(|i| !i.is_empty()) {
            let parsed = item.split_once('\t').and_then(|(meta, name)| {
                let mut m = meta.split(' ');
                let mode = u32::from_str_radix(m.next()?, 8).ok()?;
                let _kind = m.next()?;
                let oid = Oid::parse(m.next()?)?;
                Some(TreeEntry {
                    name: name.to_owned(),
                    mode,
                    oid,
                })
            });
            entries.push(parsed.ok_or_else(|| GitError::Parse {
                args: "ls-tree -z".into(),
                message: format!("unexpected entry `{}`", crate::text::escape(item)),
            })?);
        }
        Ok(Some(entries))
    }

    /// A commit whose whole tree is `entries` (one level), with `parents` and `message`;
    /// returns its id. Signed through git's configured program when this `Git` signs.
    pub fn commit_tree(
        &self,
        entries: &[TreeEntry],
        parents: &[&str],
        message: &str,
    ) -> GitResult<Oid> {
        if !self.sign
            && let Some(o) = self.objects()
        {
            return o.commit_tree(entries, parents, message, &self.idents()?);
        }
        let mut listing = String::new();
        for e in entries {
            if e.name.is_empty() || e.name.contains(['/', '\0']) {
                return Err(GitError::Parse {
                    args: "mktree -z".into(),
                    message: format!("not a file name: {:?}", e.name),
                });
            }
            let kind = match e.mode {
                0o040000 => "tree",
                0o160000 => "commit",
                _ => "blob",
            };
            listing.push_str(&format!("{:06o} {kind} {}\t{}\0", e.mode, e.oid, e.name));
        }
        let tree = self
            .run_input(&["mktree", "-z"], Some(&listing))?
            .trim()
            .to_owned();
        let mut args = vec!["commit-tree".to_owned(), tree];
        if self.sign {
            args.push("-S".into());
        }
        for p in parents {
            args.push("-p".into());
            args.push((*p).to_owned());
        }
        args.push("-F".into());
        args.push("-".into());
        Oid::from_git(&self.run_input(&args, Some(message))?, "commit-tree")
    }

    /// The content of each blob in `oids`, `None` where it is missing, not a blob or
    /// larger than `limit` bytes (in-process, the size is checked before the blob is read).
    pub fn read_blob_ids(&self, oids: &[Oid], limit: u64) -> GitResult<Vec<Option<String>>> {
        if let Some(o) = self.objects() {
            let blobs = o.read_blob_ids(oids, limit)?;
            return Ok(blobs
                .into_iter()
                .map(|b| b.map(|b| String::from_utf8_lossy(&b).into_owned()))
                .collect());
        }
        let specs: Vec<String> = oids.iter().map(ToString::to_string).collect();
        Ok(self
            .read_blobs(&specs)?
            .into_iter()
            .map(|b| b.filter(|b| b.len() as u64 <= limit))
            .collect())
    }

    /// The text of `<rev>:<path>` for each of `specs`, in one `git cat-file --batch`;
    /// `None` where the object does not exist.
    pub fn read_blobs(&self, specs: &[String]) -> GitResult<Vec<Option<String>>> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        // One request per line: a spec with a line break (a file name from a record is repo
        // content) would add a request and shift every answer after it.
        if let Some(bad) = specs.iter().find(|s| s.contains(['\n', '\r', '\0'])) {
            return Err(GitError::Parse {
                args: "cat-file --batch".into(),
                message: format!(
                    "`{}` contains a line break; refusing to read it",
                    crate::text::escape(bad)
                ),
            });
        }
        if let Some(o) = self.objects()
            && let Ok(texts) = o.read_blobs(specs)
        {
            return Ok(texts);
        }
        let input: String = specs.iter().map(|s| format!("{s}\n")).collect();
        let mut c = self.command(["cat-file", "--batch"]);
        use std::io::Write as _;
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(GitError::Spawn)?;
        let mut stdin = child.stdin.take().expect("piped");
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = crate::blocking::run(|| child.wait_with_output()).map_err(GitError::Spawn)?;
        let _ = writer.join();
        if !out.status.success() {
            return Err(GitError::Failed {
                args: "cat-file --batch".into(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                code: out.status.code(),
            });
        }
        // Each answer: `<oid> <type> <size>\n<content>\n`, or `<spec> missing\n`.
        let bytes = out.stdout;
        let mut pos = 0;
        let mut result = Vec::with_capacity(specs.len());
        for _ in specs {
            let end = bytes[pos..]
                .iter()
                .position(|b| *b == b'\n')
                .map(|i| pos + i)
                .ok_or_else(|| GitError::Parse {
                    args: "cat-file --batch".into(),
                    message: "truncated output".into(),
                })?;
            let header = String::from_utf8_lossy(&bytes[pos..end]).into_owned();
            pos = end + 1;
            if header.ends_with(" missing") || header.ends_with(" ambiguous") {
                result.push(None);
                continue;
            }
            let size: usize = header
                .rsplit(' ')
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| GitError::Parse {
                    args: "cat-file --batch".into(),
                    message: format!("bad header `{header}`"),
                })?;
            let body = bytes.get(pos..pos + size).ok_or_else(|| GitError::Parse {
                args: "cat-file --batch".into(),
                message: "truncated object".into(),
            })?;
            result.push(Some(String::from_utf8_lossy(body).into_owned()));
            pos += size + 1;
        }
        Ok(result)
    }
}
