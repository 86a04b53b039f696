//! End-to-end rotations: the real binary, dev/prod bare remotes, moto as AWS.

use crate::common::{GitFleet, Moto, NOW, Run, cmd, decrypt_value, git, run_cmd};

pub(crate) use crate::common::aws::{DEV1, LABEL, REL, USER, create_aws, setup};

pub(crate) fn rotate(f: &GitFleet, moto: &Moto, now: &str, extra: &[&str]) -> Run {
    f.bot(now)
        .aws(moto)
        .args([
            "rotate",
            "--source",
            "aws",
            "--cluster",
            DEV1,
            "--name",
            "route53",
        ])
        .args(extra)
        .run()
}

fn refs(f: &GitFleet) -> String {
    format!(
        "{}\n{}",
        git(&f.path("dev.git"), &["for-each-ref"]),
        git(&f.path("prod.git"), &["for-each-ref"])
    )
}

fn main_file(f: &GitFleet, rel: &str) -> String {
    f.show("dev", "main", rel)
}

fn check_rotated(f: &GitFleet, moto: &Moto, old: &str, before: &str) {
    let keys = moto.key_ids(USER);
    assert_eq!(keys.len(), 1, "old key revoked, new key kept: {keys:?}");
    assert_ne!(keys[0], old);
    // The manifest on main decrypts to the new key.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("m.yaml");
    let after = main_file(f, REL);
    std::fs::write(&file, &after).unwrap();
    let id = decrypt_value(&file, 0, DEV1, LABEL, "accessKeyId").unwrap();
    assert_eq!(String::from_utf8(id).unwrap(), keys[0]);
    assert_eq!(
        decrypt_value(&file, 0, DEV1, LABEL, "secretAccessKey")
            .unwrap()
            .len(),
        40
    );
    // Only the rotated values and our annotations changed.
    let changed: Vec<&str> = after
        .lines()
        .filter(|l| !before.lines().any(|b| b == *l))
        .collect();
    for l in &changed {
        let t = l.trim_start();
        assert!(
            [
                "accessKeyId: ",
                "secretAccessKey: ",
                "secret-manager/accessKeyId: ",
                "secret-manager/createDate: ",
                "secret-manager/sealedWith: "
            ]
            .iter()
            .any(|p| t.starts_with(p)),
            "unexpected change: {l}"
        );
    }
    assert_eq!(after.lines().count(), before.lines().count());
    // The cluster pointer has exactly main's version of the file; no record is left.
    assert_eq!(
        f.show("dev", &format!("refs/heads/cluster/{DEV1}"), REL),
        after
    );
    let ls = git(
        &f.path("dev.git"),
        &["ls-tree", "-r", "--name-only", "main"],
    );
    assert!(!ls.contains(".secret-manager/rotations/"), "{ls}");
}

#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn rotate_with_zero_grace_stages_publishes_and_revokes_in_one_run() {
    let (f, moto, old) = setup();
    let before = main_file(&f, REL);
    let first_main = f.remote_ref("dev", "refs/heads/main").unwrap();
    let r = rotate(
        &f,
        &moto,
        "2026-11-21T12:00:00Z",
        &["--yes", "--revoke-after", "0s"],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("1 staged, 0 deleted, 1 published, 1 revoked"),
        "{}",
        r.stderr
    );
    check_rotated(&f, &moto, &old, &before);
    // No other file changed on main.
    let changed = git(
        &f.path("dev.git"),
        &["diff", "--name-only", &first_main, "main"],
    );
    assert_eq!(changed, REL);
    // Commits carry the audit trailers.
    let log = git(
        &f.path("dev.git"),
        &["log", "--format=%B", &format!("{first_main}..main")],
    );
    for t in [
        "Secret-Manager-Action: stage",
        "Secret-Manager-Action: publish",
        "Secret-Manager-Action: revoke",
        &format!("Secret-Manager-Old-Key: {old}"),
    ] {
        assert!(log.contains(t), "missing trailer {t}:\n{log}");
    }
    // A second run with --older-than is a no-op: nothing due, no ref moves, no key change.
    let refs_before = refs(&f);
    let keys_before = moto.key_ids(USER);
    let r = rotate(
        &f,
        &moto,
        "2026-11-21T13:00:00Z",
        &["--yes", "--older-than", "90d"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("nothing to do"), "{}", r.stdout);
    assert_eq!(refs(&f), refs_before);
    assert_eq!(moto.key_ids(USER), keys_before);
}

