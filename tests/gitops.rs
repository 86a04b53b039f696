//! Cluster pointers against real git, in-process (`gitops::Fleet`): a dev and a prod bare
//! remote, clones like users make. What the `cluster` command shows is
//! `cli/tests/gitops.rs`.

use crate::support::{GitFleet, git};
use secret_manager::Repo;
use secret_manager::gitops::git::{Git, GitError, Oid};
use secret_manager::gitops::{Fleet, PublishError, PublishMode};

const DEV1: &str = "aws.eu-central-1.dev1"; // branch on dev
const PROD1: &str = "aws.us-east-1.prod1"; // branch on prod
const DEV2: &str = "gcp.europe-west1.dev2"; // tag/dev2 on dev
const SHARED: &str = "applications/root/argocd/base/argocd-cm.yaml";
const DEV1_DNS: &str = "applications/root/external-dns/state/overlays/aws.eu-central-1.dev1/sealedSeacret-cloud-dns.yaml";
const PROD1_DNS: &str = "applications/root/external-dns/state/overlays/aws.us-east-1.prod1/sealedSeacret-cloud-dns.yaml";

fn open(dir: &std::path::Path) -> Repo {
    Repo::open(dir).unwrap()
}

#[test]
fn branch_cluster_behind_main_is_promoted() {
    let f = GitFleet::new();
    let work = f.path("work");
    let x = f.commit_main(&work, SHARED, "changed: shared\n", "Change shared base");
    let repo = open(&work);
    let fleet = Fleet::new(&repo);
    let st = fleet.status().unwrap();
    let dev1 = st.iter().find(|s| s.cluster == DEV1).unwrap();
    assert_eq!(
        (
            dev1.behind_main,
            dev1.ahead_of_main,
            dev1.diverged,
            dev1.pending_unrelated
        ),
        (Some(1), Some(0), false, true)
    );
    let out = fleet.promote(DEV1, None).unwrap();
    assert_eq!(out.mode, PublishMode::FastForward);
    assert_eq!(
        f.remote_ref("dev", &format!("refs/heads/cluster/{DEV1}")),
        Some(x.clone())
    );
    // The prod remote is untouched by a dev promote.
    assert_ne!(
        f.remote_ref("prod", &format!("refs/heads/cluster/{PROD1}")),
        Some(x)
    );
}

#[test]
fn tag_cluster_moves_and_a_concurrent_move_is_not_overwritten() {
    let f = GitFleet::new();
    let work = f.path("work");
    let x = f.commit_main(&work, SHARED, "v2\n", "v2");
    let repo = open(&work);
    let out = Fleet::new(&repo).promote(DEV2, None).unwrap();
    assert_eq!(out.to, x);
    assert_eq!(f.remote_ref("dev", "refs/tags/tag/dev2"), Some(x.clone()));

    // Someone else moves the tag after we looked at it: our lease must reject.
    let y = f.commit_main(&work, SHARED, "v3\n", "v3");
    let other = f.clone_as("other");
    git(
        &other,
        &[
            "push",
            "--quiet",
            "--force",
            "origin",
            &format!("{y}:refs/tags/tag/dev2"),
        ],
    );
    let err = Git::new(&work)
        .push_tag_with_lease("origin", &x, "tag/dev2", Some(&x))
        .unwrap_err();
    assert!(matches!(err, GitError::Rejected { .. }), "{err}");
    assert_eq!(
        f.remote_ref("dev", "refs/tags/tag/dev2"),
        Some(y),
        "their move stands"
    );
}

