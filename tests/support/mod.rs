//! What the library's and the binary's integration tests share: the example fleet as real
//! git remotes (`GitFleet`), repo copies, and the TEST-ONLY decryptor. Nothing here runs
//! the binary; the binary tier adds that in `cli/tests/common`.
#![allow(dead_code)]

pub mod consumers;
pub mod engine;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The pinned clock of every test that needs one.
pub const NOW: &str = "2026-11-21T12:00:00Z";

/// The workspace root (where `testdata/` is), from either package's tests.
pub fn root() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    if dir.join("testdata").is_dir() {
        dir.to_path_buf()
    } else {
        dir.parent().expect("cli/ has a parent").to_path_buf()
    }
}

pub fn testdata(rel: &str) -> PathBuf {
    root().join("testdata").join(rel)
}

/// Copies a directory tree (files and dirs only).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// A temp copy of a testdata repo.
pub fn temp_repo(rel: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&testdata(rel), dir.path());
    dir
}

/// Every file under `dir` with its bytes, for "nothing was written" checks.
pub fn snapshot_tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    fn walk(base: &Path, d: &Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(base, &e.path(), out);
            } else {
                out.insert(
                    e.path().strip_prefix(base).unwrap().to_path_buf(),
                    std::fs::read(e.path()).unwrap(),
                );
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// The TEST-ONLY decryptor: what the sealed-secrets controller does with its private key.
pub mod unseal {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use aes_gcm::{Aes256Gcm, Nonce};
    use base64::Engine as _;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::{Oaep, RsaPrivateKey};
    use sha2::Sha256;

    pub fn key(cluster: &str) -> RsaPrivateKey {
        let pem = std::fs::read_to_string(super::testdata(&format!("keys/{cluster}.key"))).unwrap();
        RsaPrivateKey::from_pkcs8_pem(&pem).expect("TEST-ONLY key parses")
    }

    /// The AES session key of one `encryptedData` value (the RSA-OAEP part, opened with
    /// the pure-Rust `rsa` crate: an implementation independent of the sealing one).
    pub fn session_key(key: &RsaPrivateKey, label: &str, b64: &str) -> Result<Vec<u8>, String> {
        split(key, label, b64).map(|(session, _)| session)
    }

    fn split(key: &RsaPrivateKey, label: &str, b64: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
        let ct = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| e.to_string())?;
        if ct.len() < 2 {
            return Err("too short".into());
        }
        let n = u16::from_be_bytes([ct[0], ct[1]]) as usize;
        if ct.len() < 2 + n {
            return Err("shorter than its RSA part".into());
        }
        let (rsa_ct, gcm) = ct[2..].split_at(n);
        let padding = if label.is_empty() {
            Oaep::new::<Sha256>()
        } else {
            Oaep::new_with_label::<Sha256, _>(label)
        };
        let session = key
            .decrypt(padding, rsa_ct)
            .map_err(|e| format!("rsa: {e}"))?;
        Ok((session, gcm.to_vec()))
    }

    /// Decrypts one `encryptedData` value; `Err` when the label or key is wrong.
    pub fn decrypt(key: &RsaPrivateKey, label: &str, b64: &str) -> Result<Vec<u8>, String> {
        let (session, gcm) = split(key, label, b64)?;
        let gcm = gcm.as_slice();
        let cipher = Aes256Gcm::new_from_slice(&session).map_err(|e| e.to_string())?;
        cipher
            .decrypt(
                Nonce::from_slice(&[0u8; 12]),
                Payload { msg: gcm, aad: &[] },
            )
            .map_err(|e| format!("gcm: {e}"))
    }
}