#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn default_grace_revokes_on_a_later_run() {
    let (f, moto, old) = setup();
    let before = main_file(&f, REL);
    let r = rotate(&f, &moto, "2026-11-21T12:00:00Z", &["--yes"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("1 staged, 0 deleted, 1 published, 0 revoked"),
        "{}",
        r.stderr
    );
    let keys = moto.key_ids(USER);
    assert_eq!(keys.len(), 2, "both keys live during the grace period");
    assert!(keys.contains(&old));
    let ls = git(
        &f.path("dev.git"),
        &["ls-tree", "-r", "--name-only", "main"],
    );
    assert!(
        ls.contains(".secret-manager/rotations/"),
        "record committed: {ls}"
    );
    // `keys` shows both keys as pending while the rotation is in flight.
    let work = f.path("work");
    git(&work, &["pull", "--quiet", "--ff-only", "origin", "main"]);
    let r = f
        .bot(NOW)
        .aws(&moto)
        .args(["keys", "--name", "route53", "-o", "json"])
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert!(rows.iter().all(|r| r["role"] == "pending"), "{rows:#?}");
    // Where the rotation stands, as `list` says it.
    assert!(
        rows.iter().all(|r| r["rotation"] == "published"),
        "{rows:#?}"
    );
    // 30 minutes later: still waiting, nothing changes.
    let r = rotate(&f, &moto, "2026-11-21T12:30:00Z", &["--yes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("wait"), "{}", r.stdout);
    assert_eq!(moto.key_ids(USER).len(), 2);
    // Two hours later (a fresh CronJob run): the old key goes.
    let r = rotate(&f, &moto, "2026-11-21T14:00:00Z", &["--yes"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("0 staged, 0 deleted, 0 published, 1 revoked"),
        "{}",
        r.stderr
    );
    check_rotated(&f, &moto, &old, &before);
}

#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn dry_run_changes_nothing_anywhere() {
    let (f, moto, old) = setup();
    let refs_before = refs(&f);
    let r = rotate(
        &f,
        &moto,
        "2026-11-21T12:00:00Z",
        &["--dry-run", "-o", "json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{plan}");
    assert_eq!(steps[0]["action"], "stage");
    assert_eq!(steps[0]["oldKeyId"], old.as_str());
    assert_eq!(steps[0]["files"][0], REL);
    assert_eq!(steps[0]["done"], false);
    // The summary counts what the run would do, not the nothing it did.
    assert!(
        r.stderr.contains(
            "rotate (dry run, nothing changed): would stage 1, delete 0, publish 0, revoke 0"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(refs(&f), refs_before);
    assert_eq!(moto.key_ids(USER), vec![old]);
    // Without --yes and without a terminal: the plan, then a refusal.
    let r = rotate(&f, &moto, "2026-11-21T12:00:00Z", &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("pass --yes"), "{}", r.stderr);
    assert_eq!(refs(&f), refs_before);
}

#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn a_failing_source_leaves_everything_working() {
    let (f, moto, old) = setup();
    let refs_before = refs(&f);
    // Point IAM at a dead endpoint: preflight fails, nothing is minted or published.
    let r = f
        .bot(NOW)
        .aws(&moto)
        .env("AWS_ENDPOINT_URL_IAM", "http://127.0.0.1:9")
        .args([
            "--yes",
            "rotate",
            "--source",
            "aws",
            "--cluster",
            DEV1,
            "--name",
            "route53",
        ])
        .run();
    assert_eq!(r.code, 10, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("Preflight failed for aws 123456789012/external-dns-dev1"),
        "{}",
        r.stderr
    );
    assert_eq!(refs(&f), refs_before);
    assert_eq!(moto.key_ids(USER), vec![old]);
}

#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn without_aws_credentials_one_clear_line_is_said_and_nothing_is_retried() {
    let (f, moto, old) = setup();
    let refs_before = refs(&f);
    let work = f.path("work");
    let home = tempfile::tempdir().unwrap();
    // moto's endpoint, but no credentials anywhere in the chain.
    let mut c = cmd();
    c.env("AWS_ENDPOINT_URL", &moto.url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", home.path())
        .args([
            "--repo",
            work.to_str().unwrap(),
            "--yes",
            "rotate",
            "--source",
            "aws",
            "--older-than",
            "0d",
        ]);
    let started = std::time::Instant::now();
    let r = run_cmd(&mut c);
    let took = started.elapsed();
    assert_eq!(r.code, 10, "{}\n{}", r.stdout, r.stderr);
    // Said once, not once per credential (this fleet has five due aws credentials) and
    // not again as a log line: the others point at it.
    assert_eq!(
        r.stderr.matches("no AWS credentials found").count(),
        1,
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.matches("(see above)").count(), 4, "{}", r.stderr);
    assert!(r.stderr.contains("AWS_PROFILE"), "{}", r.stderr);
    for noise in [
        "transient",
        "CredentialsNotLoaded",
        "dispatch failure",
        "retry",
    ] {
        assert!(!r.stderr.contains(noise), "{noise}: {}", r.stderr);
    }
    // The retry policy would back off for seconds; a setup problem is not retried.
    assert!(took < std::time::Duration::from_secs(4), "{took:?}");
    assert_eq!(refs(&f), refs_before);
    assert_eq!(moto.key_ids(USER), vec![old]);
}

/// With a role to assume per account and no base credentials, `rotate` and `keys` say the
/// same one-line hint once (not `dispatch failure`, not once per credential), and a
/// metadata endpoint that answers 403 adds no warnings of the SDK's internals.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn without_credentials_behind_an_assumed_role_the_hint_is_said_once() {
    let (f, moto, old) = setup();
    let work = f.path("work");
    let p = work.join(".secret-manager.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        text.replacen(
            "\nproviders:\n",
            "\nproviders:\n  aws:\n    accounts:\n      \"123456789012\":\n        roleArn: arn:aws:iam::123456789012:role/secret-manager\n",
            1,
        ),
    )
    .unwrap();
    f.commit_and_publish("Role for account 123456789012", &[DEV1]);
    let refs_before = refs(&f);
    // A metadata endpoint that refuses every request, as a locked-down node's does.
    let imds = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let imds_url = format!("http://{}", imds.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for s in imds.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let home = tempfile::tempdir().unwrap();
    for args in [
        &[
            "--yes",
            "rotate",
            "--source",
            "aws",
            "--name",
            "route53",
            "--older-than",
            "0d",
        ][..],
        &["keys", "--source", "aws"][..],
    ] {
        let mut c = cmd();
        c.env("AWS_ENDPOINT_URL", &moto.url)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds_url)
            .env("SECRET_MANAGER_NOW", "2027-06-01T00:00:00Z")
            .env("HOME", home.path())
            .args(["--repo", work.to_str().unwrap()])
            .args(args);
        let r = run_cmd(&mut c);
        assert_eq!(r.code, 10, "{args:?}\n{}\n{}", r.stdout, r.stderr);
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(
            all.contains("no AWS credentials found") && all.contains("AWS_PROFILE"),
            "{args:?}: {all}"
        );
        assert_eq!(
            all.matches("no AWS credentials found").count(),
            1,
            "{args:?}: said once: {all}"
        );
        for noise in ["dispatch failure", "WARN", "Imds", "403", "ProviderError"] {
            assert!(!all.contains(noise), "{args:?} {noise}: {all}");
        }
    }
    assert_eq!(refs(&f), refs_before);
    assert_eq!(moto.key_ids(USER), vec![old]);
}

/// `--log-format json`: every line on stdout and stderr is one JSON object; a step event
/// names its keys, clusters and files; a failure is one ERROR event (not also a text
/// line); the finish event carries `interrupted` only when there was an interruption.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn json_logs_are_json_on_both_streams_with_the_fields_a_pipeline_needs() {
    let (f, moto, old) = setup();
    let r = rotate(
        &f,
        &moto,
        "2027-06-01T00:00:00Z",
        &["--yes", "--revoke-after", "0s", "--log-format", "json"],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let objects = |stream: &str| -> Vec<serde_json::Value> {
        stream
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{stream}"));
                assert!(v.is_object(), "{l}");
                v
            })
            .collect()
    };
    let out = objects(&r.stdout);
    let err = objects(&r.stderr);
    assert!(!out.is_empty() && !err.is_empty());
    // The report on stdout: the steps with their keys.
    let steps = out[0]["steps"].as_array().expect("the report");
    assert!(steps.iter().any(|s| s["action"] == "stage"), "{}", r.stdout);
    let stage = err
        .iter()
        .find(|e| e["message"] == "step" && e["action"] == "stage")
        .unwrap_or_else(|| panic!("{}", r.stderr));
    let new = moto.key_ids(USER);
    assert_eq!(stage["old_key"], old.as_str(), "{stage}");
    assert_eq!(stage["new_key"], new[0].as_str(), "{stage}");
    assert_eq!(stage["clusters"], DEV1, "{stage}");
    assert_eq!(stage["files"], REL, "{stage}");
    let finish = err
        .iter()
        .find(|e| e["message"] == "rotate run finished")
        .unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(finish.get("interrupted").is_none(), "{finish}");
    assert_eq!(finish["revoked"], 1, "{finish}");

    // A failing run: one ERROR event per failure with its fields, nothing else about it.
    let mut c = cmd();
    let home = tempfile::tempdir().unwrap();
    c.env("AWS_ENDPOINT_URL", &moto.url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", home.path())
        .env("SECRET_MANAGER_NOW", "2027-09-01T00:00:00Z")
        .args([
            "--repo",
            f.path("work").to_str().unwrap(),
            "--log-format",
            "json",
            "--yes",
            "rotate",
            "--source",
            "aws",
            "--name",
            "route53",
        ]);
    let r = run_cmd(&mut c);
    assert_eq!(r.code, 10, "{}\n{}", r.stdout, r.stderr);
    objects(&r.stdout);
    let err = objects(&r.stderr);
    let failures: Vec<_> = err.iter().filter(|e| e["level"] == "ERROR").collect();
    assert_eq!(failures.len(), 1, "{}", r.stderr);
    assert_eq!(failures[0]["phase"], "Preflight", "{}", failures[0]);
    assert_eq!(failures[0]["identity"], "123456789012/external-dns-dev1");
    assert!(
        failures[0]["error"]
            .as_str()
            .unwrap()
            .contains("no AWS credentials found")
    );
}

/// An unreachable remote is said once per run with git's own words, not once per phase
/// or per cluster.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn an_unreachable_remote_is_said_once() {
    let (f, moto, _) = setup();
    let work = f.path("work");
    git(
        &work,
        &["remote", "set-url", "prod", "/nonexistent/prod.git"],
    );
    let r = f.bot("2027-06-01T00:00:00Z").aws(&moto).rotate_now(&[
        "--source",
        "aws",
        "--older-than",
        "0d",
    ]);
    let said = r
        .stderr
        .matches("does not appear to be a git repository")
        .count();
    assert_eq!(said, 1, "{}\n{}", r.stdout, r.stderr);
}

