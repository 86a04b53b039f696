//! Consumers restart through git, as the binary shows it: the stage commit annotates the
//! pod templates of the workloads that read a rotated Secret in the cluster's own files,
//! and `list` says which ones it leaves (Reloader, a shared base, Helm); the consumers
//! gate with a kubectl that answers as a cluster would. The in-process cases are the
//! library's (`tests/consumers.rs` at the root).

use crate::common::consumers::*;
use crate::common::engine::{DEV1, DNS, Env, T0, errors, stage_detail, t};
use crate::common::git;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stage_commit_restarts_the_clusters_consumers_and_says_which_it_leaves() {
    let env = Env::new();
    layout(&env, true);
    // `list` names each consumer and what a rotation does about it.
    let work = env.f.path("work");
    let out = crate::common::run_cmd(crate::common::cmd().args([
        "--repo",
        work.to_str().unwrap(),
        "-o",
        "json",
        "list",
        "--cluster",
        DEV1,
        "-n",
        "external-dns",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    let consumers = rows[0]["consumers"].as_array().unwrap();
    for (want, what) in [
        ("Deployment/external-dns", "restarted"),
        ("CronJob/dns-audit", "restarted"),
        ("Deployment/reloaded", "restarted by Reloader"),
        ("Deployment/shared", "restarted"),
    ] {
        assert!(
            consumers.iter().any(|c| {
                let c = c.as_str().unwrap();
                c.starts_with(want) && c.ends_with(&format!(": {what}"))
            }),
            "{want}: {consumers:?}"
        );
    }
    let wide = crate::common::run_cmd(crate::common::cmd().args([
        "--repo",
        work.to_str().unwrap(),
        "-o",
        "wide",
        "list",
        "--cluster",
        DEV1,
        "-n",
        "external-dns",
    ]));
    assert!(wide.stdout.contains("4 restarted"), "{}", wide.stdout);
    // The plan names each consumer and changes nothing.
    let before = env.all_refs();
    let mut o = env.opts(t(T0));
    o.dry_run = true;
    o.require_consumers_restarted = true;
    o.require_old_key_unused = true;
    let r = env.run(&o).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    let plan = stage_detail(&r);
    // ... and the gates it will wait for, in the order they are asked.
    assert!(
        plan.contains(
            "then revoke the old key after 0s and once every pod reading the Secret runs the new value, the source sees no use of the old key since publish"
        ),
        "{plan}"
    );
    assert!(
        plan.contains(&format!(
            "restarts: Deployment/external-dns ({OVERLAY}/deployment.yaml), CronJob/dns-audit ({OVERLAY}/cronjob.yaml)"
        )),
        "{plan}"
    );
    assert!(
        plan.contains(&format!(
            "restarted by Reloader: Deployment/reloaded ({OVERLAY}/reloaded.yaml)"
        )),
        "{plan}"
    );
    // The shared base is not edited: a patch in the cluster's overlay restarts it.
    assert!(
        plan.contains(&format!(
            ", Deployment/shared ({BASE}/shared.yaml) through {OVERLAY}/secret-manager-restart-deployment-shared.yaml"
        )),
        "{plan}"
    );
    assert!(!plan.contains("not restarted by the tool"), "{plan}");
    assert!(!plan.contains("unrelated"), "{plan}");
    assert!(
        !plan.contains("outsider"),
        "nothing outside the repo is read: {plan}"
    );
    assert_eq!(env.all_refs(), before, "a dry run changes nothing");

    let r = env.run(&env.opts(t(T0))).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    let new_key = env.main_key(DNS);
    let hash = secret_manager::consumers::rotated_value(&new_key);
    // The Deployment: one line added to its pod template, nothing else changed.
    let deployment = main_file(&env, &format!("{OVERLAY}/deployment.yaml"));
    let line = format!("        secret-manager/rotated: \"{hash}\"\n");
    assert_eq!(
        deployment,
        DEPLOYMENT.replacen(
            "      labels:\n        app: external-dns\n",
            &format!("      labels:\n        app: external-dns\n      annotations:\n{line}"),
            1
        ),
        "only the pod template's annotation is new"
    );
    // The CronJob: under jobTemplate.
    let cronjob = main_file(&env, &format!("{OVERLAY}/cronjob.yaml"));
    assert!(
        cronjob.contains(&format!(
            "          labels:\n            app: dns-audit\n          annotations:\n            secret-manager/rotated: \"{hash}\"\n"
        )),
        "{cronjob}"
    );
    // Reloader's, the shared base's: untouched.
    assert_eq!(
        main_file(&env, &format!("{OVERLAY}/reloaded.yaml")),
        RELOADED
    );
    assert_eq!(main_file(&env, &format!("{BASE}/shared.yaml")), SHARED);
    // The shared base's Deployment: a patch of the tool's own in the overlay, listed in
    // its kustomization after everything that was there.
    let patch = main_file(
        &env,
        &format!("{OVERLAY}/secret-manager-restart-deployment-shared.yaml"),
    );
    assert!(
        patch.ends_with(&format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: shared\nspec:\n  template:\n    metadata:\n      annotations:\n        secret-manager/rotated: \"{hash}\"\n"
        )),
        "{patch}"
    );
    let k = main_file(&env, &format!("{OVERLAY}/kustomization.yaml"));
    assert!(
        k.ends_with("https://github.com/evil/base?ref=main\npatches:\n  - path: secret-manager-restart-deployment-shared.yaml\n"),
        "{k}"
    );
    // The cluster's pointer has them with the new key (one stage commit).
    let pointer = env.f.show(
        "dev",
        &format!("refs/heads/cluster/{DEV1}"),
        &format!("{OVERLAY}/deployment.yaml"),
    );
    assert!(pointer.contains(&hash), "{pointer}");
    let stage = git(
        &env.f.path("dev.git"),
        &[
            "log",
            "--format=%H %s",
            "--grep=stage rotation",
            "-1",
            "main",
        ],
    );
    let sha = stage.split(' ').next().unwrap();
    let files = git(
        &env.f.path("dev.git"),
        &["show", "--name-only", "--format=", sha],
    );
    assert!(
        files.contains("deployment.yaml") && files.contains("cronjob.yaml"),
        "{files}"
    );
    assert!(
        !files.contains("reloaded.yaml") && !files.contains("base/shared.yaml"),
        "{files}"
    );
}

/// `--require-consumers-restarted`, end to end with the `random` source on dev2 and a
/// kubectl that answers `get pods` as a cluster would: a pod that read the old value at
/// start holds the old key; once the restarted pod is Ready, the old value goes.
#[test]
fn the_consumers_gate_revokes_only_when_every_pod_has_the_new_value() {
    gate_scenario(false);
}

/// The restarted pod crash-loops with the new value: an error (14), and the rotation
/// rolls back by itself while the old value works — main and the pointer get it back,
/// the Deployment restarts with the old key's hash — and once the pods run the old value
/// again, the new key goes.
#[test]
fn a_crash_loop_with_the_new_value_rolls_the_rotation_back() {
    gate_scenario(true);
}

fn gate_scenario(crash: bool) {
    use crate::common::GitFleet;
    use std::os::unix::fs::PermissionsExt;
    const DEV2: &str = "gcp.europe-west1.dev2";
    const DIR: &str = "applications/service2/state/overlays/gcp.europe-west1.dev2";
    let f = GitFleet::new();
    let work = f.path("work");
    std::fs::write(
        work.join(format!("{DIR}/webhook.yaml")),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: webhook\n  namespace: service2\nspec:\n  template:\n    metadata:\n      labels:\n        app: webhook\n    spec:\n      containers:\n        - name: webhook\n          image: webhook:1\n          env:\n            - name: WEBHOOK_HMAC_KEY\n              valueFrom:\n                secretKeyRef:\n                  name: webhook-secret\n                  key: WEBHOOK_HMAC_KEY\n",
    )
    .unwrap();
    let k = work.join(format!("{DIR}/kustomization.yaml"));
    let text = std::fs::read_to_string(&k).unwrap();
    std::fs::write(&k, format!("{text}  - webhook.yaml\n")).unwrap();
    let cfg = work.join(".secret-manager.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}consumers:\n  restart: true\n")).unwrap();
    f.commit_and_publish("the webhook reads its key at start", &[DEV2]);

    let bin = tempfile::tempdir().unwrap();
    let pods = bin.path().join("pods.json");
    let kubectl = bin.path().join("kubectl");
    std::fs::write(
        &kubectl,
        format!(
            "#!/bin/sh\n[ \"$*\" = \"--context=dev2 --namespace=service2 get -o json -- pods\" ] || {{ echo \"unexpected: $*\" >&2; exit 1; }}\ncat {}\n",
            pods.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    let pod = |name: &str, rotated: Option<&str>, started: &str, waiting: Option<&str>| {
        let state = match waiting {
            Some(r) => serde_json::json!({"waiting": {"reason": r}}),
            None => serde_json::json!({"running": {"startedAt": started}}),
        };
        serde_json::json!({
            "metadata": {"name": name, "namespace": "service2",
                "annotations": rotated.map(|h| serde_json::json!({"secret-manager/rotated": h})).unwrap_or(serde_json::json!({}))},
            "spec": {"containers": [{"name": "webhook", "env": [{"name": "WEBHOOK_HMAC_KEY",
                "valueFrom": {"secretKeyRef": {"name": "webhook-secret", "key": "WEBHOOK_HMAC_KEY"}}}]}]},
            "status": {"phase": "Running", "startTime": started,
                "conditions": [{"type": "Ready", "status": if waiting.is_some() {"False"} else {"True"}}],
                "containerStatuses": [{"name": "webhook", "state": state}]}
        })
    };
    let serve = |items: Vec<serde_json::Value>| {
        std::fs::write(
            &pods,
            serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string(),
        )
        .unwrap();
    };
    let run = |now: &str| {
        f.bot(now).env("PATH", &path).rotate_now(&[
            "--source",
            "random",
            "--cluster",
            DEV2,
            "--older-than",
            "0s",
            "--require-consumers-restarted",
        ])
    };
    let old_webhook = f.show("dev", "main", &format!("{DIR}/sealed-webhook.yaml"));
    // The pod from before the rotation: it read the old value at start.
    serve(vec![pod(
        "webhook-7d9f-old",
        None,
        "2027-05-01T00:00:00Z",
        None,
    )]);
    let r = run("2027-06-01T00:00:00Z");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("1 staged, 0 deleted, 1 published, 0 revoked"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout
            .contains("pod webhook-7d9f-old still runs with the old value"),
        "{}",
        r.stdout
    );
    // The stage restarted the Deployment through git.
    let deployment = f.show("dev", "main", &format!("{DIR}/webhook.yaml"));
    let hash = deployment
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret-manager/rotated: "))
        .unwrap_or_else(|| panic!("{deployment}"))
        .trim_matches('"')
        .to_owned();
    if crash {
        let old_key = old_webhook
            .lines()
            .find_map(|l| l.trim().strip_prefix("secret-manager/keyId: "))
            .unwrap()
            .trim_matches('"')
            .to_owned();
        serve(vec![pod(
            "webhook-8a1c-new",
            Some(&hash),
            "2027-06-01T00:03:00Z",
            Some("CrashLoopBackOff"),
        )]);
        let r = run("2027-06-01T00:10:00Z");
        assert_eq!(r.code, 14, "{}\n{}", r.stdout, r.stderr);
        assert!(r.stderr.contains("CrashLoopBackOff"), "{}", r.stderr);
        assert!(
            r.stderr
                .contains("0 revoked, 0 orphan(s) cleaned, 0 undone, 0 proposed, 1 rolled back"),
            "{}",
            r.stderr
        );
        // Main and the pointer hold the old value again; the Deployment restarts with it.
        assert_eq!(
            f.show("dev", "main", &format!("{DIR}/sealed-webhook.yaml")),
            old_webhook
        );
        let repo = secret_manager::Repo::open(&f.path("work")).unwrap();
        let refname = secret_manager::gitops::pointer_ref(repo.inventory.get(DEV2).unwrap());
        assert_eq!(
            f.show("dev", &refname, &format!("{DIR}/sealed-webhook.yaml")),
            old_webhook,
            "published in the same run"
        );
        let back = secret_manager::consumers::rotated_value(&old_key);
        let deployment = f.show("dev", "main", &format!("{DIR}/webhook.yaml"));
        assert!(deployment.contains(&back), "{deployment}");
        // The new pods with the old value come up: the new key goes.
        serve(vec![pod(
            "webhook-9b2d-back",
            Some(&back),
            "2027-06-01T00:12:00Z",
            None,
        )]);
        let r = run("2027-06-01T00:20:00Z");
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr
                .contains("0 staged, 0 deleted, 0 published, 1 revoked"),
            "{}",
            r.stderr
        );
        assert_eq!(
            f.show("dev", "main", &format!("{DIR}/sealed-webhook.yaml")),
            old_webhook,
            "the old value stays"
        );
        return;
    }
    // It comes up: the old value goes.
    serve(vec![pod(
        "webhook-8a1c-new",
        Some(&hash),
        "2027-06-01T00:03:00Z",
        None,
    )]);
    let r = run("2027-06-01T00:20:00Z");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("0 staged, 0 deleted, 0 published, 1 revoked"),
        "{}",
        r.stderr
    );
}