/// `spec.encryptedData` of document `index` in `file`, in source order.
pub fn encrypted_data(file: &Path, index: usize) -> Vec<(String, String)> {
    let src = std::fs::read_to_string(file).unwrap();
    let docs = secret_manager::manifest::yaml::parse_documents(&src).unwrap();
    let root = docs[index].root.as_ref().unwrap();
    root.path(&["spec", "encryptedData"])
        .unwrap()
        .entries()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_owned(),
                v.as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Decrypts `key` of document `index` in `file` with `cluster`'s TEST-ONLY key.
pub fn decrypt_value(
    file: &Path,
    index: usize,
    cluster: &str,
    label: &str,
    key: &str,
) -> Result<Vec<u8>, String> {
    let data = encrypted_data(file, index);
    let (_, v) = data
        .iter()
        .find(|(k, _)| k == key)
        .ok_or_else(|| format!("no key {key}"))?;
    unseal::decrypt(&unseal::key(cluster), label, v)
}

/// A fleet of real git repositories: `dev.git` (main + dev pointers) and `prod.git`
/// (prod pointers) as bare remotes, and `work`, a clone made the way users make one.
pub struct GitFleet {
    pub root: tempfile::TempDir,
}

/// Runs git in `dir` with a fixed identity; panics with stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_input(dir, args, b"")
}

/// [`git`] with `input` on stdin (`hash-object --stdin`, `mktree`).
pub fn git_input(dir: &Path, args: &[&str], input: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test Operator")
        .env("GIT_AUTHOR_EMAIL", "operator@example.com")
        .env("GIT_COMMITTER_NAME", "Test Operator")
        .env("GIT_COMMITTER_EMAIL", "operator@example.com")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl GitFleet {
    /// The example repo on main, every cluster's pointer at main's first commit.
    pub fn new() -> GitFleet {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for bare in ["dev.git", "prod.git"] {
            git(
                r,
                &["init", "--quiet", "--bare", "--initial-branch=main", bare],
            );
        }
        let seed = r.join("seed");
        copy_dir(&testdata("example-repo"), &seed);
        git(&seed, &["init", "--quiet", "--initial-branch=main"]);
        git(&seed, &["add", "-A"]);
        git(&seed, &["commit", "--quiet", "-m", "Initial fleet"]);
        git(
            &seed,
            &[
                "remote",
                "add",
                "origin",
                r.join("dev.git").to_str().unwrap(),
            ],
        );
        git(
            &seed,
            &[
                "remote",
                "add",
                "prod",
                r.join("prod.git").to_str().unwrap(),
            ],
        );
        git(&seed, &["push", "--quiet", "origin", "main"]);
        let repo = secret_manager::Repo::open(&seed).unwrap();
        for c in &repo.inventory.clusters {
            let refname = secret_manager::gitops::pointer_ref(c);
            git(
                &seed,
                &["push", "--quiet", &c.remote, &format!("HEAD:{refname}")],
            );
        }
        let fleet = GitFleet { root };
        fleet.clone_as("work");
        fleet
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// Commits everything in `work`, pushes main, and moves each cluster's pointer (on
    /// its own remote) to that commit — the way an operator bootstraps new secrets.
    pub fn commit_and_publish(&self, message: &str, clusters: &[&str]) {
        let work = self.path("work");
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "--quiet", "-m", message]);
        git(&work, &["push", "--quiet", "origin", "main"]);
        let repo = secret_manager::Repo::open(&work).unwrap();
        for id in clusters {
            let c = repo
                .inventory
                .clusters
                .iter()
                .find(|c| c.id == *id)
                .unwrap();
            let refname = secret_manager::gitops::pointer_ref(c);
            git(
                &work,
                &[
                    "push",
                    "--quiet",
                    "--force",
                    &c.remote,
                    &format!("HEAD:{refname}"),
                ],
            );
        }
    }

    /// A fresh clone of dev with the prod remote added and an identity configured.
    pub fn clone_as(&self, name: &str) -> PathBuf {
        let dir = self.path(name);
        git(
            self.root.path(),
            &[
                "clone",
                "--quiet",
                self.path("dev.git").to_str().unwrap(),
                name,
            ],
        );
        git(
            &dir,
            &[
                "remote",
                "add",
                "prod",
                self.path("prod.git").to_str().unwrap(),
            ],
        );
        git(&dir, &["config", "user.name", "Test Operator"]);
        git(&dir, &["config", "user.email", "operator@example.com"]);
        dir
    }

    /// Commits `content` to `rel` in clone `dir` and pushes main; returns the commit.
    pub fn commit_main(&self, dir: &Path, rel: &str, content: &str, msg: &str) -> String {
        git(dir, &["pull", "--quiet", "--ff-only", "origin", "main"]);
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "--quiet", "-m", msg]);
        git(dir, &["push", "--quiet", "origin", "main"]);
        git(dir, &["rev-parse", "HEAD"])
    }

    /// The claims on `remote` (its claims table's files and any claim refs of earlier
    /// versions), as `<credential-id>` each, sorted.
    pub fn claims(&self, remote: &str) -> Vec<String> {
        claims_on(&self.path(&format!("{remote}.git")))
    }

    /// Where `refname` points on bare remote `remote` (`dev` or `prod`).
    pub fn remote_ref(&self, remote: &str, refname: &str) -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(self.path(&format!("{remote}.git")))
            .args([
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{refname}^{{commit}}"),
            ])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap().trim().to_owned())
    }

    /// A hot-fix committed straight onto the pointer branch `cluster/<cluster>` on bare
    /// remote `remote`, changing `rel` to `content`, as someone bypassing main would;
    /// returns the commit.
    pub fn hotfix_pointer(&self, remote: &str, cluster: &str, rel: &str, content: &str) -> String {
        let hf = self.clone_as(&format!("hotfix-{cluster}"));
        git(
            &hf,
            &["fetch", "--quiet", remote, &format!("cluster/{cluster}")],
        );
        git(&hf, &["checkout", "--quiet", "-b", "hf", "FETCH_HEAD"]);
        std::fs::write(hf.join(rel), content).unwrap();
        git(&hf, &["commit", "--quiet", "-am", "Hot-fix"]);
        git(
            &hf,
            &[
                "push",
                "--quiet",
                remote,
                &format!("HEAD:refs/heads/cluster/{cluster}"),
            ],
        );
        git(&hf, &["rev-parse", "HEAD"])
    }

    /// File content at `rev` in bare remote `remote`.
    pub fn show(&self, remote: &str, rev: &str, path: &str) -> String {
        git(
            &self.path(&format!("{remote}.git")),
            &["show", &format!("{rev}:{path}")],
        )
    }
}