/// Per-phase progress with counts on a terminal; nothing of it on a pipe.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn progress_per_phase_on_a_terminal_and_none_on_a_pipe() {
    let (f, moto, _) = setup();
    let run = |now: &str| {
        let mut c = f
            .bot(now)
            .aws(&moto)
            .env("TERM", "xterm")
            .args(["--yes", "rotate", "--revoke-after", "0s"])
            .args(["--source", "aws", "--cluster", DEV1, "--name", "route53"])
            .command();
        c.env_remove("NO_COLOR");
        c
    };
    let pipe = run_cmd(&mut run("2026-11-21T12:00:00Z"));
    assert_eq!(pipe.code, 0, "{}", pipe.stderr);
    for bar in ["preflight", "1/1", "\u{1b}["] {
        assert!(
            !pipe.stderr.contains(bar),
            "{bar} on a pipe: {}",
            pipe.stderr
        );
    }
    let tty = crate::common::run_on_terminal(&run("2026-11-22T12:00:00Z"));
    assert_eq!(tty.code, 0, "{}", tty.stdout);
    for phase in ["preflight", "mint", "publish", "revoke"] {
        let line = tty
            .stdout
            .split(['\r', '\n'])
            .rev()
            .find(|l| l.contains(phase) && l.contains("1/1"))
            .unwrap_or_else(|| panic!("no finished {phase} bar: {:?}", tty.stdout));
        assert!(line.contains("1/1"), "{line}");
    }
    // On a terminal the actions are coloured.
    assert!(
        tty.stdout.contains("\u{1b}[32mstage") || tty.stdout.contains("\u{1b}[32mrevoke"),
        "{:?}",
        tty.stdout
    );
}

