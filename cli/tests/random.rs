//! The `random` source end to end: no cloud at all — create, then a whole rotation
//! (stage, publish, revoke) on the example fleet with its dev and prod remotes.

use crate::common::{GitFleet, cmd, decrypt_value, git, run_cmd};

const DEV1: &str = "aws.eu-central-1.dev1";
const REL: &str = "applications/service1/state/overlays/aws.eu-central-1.dev1/session.yaml";

fn value(f: &GitFleet, rev_remote: &str) -> (String, String) {
    let text = f.show(rev_remote, "main", REL);
    let file = f.path("session-check.yaml");
    std::fs::write(&file, &text).unwrap();
    let v = decrypt_value(&file, 0, DEV1, "service1/session-secret", "SESSION_SECRET").unwrap();
    let key = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret-manager/keyId: "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    (String::from_utf8(v).unwrap(), key)
}

#[test]
fn a_generated_secret_is_created_rotated_published_and_revoked_without_any_cloud() {
    let f = GitFleet::new();
    let work = f.path("work");
    let r = run_cmd(cmd().args([
        "--repo",
        work.to_str().unwrap(),
        "create",
        "--source",
        "random",
        "--cluster",
        DEV1,
        "--namespace",
        "service1",
        "--name",
        "session-secret",
        "--key-mappings",
        "[SESSION_SECRET:Value]",
        "--param",
        "id=service1/session",
        "--param",
        "length=48",
        "-w",
        work.join(REL).to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    f.commit_and_publish("Add a session secret", &[DEV1]);
    let (before, old_key) = value(&f, "dev");
    assert_eq!(before.len(), 48);
    assert!(
        before.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{before}"
    );
    assert!(old_key.starts_with("rnd-"), "{old_key}");

    let mut c = cmd();
    c.env("SECRET_MANAGER_NOW", "2027-06-01T00:00:00Z")
        .env("GIT_AUTHOR_NAME", "Rotator")
        .env("GIT_AUTHOR_EMAIL", "rotator@example.com")
        .args([
            "--repo",
            work.to_str().unwrap(),
            "--yes",
            "rotate",
            "--source",
            "random",
            "--older-than",
            "0s",
            "--revoke-after",
            "0s",
        ]);
    let r = run_cmd(&mut c);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("1 staged, 0 deleted, 1 published, 1 revoked"),
        "{}",
        r.stderr
    );
    let (after, new_key) = value(&f, "dev");
    assert_ne!(after, before);
    assert_eq!(after.len(), 48);
    assert_ne!(new_key, old_key);
    // The cluster's pointer has the new value; the rotation is recorded and ended.
    let log = git(&f.path("dev.git"), &["log", "--format=%B", "main"]);
    assert!(
        log.contains(&format!("Secret-Manager-New-Key: {new_key}")),
        "{log}"
    );
    assert!(log.contains("Secret-Manager-Action: revoke"), "{log}");
    let branch = format!("cluster/{DEV1}");
    assert_eq!(
        f.show("dev", &branch, REL),
        f.show("dev", "main", REL),
        "published to the cluster"
    );
    // No value reached the output.
    for v in [&before, &after] {
        assert!(!r.stdout.contains(v.as_str()) && !r.stderr.contains(v.as_str()));
    }
}