#[test]
fn diverged_branch_promote_refuses_and_reconcile_merges_it_back() {
    let f = GitFleet::new();
    let work = f.path("work");
    f.commit_main(&work, SHARED, "main moved\n", "Main moves on");
    // A hot-fix committed straight onto the prod cluster branch.
    let hotfix = f.hotfix_pointer("prod", PROD1, PROD1_DNS, "hot-fixed\n");

    let repo = open(&work);
    let fleet = Fleet::new(&repo);
    let st = fleet.status().unwrap();
    let prod1 = st.iter().find(|s| s.cluster == PROD1).unwrap();
    assert!(prod1.diverged);
    assert_eq!(prod1.ahead_of_main, Some(1));
    let err = fleet.promote(PROD1, None).unwrap_err();
    assert!(
        matches!(err, PublishError::Diverged { ahead: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("cluster reconcile"), "{err}");

    let out = fleet.reconcile(PROD1).unwrap().unwrap();
    let main = f.remote_ref("dev", "refs/heads/main").unwrap();
    // 1. main got a non-fast-forward merge of the cluster branch; 2. the branch was
    // fast-forwarded to it.
    assert_eq!(out.to, main);
    assert_eq!(
        f.remote_ref("prod", &format!("refs/heads/cluster/{PROD1}")),
        Some(main.clone())
    );
    let parents = git(
        &f.path("dev.git"),
        &["rev-list", "--parents", "-n", "1", &main],
    );
    assert_eq!(parents.split(' ').count(), 3, "a merge commit: {parents}");
    assert!(
        parents.ends_with(&hotfix),
        "second parent is the hot-fix: {parents}"
    );
    assert_eq!(f.show("dev", "main", PROD1_DNS), "hot-fixed");
    assert!(fleet.reconcile(PROD1).unwrap().is_none(), "idempotent");
    assert!(
        !fleet
            .status()
            .unwrap()
            .iter()
            .find(|s| s.cluster == PROD1)
            .unwrap()
            .diverged
    );
}

#[test]
fn racing_publishers_on_main_both_land() {
    let f = GitFleet::new();
    let a = f.path("work");
    let b = f.clone_as("b");
    let commit = |dir: &std::path::Path, file: &str| {
        std::fs::write(dir.join(file), format!("{file}\n")).unwrap();
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "--quiet", "-m", file]);
        git(dir, &["rev-parse", "HEAD"])
    };
    let ca = commit(&a, "from-a.txt");
    let cb = commit(&b, "from-b.txt");
    // A lands first.
    let repo_a = open(&a);
    Fleet::new(&repo_a)
        .push_main_with_retry(Oid::parse(&ca).unwrap(), |_| unreachable!("no race yet"))
        .unwrap();
    // B is rejected, rebases its commit onto the new main and retries.
    let repo_b = open(&b);
    let fleet_b = Fleet::new(&repo_b);
    let mut rebuilt = 0;
    let landed = fleet_b
        .push_main_with_retry(Oid::parse(&cb).unwrap(), |new_main| {
            rebuilt += 1;
            let wt = fleet_b.git().temp_worktree(new_main)?;
            wt.git.run(&["cherry-pick", &cb])?;
            Ok(wt.git.resolve("HEAD")?.unwrap())
        })
        .unwrap();
    assert_eq!(rebuilt, 1);
    assert_eq!(
        f.remote_ref("dev", "refs/heads/main"),
        Some(landed.to_string())
    );
    assert_eq!(f.show("dev", "main", "from-a.txt"), "from-a.txt");
    assert_eq!(f.show("dev", "main", "from-b.txt"), "from-b.txt");
}

#[test]
fn publishing_never_ships_unrelated_changes() {
    let f = GitFleet::new();
    let work = f.path("work");
    // Unrelated: a shared base file every cluster would receive.
    f.commit_main(&work, SHARED, "UNRELATED\n", "Unrelated shared change");
    // The change: dev1's own SealedSecret.
    let change = f.commit_main(&work, DEV1_DNS, "rotated dev1\n", "Rotate dev1 DNS key");
    let repo = open(&work);
    let fleet = Fleet::new(&repo);
    let out = fleet.publish(DEV1, &change).unwrap();
    assert_eq!(out.mode, PublishMode::Hotfix);
    let ptr = format!("refs/heads/cluster/{DEV1}");
    assert_eq!(f.remote_ref("dev", &ptr), Some(out.to.to_string()));
    assert_eq!(
        f.show("dev", &ptr, DEV1_DNS),
        "rotated dev1",
        "the change shipped"
    );
    assert_ne!(
        f.show("dev", &ptr, SHARED),
        "UNRELATED",
        "the unrelated change did not"
    );
    // The hot-fix was merged back: the pointer is on main, not diverged.
    let main = f.remote_ref("dev", "refs/heads/main").unwrap();
    git(
        &f.path("dev.git"),
        &["merge-base", "--is-ancestor", &out.to, &main],
    );
    assert!(
        !fleet
            .status()
            .unwrap()
            .iter()
            .find(|s| s.cluster == DEV1)
            .unwrap()
            .diverged
    );
    // Publishing again is a no-op.
    assert_eq!(
        fleet.publish(DEV1, &change).unwrap().mode,
        PublishMode::AlreadyPublished
    );
}