/// A SealedSecret inside a `kind: List` (as kubectl and kubeseal write them) is listed
/// and rotated in place; the List's other objects stay byte for byte.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn a_sealed_secret_inside_a_kind_list_is_rotated_in_place() {
    let (f, moto, old) = setup();
    let work = f.path("work");
    let single = std::fs::read_to_string(work.join(REL)).unwrap();
    let item: String = single
        .lines()
        .filter(|l| *l != "---")
        .enumerate()
        .map(|(i, l)| format!("{}{l}\n", if i == 0 { "- " } else { "  " }))
        .collect();
    let config_map = "- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: unrelated # keep\n  data:\n    k: v\n";
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n{config_map}{item}metadata:\n  resourceVersion: \"\"\n"
    );
    std::fs::write(work.join(REL), &list).unwrap();
    f.commit_and_publish("Keep the credentials in a List", &[DEV1]);
    let listed = run_cmd(cmd().args(["--repo", work.to_str().unwrap(), "-o", "json", "list"]));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).unwrap();
    let row = rows
        .iter()
        .find(|r| r["file"] == REL)
        .unwrap_or_else(|| panic!("the List item is not listed: {}", listed.stdout));
    assert_eq!(row["line"], 10, "{row}");
    let r = rotate(
        &f,
        &moto,
        "2026-11-21T12:00:00Z",
        &["--yes", "--revoke-after", "0s"],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let keys = moto.key_ids(USER);
    assert_eq!(keys.len(), 1);
    assert_ne!(keys[0], old);
    let after = main_file(&f, REL);
    assert!(
        after.starts_with(&format!(
            "apiVersion: v1\nkind: List\nitems:\n{config_map}- "
        )),
        "{after}"
    );
    assert_eq!(after.lines().count(), list.lines().count());
    // Un-nest the item and decrypt it with the cluster's key.
    let body: String = after
        .lines()
        .skip(3 + config_map.lines().count())
        .take_while(|l| l.starts_with("- ") || l.starts_with("  "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("m.yaml");
    std::fs::write(&file, body).unwrap();
    let id = decrypt_value(&file, 0, DEV1, LABEL, "accessKeyId").unwrap();
    assert_eq!(String::from_utf8(id).unwrap(), keys[0]);
}

/// `list` reads the checkout and `rotate` the remote's main: after a rotation a clean
/// checkout follows main, the credential shows as `rotating` until its old key is revoked,
/// and a checkout that differs from main says so.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn list_follows_the_remote_main_and_shows_rotations_in_flight() {
    let (f, moto, old) = setup();
    let work = f.path("work");
    let w = work.to_str().unwrap();
    let list = || {
        let r = run_cmd(cmd().args(["--repo", w, "-o", "json", "list", "--name", "route53"]));
        assert_eq!(r.code, 0, "{}", r.stderr);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(rows.len(), 1, "{}", r.stdout);
        (rows[0].clone(), r.stderr)
    };
    let (row, stderr) = list();
    assert_eq!(row["state"], "ok");
    assert_eq!(row["keyId"], old.as_str());
    assert!(!stderr.contains("note: this checkout"), "{stderr}");
    // A commit only in this checkout: list and a rotate that finds nothing say so.
    std::fs::write(work.join("local-note.txt"), "x\n").unwrap();
    git(&work, &["add", "local-note.txt"]);
    git(&work, &["commit", "--quiet", "-m", "local only"]);
    let (_, stderr) = list();
    assert!(
        stderr.contains("1 commit(s) of this checkout are not on origin/main"),
        "{stderr}"
    );
    let mut c = cmd();
    moto.env(&mut c)
        .args(["--repo", w, "--yes", "rotate", "--name", "never-pushed-*"]);
    let r = run_cmd(&mut c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("nothing to do"), "{}", r.stdout);
    assert!(r.stderr.contains("not on origin/main"), "{}", r.stderr);
    git(&work, &["reset", "--quiet", "--hard", "HEAD~1"]);
    // Default grace: published now, the old key revoked by a later run.
    let r = rotate(&f, &moto, NOW, &["--yes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("fast-forwarded this checkout to origin/main"),
        "{}",
        r.stderr
    );
    let (row, stderr) = list();
    assert_ne!(row["keyId"], old.as_str(), "list shows the new key");
    assert_eq!(row["state"], "rotating", "{row}");
    let how = row["rotation"].as_str().unwrap();
    assert!(
        how.starts_with("published ") && how.contains(&format!("old key {old} not revoked yet")),
        "{how}"
    );
    assert!(!stderr.contains("origin/main"), "{stderr}");
    // Behind: main moved elsewhere and was fetched; list says how to catch up.
    let other = f.path("other");
    git(
        &f.path(""),
        &[
            "clone",
            "--quiet",
            f.path("dev.git").to_str().unwrap(),
            other.to_str().unwrap(),
        ],
    );
    std::fs::write(other.join("elsewhere.txt"), "y\n").unwrap();
    git(&other, &["add", "elsewhere.txt"]);
    git(&other, &["commit", "--quiet", "-m", "elsewhere"]);
    git(&other, &["push", "--quiet", "origin", "main"]);
    git(&work, &["fetch", "--quiet", "origin"]);
    let (_, stderr) = list();
    assert!(
        stderr.contains("1 commit(s) behind origin/main"),
        "{stderr}"
    );
    assert!(stderr.contains("git pull --ff-only"), "{stderr}");
}

const PROD1: &str = "aws.us-east-1.prod1";
const PROD_REL: &str =
    "applications/root/external-dns/state/overlays/aws.us-east-1.prod1/route53.yaml";

#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn shared_credential_is_minted_once_and_revoked_only_after_both_pointers_moved() {
    let (f, moto, old) = setup();
    let work = f.path("work");
    // prod1 holds the same key, sealed with prod1's certificate (values via the TEST-ONLY key).
    let dev_file = work.join(REL);
    let id = String::from_utf8(decrypt_value(&dev_file, 0, DEV1, LABEL, "accessKeyId").unwrap())
        .unwrap();
    let secret =
        String::from_utf8(decrypt_value(&dev_file, 0, DEV1, LABEL, "secretAccessKey").unwrap())
            .unwrap();
    let text = std::fs::read_to_string(&dev_file).unwrap();
    let created = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret-manager/createDate: "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let r = run_cmd(cmd().args([
        "--repo",
        work.to_str().unwrap(),
        "seal",
        "--cluster",
        PROD1,
        "--namespace",
        "external-dns",
        "--name",
        "route53",
        "--from-literal",
        &format!("accessKeyId={id}"),
        "--from-literal",
        &format!("secretAccessKey={secret}"),
        "--annotation",
        "secret-manager/source=aws",
        "--annotation",
        &format!("secret-manager/accessKeyId={id}"),
        "--annotation",
        "secret-manager/account=123456789012",
        "--annotation",
        &format!("secret-manager/username={USER}"),
        "--annotation",
        &format!("secret-manager/createDate={created}"),
        "--annotation",
        "secret-manager/keyMappings=[accessKeyId:AccessKeyId,secretAccessKey:SecretAccessKey]",
        "-w",
        work.join(PROD_REL).to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    f.commit_and_publish("prod1 uses the same DNS user", &[DEV1, PROD1]);

    // The prod remote refuses pushes for now.
    let hook = f.path("prod.git/hooks/pre-receive");
    std::fs::write(&hook, "#!/bin/sh\necho 'prod is frozen' >&2\nexit 1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();

    // Selecting only dev1 still rotates the credential everywhere it is used.
    let r = rotate(
        &f,
        &moto,
        "2026-11-21T12:00:00Z",
        &["--yes", "--revoke-after", "0s", "-o", "json"],
    );
    assert_eq!(
        r.code, 12,
        "publish to prod failed: {}\n{}",
        r.stdout, r.stderr
    );
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let stage = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["action"] == "stage")
        .unwrap();
    assert!(
        stage["detail"].as_str().unwrap().contains("expanded"),
        "{stage}"
    );
    assert_eq!(stage["clusters"], serde_json::json!([DEV1, PROD1]));
    assert!(r.stderr.contains("prod is frozen"), "{}", r.stderr);
    let keys = moto.key_ids(USER);
    assert_eq!(
        keys.len(),
        2,
        "minted once; the old key must survive while prod lacks the new one"
    );
    assert!(keys.contains(&old));
    let new = keys.iter().find(|k| **k != old).unwrap().clone();
    assert_eq!(
        f.show("dev", &format!("refs/heads/cluster/{DEV1}"), REL),
        main_file(&f, REL),
        "dev1 got it"
    );

    // Prod opens again: the next run publishes to prod1, then revokes.
    std::fs::remove_file(&hook).unwrap();
    let r = rotate(
        &f,
        &moto,
        "2026-11-21T12:10:00Z",
        &["--yes", "--revoke-after", "0s"],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("0 staged, 0 deleted, 1 published, 1 revoked"),
        "{}",
        r.stderr
    );
    assert_eq!(moto.key_ids(USER), vec![new.clone()]);
    // Each cluster's manifest decrypts with its own key to the one new key id.
    let tmp = tempfile::tempdir().unwrap();
    for (cluster, rel) in [(DEV1, REL), (PROD1, PROD_REL)] {
        let ptr = format!("refs/heads/cluster/{cluster}");
        let remote = if cluster == DEV1 { "dev" } else { "prod" };
        let file = tmp.path().join(format!("{cluster}.yaml"));
        std::fs::write(&file, f.show(remote, &ptr, rel)).unwrap();
        assert_eq!(
            String::from_utf8(decrypt_value(&file, 0, cluster, LABEL, "accessKeyId").unwrap())
                .unwrap(),
            new
        );
    }
}

/// What the binary adds to a crash: the process exits (86) at the failpoint; after a
/// crash under a claim the next run inside the dead run's lease says `1 busy` and touches
/// nothing; the run after the lease says what it cleaned up and converges against real IAM (moto): exactly one key, the
/// manifest's, working; no record; published once. Two points stand for the two kinds —
/// one with a minted, uncommitted key under a claim, one after the commit. Every crash
/// point is the library's test (`every_crash_point_converges` in `tests/engine.rs`).
#[cfg(feature = "failpoints")]
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn a_crash_exits_86_and_the_next_runs_converge() {
    for point in ["after-mint", "after-publish"] {
        let (f, moto, old) = setup();
        let before = main_file(&f, REL);
        let r = f
            .bot(NOW)
            .aws(&moto)
            .env("SECRET_MANAGER_FAILPOINT", point)
            .rotate_now(&["--source", "aws", "--cluster", DEV1, "--name", "route53"]);
        assert_eq!(r.code, 86, "{point}: {}", r.stderr);
        assert!(
            moto.key_ids(USER).contains(&old),
            "{point}: the old key survives a crash before its revocation"
        );
        if point == "after-mint" {
            // Inside the dead run's lease (10 min): busy, nothing touched, exit 0.
            let keys = moto.key_ids(USER);
            let r = rotate(
                &f,
                &moto,
                "2026-11-21T12:05:00Z",
                &["--yes", "--revoke-after", "0s"],
            );
            assert_eq!(r.code, 0, "{point}: {}\n{}", r.stdout, r.stderr);
            assert!(r.stderr.contains("1 busy"), "{point}: {}", r.stderr);
            assert_eq!(
                moto.key_ids(USER),
                keys,
                "{point}: nothing touched while claimed"
            );
        }
        // After the lease: the next run cleans up and finishes — no wall-clock hour.
        let r = rotate(
            &f,
            &moto,
            "2026-11-21T12:15:00Z",
            &["--yes", "--revoke-after", "0s"],
        );
        assert_eq!(r.code, 0, "{point}: {}\n{}", r.stdout, r.stderr);
        if point == "after-mint" {
            assert!(
                r.stderr.contains("1 orphan(s) cleaned"),
                "{point}: {}",
                r.stderr
            );
        }
        check_rotated(&f, &moto, &old, &before);
        let publishes = git(&f.path("dev.git"), &["log", "--format=%s", "main"])
            .lines()
            .filter(|l| l.contains("published rotation"))
            .count();
        assert_eq!(publishes, 1, "{point}: published exactly once");
    }
}

#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn delete_removes_the_manifest_publishes_and_then_revokes_the_key() {
    let (f, moto, _old) = setup();
    let work = f.path("work");
    let first_main = f.remote_ref("dev", "refs/heads/main").unwrap();
    let base = || {
        let mut c = cmd();
        moto.env(&mut c);
        c.args(["--repo", work.to_str().unwrap(), "--yes", "delete"]);
        c
    };
    // Never without a selection.
    let r = run_cmd(&mut base());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("never deletes everything"),
        "{}",
        r.stderr
    );
    let r = run_cmd(base().args([
        "--cluster",
        DEV1,
        "--name",
        "route53",
        "--revoke-after",
        "0s",
    ]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("1 deleted, 1 published, 1 revoked"),
        "{}",
        r.stderr
    );
    assert!(
        moto.key_ids(USER).is_empty(),
        "the deleted secret's key is revoked"
    );
    let changed = git(
        &f.path("dev.git"),
        &["diff", "--name-status", &first_main, "main"],
    );
    assert_eq!(changed, format!("D\t{REL}"));
    let ptr = git(
        &f.path("dev.git"),
        &[
            "ls-tree",
            "-r",
            "--name-only",
            &format!("refs/heads/cluster/{DEV1}"),
        ],
    );
    assert!(
        !ptr.contains("route53.yaml"),
        "the cluster no longer has it"
    );
}

