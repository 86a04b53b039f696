//! The `cluster` command and `--clone` through the binary, against real git: a dev and a
//! prod bare remote. The pointer moves themselves are the library's tests
//! (`tests/gitops.rs` at the root).

use crate::common::{GitFleet, cmd, git, run_cmd};

const DEV1: &str = "aws.eu-central-1.dev1"; // branch on dev
const PROD1: &str = "aws.us-east-1.prod1"; // branch on prod
const DEV2: &str = "gcp.europe-west1.dev2"; // tag/dev2 on dev
const SHARED: &str = "applications/root/argocd/base/argocd-cm.yaml";

#[test]
fn cli_status_json_and_promote_confirmation() {
    let f = GitFleet::new();
    let work = f.path("work");
    f.commit_main(&work, SHARED, "x\n", "x");
    let w = work.to_str().unwrap();
    let r = run_cmd(cmd().args(["--repo", w, "cluster", "status", "-o", "json"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rows.len(), 5);
    for row in &rows {
        for k in [
            "cluster",
            "pointer",
            "ref",
            "remote",
            "commit",
            "behindMain",
            "aheadOfMain",
            "diverged",
            "pendingUnrelated",
        ] {
            assert!(row.get(k).is_some(), "missing {k}: {row}");
        }
    }
    // -o name: the cluster ids; --no-headers: the rows only.
    let names = run_cmd(cmd().args(["--repo", w, "cluster", "status", "-o", "name"]));
    assert_eq!(names.code, 0, "{}", names.stderr);
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["cluster"].as_str().unwrap())
        .collect();
    assert_eq!(names.stdout.lines().collect::<Vec<_>>(), ids);
    let bare = run_cmd(cmd().args(["--repo", w, "cluster", "status", "--no-headers"]));
    assert_eq!(bare.stdout.lines().count(), rows.len(), "{}", bare.stdout);
    assert!(!bare.stdout.contains("POINTER"), "{}", bare.stdout);
    let dev2 = rows.iter().find(|r| r["cluster"] == DEV2).unwrap();
    assert_eq!(dev2["pointer"], "tag");
    assert_eq!(dev2["ref"], "refs/tags/tag/dev2");
    let before = f.remote_ref("dev", &format!("refs/heads/cluster/{DEV1}"));
    // No TTY and no --yes: refuse with a hint; --dry-run: print only.
    let r = run_cmd(
        cmd()
            .args(["--repo", w, "cluster", "promote", DEV1])
            .stdin(std::process::Stdio::null()),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("pass --yes"), "{}", r.stderr);
    let r = run_cmd(cmd().args(["--repo", w, "cluster", "promote", DEV1, "--dry-run"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with("dry run: promote aws.eu-central-1.dev1"),
        "{}",
        r.stdout
    );
    // It lists what would ship: the commit and the file.
    assert!(
        r.stdout.contains("  commits:\n") && r.stdout.contains(" x\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!("  files:\n    {SHARED}")),
        "{}",
        r.stdout
    );
    assert_eq!(
        f.remote_ref("dev", &format!("refs/heads/cluster/{DEV1}")),
        before
    );
    let r = run_cmd(cmd().args(["--repo", w, "--yes", "cluster", "promote", DEV1]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let after = f.remote_ref("dev", &format!("refs/heads/cluster/{DEV1}"));
    assert_eq!(after, f.remote_ref("dev", "refs/heads/main"));
    // The promotion is in the audit trail (the refused and the dry run are not), and the
    // pointer got no commit of its own for it.
    let r = run_cmd(cmd().args(["--repo", w, "audit", "export", "--cluster", DEV1]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let promotes: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["action"] == "promote")
        .collect();
    assert_eq!(promotes.len(), 1, "{}", r.stdout);
    let detail = promotes[0]["detail"].as_str().unwrap();
    let before = before.unwrap_or_default();
    assert!(
        detail.contains(&format!(
            "from {before} to {}",
            after.clone().unwrap_or_default()
        )),
        "{detail}"
    );
    assert!(!promotes[0]["gitAuthor"].as_str().unwrap().is_empty());
    assert_eq!(
        git(
            &f.path("dev.git"),
            &[
                "rev-list",
                "--count",
                &format!("{}..refs/heads/cluster/{DEV1}", after.unwrap())
            ]
        ),
        "0"
    );
}

/// `--clone` into a directory: a second run (a CronJob with a persistent volume, or a
/// re-run by hand) reuses its own clone; a directory holding anything else is refused.
#[test]
fn clone_runs_again_into_its_own_clone_and_refuses_another_directory() {
    let f = crate::common::GitFleet::new();
    let url = f.path("dev.git");
    let dir = tempfile::tempdir().unwrap();
    let into = dir.path().join("config");
    let prod = format!("prod={}", f.path("prod.git").display());
    let run = |into: &std::path::Path| {
        crate::common::run_in(&[
            "--clone",
            url.to_str().unwrap(),
            "--clone-remote",
            &prod,
            "--repo",
            into.to_str().unwrap(),
            "list",
            "-o",
            "json",
        ])
    };
    let first = run(&into);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let second = run(&into);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(first.stdout, second.stdout);
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let r = run(&other);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("is not empty and is not a clone of"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(other.join("notes.txt")).unwrap(),
        "mine"
    );
}

/// `cluster reconcile` through the binary: a pointer on main's line is nothing to do (and
/// nothing moves); a cluster whose pointer ref is gone is the operator's to set up (2),
/// said with the remote; `--dry-run` on a diverged pointer says the plan and moves nothing.
#[test]
fn reconcile_says_what_it_would_do_and_refuses_a_missing_pointer() {
    let f = GitFleet::new();
    let work = f.path("work");
    let reconcile = |cluster: &str, extra: &[&str]| {
        run_cmd(
            cmd()
                .args([
                    "--repo",
                    work.to_str().unwrap(),
                    "--yes",
                    "cluster",
                    "reconcile",
                ])
                .arg(cluster)
                .args(extra),
        )
    };
    let refs = || {
        format!(
            "{}{}",
            git(&f.path("dev.git"), &["for-each-ref"]),
            git(&f.path("prod.git"), &["for-each-ref"])
        )
    };
    let before = refs();
    let r = reconcile(DEV1, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("is on main; nothing to reconcile"),
        "{}",
        r.stderr
    );
    assert_eq!(refs(), before);
    // A hot-fix straight onto prod1's branch: the dry run names it, nothing moves.
    f.hotfix_pointer("prod", PROD1, SHARED, "hot-fixed\n");
    let before = refs();
    let r = reconcile(PROD1, &["--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "dry run: reconcile {PROD1}: merge refs/heads/cluster/{PROD1}"
        )) && r.stdout.contains("1 commit(s) not on main"),
        "{}",
        r.stdout
    );
    assert_eq!(refs(), before);
    // The pointer ref deleted on its remote.
    git(
        &f.path("prod.git"),
        &["update-ref", "-d", &format!("refs/heads/cluster/{PROD1}")],
    );
    let r = reconcile(PROD1, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("{PROD1}: pointer ref is missing on prod")),
        "{}",
        r.stderr
    );
}