#[test]
fn a_hot_fix_carries_only_its_clusters_part_of_a_commit_that_spans_clusters() {
    let f = GitFleet::new();
    let work = f.path("work");
    // A secret added for dev1 (never published to dev2: its pointer has no such file),
    // and a shared change that makes dev2's publish a hot-fix.
    let dev1_new = "applications/service1/state/overlays/aws.eu-central-1.dev1/new.yaml";
    f.commit_main(&work, dev1_new, "added\n", "Add a dev1 secret");
    f.commit_main(&work, SHARED, "UNRELATED\n", "Unrelated shared change");
    // One commit (a batch's) for both clusters: dev1's new file and dev2's DNS secret.
    let dev2_dns = "applications/root/external-dns/state/overlays/gcp.europe-west1.dev2/sealedSeacret-cloud-dns.yaml";
    std::fs::write(work.join(dev1_new), "rotated dev1\n").unwrap();
    std::fs::write(work.join(dev2_dns), "rotated dev2\n").unwrap();
    // A shared file named like a pattern: as a pathspec it would match every file under
    // applications/ — dev1's too — and bring the conflict back.
    std::fs::write(work.join("applications/*"), "shared\n").unwrap();
    git(&work, &["add", "-A"]);
    git(
        &work,
        &[
            "commit",
            "--quiet",
            "--author=Batch Author <batch@example.com>",
            "-m",
            "Rotate both\n\nSecret-Manager-Action: stage",
        ],
    );
    git(&work, &["push", "--quiet", "origin", "main"]);
    let change = git(&work, &["rev-parse", "HEAD"]);

    let repo = open(&work);
    let fleet = Fleet::new(&repo);
    // Before: the whole commit was cherry-picked, and dev1's file (absent at dev2's
    // pointer) made it a conflict for a human to resolve.
    let out = fleet.publish(DEV2, &change).unwrap();
    assert_eq!(out.mode, PublishMode::Hotfix);
    let tag = "refs/tags/tag/dev2";
    assert_eq!(f.remote_ref("dev", tag), Some(out.to.to_string()));
    assert_eq!(f.show("dev", tag, dev2_dns), "rotated dev2");
    let absent = git(
        &f.path("dev.git"),
        &["ls-tree", "--name-only", &out.to, "--", dev1_new],
    );
    assert_eq!(
        absent, "",
        "another cluster's file stays out of dev2's tree"
    );
    assert_eq!(f.show("dev", tag, "applications/*"), "shared");
    assert_ne!(f.show("dev", tag, SHARED), "UNRELATED");
    // A copy like `cherry-pick -x` makes: the change's author, message and pick line, one
    // commit on the old pointer.
    let shown = git(
        &f.path("dev.git"),
        &["log", "-1", "--format=%an <%ae>%n%B", &out.to],
    );
    assert!(
        shown.starts_with("Batch Author <batch@example.com>"),
        "{shown}"
    );
    assert!(shown.contains("Secret-Manager-Action: stage"), "{shown}");
    assert!(
        shown.contains(&format!("(cherry picked from commit {change})")),
        "{shown}"
    );
    assert_eq!(
        git(&f.path("dev.git"), &["rev-parse", &format!("{}^", out.to)]),
        out.from
    );
    // Published is published: a second run sees dev2's part in place.
    assert_eq!(
        fleet.publish(DEV2, &change).unwrap().mode,
        PublishMode::AlreadyPublished
    );
}

#[test]
fn changes_of_other_clusters_and_state_do_not_block_a_fast_forward() {
    let f = GitFleet::new();
    let work = f.path("work");
    f.commit_main(&work, PROD1_DNS, "prod1 only\n", "Other cluster");
    f.commit_main(
        &work,
        ".secret-manager/rotations/x.yaml",
        "state\n",
        "Tool state",
    );
    let change = f.commit_main(&work, DEV1_DNS, "rotated\n", "Rotate dev1");
    let repo = open(&work);
    let out = Fleet::new(&repo).publish(DEV1, &change).unwrap();
    assert_eq!(out.mode, PublishMode::FastForward);
    assert_eq!(out.to, change);
}

#[test]
fn error_paths_are_clear_and_change_nothing() {
    let f = GitFleet::new();
    let work = f.path("work");
    let change = f.commit_main(&work, DEV1_DNS, "rotated\n", "Rotate dev1");
    // Missing pointer ref.
    git(
        &f.path("dev.git"),
        &["update-ref", "-d", &format!("refs/heads/cluster/{DEV1}")],
    );
    let repo = open(&work);
    let err = Fleet::new(&repo).publish(DEV1, &change).unwrap_err();
    assert!(matches!(err, PublishError::MissingPointer { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!(
            "refs/heads/cluster/{DEV1} does not exist on remote origin"
        )),
        "{err}"
    );

    // Auth failure: the prod remote rejects every push (pre-receive hook).
    let hook = f.path("prod.git/hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'permission denied: prod is read-only for you' >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = f.remote_ref("prod", &format!("refs/heads/cluster/{PROD1}"));
    let err = Fleet::new(&repo).promote(PROD1, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("permission denied: prod is read-only"),
        "{err}"
    );
    assert_eq!(
        f.remote_ref("prod", &format!("refs/heads/cluster/{PROD1}")),
        before
    );

    // Remote unreachable.
    git(
        &work,
        &["remote", "set-url", "prod", "/nonexistent/prod.git"],
    );
    // Only the clusters on it are marked; the others are reported in full.
    let rows = Fleet::new(&repo).status().unwrap();
    for r in &rows {
        if r.remote == "prod" {
            let e = r.error.as_deref().unwrap_or_default();
            assert!(e.contains("/nonexistent/prod.git"), "{r:?}");
            assert_eq!(r.commit, None);
        } else {
            assert_eq!(r.error, None, "{r:?}");
        }
    }
    assert!(
        rows.iter()
            .any(|r| r.remote == "origin" && r.commit.is_some())
    );
}