/// SIGKILL the real binary at a spread of moments (fresh clone each time, as CronJob pods
/// do). After every kill, main's manifest must reference a key that exists; after a final
/// clean run exactly one key exists — the manifest's, and it works — and no record is left.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn sigkill_at_random_moments_converges() {
    let (f, moto, _) = setup();
    let run = |now: &str| {
        let dest = tempfile::tempdir().unwrap();
        let mut c = cmd();
        moto.env(&mut c)
            .env("SECRET_MANAGER_NOW", now)
            .env("GIT_AUTHOR_NAME", "cron")
            .env("GIT_AUTHOR_EMAIL", "cron@example.com")
            .env("GIT_COMMITTER_NAME", "cron")
            .env("GIT_COMMITTER_EMAIL", "cron@example.com")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .args([
                &format!("--clone={}", f.path("dev.git").display()),
                &format!("--clone-remote=prod={}", f.path("prod.git").display()),
                &format!("--repo={}", dest.path().join("r").display()),
                "--yes",
                "rotate",
                "--source=aws",
                "--name=route53",
                "--revoke-after=0s",
            ]);
        (c, dest)
    };
    let manifest_key = || {
        let text = f.show("dev", "main", REL);
        text.lines()
            .find_map(|l| l.trim().strip_prefix("secret-manager/accessKeyId: "))
            .unwrap()
            .trim_matches('"')
            .to_owned()
    };
    // Time one complete run, then kill at 5 %, 10 %, ... 45 % of that duration (later
    // runs are shorter: they also finish what killed runs left), so the kills spread over
    // every phase whatever the machine's speed.
    let (mut c, _dest) = run("2026-11-21T12:00:00Z");
    let t = std::time::Instant::now();
    assert!(c.status().unwrap().success());
    let full = t.elapsed().as_millis() as u64;
    let mut killed = 0;
    for (i, delay) in (1..=9u64).map(|k| full * k / 20).enumerate() {
        let (mut c, _dest) = run(&format!("2026-11-2{}T12:00:00Z", 1 + i % 8));
        let mut child = c.spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let still_running = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let _ = child.wait();
        killed += usize::from(still_running);
        let keys = moto.key_ids(USER);
        assert!(
            keys.contains(&manifest_key()),
            "after a kill at {delay} ms main references a missing key: {keys:?}"
        );
    }
    assert!(
        killed >= 4,
        "only {killed} of 9 kills (run time {full} ms) hit a running process"
    );
    let (mut c, _dest) = run("2026-11-30T12:00:00Z");
    let status = c.status().unwrap();
    assert!(status.success(), "final run: {status}");
    // Records left by killed runs are finished by the final run; it may also stage a new
    // rotation, which it finishes itself (grace 0s).
    let ls = git(
        &f.path("dev.git"),
        &["ls-tree", "-r", "--name-only", "main"],
    );
    assert!(!ls.contains(".secret-manager/rotations/"), "{ls}");
    let keys = moto.key_ids(USER);
    assert_eq!(
        keys,
        vec![manifest_key()],
        "exactly the manifest's key, no orphan"
    );
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("m.yaml");
    std::fs::write(&p, f.show("dev", "main", REL)).unwrap();
    let id = decrypt_value(&p, 0, DEV1, LABEL, "accessKeyId").unwrap();
    assert_eq!(String::from_utf8(id).unwrap(), keys[0]);
    assert_eq!(
        f.show("dev", &format!("refs/heads/cluster/{DEV1}"), REL),
        f.show("dev", "main", REL),
        "published"
    );
}

