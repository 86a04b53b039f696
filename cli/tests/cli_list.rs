//! `secret-manager list` as users run it.

use crate::common::{run_cmd, run_in, testdata};

fn example() -> String {
    testdata("example-repo").to_string_lossy().into_owned()
}

#[test]
fn table_older_than_90d() {
    // On a pipe (and with $COLUMNS set, as the test harness sets it) the table is never
    // fitted: every column, whole, as kubectl writes it.
    let r = run_in(&["--repo", &example(), "list", "--older-than", "90d"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    insta::assert_snapshot!(r.stdout);
    assert!(
        r.stdout.lines().next().unwrap().contains("SOURCE"),
        "{}",
        r.stdout
    );
    assert!(!r.stderr.contains("not shown"), "{}", r.stderr);
    assert!(!r.stdout.contains('…'), "{}", r.stdout);
    let narrow_pipe = run_cmd(crate::common::cmd().env("COLUMNS", "60").args([
        "--repo",
        &example(),
        "list",
        "--older-than",
        "90d",
    ]));
    assert_eq!(narrow_pipe.stdout, r.stdout, "$COLUMNS does not fit a pipe");

    // On a terminal 120 columns wide key ids are never cut (a GCP key id is 40
    // characters): the low-value SOURCE column makes room, and says so.
    let on_terminal = |columns: &str| {
        let mut c = crate::common::cmd();
        c.env("COLUMNS", columns)
            .args(["--repo", &example(), "list", "--older-than", "90d"]);
        crate::common::run_on_terminal(&c)
    };
    let tty = on_terminal("120");
    assert_eq!(tty.code, 0, "{}", tty.stdout);
    let tty_table: Vec<&str> = tty
        .stdout
        .lines()
        .filter(|l| !l.starts_with("note:"))
        .collect();
    for line in &tty_table {
        assert!(
            line.chars().count() <= 120,
            "line wider than 120 columns: {line}"
        );
    }
    assert!(!tty.stdout.contains('…'), "{}", tty.stdout);
    assert!(
        tty.stdout
            .contains("a1d4dfe1ccc98e1dcef5988c5f9897523b263e8a"),
        "{}",
        tty.stdout
    );
    assert!(
        tty.stdout
            .contains("not shown to fit 120 columns: SOURCE (-o wide shows every column)"),
        "{}",
        tty.stdout
    );
    // On a narrow terminal long names wrap; ids and ages stay whole.
    let narrow = on_terminal("80");
    let narrow_table: Vec<&str> = narrow
        .stdout
        .lines()
        .filter(|l| !l.starts_with("note:"))
        .collect();
    for line in &narrow_table {
        assert!(line.chars().count() <= 100, "{line}");
    }
    assert!(narrow_table.len() > tty_table.len());
    for id in [
        "AKIAS3PNRFRWDYIWC5WA",
        "078c6df1-6745-9263-26f4-12513d100217",
        "284d",
    ] {
        assert!(narrow.stdout.contains(id), "{id}:\n{}", narrow.stdout);
    }
    let wide = run_in(&[
        "--repo",
        &example(),
        "-o",
        "wide",
        "list",
        "--older-than",
        "90d",
    ]);
    assert!(wide.stdout.contains("SOURCE") && !wide.stderr.contains("not shown"));
    assert!(
        r.stderr.contains(
            "note: skipped 1 Helm/Go template file (not plain YAML, never edited; -v lists them)"
        ),
        "{}",
        r.stderr
    );
    let r = run_in(&["--repo", &example(), "-v", "list", "--older-than", "90d"]);
    assert!(
        r.stderr
            .contains("note: skipped applications/service1/chart/templates/sealedsecret.yaml:5"),
        "-v names each skipped file: {}",
        r.stderr
    );
}

#[test]
fn json_rows_carry_the_documented_fields() {
    let r = run_in(&["--repo", &example(), "list", "--all", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rows.len(), 15);
    for row in &rows {
        for field in [
            "cluster",
            "namespace",
            "name",
            "scope",
            "source",
            "keyId",
            "createDate",
            "ageDays",
            "file",
            "line",
            "state",
        ] {
            assert!(row.get(field).is_some(), "missing {field} in {row}");
        }
    }
    // Oldest managed first, unmanaged last.
    let ages: Vec<i64> = rows.iter().filter_map(|r| r["ageDays"].as_i64()).collect();
    assert!(ages.windows(2).all(|w| w[0] >= w[1]), "{ages:?}");
    assert_eq!(rows.last().unwrap()["state"], "unmanaged");
    insta::assert_json_snapshot!(rows);
}

#[test]
fn filters_combine() {
    let r = run_in(&[
        "--repo",
        &example(),
        "list",
        "-o",
        "json",
        "--source",
        "aws",
        "--cluster",
        "aws.eu-central-1.dev1",
        "--name",
        "s*-*",
        "--namespace",
        "service1",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["s3-uploader", "sqs-consumer"]);
    let r = run_in(&[
        "--repo",
        &example(),
        "list",
        "-o",
        "json",
        "--older-than",
        "2w",
        "--source",
        "azure",
    ]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rows.len(), 3);
    let r = run_in(&[
        "--repo",
        &example(),
        "list",
        "-o",
        "json",
        "--older-than",
        "12h",
        "--source",
        "gcp",
        "--source",
        "azure",
    ]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rows.len(), 5);
    // --name is repeatable like --source and --cluster.
    let r = run_in(&[
        "--repo",
        &example(),
        "list",
        "-o",
        "json",
        "--name",
        "s3-*",
        "--name",
        "sqs-*",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["s3-uploader", "sqs-consumer"]);
}

/// An unknown `--source` is a usage error naming the known ones, like an unknown
/// `--cluster` (not "no matching SealedSecrets" and exit 0).
#[test]
fn an_unknown_source_is_a_usage_error_with_the_known_values() {
    for (cmd, hint) in [
        ("list", "\nhint: did you mean `aws`?"),
        ("keys", "\nhint: did you mean `aws`?"),
    ] {
        let r = run_in(&["--repo", &example(), cmd, "--source", "AWS"]);
        assert_eq!(r.code, 2, "{cmd}: {}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains(
                "--source AWS: unknown source (built in: aws, azure, gcp, random, postgres, mysql, github-deploy-key, gitlab-deploy-token;"
            ) && r.stderr.trim_end().ends_with(hint),
            "{cmd}: {}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "{}", r.stdout);
    }
    let f = crate::common::GitFleet::new();
    let work = f.path("work");
    let r = run_in(&[
        "--repo",
        work.to_str().unwrap(),
        "rotate",
        "--source",
        "nope",
        "--dry-run",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("--source nope: unknown source"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("did you mean"), "{}", r.stderr);
}

/// `--cluster` globs select cluster groups; `--shared` decides about manifests with no
/// cluster id in their path.
#[test]
fn cluster_globs_and_shared_manifests() {
    let repo = crate::common::temp_repo("example-repo");
    let from = repo.path().join(
        "applications/root/external-dns/state/overlays/aws.eu-central-1.dev1/sealedSeacret-cloud-dns.yaml",
    );
    let shared = repo
        .path()
        .join("applications/root/external-dns/state/base/shared-dns.yaml");
    std::fs::create_dir_all(shared.parent().unwrap()).unwrap();
    std::fs::copy(from, &shared).unwrap();
    let rows = |extra: &[&str]| -> Vec<String> {
        let mut args = vec![
            "--repo",
            repo.path().to_str().unwrap(),
            "list",
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        let r = run_in(&args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
        rows.iter()
            .map(|r| r["cluster"].as_str().unwrap().to_owned())
            .collect()
    };
    let eu = rows(&["--cluster", "aws.eu-*"]);
    assert!(eu.contains(&"(shared)".to_owned()), "{eu:?}");
    assert!(
        eu.iter()
            .all(|c| c == "(shared)" || c.starts_with("aws.eu-")),
        "{eu:?}"
    );
    let us = rows(&["--cluster", "aws.us-*", "--shared", "exclude"]);
    assert_eq!(us, vec!["aws.us-east-1.prod1"]);
    assert_eq!(rows(&["--shared", "only"]), vec!["(shared)"]);
    let all = rows(&[]);
    let both = rows(&["--cluster", "aws.*", "--cluster", "azure.westeurope.prod2"]);
    assert!(both.len() < all.len() && both.iter().all(|c| !c.starts_with("gcp.")));
}

#[test]
fn yaml_output_parses() {
    let r = run_in(&[
        "--repo",
        &example(),
        "list",
        "-o",
        "yaml",
        "--source",
        "gcp",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Vec<std::collections::BTreeMap<String, serde_json::Value>> =
        serde_saphyr::from_str(&r.stdout).unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0]["source"], "gcp");
    // Long paths stay on their line (kubectl never folds them into `>-` blocks).
    let file = v[0]["file"].as_str().unwrap();
    assert!(file.len() > 80, "{file}");
    assert!(
        r.stdout
            .lines()
            .any(|l| l.trim_start() == format!("file: {file}")),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(">-"), "{}", r.stdout);
}

#[test]
fn edge_repo_json_snapshot() {
    let dir = testdata("scan/edge-repo");
    let r = run_in(&[
        "--repo",
        dir.to_str().unwrap(),
        "list",
        "--all",
        "-o",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    insta::assert_snapshot!(r.stdout);
    insta::assert_snapshot!("edge_repo_stderr", r.stderr);
}

#[test]
fn usage_errors_exit_2_and_say_what_to_do() {
    let r = run_in(&["--repo", &example(), "list", "--older-than", "ninety"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("--older-than: `ninety` is not a duration"),
        "{}",
        r.stderr
    );
    let r = run_in(&["--repo", &example(), "list", "--cluster", "aws.nowhere.x"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no such cluster"), "{}", r.stderr);
    assert!(
        r.stderr.contains("aws.eu-central-1.dev1"),
        "lists known clusters: {}",
        r.stderr
    );
    let r = run_in(&["--repo", &example(), "list", "--cluster", "azure.nowhere-*"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("matches no cluster"), "{}", r.stderr);
    let r = run_in(&["--repo", &example(), "list", "--cluster", "aws.[eu"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("is not a glob"), "{}", r.stderr);
    // A directory that is no config repo is read, with a warning.
    let stray = tempfile::tempdir().unwrap();
    let r = run_in(&["--repo", stray.path().to_str().unwrap(), "list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("has no cluster-values/ and is not a git work tree"),
        "{}",
        r.stderr
    );
    let r = run_in(&["--repo", &example(), "list"]);
    assert!(!r.stderr.contains("cluster-values/"), "{}", r.stderr);
    let r = run_in(&["--repo", "/nonexistent/repo", "list"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("/nonexistent/repo"), "{}", r.stderr);
}

#[test]
fn bad_config_names_file_and_line() {
    let dir = crate::common::temp_repo("example-repo");
    std::fs::write(
        dir.path().join(".secret-manager.yaml"),
        "policy:\n  maxAge: 90d\n  colour: blue\n",
    )
    .unwrap();
    let r = run_in(&["--repo", dir.path().to_str().unwrap(), "list"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(".secret-manager.yaml:3:"), "{}", r.stderr);
    assert!(r.stderr.contains("colour"), "{}", r.stderr);
}

#[test]
fn help_explains_states_and_formats() {
    let r = run_in(&["list", "--help"]);
    assert_eq!(r.code, 0);
    // Wrapped to the terminal: compare with the lines joined.
    let text = r.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "--older-than",
        "due",
        "unmanaged",
        "rotating",
        "-o wide",
        "-o prometheus",
        "+reseal",
        "90d",
    ] {
        assert!(
            text.contains(needle),
            "--help lacks {needle}:\n{}",
            r.stdout
        );
    }
}

/// Manifest text can carry terminal escape sequences: tables and messages show them
/// escaped, never act on them (JSON output escapes them itself).
#[test]
fn terminal_escapes_in_manifests_are_shown_escaped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("apps")).unwrap();
    std::fs::write(
        dir.path().join("apps/evil.yaml"),
        "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: \"evil\\e]0;pwned\\a\"\n  namespace: \"ns\\u202Exe\"\nspec:\n  encryptedData: {k: AgB}\n---\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: fine\n  namespace: ns\nspec:\n  encryptedData: {k: AgB}\n  template:\n    metadata:\n      annotations:\n        secret-manager/source: \"aws\\e[2J\\u202Egnp\"\n",
    )
    .unwrap();
    let r = run_in(&[
        "--repo",
        dir.path().to_str().unwrap(),
        "-o",
        "wide",
        "list",
        "--all",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for raw in ['\u{1b}', '\u{7}', '\u{202e}'] {
        assert!(!r.stdout.contains(raw), "raw {raw:?} in {:?}", r.stdout);
        assert!(!r.stderr.contains(raw), "raw {raw:?} in {:?}", r.stderr);
    }
    // An invalid name is a finding (shown escaped), never a row.
    assert!(
        r.stderr.contains("evil\\u{1b}]0;pwned\\u{7}") && !r.stdout.contains("pwned"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    // Other repo text in a row (here the source) is escaped in the table.
    assert!(
        r.stdout.contains("aws\\u{1b}[2J\\u{202e}gnp"),
        "{}",
        r.stdout
    );
}

/// Colour: on a terminal unless NO_COLOR is set; `--color always|never` decide outright.
#[test]
fn colour_on_a_terminal_respects_no_color_and_the_flag() {
    let yellow_due = "\u{1b}[33mdue\u{1b}[0m";
    let list = |extra: &[&str]| {
        let mut c = crate::common::cmd();
        c.env_remove("NO_COLOR").env("TERM", "xterm");
        c.args(["--repo", &example()]).args(extra).args(["list"]);
        c
    };
    let tty = crate::common::run_on_terminal(&list(&[]));
    assert_eq!(tty.code, 0, "{}", tty.stdout);
    assert!(tty.stdout.contains(yellow_due), "{:?}", tty.stdout);
    let mut no_color = list(&[]);
    no_color.env("NO_COLOR", "1");
    let plain = crate::common::run_on_terminal(&no_color);
    assert!(
        plain.stdout.contains("due") && !plain.stdout.contains('\u{1b}'),
        "{:?}",
        plain.stdout
    );
    let never = crate::common::run_on_terminal(&list(&["--color", "never"]));
    assert!(!never.stdout.contains('\u{1b}'), "{:?}", never.stdout);
    // A pipe gets no colour by default, and colour with --color always.
    let pipe = run_cmd(&mut list(&[]));
    assert!(!pipe.stdout.contains('\u{1b}'), "{:?}", pipe.stdout);
    let always = run_cmd(&mut list(&["--color", "always"]));
    assert!(always.stdout.contains(yellow_due), "{:?}", always.stdout);
    // The column still lines up: the escape codes take no width.
    let plain_lines: Vec<&str> = pipe.stdout.lines().collect();
    let strip = |l: &str| {
        l.replace("\u{1b}[33m", "")
            .replace("\u{1b}[0m", "")
            .replace("\u{1b}[32m", "")
            .replace("\u{1b}[2m", "")
            .replace("\u{1b}[31m\u{1b}[1m", "")
    };
    let coloured: Vec<String> = always.stdout.lines().map(strip).collect();
    assert_eq!(coloured, plain_lines);
    // Messages on stderr: the prefix is coloured too.
    let r = run_cmd(crate::common::cmd().args([
        "--color",
        "always",
        "--repo",
        &example(),
        "list",
        "--older-than",
        "soon",
    ]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("\u{1b}[31m\u{1b}[1merror:\u{1b}[0m"),
        "{:?}",
        r.stderr
    );
}

/// `-o name` prints one cluster/namespace/name per line; `--no-headers` drops the header
/// line and nothing else; `-o name` where it means nothing is refused before anything runs.
#[test]
fn names_and_no_headers_for_scripts() {
    let table = run_in(&["--repo", &example(), "list", "--older-than", "90d"]);
    let names = run_in(&[
        "--repo",
        &example(),
        "-o",
        "name",
        "list",
        "--older-than",
        "90d",
    ]);
    assert_eq!(names.code, 0, "{}", names.stderr);
    let rows: Vec<&str> = table.stdout.lines().skip(1).collect();
    let lines: Vec<&str> = names.stdout.lines().collect();
    assert_eq!(lines.len(), rows.len(), "{}", names.stdout);
    assert!(
        lines.contains(&"aws.eu-central-1.dev1/service1/s3-uploader"),
        "{}",
        names.stdout
    );
    for (line, row) in lines.iter().zip(&rows) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(*line, format!("{}/{}/{}", cells[0], cells[1], cells[2]));
    }
    let bare = run_in(&[
        "--repo",
        &example(),
        "list",
        "--older-than",
        "90d",
        "--no-headers",
    ]);
    assert_eq!(bare.code, 0, "{}", bare.stderr);
    assert_eq!(bare.stdout.lines().collect::<Vec<_>>(), rows);
    // Not for commands without names: a usage error, before anything runs.
    let r = run_in(&["--repo", &example(), "-o", "name", "lint"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("-o name is for `list`, `keys` and `cluster status`"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty());
}

/// CLICOLOR_FORCE colours a pipe (for `| less -R`); NO_COLOR still wins.
#[test]
fn clicolor_force_colours_a_pipe_and_no_color_wins() {
    let yellow_due = "\u{1b}[33mdue\u{1b}[0m";
    let list = |env: &[(&str, &str)]| {
        let mut c = crate::common::cmd();
        c.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(["--repo", &example(), "list"]);
        run_cmd(&mut c)
    };
    assert!(!list(&[]).stdout.contains('\u{1b}'));
    assert!(list(&[("CLICOLOR_FORCE", "1")]).stdout.contains(yellow_due));
    assert!(!list(&[("CLICOLOR_FORCE", "0")]).stdout.contains('\u{1b}'));
    assert!(
        !list(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")])
            .stdout
            .contains('\u{1b}')
    );
}
