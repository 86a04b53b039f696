//! Test harness: hermetic CLI runs, repo copies, and the TEST-ONLY decryptor.
#![allow(dead_code)]

pub mod aws;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The pinned clock of every CLI test.
pub const NOW: &str = "2026-11-21T12:00:00Z";

/// The workspace root (the CLI package lives in `cli/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

pub fn testdata(rel: &str) -> PathBuf {
    root().join("testdata").join(rel)
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The binary with a cleared environment: pinned clock, no colour, 120 columns,
/// git config pointed at /dev/null, and only the system PATH.
pub fn cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_secret-manager"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SECRET_MANAGER_NOW", NOW)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "120")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", std::env::temp_dir());
    c
}

pub fn run_in(args: &[&str]) -> Run {
    run_cmd(cmd().args(args))
}

pub fn run_cmd(c: &mut Command) -> Run {
    let out = c.output().expect("binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
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

pub mod db;
pub mod maria;
pub mod pg;
pub mod tls;

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

/// One run of the binary the way a test's bot runs it (`GitFleet::bot`): on the fleet's
/// `work` clone, at a pinned time, as the rotator's git identity, with moto's AWS
/// environment when asked. The command line the rotation tests used to build by hand.
pub struct Bot {
    c: Command,
    repo: PathBuf,
    args: Vec<std::ffi::OsString>,
}

impl Bot {
    /// Adds moto's AWS environment (test credentials only).
    pub fn aws(mut self, moto: &Moto) -> Bot {
        moto.env(&mut self.c);
        self
    }

    /// Sets one environment variable of the run.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Bot {
        self.c.env(key, value);
        self
    }

    /// Runs in another clone than `work`.
    pub fn repo(mut self, dir: &Path) -> Bot {
        self.repo = dir.to_owned();
        self
    }

    /// Appends arguments (after `--repo <clone>`).
    pub fn args<S: AsRef<std::ffi::OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Bot {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// `rotate --yes --revoke-after 0s <args>`: one run that stages, publishes and revokes.
    pub fn rotate_now(self, args: &[&str]) -> Run {
        self.args(["--yes", "rotate", "--revoke-after", "0s"])
            .args(args)
            .run()
    }

    /// The command, for a test that spawns it itself.
    pub fn command(mut self) -> Command {
        self.c.arg("--repo").arg(&self.repo).args(&self.args);
        self.c
    }

    /// Runs it to the end.
    pub fn run(self) -> Run {
        run_cmd(&mut self.command())
    }
}

impl GitFleet {
    /// A run of the binary on `work` at `now` (RFC 3339), committing as the rotator.
    pub fn bot(&self, now: &str) -> Bot {
        let mut c = cmd();
        c.env("SECRET_MANAGER_NOW", now)
            .env("GIT_AUTHOR_NAME", "Rotator")
            .env("GIT_AUTHOR_EMAIL", "rotator@example.com");
        Bot {
            c,
            repo: self.path("work"),
            args: Vec::new(),
        }
    }

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

    /// File content at `rev` in bare remote `remote`.
    pub fn show(&self, remote: &str, rev: &str, path: &str) -> String {
        git(
            &self.path(&format!("{remote}.git")),
            &["show", &format!("{rev}:{path}")],
        )
    }
}

/// A running `moto_server` on a free loopback port; killed on drop.
pub struct Moto {
    _server: secret_manager_testkit::MotoServer,
    pub url: String,
}

impl Moto {
    pub fn start() -> Moto {
        let bin = std::env::var("MOTO_SERVER").unwrap_or_else(|_| {
            root()
                .join("target/venv/bin/moto_server")
                .display()
                .to_string()
        });
        let server = secret_manager_testkit::MotoServer::start(&bin);
        Moto {
            url: server.url.clone(),
            _server: server,
        }
    }

    /// Sets the AWS environment of `c` to this moto (test credentials only).
    pub fn env<'a>(&self, c: &'a mut Command) -> &'a mut Command {
        c.env("AWS_ENDPOINT_URL", &self.url)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
    }

    /// Calls an IAM Query API action directly (moto does not check signatures).
    pub fn iam(&self, params: &[(&str, &str)]) -> String {
        use std::io::{Read, Write};
        let mut body = String::from("Version=2010-05-08");
        for (k, v) in params {
            body.push_str(&format!("&{k}={v}"));
        }
        let host = self.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(host).unwrap();
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20261121/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 200"),
            "moto IAM call {params:?} failed: {out}"
        );
        out
    }

    /// Access key ids moto holds for `user`.
    pub fn key_ids(&self, user: &str) -> Vec<String> {
        let out = self.iam(&[("Action", "ListAccessKeys"), ("UserName", user)]);
        out.split("<AccessKeyId>")
            .skip(1)
            .filter_map(|s| s.split('<').next())
            .map(str::to_owned)
            .collect()
    }
}

/// Puts testdata/plugins first on PATH of `c`, with the demo plugin's state in `state`.
pub fn with_demo_plugin<'a>(c: &'a mut Command, state: &Path) -> &'a mut Command {
    let path = format!(
        "{}:{}",
        testdata("plugins").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    c.env("PATH", path).env("DEMO_PROVIDER_STATE", state)
}

/// Runs `c` (built by [`cmd`] and friends) on a pseudo-terminal through util-linux
/// `script`, as an operator at a terminal would; returns what the terminal showed
/// (stdout and stderr together) and the exit code.
pub fn run_on_terminal(c: &Command) -> Run {
    let mut line = String::new();
    for a in std::iter::once(c.get_program()).chain(c.get_args()) {
        let a = a.to_str().expect("utf-8 argument");
        line.push_str(&format!("'{}' ", a.replace('\'', "'\\''")));
    }
    let mut s = Command::new("script");
    s.args(["-qefc", &line, "/dev/null"]).env_clear();
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            s.env(k, v);
        }
    }
    s.stdin(std::process::Stdio::null());
    run_cmd_lossy(&mut s)
}

/// Like [`run_cmd`], for output that need not be UTF-8.
pub fn run_cmd_lossy(c: &mut Command) -> Run {
    let out = c.output().expect("runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
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