#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn require_synced_waits_for_the_controller() {
    let (f, moto, old) = setup();
    let bin = tempfile::tempdir().unwrap();
    let state = bin.path().join("sealedsecret.json");
    let kubectl = bin.path().join("kubectl");
    std::fs::write(
        &kubectl,
        format!(
            "#!/bin/sh\n[ \"$*\" = \"--context=dev1 --namespace=external-dns get -o json -- sealedsecret route53\" ] || {{ echo \"unexpected: $*\" >&2; exit 1; }}\ncat {}\n",
            state.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let status = |key: &str, synced: &str| {
        serde_json::json!({
            "metadata": {"generation": 2},
            "spec": {"template": {"metadata": {"annotations": {"secret-manager/accessKeyId": key}}}},
            "status": {"observedGeneration": 2, "conditions": [{"type": "Synced", "status": synced}]}
        })
        .to_string()
    };
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    let run = |now: &str| {
        let work = f.path("work");
        let mut c = cmd();
        moto.env(&mut c)
            .env("PATH", &path)
            .env("SECRET_MANAGER_NOW", now);
        c.args([
            "--repo",
            work.to_str().unwrap(),
            "--yes",
            "rotate",
            "--source",
            "aws",
            "--name",
            "route53",
            "--revoke-after",
            "0s",
            "--require-synced",
        ]);
        run_cmd(&mut c)
    };
    // The controller has not picked up the new key yet: stage and publish, keep the old key.
    std::fs::write(&state, status(&old, "True")).unwrap();
    let r = run("2026-11-21T12:00:00Z");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("1 staged, 0 deleted, 1 published, 0 revoked"),
        "{}",
        r.stderr
    );
    assert_eq!(moto.key_ids(USER).len(), 2);
    let new = moto.key_ids(USER).into_iter().find(|k| *k != old).unwrap();
    // New key, but not Synced yet: still waiting.
    std::fs::write(&state, status(&new, "False")).unwrap();
    let r = run("2026-11-21T12:10:00Z");
    assert!(r.stderr.contains("0 revoked"), "{}", r.stderr);
    assert!(r.stdout.contains("wait"), "{}", r.stdout);
    assert_eq!(moto.key_ids(USER).len(), 2);
    // Synced: the old key goes.
    std::fs::write(&state, status(&new, "True")).unwrap();
    let r = run("2026-11-21T12:20:00Z");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("0 staged, 0 deleted, 0 published, 1 revoked"),
        "{}",
        r.stderr
    );
    assert_eq!(moto.key_ids(USER), vec![new]);
}

