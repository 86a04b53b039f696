//! Reading files of the config repo as untrusted input.
//!
//! A file of the repo is read only when it is a regular file inside the repo root: a
//! symlink that leaves the root (to `/dev/zero`, to the pod's service-account token, to
//! another checkout) is refused, and so are FIFOs and devices (opened without blocking,
//! so a FIFO never hangs a run). Each kind of file has a size cap, checked before the
//! file is read and again while reading, so a huge file costs an error, not the pod's
//! memory. Paths from the repo are relative and never climb out with `..`.

use std::io::Read as _;
use std::path::{Component, Path, PathBuf};

/// Largest `.secret-manager.yaml`, cluster-values file or kustomization read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Largest sealing certificate read from the repo or the network.
pub const MAX_CERT_BYTES: u64 = 1 << 20;
/// Largest manifest scanned (a Kubernetes object is at most ~1.5 MiB in etcd; a file may
/// hold many, but not hundreds of megabytes).
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Why a repo file was not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoFileError {
    /// An absolute path or one with `..`.
    #[error("{path}: must be a path inside the repo (relative, without `..`)")]
    NotRelative {
        /// The path as written (escaped).
        path: String,
    },
    /// A symlink that resolves outside the repo root.
    #[error(
        "{path}: is a symlink that leaves the repo; only files inside the repo are read (replace it with the file itself)"
    )]
    Outside {
        /// Repo-relative path (escaped).
        path: String,
    },
    /// A FIFO, socket, device or directory.
    #[error("{path}: is a {what}, not a regular file; only regular files are read")]
    NotRegular {
        /// Repo-relative path (escaped).
        path: String,
        /// What it is.
        what: &'static str,
    },
    /// Over the size cap for its kind.
    #[error(
        "{path}: is {size} bytes, over the limit of {limit} bytes for this kind of file; nothing in it is read"
    )]
    TooLarge {
        /// Repo-relative path (escaped).
        path: String,
        /// Its size (or the bytes read before giving up).
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// Reading failed.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// Repo-relative path (escaped).
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Whether `rel` is relative and stays below its base (no root, no `..`).
pub fn is_contained(rel: &Path) -> bool {
    !rel.as_os_str().is_empty()
        && rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

fn kind_of(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "device"
    } else if ft.is_symlink() {
        "symlink"
    } else {
        "special file"
    }
}

/// Reads `root/rel` when it is a regular file inside `root` of at most `limit` bytes;
/// `Ok(None)` when it does not exist.
pub fn read_in_repo(root: &Path, rel: &Path, limit: u64) -> Result<Option<Vec<u8>>, RepoFileError> {
    let shown = crate::text::path(rel);
    if !is_contained(rel) {
        return Err(RepoFileError::NotRelative { path: shown });
    }
    let io = |source| RepoFileError::Io {
        path: shown.clone(),
        source,
    };
    let full = root.join(rel);
    // Most lookups (a kustomization in each directory) miss: one lstat answers those.
    match std::fs::symlink_metadata(&full) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
        Ok(_) => {}
    }
    let real = match std::fs::canonicalize(&full) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A dangling symlink is not "absent": say what it is.
            return match std::fs::symlink_metadata(&full) {
                Ok(m) if m.file_type().is_symlink() => Err(RepoFileError::Outside { path: shown }),
                _ => Ok(None),
            };
        }
        Err(e) => return Err(io(e)),
    };
    let real_root = std::fs::canonicalize(root).map_err(io)?;
    if !real.starts_with(&real_root) {
        return Err(RepoFileError::Outside { path: shown });
    }
    read_regular(&real, limit).map(Some).map_err(|e| match e {
        ReadError::Io(source) => RepoFileError::Io {
            path: shown,
            source,
        },
        ReadError::NotRegular(what) => RepoFileError::NotRegular { path: shown, what },
        ReadError::TooLarge(size) => RepoFileError::TooLarge {
            path: shown,
            size,
            limit,
        },
    })
}

