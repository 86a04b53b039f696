//! Scanning through the binary: what `list` and `lint` say about a directory they cannot
//! read (as a user without the permission). The scanner's own cases are the library's
//! tests (`tests/scan.rs` at the root).

const SEALED: &str = "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: NAME, namespace: app}\nspec:\n  encryptedData: {k: AgB}\n";

/// An unreadable directory is reported (and is a lint finding), never skipped silently.
#[test]
fn an_unreadable_directory_is_a_finding() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join("apps/locked")).unwrap();
    std::fs::create_dir_all(root.join("apps/open")).unwrap();
    std::fs::write(
        root.join("apps/open/s.yaml"),
        SEALED.replace("NAME", "open"),
    )
    .unwrap();
    std::fs::write(
        root.join("apps/locked/s.yaml"),
        SEALED.replace("NAME", "locked"),
    )
    .unwrap();
    for p in [
        dir.path(),
        &root,
        &root.join("apps"),
        &root.join("apps/open"),
    ] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(
        root.join("apps/open/s.yaml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("apps/locked"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    // Root reads everything: run the binary as nobody then.
    let mut c = if rustix_is_root() {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_secret-manager"));
        c
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_secret-manager"))
    };
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", dir.path())
        .env("NO_COLOR", "1")
        .arg("--repo")
        .arg(&root);
    let list = c.clone_args().args(["list", "--all"]).output().unwrap();
    let lint = c.arg("lint").output().unwrap();
    std::fs::set_permissions(
        root.join("apps/locked"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let stderr = String::from_utf8_lossy(&list.stderr);
    assert!(list.status.success(), "{stderr}");
    assert!(
        stderr.contains("apps/locked") && stderr.contains("cannot read"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&list.stdout).contains("open"));
    assert_eq!(
        lint.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );
    assert!(String::from_utf8_lossy(&lint.stdout).contains("unreadable-file"));
}

fn rustix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

trait CloneArgs {
    fn clone_args(&self) -> std::process::Command;
}

impl CloneArgs for std::process::Command {
    fn clone_args(&self) -> std::process::Command {
        let mut c = std::process::Command::new(self.get_program());
        c.args(self.get_args()).env_clear();
        for (k, v) in self.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        c
    }
}
