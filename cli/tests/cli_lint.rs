//! `secret-manager lint` as a PR pipeline runs it.

use crate::common::{run_in, snapshot_tree, temp_repo, testdata};

#[test]
fn example_repo_is_clean() {
    let r = run_in(&["--repo", testdata("example-repo").to_str().unwrap(), "lint"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "");
    assert!(r.stderr.contains("0 finding(s)"), "{}", r.stderr);
}

#[test]
fn max_age_policy_flags_old_credentials() {
    let r = run_in(&[
        "--repo",
        testdata("example-repo").to_str().unwrap(),
        "lint",
        "--max-age",
        "180d",
    ]);
    assert_eq!(r.code, 3);
    insta::assert_snapshot!(r.stdout);
}

#[test]
fn bad_corpus_findings_and_nothing_written() {
    let dir = temp_repo("lint/bad-repo");
    let before = snapshot_tree(dir.path());
    let r = run_in(&[
        "--repo",
        dir.path().to_str().unwrap(),
        "lint",
        "--max-age",
        "365d",
    ]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    insta::assert_snapshot!(r.stdout);
    // good.yaml has no finding; every other file has at least one.
    assert!(!r.stdout.contains("good.yaml"));
    for e in std::fs::read_dir(dir.path().join("apps/lint/overlays/aws.eu-west-1.a")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name != "good.yaml" {
            assert!(r.stdout.contains(&name), "no finding for {name}");
        }
    }
    assert_eq!(snapshot_tree(dir.path()), before, "lint must not write");
    let j = run_in(&["--repo", dir.path().to_str().unwrap(), "lint", "-o", "json"]);
    let findings: Vec<serde_json::Value> = serde_json::from_str(&j.stdout).unwrap();
    assert!(findings.iter().all(|f| f["file"].is_string()
        && f["line"].as_u64().unwrap() >= 1
        && f["rule"].is_string()));
}

#[test]
fn plugin_on_path_makes_a_source_known() {
    let dir = temp_repo("lint/bad-repo");
    let bin = tempfile::tempdir().unwrap();
    let plugin = bin.path().join("secret-manager-provider-vault");
    std::fs::write(&plugin, "#!/bin/sh\nexit 0\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let r = crate::common::run_cmd(crate::common::cmd().env("PATH", path).args([
        "--repo",
        dir.path().to_str().unwrap(),
        "lint",
    ]));
    assert!(!r.stdout.contains("unknown-source"), "{}", r.stdout);
    let r = run_in(&["--repo", dir.path().to_str().unwrap(), "lint"]);
    assert!(r.stdout.contains("unknown-source"), "{}", r.stdout);
}