/// Many credentials in one run: provider calls run in parallel, but git sees one stage
/// commit, one pointer move per cluster, one publish commit and one revoke commit — and the
/// audit trail still has a record per secret and phase.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn a_batch_of_credentials_makes_one_commit_per_phase_and_one_pointer_move_per_cluster() {
    const PROD1: &str = "aws.us-east-1.prod1";
    let f = GitFleet::new();
    let moto = Moto::start();
    let work = f.path("work");
    let secrets: Vec<(String, &str, String)> = (0..4)
        .map(|i| {
            let cluster = if i % 2 == 0 { DEV1 } else { PROD1 };
            let rel = format!("applications/root/batch/state/overlays/{cluster}/bot-{i}.yaml");
            (format!("bot-{i}"), cluster, rel)
        })
        .collect();
    for (user, cluster, rel) in &secrets {
        moto.iam(&[("Action", "CreateUser"), ("UserName", user)]);
        create_aws(&moto, &work, cluster, "batch", user, user, rel);
    }
    f.commit_and_publish("Add batch credentials", &[DEV1, PROD1]);
    let old: Vec<String> = secrets
        .iter()
        .map(|(u, ..)| moto.key_ids(u)[0].clone())
        .collect();
    let main_before = git(&f.path("dev.git"), &["rev-parse", "main"]);

    let r = f.bot("2026-11-21T12:00:00Z").aws(&moto).rotate_now(&[
        "--namespace",
        "batch",
        "--concurrency",
        "3",
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("4 staged, 0 deleted, 4 published, 4 revoked"),
        "{}",
        r.stderr
    );
    for ((user, ..), old) in secrets.iter().zip(&old) {
        let keys = moto.key_ids(user);
        assert_eq!(keys.len(), 1, "{user}: {keys:?}");
        assert_ne!(&keys[0], old);
    }
    // main: exactly stage, publish, revoke.
    let subjects = git(
        &f.path("dev.git"),
        &["log", "--format=%s", &format!("{main_before}..main")],
    );
    let subjects: Vec<&str> = subjects.lines().collect();
    assert_eq!(
        subjects,
        [
            "secret-manager: revoked the old keys of 4 rotations",
            &format!("secret-manager: published 4 rotations to {DEV1}, {PROD1}") as &str,
            &format!("secret-manager: stage rotation of 4 credentials for {DEV1}, {PROD1}"),
        ]
    );
    // Each pointer moved once, to the stage commit (a fast-forward).
    let stage = git(&f.path("dev.git"), &["rev-parse", "main~2"]);
    assert_eq!(
        git(
            &f.path("dev.git"),
            &["rev-parse", &format!("refs/heads/cluster/{DEV1}")]
        ),
        stage
    );
    assert_eq!(
        git(
            &f.path("prod.git"),
            &["rev-parse", &format!("refs/heads/cluster/{PROD1}")]
        ),
        stage
    );
    // Every manifest decrypts to its own new key.
    for (user, cluster, rel) in &secrets {
        let file = f.path("m.yaml");
        std::fs::write(&file, f.show("dev", "main", rel)).unwrap();
        let id = decrypt_value(&file, 0, cluster, &format!("batch/{user}"), "accessKeyId").unwrap();
        assert_eq!(String::from_utf8(id).unwrap(), moto.key_ids(user)[0]);
    }
    // The audit trail splits the batch commits back into one record per secret and phase.
    git(&work, &["pull", "--quiet", "--ff-only", "origin", "main"]);
    let r = run_cmd(cmd().args(["--repo", work.to_str().unwrap(), "audit", "export"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    for action in ["stage", "publish", "revoke"] {
        let n = r
            .stdout
            .lines()
            .filter(|l| {
                l.contains(&format!("\"action\":\"{action}\""))
                    && l.contains("\"namespace\":\"batch\"")
            })
            .count();
        assert_eq!(n, 4, "{action} records:\n{}", r.stdout);
    }
}

/// A crash while several credentials are minted in parallel: whatever was minted before
/// the crash is an orphan the next run deletes; every identity ends with exactly the key
/// its manifest holds.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn a_crash_in_a_parallel_batch_converges() {
    let f = GitFleet::new();
    let moto = Moto::start();
    let work = f.path("work");
    let users: Vec<String> = (0..3).map(|i| format!("par-{i}")).collect();
    for u in &users {
        moto.iam(&[("Action", "CreateUser"), ("UserName", u)]);
        let rel = format!("applications/root/par/state/overlays/{DEV1}/{u}.yaml");
        create_aws(&moto, &work, DEV1, "par", u, u, &rel);
    }
    f.commit_and_publish("Add par credentials", &[DEV1]);
    let r = f
        .bot(NOW)
        .aws(&moto)
        .env("SECRET_MANAGER_FAILPOINT", "after-mint")
        .rotate_now(&["--namespace", "par", "--concurrency", "3"]);
    assert_eq!(r.code, 86, "{}", r.stderr);
    let minted: usize = users.iter().map(|u| moto.key_ids(u).len()).sum();
    assert!(
        minted >= 4,
        "at least one new key exists after the crash: {minted}"
    );
    // After the dead run's lease (10 min) the next run cleans up and rotates.
    let r = f
        .bot("2026-11-21T12:15:00Z")
        .aws(&moto)
        .rotate_now(&["--namespace", "par"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("3 staged"), "{}", r.stderr);
    for u in &users {
        let keys = moto.key_ids(u);
        assert_eq!(
            keys.len(),
            1,
            "{u}: exactly one key after convergence: {keys:?}"
        );
        let rel = format!("applications/root/par/state/overlays/{DEV1}/{u}.yaml");
        let file = f.path("m.yaml");
        std::fs::write(&file, f.show("dev", "main", &rel)).unwrap();
        let id = decrypt_value(&file, 0, DEV1, &format!("par/{u}"), "accessKeyId").unwrap();
        assert_eq!(
            String::from_utf8(id).unwrap(),
            keys[0],
            "{u}: the manifest holds it"
        );
    }
    // Every key the tool deleted is in the audit trail: the dead run's orphans (from the
    // audit log ref) as well as the revoked old keys (from main).
    let cleaned = r
        .stderr
        .split(" orphan(s) cleaned")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap();
    assert!(cleaned >= 1, "{}", r.stderr);
    let r = run_cmd(cmd().args(["--repo", work.to_str().unwrap(), "audit", "export"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let actions: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let n = |a: &str| actions.iter().filter(|r| r["action"] == a).count();
    assert_eq!(n("cleanup"), cleaned, "{}", r.stdout);
    assert!(n("abandon") >= 1, "{}", r.stdout);
    assert_eq!(n("revoke"), 3, "{}", r.stdout);
    assert!(
        actions
            .iter()
            .filter(|r| r["action"] == "cleanup")
            .all(|r| r["oldKeyId"]
                .as_str()
                .is_some_and(|k| k.starts_with("AKIA"))
                && r["run"] != ""),
        "{}",
        r.stdout
    );
}

/// Deleting one of two manifests that hold the same key: the manifest goes, the key stays
/// (the other manifest still uses it), and the record is closed.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn delete_keeps_a_key_another_manifest_still_uses() {
    let (f, moto, old) = setup();
    let work = f.path("work");
    let twin = REL.replace(DEV1, "aws.us-east-1.prod1");
    std::fs::create_dir_all(work.join(&twin).parent().unwrap()).unwrap();
    std::fs::copy(work.join(REL), work.join(&twin)).unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "Same key for prod1"]);
    git(&work, &["push", "--quiet", "origin", "main"]);
    let mut c = cmd();
    moto.env(&mut c);
    let r = run_cmd(c.args([
        "--repo",
        work.to_str().unwrap(),
        "--yes",
        "delete",
        "--cluster",
        DEV1,
        "--name",
        "route53",
        "--revoke-after",
        "0s",
    ]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("old key kept: still used"),
        "{}",
        r.stdout
    );
    assert_eq!(moto.key_ids(USER), vec![old], "the shared key survives");
    let subject = git(&f.path("dev.git"), &["log", "-1", "--format=%s", "main"]);
    assert!(subject.contains("(key kept: still used)"), "{subject}");
    let ls = git(
        &f.path("dev.git"),
        &["ls-tree", "-r", "--name-only", "main"],
    );
    assert!(
        !ls.contains(".secret-manager/rotations/"),
        "record closed: {ls}"
    );
    assert!(!ls.contains(REL) && ls.contains(&twin), "{ls}");
}

/// The plan never cuts an identity or a key id: on a narrow terminal the table becomes one
/// block per step; a pipe always gets the whole table.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn the_plan_shows_full_identities_and_key_ids_on_a_pipe_and_on_a_terminal() {
    let (f, moto, old) = setup();
    let work = f.path("work");
    let identity = format!("123456789012/{USER}");
    // On a pipe, 60 columns.
    let mut c = cmd();
    moto.env(&mut c).env("COLUMNS", "60");
    let r = run_cmd(c.args([
        "--repo",
        work.to_str().unwrap(),
        "rotate",
        "--name",
        "route53",
        "--dry-run",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(&identity), "{}", r.stdout);
    // A pipe is never fitted ($COLUMNS notwithstanding): the plan stays one table.
    assert!(
        r.stdout.lines().next().unwrap().contains("ACTION") && r.stdout.contains(&old),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains('…'), "nothing is cut:\n{}", r.stdout);
    // The confirmation prompt shows the same plan.
    let mut c = cmd();
    moto.env(&mut c).env("COLUMNS", "60");
    let r = run_cmd(c.args([
        "--repo",
        work.to_str().unwrap(),
        "rotate",
        "--name",
        "route53",
    ]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stdout.contains(&identity) && r.stdout.contains(&old),
        "{}",
        r.stdout
    );
    // On a terminal 60 columns wide (util-linux `script` gives the command a pty).
    let bin = env!("CARGO_BIN_EXE_secret-manager");
    let line = format!(
        "stty cols 60; exec {bin} --repo {} rotate --name route53 --dry-run",
        work.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .envs(
            moto.env(&mut cmd())
                .env_remove("COLUMNS")
                .get_envs()
                .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))),
        )
        .env("SHELL", "/bin/sh")
        .output()
        .expect("util-linux script runs");
    let tty = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(
        out.status.success(),
        "{tty}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tty.contains(&identity), "{tty}");
    assert!(tty.contains(&format!("old key   {old}")), "{tty}");
    // (The spinner on stderr says "rotating…"; the plan starts at its first step.)
    let plan = &tty[tty.find("stage  aws").expect("the plan")..];
    assert!(!plan.contains('…'), "nothing is cut on a terminal:\n{plan}");
}

/// A rotation carries the grace period and gates it was staged with: a later run with
/// other flags (another shard's selection, `--revoke-after 0s`) neither advances a rotation
/// its selection does not cover nor shortens the promised grace period.
#[test]
fn one_runs_flags_never_cut_another_runs_grace_period() {
    let state = tempfile::tempdir().unwrap();
    let f = crate::safety::demo_fleet(state.path());
    let work = f.path("work");
    let keys = || -> usize {
        let text = std::fs::read_to_string(state.path().join("keys.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v.as_object()
            .unwrap()
            .values()
            .map(|k| k.as_array().unwrap().len())
            .sum()
    };
    let t0 = chrono::Utc::now();
    let run = |at: chrono::DateTime<chrono::Utc>, extra: &[&str]| {
        let mut c = crate::common::cmd();
        crate::common::with_demo_plugin(&mut c, state.path());
        c.env("SECRET_MANAGER_NOW", at.to_rfc3339()).args([
            "--repo",
            work.to_str().unwrap(),
            "--yes",
            "rotate",
            "--source",
            "demo",
        ]);
        c.args(extra);
        let r = crate::common::run_cmd(&mut c);
        assert!(r.code == 0, "{extra:?}: {}{}", r.stdout, r.stderr);
        r
    };
    assert_eq!(keys(), 1);
    // Staged and published with a one-hour grace period.
    run(t0, &["--older-than", "0s", "--revoke-after", "1h"]);
    assert_eq!(keys(), 2, "new key minted, old one kept");
    // A run whose selection does not cover it: its --revoke-after does not reach it.
    let r = run(
        t0 + chrono::Duration::minutes(1),
        &["--name", "nothing-matches", "--revoke-after", "0s"],
    );
    assert_eq!(
        keys(),
        2,
        "revoked by a run that did not select it: {}",
        r.stdout
    );
    // A run that covers it, with a shorter grace period: the promised hour holds.
    let r = run(t0 + chrono::Duration::minutes(2), &["--revoke-after", "0s"]);
    assert_eq!(keys(), 2, "grace period cut: {}", r.stdout);
    assert!(r.stdout.contains("grace period"), "{}", r.stdout);
    // Once the hour has passed, any covering run revokes it.
    run(
        t0 + chrono::Duration::minutes(61),
        &["--revoke-after", "0s"],
    );
    assert_eq!(keys(), 1, "the old key is revoked after the promised hour");
}

/// `delete` removes a file's entry from the kustomization that lists it, and the overlay
/// the cluster pointer moves to still builds with the real `kubectl kustomize`.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn delete_leaves_an_overlay_that_builds() {
    let f = GitFleet::new();
    let moto = Moto::start();
    let work = f.path("work");
    let overlay = "applications/root/cert-manager/state/overlays/aws.eu-central-1.dev1";
    let mut c = cmd();
    moto.env(&mut c).args([
        "--repo",
        work.to_str().unwrap(),
        "--yes",
        "delete",
        "--cluster",
        DEV1,
        "--name",
        "route53-credentials",
        "--revoke-after",
        "1h",
    ]);
    let r = run_cmd(&mut c);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let k = f.show("dev", "main", &format!("{overlay}/kustomization.yaml"));
    assert!(!k.contains("dns-credentials.yaml"), "{k}");
    assert!(
        k.starts_with("apiVersion: kustomize.config.k8s.io/v1beta1\n"),
        "{k}"
    );
    // What the cluster now gets builds.
    let tree = tempfile::tempdir().unwrap();
    let archive = std::process::Command::new("git")
        .arg("-C")
        .arg(f.path("dev.git"))
        .args(["archive", &format!("refs/heads/cluster/{DEV1}")])
        .output()
        .unwrap();
    assert!(archive.status.success());
    let mut tar = std::process::Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(tree.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    tar.stdin
        .take()
        .unwrap()
        .write_all(&archive.stdout)
        .unwrap();
    assert!(tar.wait().unwrap().success());
    assert!(
        !tree
            .path()
            .join(overlay)
            .join("dns-credentials.yaml")
            .exists()
    );
    secret_manager_testkit::tier::environment("kubectl");
    let built = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(tree.path().join(overlay))
        .env("KUBECONFIG", "/dev/null")
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
}

/// `keys` checks the account as `rotate` does: credentials of another account than the
/// manifest's are named as such, never shown as the same-named user's keys or `missing`.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn keys_names_an_account_mismatch() {
    let f = GitFleet::new();
    let moto = Moto::start();
    moto.iam(&[("Action", "CreateUser"), ("UserName", "cert-manager-dev1")]);
    let mut c = cmd();
    moto.env(&mut c).args([
        "--repo",
        f.path("work").to_str().unwrap(),
        "keys",
        "--cluster",
        DEV1,
        "--name",
        "route53-credentials",
    ]);
    let r = run_cmd(&mut c);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("the manifest's account is 111111111111"),
        "{}",
        r.stderr
    );
    assert!(!r.stdout.contains("missing"), "{}", r.stdout);
}

/// Answering no at the prompt (here: end of input on a terminal) changes nothing, says so,
/// and is not an error.
#[test]
fn answering_no_at_the_prompt_changes_nothing_and_exits_0() {
    let state = tempfile::tempdir().unwrap();
    let f = crate::safety::demo_fleet(state.path());
    let keys_before = std::fs::read_to_string(state.path().join("keys.json")).unwrap();
    let mut c = cmd();
    crate::common::with_demo_plugin(&mut c, state.path());
    c.env("SECRET_MANAGER_NOW", chrono::Utc::now().to_rfc3339())
        .args([
            "--repo",
            f.path("work").to_str().unwrap(),
            "rotate",
            "--source",
            "demo",
            "--older-than",
            "0s",
        ]);
    let r = crate::common::run_on_terminal(&c);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("[y/N]"), "{}", r.stdout);
    assert!(
        r.stdout.contains("answered no: nothing changed"),
        "{}",
        r.stdout
    );
    assert_eq!(
        std::fs::read_to_string(state.path().join("keys.json")).unwrap(),
        keys_before
    );
}

/// `keys` in a narrow table drops less important columns first, never STATUS (where a
/// `missing` key shows).
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn keys_never_drops_the_status_column() {
    let (f, moto, _) = setup();
    let mut c = cmd();
    moto.env(&mut c).env("COLUMNS", "100").args([
        "--repo",
        f.path("work").to_str().unwrap(),
        "keys",
        "--name",
        "route53",
    ]);
    let r = run_cmd(&mut c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let header = r.stdout.lines().next().unwrap_or_default();
    assert!(header.contains("STATUS"), "{}", r.stdout);
    assert!(r.stdout.contains("active"), "{}", r.stdout);
}
