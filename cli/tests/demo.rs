//! `secret-manager demo`: a whole rotation on a throwaway fleet, no cloud account.

use crate::common::{cmd, git, run_cmd, testdata};

#[test]
fn the_demo_rotates_a_generated_secret_end_to_end_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let from = testdata("example-repo");
    let r = run_cmd(cmd().current_dir(tmp.path()).args([
        "demo",
        "--from",
        from.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    for step in [
        "$ secret-manager create --source random",
        "$ secret-manager list --source random",
        "$ secret-manager --yes rotate --source random",
        "$ secret-manager cluster status",
        "$ secret-manager audit export --source random",
    ] {
        assert!(all.contains(step), "{step} missing:\n{all}");
    }
    assert!(
        // The secret the demo created and the example fleet's own generated secret.
        all.contains("2 staged, 0 deleted, 2 published, 2 revoked"),
        "{all}"
    );
    // The cluster's branch on the dev remote carries the rotated secret, and the audit
    // log on main records the revoke.
    let dev = dir.join("dev.git");
    let file = "applications/service1/state/overlays/aws.eu-central-1.dev1/session.yaml";
    let on_branch = git(
        &dev,
        &["show", &format!("cluster/aws.eu-central-1.dev1:{file}")],
    );
    let on_main = git(&dev, &["show", &format!("main:{file}")]);
    assert_eq!(on_branch, on_main);
    let log = git(&dev, &["log", "--format=%B", "main"]);
    assert!(log.contains("Secret-Manager-Action: revoke"), "{log}");
    // The example repo itself is untouched.
    let status = std::process::Command::new("git")
        .args(["status", "--porcelain", "--"])
        .arg(&from)
        .output()
        .unwrap();
    assert!(
        status.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );

    // Without --dir the fleet lives in a temporary directory that is removed.
    let r = run_cmd(
        cmd()
            .env("TMPDIR", tmp.path())
            .current_dir(tmp.path())
            .args(["demo", "--from", from.to_str().unwrap()]),
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("secret-manager-demo-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_demo_refuses_an_existing_dir_and_a_repo_that_is_not_the_example() {
    let tmp = tempfile::tempdir().unwrap();
    let from = testdata("example-repo");
    let r = run_cmd(cmd().args([
        "demo",
        "--from",
        from.to_str().unwrap(),
        "--dir",
        tmp.path().to_str().unwrap(),
    ]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("exists"), "{}", r.stderr);
    let r = run_cmd(cmd().current_dir(tmp.path()).args(["demo"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("is not the example fleet repo"),
        "{}",
        r.stderr
    );
}
