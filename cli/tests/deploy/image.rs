//! deploy/Dockerfile: its build context compiles offline, it lints clean, its bases are
//! pinned, and the binary stops cleanly on SIGTERM in the image's PID-1 arrangement.

use super::venv_tool;
use crate::common::root;
use std::path::Path;
use std::process::Command;
#[cfg(feature = "failpoints")]
use std::process::Stdio;

fn dockerfile() -> String {
    std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap()
}

/// Logical lines (continuations joined), comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if cur.is_empty() && (t.starts_with('#') || t.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(t);
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

/// The sources of the build stage's `COPY` lines (not `COPY --from`).
fn copied() -> Vec<String> {
    instructions(&dockerfile())
        .iter()
        .filter_map(|i| i.strip_prefix("COPY "))
        .filter(|rest| !rest.starts_with("--from"))
        .flat_map(|rest| {
            let words: Vec<&str> = rest.split_whitespace().collect();
            words[..words.len() - 1]
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The build context: exactly the files the COPY lines name, in a fresh directory.
fn build_context(skip: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for src in copied() {
        if Some(src.as_str()) == skip {
            continue;
        }
        let from = root().join(&src);
        let to = dir.path().join(&src);
        if from.is_dir() {
            crate::common::copy_dir(&from, &to);
        } else {
            std::fs::copy(&from, &to).unwrap();
        }
    }
    dir
}

fn cargo(dir: &Path, args: &[&str]) -> std::process::Output {
    secret_manager_testkit::tier::environment("a cargo check of the image's build context");
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(dir)
        .args(args)
        .env(
            "CARGO_TARGET_DIR",
            root().join("target/docker-context").as_os_str(),
        )
        .output()
        .unwrap()
}

/// Slow (a `cargo check` of the whole release graph, ~2 minutes from cold): scripts/test
/// runs it on its own after the rest of the suite.
#[test]
#[ignore = "environment: a cargo check of the image's build context (~2 min; scripts/test runs it last, alone)"]
fn dockerfile_build_context_resolves_and_compiles_offline() {
    let sources = copied();
    assert!(sources.contains(&"testkit".to_owned()), "{sources:?}");
    // .dockerignore lets through exactly what the COPY lines use.
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    let mut allowed: Vec<String> = ignore
        .lines()
        .filter_map(|l| l.strip_prefix('!'))
        .map(str::to_owned)
        .collect();
    assert!(ignore.lines().any(|l| l.trim() == "*"), "allowlist style");
    let mut expected = sources.clone();
    expected.sort();
    allowed.sort();
    assert_eq!(
        allowed, expected,
        ".dockerignore and the COPY lines disagree"
    );
    // The build line: locked, the stripped profile, the binary.
    let build = instructions(&dockerfile())
        .into_iter()
        .find(|i| i.contains("cargo build"))
        .unwrap();
    for part in ["--locked", "--profile dist", "--bin secret-manager"] {
        assert!(build.contains(part), "{build}");
    }
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("[profile.dist]") && manifest.contains("strip = \"symbols\""),
        "the dist profile strips the binary"
    );
    // Negative control: a context missing a workspace member does not resolve.
    let broken = build_context(Some("testkit"));
    let meta = ["metadata", "--locked", "--offline", "--format-version=1"];
    let out = cargo(
        broken.path(),
        &[
            &meta[..],
            &["--filter-platform", "x86_64-unknown-linux-gnu"],
        ]
        .concat(),
    );
    assert!(!out.status.success(), "resolved without testkit/");
    assert!(String::from_utf8_lossy(&out.stderr).contains("testkit"));
    let ctx = build_context(None);
    let out = cargo(
        ctx.path(),
        &[
            &meta[..],
            &["--filter-platform", "x86_64-unknown-linux-gnu"],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cargo(
        ctx.path(),
        &[
            "check",
            "--locked",
            "--offline",
            "--profile",
            "dist",
            "--bin",
            "secret-manager",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "environment: needs hadolint (scripts/test runs it)"]
fn dockerfile_lints_clean_and_pins_its_bases_by_digest() {
    let hadolint = venv_tool("HADOLINT", "hadolint");
    let out = Command::new(&hadolint)
        .arg(root().join("deploy/Dockerfile"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Negative control: the linter does flag a bad Dockerfile.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("Dockerfile");
    std::fs::write(&bad, "FROM debian\nRUN cd /tmp && apt-get install -y git\n").unwrap();
    let out = Command::new(&hadolint).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("DL3003"));
    // Every external base is pinned by digest; stages refer to stages by name.
    let text = dockerfile();
    let all = instructions(&text);
    let stages: Vec<&str> = all
        .iter()
        .filter_map(|i| i.strip_prefix("FROM "))
        .filter_map(|f| f.split(" AS ").nth(1))
        .collect();
    for from in all.iter().filter_map(|i| i.strip_prefix("FROM ")) {
        let image = from.split_whitespace().next().unwrap();
        let resolved = match image.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
            Some(arg) => all
                .iter()
                .find_map(|i| i.strip_prefix(&format!("ARG {arg}=")))
                .unwrap_or_else(|| panic!("ARG {arg} has no default"))
                .to_owned(),
            None => image.to_owned(),
        };
        if stages.contains(&resolved.as_str()) {
            continue;
        }
        let digest = resolved.split_once("@sha256:").map(|(_, d)| d);
        assert!(
            digest.is_some_and(|d| d.len() == 64 && d.chars().all(|c| c.is_ascii_hexdigit())),
            "FROM {resolved} is not pinned by digest"
        );
    }
    // kubectl comes with a verified checksum.
    assert!(text.contains("ADD --checksum=sha256:${KUBECTL_SHA256}"));
    // tini is PID 1 and hands the signal on.
    assert!(
        text.contains("ENTRYPOINT [\"/usr/bin/tini\", \"--\", \"/usr/local/bin/secret-manager\"]")
    );
}

/// The binary runs on the runtime image's glibc (bookworm: 2.36), as the Dockerfile says.
#[test]
fn the_binary_needs_no_newer_glibc_than_the_runtime_image() {
    let out = Command::new("objdump")
        .args(["-T", env!("CARGO_BIN_EXE_secret-manager")])
        .output()
        .expect("objdump (binutils) is needed");
    let text = String::from_utf8_lossy(&out.stdout);
    let newest = text
        .split("GLIBC_")
        .skip(1)
        .filter_map(|s| {
            let v: String = s
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut p = v.split('.').map(|n| n.parse::<u32>().unwrap_or(0));
            Some((p.next()?, p.next().unwrap_or(0)))
        })
        .max()
        .expect("a dynamically linked binary");
    assert!(newest <= (2, 36), "needs GLIBC_{}.{}", newest.0, newest.1);
    assert!(
        dockerfile().contains(&format!("glibc >= {}.{}", newest.0, newest.1)),
        "the Dockerfile's comment names the glibc the binary needs ({}.{})",
        newest.0,
        newest.1
    );
}

/// PIDs of `pid`'s children.
#[cfg(feature = "failpoints")]
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// SIGTERM to PID 1 of a fresh PID namespace, as the kubelet sends it: with tini as the
/// image's entrypoint, and with the binary itself as PID 1 (a `command:` override). Both
/// exit 143 with the minted key undone, and the next run converges.
#[cfg(feature = "failpoints")]
#[test]
#[ignore = "environment: needs tini (scripts/test runs it)"]
fn sigterm_to_pid_1_stops_the_run_cleanly() {
    use crate::common::aws::{USER, setup};
    secret_manager_testkit::tier::environment("tini");
    let tini = which("tini").expect("tini is needed (apt-get install tini; scripts/test does)");
    for entry in [vec![tini.display().to_string(), "--".into()], vec![]] {
        let (f, moto, old) = setup();
        let tmp = tempfile::tempdir().unwrap();
        let err = tmp.path().join("stderr");
        let inner = crate::common::aws::pod(
            &f,
            &moto,
            "2026-11-21T12:00:00Z",
            tmp.path(),
            &["--name=route53"],
        );
        let mut c = Command::new("unshare");
        c.args(["--user", "--map-root-user", "--pid", "--fork"])
            .args(&entry)
            .arg(inner.get_program())
            .args(inner.get_args())
            .env_clear();
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        c.env("SECRET_MANAGER_FAILPOINT", "after-mint:pause")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap());
        let mut child = c.spawn().unwrap();
        crate::common::aws::wait_for(&err, "failpoint after-mint: pausing");
        // unshare --fork waits for its child, which is PID 1 in the new namespace.
        let pid1 = children(child.id());
        assert_eq!(pid1.len(), 1, "{pid1:?}");
        let ok = Command::new("kill")
            .args(["-TERM", &pid1[0].to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let status = child.wait().unwrap();
        let stderr = std::fs::read_to_string(&err).unwrap();
        let how = if entry.is_empty() { "binary" } else { "tini" };
        assert_eq!(status.code(), Some(143), "{how} as PID 1: {stderr}");
        assert!(stderr.contains("received SIGTERM"), "{how}: {stderr}");
        assert_eq!(moto.key_ids(USER), vec![old.clone()], "{how}: undone");
        let dir = tempfile::tempdir().unwrap();
        let out = crate::common::aws::pod(
            &f,
            &moto,
            "2026-11-21T12:01:00Z",
            dir.path(),
            &["--name=route53"],
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(moto.key_ids(USER).len(), 1);
    }
}

#[cfg(feature = "failpoints")]
fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.exists())
}

/// The OCI image labels carry what the workspace says: source, version, licence, and the
/// revision from a build argument.
#[test]
fn the_image_carries_the_oci_labels_of_the_workspace() {
    let all = instructions(&dockerfile());
    let label = all
        .iter()
        .find(|i| i.starts_with("LABEL "))
        .expect("a LABEL instruction");
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let field = |name: &str| {
        manifest
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_else(|| panic!("workspace {name}"))
            .to_owned()
    };
    for (key, want) in [
        ("org.opencontainers.image.source", field("repository")),
        ("org.opencontainers.image.licenses", field("license")),
        ("org.opencontainers.image.version", "${VERSION}".to_owned()),
        (
            "org.opencontainers.image.revision",
            "${REVISION}".to_owned(),
        ),
    ] {
        assert!(
            label.contains(&format!("{key}=\"{want}\"")),
            "{key} should be {want}: {label}"
        );
    }
    assert!(
        all.contains(&format!("ARG VERSION={}", field("version"))),
        "ARG VERSION defaults to the workspace version"
    );
}