/// SHA-256 of a PEM certificate's DER (what `sealedWith` and the pins hold), by openssl.
pub fn cert_fingerprint(pem: &Path) -> String {
    use sha2::Digest as _;
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(pem)
        .output()
        .unwrap();
    assert!(der.status.success());
    sha2::Sha256::digest(der.stdout)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The claims on the bare repository `bare`: the files of its claims table
/// (`refs/secret-manager/claims/table`) and any claim refs of earlier versions, as
/// `<credential-id>` each, sorted.
pub fn claims_on(bare: &Path) -> Vec<String> {
    const PREFIX: &str = "refs/secret-manager/claims/";
    let refs = git(bare, &["for-each-ref", "--format=%(refname)", PREFIX]);
    let mut out: Vec<String> = refs
        .lines()
        .filter(|r| *r != "refs/secret-manager/claims/table")
        .map(|r| r.trim_start_matches(PREFIX).to_owned())
        .collect();
    if refs
        .lines()
        .any(|r| r == "refs/secret-manager/claims/table")
    {
        let files = git(
            bare,
            &["ls-tree", "--name-only", "refs/secret-manager/claims/table"],
        );
        out.extend(
            files
                .lines()
                .map(|f| f.trim_end_matches(".yaml").to_owned()),
        );
    }
    out.sort();
    out
}
