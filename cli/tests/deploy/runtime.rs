//! The binary the CronJob's way: no TTY, a fresh clone, JSON logs, TMPDIR on the work
//! volume, git credentials from a read-only mount, and kubectl absent.

use super::{deploy, documents, env_var, one, render};
use crate::common::aws::{DEV1, USER, setup};
use crate::common::{Moto, cmd, git, run_cmd};
use std::process::Command;

/// Runs like the CronJob: no TTY, --clone from the bare remote, JSON logs.
fn cron_run(
    f: &crate::common::GitFleet,
    moto: &Moto,
    now: &str,
    extra_env: &[(&str, &str)],
) -> crate::common::Run {
    let dest = tempfile::tempdir().unwrap();
    // As in the pod: TMPDIR on the work volume, not created yet.
    let tmp = dest.path().join("tmp");
    let mut c = cmd();
    c.env("TMPDIR", &tmp);
    moto.env(&mut c)
        .env("SECRET_MANAGER_NOW", now)
        .env("GIT_AUTHOR_NAME", "secret-manager")
        .env("GIT_AUTHOR_EMAIL", "sm@example.com")
        .env("GIT_COMMITTER_NAME", "secret-manager")
        .env("GIT_COMMITTER_EMAIL", "sm@example.com")
        .stdin(std::process::Stdio::null());
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.args([
        &format!("--clone={}", f.path("dev.git").display()),
        &format!("--clone-remote=prod={}", f.path("prod.git").display()),
        &format!("--repo={}", dest.path().join("repo").display()),
        "--yes",
        "--non-interactive",
        "--log-format=json",
        "rotate",
        "--older-than=90d",
        "--source=aws",
        "--name=route53",
        "--revoke-after=0s",
    ]);
    let r = run_cmd(&mut c);
    assert!(tmp.is_dir(), "TMPDIR was not created: {}", r.stderr);
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("secret-manager-wt-"))
        .collect();
    assert!(left.is_empty(), "worktrees left in TMPDIR: {left:?}");
    r
}

fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn cronjob_style_runs_log_json_and_exit_right() {
    let (f, moto, old) = setup();
    // Nothing due yet (the key is brand new): exit 0, no ref moves.
    let refs = git(&f.path("dev.git"), &["for-each-ref"]);
    let r = cron_run(&f, &moto, "2026-11-21T12:00:00Z", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    json_lines(&r.stderr);
    assert_eq!(git(&f.path("dev.git"), &["for-each-ref"]), refs);
    // A failing provider: exit 10, nothing changed.
    let r = cron_run(
        &f,
        &moto,
        "2027-06-01T00:00:00Z",
        &[("AWS_ENDPOINT_URL_IAM", "http://127.0.0.1:9")],
    );
    assert_eq!(r.code, 10, "{}", r.stderr);
    let logs = json_lines(&r.stderr);
    assert!(
        logs.iter()
            .any(|l| l["level"] == "ERROR" && l["phase"] == "Preflight"),
        "{logs:#?}"
    );
    assert_eq!(moto.key_ids(USER), vec![old.clone()]);
    // Due: a full rotation, one JSON event per phase, no secret in the logs.
    let r = cron_run(&f, &moto, "2027-06-01T00:00:00Z", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let logs = json_lines(&r.stderr);
    for action in ["stage", "publish", "revoke"] {
        assert!(
            logs.iter()
                .any(|l| l["action"] == action && l["done"] == true),
            "no {action} event: {logs:#?}"
        );
    }
    assert!(
        logs.iter().any(|l| l["message"] == "rotate run finished"),
        "summary event"
    );
    let keys = moto.key_ids(USER);
    assert_eq!(keys.len(), 1);
    assert_ne!(keys[0], old);
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("m.yaml");
    std::fs::write(&p, f.show("dev", "main", crate::common::aws::REL)).unwrap();
    let secret =
        crate::common::decrypt_value(&p, 0, DEV1, crate::common::aws::LABEL, "secretAccessKey")
            .unwrap();
    assert!(
        !r.stderr.contains(std::str::from_utf8(&secret).unwrap()),
        "secret in logs"
    );
    // Credentials in the clone URL are refused before anything runs.
    let r = run_cmd(cmd().args(["--clone=https://user:token@git.example.com/x.git", "list"]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("must not contain credentials") && !r.stderr.contains("token@"),
        "{}",
        r.stderr
    );
}

/// The credential helper of components/https-token answers `get` from the read-only
/// Secret mount and never writes; git's `store` helper, which the docs used to suggest,
/// fails on that mount.
#[test]
#[ignore = "environment: needs kubectl (scripts/test runs it)"]
fn the_https_token_helper_reads_a_read_only_mount_and_never_writes() {
    // Render the component on top of an overlay, as a user would stack it.
    let dir = tempfile::tempdir().unwrap();
    let rel = super::manifests::relative(dir.path(), &deploy(""));
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {rel}/overlays/aws\ncomponents:\n  - {rel}/components/https-token\n"
        ),
    )
    .unwrap();
    let rendered = render(dir.path());
    super::validate(&rendered).unwrap();
    let docs = documents(&rendered);
    let cj = one(&docs, "CronJob");
    assert_eq!(env_var(cj, "GIT_CONFIG_COUNT"), Some("1"));
    assert_eq!(env_var(cj, "GIT_CONFIG_KEY_0"), Some("credential.helper"));
    let helper = env_var(cj, "GIT_CONFIG_VALUE_0").unwrap().to_owned();
    let sealed = one(&docs, "SealedSecret");
    assert!(sealed["spec"]["encryptedData"]["git-credential"].is_string());
    let mount = "/etc/git-credentials";
    assert!(
        helper.contains(&format!("{mount}/git-credential")),
        "{helper}"
    );
    // A read-only bind mount at a scratch path stands in for the Secret volume.
    let secret = tempfile::tempdir().unwrap();
    std::fs::write(
        secret.path().join("git-credential"),
        "username=x-access-token\npassword=tok-123\n",
    )
    .unwrap();
    let ro = tempfile::tempdir().unwrap();
    let helper = helper.replace(mount, &ro.path().display().to_string());
    let script = format!(
        r#"set -e
mount --bind {secret} {ro}
mount -o remount,ro,bind {ro}
req='protocol=https
host=git.example.com
'
printf '%s\n' "$req" | git -c credential.helper='{helper}' credential fill
printf '%s\n' "$req""username=x-access-token
password=tok-123
" | git -c credential.helper='{helper}' credential approve
echo "--- store" >&2
printf '%s\n' "$req""username=x-access-token
password=tok-123
" | git -c credential.helper='store --file={ro}/git-credential' credential approve
"#,
        secret = secret.path().display(),
        ro = ro.path().display(),
    );
    secret_manager_testkit::tier::environment("unshare (user namespaces)");
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    let (ours, store) = stderr.split_once("--- store").unwrap_or((&stderr, ""));
    assert!(
        store.contains("unable to get credential storage lock"),
        "negative control: `store` should fail on a read-only mount: {stderr}"
    );
    assert!(
        stdout.contains("username=x-access-token") && stdout.contains("password=tok-123"),
        "{stdout}{stderr}"
    );
    assert!(
        ours.trim().is_empty(),
        "the helper wrote or complained: {ours}"
    );
    assert_eq!(
        std::fs::read_to_string(secret.path().join("git-credential")).unwrap(),
        "username=x-access-token\npassword=tok-123\n"
    );
}

/// Without kubectl in the image, --require-synced is an error (exit 14) that says why,
/// never a "wait" that keeps the old key forever.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn kubectl_that_cannot_run_is_an_error_not_a_wait() {
    let (f, moto, old) = setup();
    let bin = tempfile::tempdir().unwrap();
    let git_bin = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("git"))
        .find(|p| p.exists())
        .unwrap();
    std::os::unix::fs::symlink(git_bin, bin.path().join("git")).unwrap();
    let mut c = cmd();
    moto.env(&mut c).env("PATH", bin.path());
    c.args([
        "--repo",
        f.path("work").to_str().unwrap(),
        "--yes",
        "--non-interactive",
        "rotate",
        "--source=aws",
        "--name=route53",
        "--revoke-after=0s",
        "--require-synced",
    ]);
    let r = run_cmd(&mut c);
    assert_eq!(r.code, 14, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("kubectl cannot run"), "{}", r.stderr);
    // Published, and the old key is still live.
    let keys = moto.key_ids(USER);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.contains(&old));
}