enum ReadError {
    Io(std::io::Error),
    NotRegular(&'static str),
    TooLarge(u64),
}

/// Opens `path` without following a final symlink and without blocking (a FIFO opens
/// at once and is then refused), checks it is a regular file of at most `limit` bytes,
/// and reads it, never more than `limit + 1` bytes.
fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                ReadError::NotRegular("symlink")
            } else {
                ReadError::Io(e)
            }
        })?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular(kind_of(&meta.file_type())));
    }
    read_capped(file, limit).map_err(|e| match e {
        Capped::TooLarge(n) => ReadError::TooLarge(n),
        Capped::Io(e) => ReadError::Io(e),
    })
}

/// Why [`read_capped`] read nothing.
pub enum Capped {
    /// Over the limit: the size (or the bytes read before giving up).
    TooLarge(u64),
    /// Reading failed.
    Io(std::io::Error),
}

/// Reads an open file of at most `limit` bytes: its size is checked first, and never
/// more than `limit + 1` bytes are read (a file that grows meanwhile is caught too).
pub fn read_capped(file: std::fs::File, limit: u64) -> Result<Vec<u8>, Capped> {
    let len = file.metadata().map_err(Capped::Io)?.len();
    if len > limit {
        return Err(Capped::TooLarge(len));
    }
    let mut buf = Vec::with_capacity(len as usize);
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(Capped::Io)?;
    if buf.len() as u64 > limit {
        return Err(Capped::TooLarge(buf.len() as u64));
    }
    Ok(buf)
}

/// [`read_in_repo`] as UTF-8 text.
pub fn read_text_in_repo(
    root: &Path,
    rel: &Path,
    limit: u64,
) -> Result<Option<String>, RepoFileError> {
    let Some(bytes) = read_in_repo(root, rel, limit)? else {
        return Ok(None);
    };
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| RepoFileError::Io {
            path: crate::text::path(rel),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not valid UTF-8"),
        })
}

/// The first symlink at or below `root/rel` (the path itself, its parents below `root`,
/// and everything under it), if any. The journal never writes through one: a committed
/// `.secret-manager` symlink would otherwise make a run write records outside the repo.
pub fn find_symlink(root: &Path, rel: &Path) -> Option<PathBuf> {
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => return Some(at),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    fn walk(dir: &Path) -> Option<PathBuf> {
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let ft = e.file_type().ok()?;
            if ft.is_symlink() {
                return Some(e.path());
            }
            if ft.is_dir()
                && let Some(p) = walk(&e.path())
            {
                return Some(p);
            }
        }
        None
    }
    walk(&at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regular_files_inside_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.yaml"), "a: 1\n").unwrap();
        std::os::unix::fs::symlink("sub/a.yaml", root.join("inside.yaml")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.join("zero.yaml")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("out.yaml")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/x", root.join("dangling.yaml")).unwrap();
        let fifo = root.join("fifo.yaml");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        std::fs::write(root.join("big.yaml"), vec![b'a'; 2048]).unwrap();

        let read = |p: &str, cap| read_in_repo(root, Path::new(p), cap);
        assert_eq!(read("sub/a.yaml", 100).unwrap().unwrap(), b"a: 1\n");
        assert_eq!(read("inside.yaml", 100).unwrap().unwrap(), b"a: 1\n");
        assert!(read("missing.yaml", 100).unwrap().is_none());
        for (p, want) in [
            ("zero.yaml", "leaves the repo"),
            ("out.yaml", "leaves the repo"),
            ("dangling.yaml", "leaves the repo"),
            ("fifo.yaml", "FIFO"),
            ("sub", "directory"),
            ("big.yaml", "over the limit"),
            ("../x.yaml", "inside the repo"),
            ("/etc/hostname", "inside the repo"),
        ] {
            let e = read(p, 1024).unwrap_err().to_string();
            assert!(e.contains(want), "{p}: {e}");
        }
    }

    #[test]
    fn finds_symlinks_on_and_below_a_path() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        assert_eq!(find_symlink(root, Path::new(".secret-manager")), None);
        std::fs::create_dir_all(root.join(".secret-manager/rotations")).unwrap();
        assert_eq!(find_symlink(root, Path::new(".secret-manager")), None);
        std::os::unix::fs::symlink("/tmp", root.join(".secret-manager/rotations/x")).unwrap();
        assert!(find_symlink(root, Path::new(".secret-manager")).is_some());
        let d2 = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/tmp", d2.path().join(".secret-manager")).unwrap();
        assert!(find_symlink(d2.path(), Path::new(".secret-manager")).is_some());
    }
}
