//! Test harness: hermetic CLI runs, repo copies, and the TEST-ONLY decryptor.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The pinned clock of every CLI test.
pub const NOW: &str = "2026-11-21T12:00:00Z";

pub fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
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

    /// Decrypts one `encryptedData` value; `Err` when the label or key is wrong.
    pub fn decrypt(key: &RsaPrivateKey, label: &str, b64: &str) -> Result<Vec<u8>, String> {
        let ct = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| e.to_string())?;
        if ct.len() < 2 {
            return Err("too short".into());
        }
        let n = u16::from_be_bytes([ct[0], ct[1]]) as usize;
        let (rsa_ct, gcm) = ct[2..].split_at(n);
        let padding = if label.is_empty() {
            Oaep::new::<Sha256>()
        } else {
            Oaep::new_with_label::<Sha256, _>(label)
        };
        let session = key
            .decrypt(padding, rsa_ct)
            .map_err(|e| format!("rsa: {e}"))?;
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
