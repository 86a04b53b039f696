//! Pull-request mode through the real binary: a dev remote whose pre-receive hook rejects
//! every direct update of main, a fake GitHub (and GitLab) over that bare repo, moto as AWS.

use crate::common::{GitFleet, Moto, Run, cmd, decrypt_value, git, run_cmd};
use crate::rotate::{DEV1, LABEL, REL, USER, setup};
use secret_manager_testkit::forge::{FakeForge, MergeStyle};

use std::process::Command;

const TOKEN: &str = "ghp_TESTONLYtoken0000000000000000000000";
const REPOSITORY: &str = "org/fleet-config";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Protects main on the dev remote the way a forge does: no direct updates.
fn protect_main(f: &GitFleet) {
    use std::os::unix::fs::PermissionsExt;
    let hook = f.path("dev.git/hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\nwhile read old new ref; do\n  if [ \"$ref\" = refs/heads/main ]; then echo 'refs/heads/main is protected: changes must be made through a pull request' >&2; exit 1; fi\ndone\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Switches the fleet to pull-request mode against `forge` (committed before main is
/// protected).
fn pr_mode(f: &GitFleet, forge: &FakeForge, kind: &str, extra: &str) {
    let work = f.path("work");
    git(&work, &["pull", "--quiet", "--ff-only", "origin", "main"]);
    let p = work.join(".secret-manager.yaml");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str(&format!(
        "mainVia: pull-request\nforge:\n  kind: {kind}\n  apiUrl: {}\n  repository: {REPOSITORY}\n  labels: [secret-rotation]\n{extra}",
        forge.api_url
    ));
    std::fs::write(&p, text).unwrap();
    f.commit_and_publish("Rotations by pull request", &[DEV1]);
    protect_main(f);
}

/// `rotate` the CronJob's way (fresh clone), with the forge token in the environment.
fn run(f: &GitFleet, moto: &Moto, now: &str, token_var: &str, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cmd();
    // The operator trusts the fake forge's URL (the repo's apiUrl alone is not enough).
    let cfg = std::fs::read_to_string(f.path("work/.secret-manager.yaml")).unwrap();
    if let Some(url) = cfg.lines().find_map(|l| l.trim().strip_prefix("apiUrl: ")) {
        c.env("SECRET_MANAGER_FORGE_API_URL", url);
    }
    moto.env(&mut c)
        .env("SECRET_MANAGER_NOW", now)
        .env(token_var, TOKEN)
        .env("GIT_AUTHOR_NAME", "cron")
        .env("GIT_AUTHOR_EMAIL", "cron@example.com")
        .env("GIT_COMMITTER_NAME", "cron")
        .env("GIT_COMMITTER_EMAIL", "cron@example.com")
        .args([
            &format!("--clone={}", f.path("dev.git").display()),
            &format!("--clone-remote=prod={}", f.path("prod.git").display()),
            &format!("--repo={}", dir.path().join("r").display()),
            "--yes",
            "rotate",
            "--source=aws",
            "--name=route53",
            "--revoke-after=0s",
        ])
        .args(extra);
    run_cmd(&mut c)
}

fn main_key(f: &GitFleet) -> String {
    f.show("dev", "main", REL)
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret-manager/accessKeyId: "))
        .unwrap()
        .trim_matches('"')
        .to_owned()
}

fn journal_records(f: &GitFleet) -> Vec<String> {
    let bare = f.path("dev.git");
    let out = Command::new("git")
        .arg("-C")
        .arg(&bare)
        .args([
            "ls-tree",
            "-r",
            "--name-only",
            "refs/secret-manager/journal",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(".secret-manager/rotations/"))
        .map(str::to_owned)
        .collect()
}

fn branches(f: &GitFleet) -> Vec<String> {
    git(
        &f.path("dev.git"),
        &[
            "for-each-ref",
            "--format=%(refname)",
            "refs/heads/secret-manager/",
        ],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

/// The merged change reached the cluster, the old key is gone, nothing is left over.
fn assert_finished(f: &GitFleet, moto: &Moto, old: &str) {
    let keys = moto.key_ids(USER);
    let main = main_key(f);
    assert_eq!(keys, vec![main.clone()], "exactly the merged key is live");
    assert_ne!(main, old);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("m.yaml");
    std::fs::write(
        &file,
        f.show("dev", &format!("refs/heads/cluster/{DEV1}"), REL),
    )
    .unwrap();
    let id = decrypt_value(&file, 0, DEV1, LABEL, "accessKeyId").unwrap();
    assert_eq!(String::from_utf8(id).unwrap(), main, "the cluster has it");
    assert!(journal_records(f).is_empty(), "no record left");
    assert!(
        branches(f).is_empty(),
        "the branch is gone: {:?}",
        branches(f)
    );
    assert!(f.claims("dev").is_empty(), "{:?}", f.claims("dev"));
}

/// Proposes, then merges with `style`: the next run publishes and revokes.
fn merge_flow(style: MergeStyle) {
    let rt = runtime();
    let (f, moto, old) = setup();
    let forge = rt.block_on(FakeForge::github(&f.path("dev.git"), REPOSITORY, TOKEN));
    pr_mode(&f, &forge, "github", "");
    let main_before = f.remote_ref("dev", "refs/heads/main");
    let r = run(&f, &moto, "2026-11-21T12:00:00Z", "GITHUB_TOKEN", &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("1 proposed"), "{}", r.stderr);
    assert_eq!(
        f.remote_ref("dev", "refs/heads/main"),
        main_before,
        "main untouched"
    );
    let prs = forge.prs();
    assert_eq!(prs.len(), 1);
    assert_eq!(prs[0].labels, vec!["secret-rotation".to_string()]);
    let keys = moto.key_ids(USER);
    assert_eq!(keys.len(), 2, "old and new key live while in review");
    let new = keys.iter().find(|k| **k != old).unwrap().clone();
    let body = &prs[0].body;
    for needle in [
        &format!("123456789012/{USER}"),
        &old,
        &new,
        &REL.to_string(),
        &"secret-manager:run=".to_string(),
    ] {
        assert!(
            body.contains(needle.as_str()),
            "the body names {needle}:\n{body}"
        );
    }
    assert!(!body.contains("Ag"), "no ciphertext in the body:\n{body}");
    assert_eq!(journal_records(&f).len(), 1);
    // Still open: busy, no second key.
    let r = run(&f, &moto, "2026-11-21T13:00:00Z", "GITHUB_TOKEN", &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("waiting for review"), "{}", r.stdout);
    assert_eq!(
        moto.key_ids(USER).len(),
        2,
        "no second new key while the first waits"
    );
    // A reviewer merges it.
    forge.merge(prs[0].number, style);
    assert_eq!(main_key(&f), new, "main has the new key after the merge");
    let r = run(&f, &moto, "2026-11-21T14:00:00Z", "GITHUB_TOKEN", &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("1 published, 1 revoked"), "{}", r.stderr);
    assert_finished(&f, &moto, &old);
    // The audit trail: proposed, staged (the merged change, whatever the merge style),
    // published, revoked — and the merge is not mistaken for a hand edit.
    let work = f.path("work");
    let r = run_cmd(cmd().args(["--repo", work.to_str().unwrap(), "audit", "export"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let recs: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let n = |a: &str| {
        recs.iter()
            .filter(|r| r["action"] == a && r["file"] == REL)
            .count()
    };
    assert_eq!(
        (n("propose"), n("stage"), n("publish"), n("revoke")),
        (1, 1, 1, 1),
        "{style:?}:\n{}",
        r.stdout
    );
    assert_eq!(
        n("manual"),
        1,
        "only the initial import is a hand edit:\n{}",
        r.stdout
    );
}

#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn a_merge_commit_is_published_and_revoked_by_the_next_run() {
    merge_flow(MergeStyle::Merge);
}

#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn a_squash_merge_is_found_by_its_record() {
    merge_flow(MergeStyle::Squash);
}

#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn a_rebase_merge_is_found_by_its_record() {
    merge_flow(MergeStyle::Rebase);
}

#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn a_pull_request_closed_without_merge_deletes_the_new_key_only() {
    let rt = runtime();
    let (f, moto, old) = setup();
    let forge = rt.block_on(FakeForge::github(&f.path("dev.git"), REPOSITORY, TOKEN));
    pr_mode(&f, &forge, "github", "");
    let r = run(&f, &moto, "2026-11-21T12:00:00Z", "GITHUB_TOKEN", &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(moto.key_ids(USER).len(), 2);
    forge.close(1);
    let r = run(
        &f,
        &moto,
        "2026-11-21T13:00:00Z",
        "GITHUB_TOKEN",
        &["--older-than=90d"],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("closed without merging"), "{}", r.stdout);
    assert_eq!(
        moto.key_ids(USER),
        vec![old.clone()],
        "the old key is untouched"
    );
    assert_eq!(main_key(&f), old);
    assert!(journal_records(&f).is_empty());
    assert!(branches(&f).is_empty(), "{:?}", branches(&f));
    // The audit trail says so.
    let work = f.path("work");
    let r = run_cmd(cmd().args(["--repo", work.to_str().unwrap(), "audit", "export"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("\"action\":\"propose\""), "{}", r.stdout);
    assert!(r.stdout.contains("\"action\":\"abandon\""), "{}", r.stdout);
}

#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn a_stale_review_has_its_own_exit_code_and_automerge_merges_when_allowed() {
    let rt = runtime();
    let (f, moto, old) = setup();
    let forge = rt.block_on(FakeForge::github(&f.path("dev.git"), REPOSITORY, TOKEN));
    pr_mode(
        &f,
        &forge,
        "github",
        "  maxOpenAge: 1d\n  autoMerge: true\n",
    );
    forge.state.lock().unwrap().mergeable = false;
    let r = run(&f, &moto, "2026-11-21T12:00:00Z", "GITHUB_TOKEN", &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let r = run(&f, &moto, "2026-11-23T12:00:00Z", "GITHUB_TOKEN", &[]);
    assert_eq!(r.code, 15, "stale: {}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("has waited for review since"),
        "{}",
        r.stderr
    );
    assert_eq!(moto.key_ids(USER).len(), 2);
    // Reviews done: the forge allows the merge, and the run merges, publishes, revokes.
    forge.state.lock().unwrap().mergeable = true;
    let r = run(&f, &moto, "2026-11-23T13:00:00Z", "GITHUB_TOKEN", &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("1 published, 1 revoked"), "{}", r.stderr);
    assert_finished(&f, &moto, &old);
}

#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn gitlab_merge_requests_work_the_same_way() {
    let rt = runtime();
    let (f, moto, old) = setup();
    let forge = rt.block_on(FakeForge::gitlab(&f.path("dev.git"), REPOSITORY, TOKEN));
    pr_mode(&f, &forge, "gitlab", "");
    let r = run(&f, &moto, "2026-11-21T12:00:00Z", "GITLAB_TOKEN", &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let prs = forge.prs();
    assert_eq!(prs.len(), 1);
    assert_eq!(prs[0].labels, vec!["secret-rotation".to_string()]);
    // GitLab's token header, never a Bearer of the GitHub kind.
    assert!(
        forge
            .state
            .lock()
            .unwrap()
            .requests
            .iter()
            .all(|(_, _, auth)| auth == TOKEN)
    );
    forge.merge(1, MergeStyle::Squash);
    let r = run(&f, &moto, "2026-11-21T13:00:00Z", "GITLAB_TOKEN", &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_finished(&f, &moto, &old);
}

/// A GitHub App instead of a token: an RS256 JWT (checked by the fake: signature, iss,
/// exp) for an installation token; rate limits are waited out; no token reaches a log at
/// TRACE, an error, or a child's argv.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn a_github_app_and_rate_limits_and_no_token_anywhere() {
    let rt = runtime();
    let (f, moto, _old) = setup();
    let forge = rt.block_on(FakeForge::github(
        &f.path("dev.git"),
        REPOSITORY,
        "not-used",
    ));
    let key_file = crate::common::testdata("keys/aws.eu-central-1.dev1.key");
    let public =
        secret_manager_testkit::forge::public_pem_of(&std::fs::read_to_string(&key_file).unwrap());
    forge.with_app("123456", &public, "987654");
    pr_mode(&f, &forge, "github", "");
    forge.state.lock().unwrap().rate_limited = 1;
    // A git that records its argv, first on PATH.
    let bin = tempfile::tempdir().unwrap();
    let argv_log = bin.path().join("argv.log");
    let real_git = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let wrapper = bin.path().join("git");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\nexec {} \"$@\"\n",
            argv_log.display(),
            real_git.trim()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = cmd();
    moto.env(&mut c)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.path().display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .env("GITHUB_APP_ID", "123456")
        .env("GITHUB_APP_PRIVATE_KEY_FILE", &key_file)
        .env("GITHUB_APP_INSTALLATION_ID", "987654")
        .env("SECRET_MANAGER_FORGE_API_URL", &forge.api_url)
        .env("SECRET_MANAGER_LOG", "trace")
        .env("GIT_AUTHOR_NAME", "cron")
        .env("GIT_AUTHOR_EMAIL", "cron@example.com")
        .env("GIT_COMMITTER_NAME", "cron")
        .env("GIT_COMMITTER_EMAIL", "cron@example.com")
        .args([
            &format!("--clone={}", f.path("dev.git").display()),
            &format!("--repo={}", dir.path().join("r").display()),
            "--yes",
            "rotate",
            "--source=aws",
            "--name=route53",
        ]);
    let t0 = std::time::Instant::now();
    let r = run_cmd(&mut c);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        t0.elapsed() >= std::time::Duration::from_millis(900),
        "the rate limit was waited out"
    );
    let st = forge.state.lock().unwrap();
    assert_eq!(st.prs.len(), 1, "opened with the installation token");
    assert_eq!(st.issued.len(), 1, "one installation token for the run");
    let token = st.issued[0].clone();
    assert!(
        st.requests
            .iter()
            .any(|(m, p, auth)| m == "POST" && p.ends_with("/pulls") && *auth == token),
        "{:?}",
        st.requests
    );
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    for secret in [&token, &"BEGIN PRIVATE KEY".to_string()] {
        assert!(
            !r.stderr.contains(secret.as_str()),
            "no token in the TRACE log"
        );
        assert!(!r.stdout.contains(secret.as_str()));
        assert!(!argv.contains(secret.as_str()), "no token in git's argv");
    }
    assert!(
        r.stderr.contains("TRACE") || r.stderr.contains("DEBUG"),
        "the log is at TRACE"
    );
}

/// Pushing to a protected main: the error quotes the hook, suggests pull-request mode,
/// and the new key is deleted again.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn push_mode_against_a_protected_main_names_the_hook_and_suggests_pr_mode() {
    let (f, moto, old) = setup();
    protect_main(&f);
    let r = run(&f, &moto, "2026-11-21T12:00:00Z", "GITHUB_TOKEN", &[]);
    assert_eq!(r.code, 12, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("changes must be made through a pull request"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("mainVia: pull-request"), "{}", r.stderr);
    assert_eq!(moto.key_ids(USER), vec![old]);
}

/// The cluster's pointer is behind an unrelated change on main: the rotation goes to the
/// cluster as a hot-fix, and in pull-request mode the hot-fix reaches main by its own pull
/// request first — the pointer moves only to a commit main contains.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn a_hot_fix_reaches_main_by_pull_request_before_the_cluster_gets_it() {
    let rt = runtime();
    let (f, moto, old) = setup();
    let forge = rt.block_on(FakeForge::github(&f.path("dev.git"), REPOSITORY, TOKEN));
    // An unrelated change for dev1 on main that the cluster must not get yet.
    let work = f.path("work");
    let unrelated = format!("applications/service1/values/{DEV1}.yaml");
    f.commit_main(
        &work,
        &unrelated,
        "replicas: 5\n",
        "Scale service1 on dev1 (not yet)",
    );
    pr_mode(&f, &forge, "github", "");
    // pr_mode published main to dev1; put the pointer back behind the unrelated change.
    let behind = git(&f.path("dev.git"), &["rev-parse", "main~2"]);
    git(
        &f.path("dev.git"),
        &["update-ref", &format!("refs/heads/cluster/{DEV1}"), &behind],
    );
    let r = run(&f, &moto, "2026-11-21T12:00:00Z", "GITHUB_TOKEN", &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    forge.merge(1, MergeStyle::Merge);
    let r = run(&f, &moto, "2026-11-21T13:00:00Z", "GITHUB_TOKEN", &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("proposed the hot-fix"), "{}", r.stdout);
    let prs = forge.prs();
    assert_eq!(prs.len(), 2, "{prs:?}");
    assert!(prs[1].head.contains("hotfix-"), "{prs:?}");
    assert_eq!(
        git(
            &f.path("dev.git"),
            &["rev-parse", &format!("refs/heads/cluster/{DEV1}")]
        ),
        behind,
        "the cluster waits until main has the hot-fix"
    );
    assert_eq!(moto.key_ids(USER).len(), 2, "the old key stays");
    // Still open: waiting.
    let r = run(&f, &moto, "2026-11-21T14:00:00Z", "GITHUB_TOKEN", &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("waiting for the hot-fix pull request"),
        "{}",
        r.stdout
    );
    // Merged with a merge commit: the pointer moves to the hot-fix, then the old key goes.
    forge.merge(2, MergeStyle::Merge);
    let r = run(&f, &moto, "2026-11-21T15:00:00Z", "GITHUB_TOKEN", &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("1 published, 1 revoked"), "{}", r.stderr);
    let pointer = git(
        &f.path("dev.git"),
        &["rev-parse", &format!("refs/heads/cluster/{DEV1}")],
    );
    assert!(
        Command::new("git")
            .arg("-C")
            .arg(f.path("dev.git"))
            .args(["merge-base", "--is-ancestor", &pointer, "main"])
            .status()
            .unwrap()
            .success(),
        "the cluster's commit is on main"
    );
    assert_ne!(
        f.show("dev", &pointer, &unrelated),
        "replicas: 5",
        "the unrelated change did not ship"
    );
    assert_eq!(f.show("dev", "main", &unrelated), "replicas: 5");
    let keys = moto.key_ids(USER);
    assert_eq!(keys.len(), 1);
    assert_ne!(keys[0], old);
    assert_eq!(key_at_pointer(&f), keys[0]);
    assert!(journal_records(&f).is_empty());
}

fn key_at_pointer(f: &GitFleet) -> String {
    f.show("dev", &format!("refs/heads/cluster/{DEV1}"), REL)
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret-manager/accessKeyId: "))
        .unwrap()
        .trim_matches('"')
        .to_owned()
}

/// `keys` in pull-request mode reads the rotations in flight from the journal ref: both
/// keys of a rotation in review are `pending`, not foreign.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn keys_sees_rotations_in_review_as_pending() {
    let rt = runtime();
    let (f, moto, _old) = setup();
    let forge = rt.block_on(FakeForge::github(&f.path("dev.git"), REPOSITORY, TOKEN));
    pr_mode(&f, &forge, "github", "");
    let r = run(&f, &moto, "2026-11-21T12:00:00Z", "GITHUB_TOKEN", &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let work = f.path("work");
    let r = run_cmd(moto.env(&mut cmd()).args([
        "--repo",
        work.to_str().unwrap(),
        "keys",
        "--name",
        "route53",
        "-o",
        "json",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert!(rows.iter().all(|r| r["role"] == "pending"), "{rows:#?}");
    // In the words `list` uses for the same rotation.
    assert!(
        rows.iter().all(|r| r["rotation"] == "proposed"),
        "{rows:#?}"
    );
}

/// A gate program whose verdict the test sets (`pass` or anything else: fail).
fn gate_program(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let verdict = dir.join("verdict");
    std::fs::write(&verdict, "fail").unwrap();
    let program = dir.join("smoke-test");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\ncat > /dev/null\n[ \"$(cat {})\" = pass ] && exit 0\necho 'smoke test failed: 503' >&2\nexit 1\n",
            verdict.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    (program, verdict)
}

/// Pull-request mode, a merged rotation whose gate fails: the rollback is *proposed* on
/// its own branch (main takes no pushes), the rotation is held — old key kept, no second
/// proposal — while it waits for review; merged, the old value goes back to the cluster and
/// the new key is revoked.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn a_failing_gate_proposes_the_rollback_and_the_merge_takes_the_new_key_back() {
    let rt = runtime();
    let (f, moto, old) = setup();
    let forge = rt.block_on(FakeForge::github(&f.path("dev.git"), REPOSITORY, TOKEN));
    pr_mode(&f, &forge, "github", "");
    let tools = tempfile::tempdir().unwrap();
    let (program, verdict) = gate_program(tools.path());
    let gate = format!("--gate-command={}", program.display());
    let r = run(&f, &moto, "2026-11-21T12:00:00Z", "GITHUB_TOKEN", &[&gate]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    forge.merge(1, MergeStyle::Merge);
    let new = main_key(&f);
    assert_ne!(new, old);

    // Published, the gate fails: exit 14, and the rollback is proposed, not pushed.
    let r = run(&f, &moto, "2026-11-21T13:00:00Z", "GITHUB_TOKEN", &[&gate]);
    assert_eq!(r.code, 14, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("rollback proposed"), "{}", r.stdout);
    let prs = forge.prs();
    assert_eq!(prs.len(), 2, "{prs:?}");
    assert!(
        prs[1].head.contains("rollback-"),
        "its own branch: {}",
        prs[1].head
    );
    assert!(prs[1].body.contains("roll back"), "{}", prs[1].body);
    assert!(prs[1].body.contains("smoke test failed"), "{}", prs[1].body);
    assert!(
        !prs[1].body.contains("Ag"),
        "no ciphertext:\n{}",
        prs[1].body
    );
    assert_eq!(main_key(&f), new, "main untouched until the review");
    assert_eq!(moto.key_ids(USER).len(), 2, "both keys while in review");

    // Waiting for review: the rotation is held — no revoke, no second rollback.
    let r = run(&f, &moto, "2026-11-21T13:30:00Z", "GITHUB_TOKEN", &[&gate]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("waiting for review"), "{}", r.stdout);
    assert_eq!(forge.prs().len(), 2);
    assert_eq!(moto.key_ids(USER).len(), 2);

    // Merged: the old value is published, the new key revoked (the gate passes for it).
    forge.merge(2, MergeStyle::Merge);
    assert_eq!(main_key(&f), old, "main has the old key back");
    std::fs::write(&verdict, "pass").unwrap();
    let r = run(&f, &moto, "2026-11-21T14:00:00Z", "GITHUB_TOKEN", &[&gate]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("1 published, 1 revoked"), "{}", r.stderr);
    assert_eq!(moto.key_ids(USER), vec![old.clone()], "the new key is gone");
    assert_eq!(key_at_pointer(&f), old, "the cluster has the old key");
    assert!(journal_records(&f).is_empty(), "{:?}", journal_records(&f));
    assert!(branches(&f).is_empty(), "{:?}", branches(&f));
}

/// A reviewer closes the proposed rollback: nothing is deleted (the rollback's "new key"
/// is the rotation's old key), both keys stay, and the failing gate keeps the old key run
/// after run without proposing the rollback again.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn a_declined_rollback_keeps_both_keys_and_is_not_proposed_again() {
    let rt = runtime();
    let (f, moto, old) = setup();
    let forge = rt.block_on(FakeForge::github(&f.path("dev.git"), REPOSITORY, TOKEN));
    pr_mode(&f, &forge, "github", "");
    let tools = tempfile::tempdir().unwrap();
    let (program, _verdict) = gate_program(tools.path());
    let gate = format!("--gate-command={}", program.display());
    let r = run(&f, &moto, "2026-11-21T12:00:00Z", "GITHUB_TOKEN", &[&gate]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    forge.merge(1, MergeStyle::Merge);
    let r = run(&f, &moto, "2026-11-21T13:00:00Z", "GITHUB_TOKEN", &[&gate]);
    assert_eq!(r.code, 14, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(forge.prs().len(), 2);
    forge.close(2);
    let r = run(&f, &moto, "2026-11-21T13:30:00Z", "GITHUB_TOKEN", &[&gate]);
    assert!(r.stdout.contains("rollback of rotation"), "{}", r.stdout);
    assert_eq!(moto.key_ids(USER).len(), 2, "nothing deleted");
    assert!(moto.key_ids(USER).contains(&old));
    for now in ["2026-11-21T14:00:00Z", "2026-11-21T15:00:00Z"] {
        let r = run(&f, &moto, now, "GITHUB_TOKEN", &[&gate]);
        assert_eq!(r.code, 14, "{}\n{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("not rolled back"), "{}", r.stdout);
        assert_eq!(forge.prs().len(), 2, "no second rollback proposal");
        assert!(moto.key_ids(USER).contains(&old), "the old key stays");
    }
}
