//! `audit export` over a scripted history made by the real binary.

use crate::common::{cmd, decrypt_value, git, run_cmd};
use crate::rotate::{DEV1, LABEL, REL, USER, rotate, setup};

const SHARED: &str = "applications/root/argocd/base/argocd-cm.yaml";
const DNS: &str = "applications/root/external-dns/state/overlays/aws.eu-central-1.dev1/sealedSeacret-cloud-dns.yaml";

#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn scripted_history_exports_every_action_and_no_secret() {
    // create (by hand: a manual record), rotate, rotate again through a hot-fix, delete,
    // and a manual key id edit.
    let (f, moto, _) = setup();
    let work = f.path("work");
    let mut secrets = Vec::new();
    let grab = |secrets: &mut Vec<String>| {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("m.yaml");
        std::fs::write(&p, f.show("dev", "main", REL)).unwrap();
        secrets.push(
            String::from_utf8(decrypt_value(&p, 0, DEV1, LABEL, "secretAccessKey").unwrap())
                .unwrap(),
        );
    };
    grab(&mut secrets);
    let r = rotate(
        &f,
        &moto,
        "2026-11-21T12:00:00Z",
        &["--yes", "--revoke-after", "0s"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    grab(&mut secrets);
    // An unrelated shared change waits on main: the next publish must be a hot-fix.
    f.commit_main(&work, SHARED, "unrelated\n", "Unrelated base change");
    let r = rotate(
        &f,
        &moto,
        "2026-11-22T12:00:00Z",
        &["--yes", "--revoke-after", "0s", "-o", "json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("hot-fix"), "{}", r.stdout);
    grab(&mut secrets);
    let mut c = cmd();
    moto.env(&mut c).args([
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
    ]);
    assert_eq!(run_cmd(&mut c).code, 0);
    git(&work, &["pull", "--quiet", "--ff-only", "origin", "main"]);
    let text = std::fs::read_to_string(work.join(DNS)).unwrap();
    let old_id = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret-manager/accessKeyId: "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    std::fs::write(
        work.join(DNS),
        text.replace(&old_id, "AKIAHANDEDITHANDEDIT"),
    )
    .unwrap();
    git(
        &work,
        &["commit", "--quiet", "-am", "Hand-edit the DNS key id"],
    );
    git(&work, &["push", "--quiet", "origin", "main"]);
    assert!(moto.key_ids(USER).is_empty());

    let r = run_cmd(cmd().args(["--repo", work.to_str().unwrap(), "audit", "export"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    for s in &secrets {
        assert!(
            !r.stdout.contains(s.as_str()),
            "a secret value is in the export"
        );
    }
    let records: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for rec in &records {
        assert_eq!(rec["schemaVersion"], 1);
        assert_eq!(rec["commit"].as_str().unwrap().len(), 40);
    }
    // Hand-made changes: the initial import, the hand-made route53 create, the hand edit.
    let manual = |file: &str| {
        records
            .iter()
            .filter(|r| r["action"] == "manual" && r["file"] == file)
            .collect::<Vec<_>>()
    };
    let created = manual(REL);
    assert_eq!(created.len(), 1, "{created:#?}");
    assert_eq!(created[0]["oldKeyId"], "");
    let edits = manual(DNS);
    assert_eq!(edits.len(), 2, "initial import + hand edit: {edits:#?}");
    assert_eq!(edits[1]["oldKeyId"], old_id.as_str());
    assert_eq!(edits[1]["newKeyId"], "AKIAHANDEDITHANDEDIT");
    assert_eq!(
        edits[1]["gitAuthor"],
        "Test Operator <operator@example.com>"
    );
    assert_eq!(edits[1]["cluster"], DEV1);
    // The revoke of a deletion names who ran it.
    let deletion_revoke = records
        .iter()
        .rfind(|r| r["action"] == "revoke" && r["file"] == REL)
        .unwrap();
    assert_ne!(deletion_revoke["operator"], "", "{deletion_revoke:#}");
    // `create` leaves an event in the audit log (its file is committed by hand, which is
    // the `manual` record): who minted which key for which secret.
    let creates: Vec<_> = records.iter().filter(|r| r["action"] == "create").collect();
    assert_eq!(creates.len(), 1, "{creates:#?}");
    assert_eq!(creates[0]["file"], REL);
    assert_eq!(creates[0]["cluster"], DEV1);
    assert_eq!(creates[0]["name"], "route53");
    assert_eq!(creates[0]["source"], "aws");
    assert_eq!(creates[0]["newKeyId"], created[0]["newKeyId"]);
    assert!(
        creates[0]["operator"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:"),
        "{:#?}",
        creates[0]
    );
    // Tool actions, in history order (the audit log is a chain of its own, so its events
    // are ordered by commit time only; commits of the same second have no order).
    let actions: Vec<&str> = records
        .iter()
        .filter(|r| r["action"] != "create")
        .filter(|r| r["file"] == REL || r["action"] == "merge-hotfix")
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    // The second rotation and the delete both publish as hot-fixes: the unrelated shared
    // change on main must not reach the cluster.
    assert_eq!(
        actions,
        [
            "manual",
            "claim",
            "stage",
            "publish",
            "revoke",
            "claim",
            "stage",
            "merge-hotfix",
            "publish",
            "revoke",
            "delete",
            "merge-hotfix",
            "publish",
            "revoke"
        ]
    );
    insta::with_settings!({filters => vec![
        // Audit-log events are ordered by commit time only (checked above).
        (r#"(?m)^.*"action":"create".*\n"#, ""),
        (r"[0-9a-f]{40}", "[commit]"),
        (r"AKIA[A-Z0-9]{16}", "[key]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", "[time]"),
        (r"(aws|delete)-\d{8}T\d{6}Z-[0-9a-f]{8}", "$1-[id]"),
        (r"\d{8}T\d{6}Z-[0-9a-f]{8}", "[run]"),
    ]}, {
        insta::assert_snapshot!(r.stdout);
    });

    // CSV: same records, parsed by a standard reader.
    let r = run_cmd(cmd().args([
        "--repo",
        work.to_str().unwrap(),
        "audit",
        "export",
        "--format",
        "csv",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut rd = csv::Reader::from_reader(r.stdout.as_bytes());
    let headers: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(headers[..4], ["schemaVersion", "time", "action", "cluster"]);
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), records.len());
    // Filters.
    let r = run_cmd(cmd().args([
        "--repo",
        work.to_str().unwrap(),
        "audit",
        "export",
        "--cluster",
        "gcp.europe-west1.dev2",
    ]));
    let only: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!only.is_empty() && only.len() < records.len());
    assert!(only.iter().all(|r| r["cluster"] == "gcp.europe-west1.dev2"));
    let r = run_cmd(cmd().args([
        "--repo",
        work.to_str().unwrap(),
        "audit",
        "export",
        "--source",
        "aws",
        "--since",
        "2099-01-01",
    ]));
    assert_eq!(r.stdout, "", "nothing after 2099");
    // A bare date means 00:00 UTC (git alone would take the current time of day), an age
    // counts back from now, and anything else is a usage error instead of 0 records.
    let count = |since: &str| {
        let r = run_cmd(cmd().args([
            "--repo",
            work.to_str().unwrap(),
            "audit",
            "export",
            "--since",
            since,
        ]));
        assert_eq!(r.code, 0, "{since}: {}", r.stderr);
        r.stdout.lines().count()
    };
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).format("%Y-%m-%d");
    let all = count("1970-01-01");
    assert_eq!(all, records.len());
    assert_eq!(count(&yesterday.to_string()), all);
    assert_eq!(count(&format!("{yesterday}T00:00:00Z")), all);
    assert_eq!(count("3650d"), all);
    for bad in ["yesterdayish", "2026-13-45", "soon"] {
        let r = run_cmd(cmd().args([
            "--repo",
            work.to_str().unwrap(),
            "audit",
            "export",
            "--until",
            bad,
        ]));
        assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
        assert!(r.stderr.contains("is not a time"), "{}", r.stderr);
    }
}

/// Hand edits: one `manual` record per changed key id (two documents of one file are two
/// records), every field filled from the file at that commit (source, identity, namespace,
/// name), so `--source azure` finds Azure's. The initial import of the example fleet is
/// such a commit.
#[test]
fn hand_edits_give_one_record_per_key_with_every_field() {
    let f = crate::common::GitFleet::new();
    let work = f.path("work");
    let export = |extra: &[&str]| -> Vec<serde_json::Value> {
        let r = run_cmd(
            cmd()
                .args(["--repo", work.to_str().unwrap(), "audit", "export"])
                .args(extra),
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let all = export(&[]);
    let two = "applications/service1/state/overlays/aws.eu-central-1.dev1/secrets.yaml";
    let in_two: Vec<_> = all.iter().filter(|r| r["file"] == two).collect();
    assert_eq!(in_two.len(), 2, "{in_two:#?}");
    assert!(
        in_two
            .iter()
            .any(|r| r["newKeyId"] == "AKIAS3PNRFRWDYIWC5WA"),
        "{in_two:#?}"
    );
    for r in all.iter().filter(|r| r["action"] == "manual") {
        for field in [
            "source",
            "identity",
            "name",
            "cluster",
            "gitAuthor",
            "operator",
        ] {
            assert_ne!(r[field], "", "{field} empty in {r:#}");
        }
    }
    let azure = export(&["--source", "azure"]);
    assert!(
        azure.iter().any(|r| r["file"]
            == "applications/service2/state/overlays/azure.westeurope.prod2/sealed-storage.yaml"),
        "{azure:#?}"
    );
    assert!(azure.iter().all(|r| r["source"] == "azure"));
}