/// Key ids with terminal escapes, newlines or bidi overrides are findings, shown escaped;
/// `list` marks the secret invalid and prints the id escaped too.
#[test]
fn key_ids_with_control_characters_are_findings_and_never_printed_raw() {
    let dir = temp_repo("example-repo");
    let rel = "applications/root/external-dns/state/overlays/aws.eu-central-1.dev1/sealedSeacret-cloud-dns.yaml";
    let file = dir.path().join(rel);
    let text = std::fs::read_to_string(&file).unwrap();
    for (bad, shown) in [
        ("AKIA2XDAMLXHPVQO\\e[31mKSY", "\\u{1b}[31m"),
        ("AKIA2XDAML\\u202eXHPVQO3KSY", "\\u{202e}"),
        ("AKIA2XDAMLXHPVQO3KSY\\a", "\\u{7}"),
    ] {
        std::fs::write(
            &file,
            text.replace("\"AKIA2XDAMLXHPVQO3KSY\"", &format!("\"{bad}\"")),
        )
        .unwrap();
        let repo = dir.path().to_str().unwrap();
        let r = run_in(&["--repo", repo, "lint"]);
        assert_eq!(r.code, 3, "{bad}: {}", r.stdout);
        assert!(r.stdout.contains("malformed-annotation"), "{}", r.stdout);
        assert!(r.stdout.contains(shown), "{bad}: {}", r.stdout);
        for raw in ['\u{1b}', '\u{202e}', '\u{7}'] {
            assert!(
                !r.stdout.contains(raw),
                "{bad}: raw control character in lint output"
            );
        }
        let r = run_in(&["--repo", repo, "list", "--all", "-o", "wide"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let line = r.stdout.lines().find(|l| l.contains("AKIA2XDAML")).unwrap();
        assert!(line.contains("invalid") && line.contains(shown), "{line}");
        for raw in ['\u{1b}', '\u{202e}', '\u{7}'] {
            assert!(
                !r.stdout.contains(raw),
                "{bad}: raw control character in list output"
            );
        }
    }
}

/// An Azure secret lifetime that is not a duration is a finding, before any run uses it.
#[test]
fn a_malformed_secret_lifetime_is_a_finding() {
    let dir = temp_repo("example-repo");
    let file = dir.path().join(
        "applications/root/external-dns/state/overlays/azure.westeurope.prod2/sealedSeacret-cloud-dns.yaml",
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let anchor = "secret-manager/source: \"azure\"";
    assert!(text.contains(anchor));
    let indent: String = text[..text.find(anchor).unwrap()]
        .rsplit('\n')
        .next()
        .unwrap()
        .to_owned();
    std::fs::write(
        &file,
        text.replacen(
            anchor,
            &format!("{anchor}\n{indent}secret-manager/secretLifetime: \"soon\""),
            1,
        ),
    )
    .unwrap();
    let r = run_in(&["--repo", dir.path().to_str().unwrap(), "lint"]);
    assert_eq!(r.code, 3, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("secretLifetime: `soon` is not a duration"),
        "{}",
        r.stdout
    );
}

/// The parameters a source checks without a connection are lint findings before a run:
/// a password policy out of range, an unknown database strategy, a single-user secret
/// naming two logins, a hostile instance name (quoted escaped, never raw).
#[test]
fn source_parameters_are_checked_before_a_run() {
    let dir = temp_repo("example-repo");
    let overlay = dir
        .path()
        .join("applications/service2/state/overlays/gcp.europe-west1.dev2");
    let webhook = overlay.join("sealed-webhook.yaml");
    let text = std::fs::read_to_string(&webhook).unwrap();
    std::fs::write(
        &webhook,
        text.replace(
            "secret-manager/length: \"64\"",
            "secret-manager/length: \"8\"",
        ),
    )
    .unwrap();
    let db = |name: &str, extra: &str| {
        format!(
            "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: {name}\n  namespace: service2\nspec:\n  encryptedData:\n    DB_PASSWORD: AgBx\n  template:\n    metadata:\n      name: {name}\n      namespace: service2\n      annotations:\n        secret-manager/source: postgres\n        secret-manager/createDate: \"2026-11-01T00:00:00Z\"\n        secret-manager/keyId: app.1\n        secret-manager/keyMappings: \"[DB_PASSWORD:Password]\"\n{extra}"
        )
    };
    std::fs::write(
        overlay.join("db-strategy.yaml"),
        db(
            "db-strategy",
            "        secret-manager/instance: orders\n        secret-manager/users: app\n        secret-manager/strategy: blue-green\n",
        ),
    )
    .unwrap();
    std::fs::write(
        overlay.join("db-single.yaml"),
        db(
            "db-single",
            "        secret-manager/instance: orders\n        secret-manager/users: app_a,app_b\n        secret-manager/strategy: single-user\n",
        ),
    )
    .unwrap();
    std::fs::write(
        overlay.join("db-hostile.yaml"),
        db(
            "db-hostile",
            "        secret-manager/instance: \"\\e[31m--host=evil\"\n        secret-manager/users: app_a,app_b\n",
        ),
    )
    .unwrap();
    let r = run_in(&["--repo", dir.path().to_str().unwrap(), "lint"]);
    assert_eq!(r.code, 3, "{}", r.stdout);
    for want in [
        "length `8`: give a number from 16 to 4096",
        "strategy `blue-green`: `alternating-users`",
        "users: strategy `single-user` rotates one role: give just its name",
        "instance `\\u{1b}[31m--host=evil`",
    ] {
        assert!(r.stdout.contains(want), "{want}\n{}", r.stdout);
    }
    assert!(!r.stdout.contains('\u{1b}'), "{}", r.stdout);
}
