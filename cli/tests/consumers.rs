//! Consumers restart through git: with `consumers: {restart: true}`, the stage commit
//! annotates the pod templates of the workloads that read a rotated Secret in the
//! cluster's own files, and says which ones it leaves (Reloader, a shared base, Helm).

use crate::common::engine::{DEV1, DNS, Env, T0, errors, t};
use crate::common::git;
use secret_manager::engine::Action;

const OVERLAY: &str = "applications/root/external-dns/state/overlays/aws.eu-central-1.dev1";
const BASE: &str = "applications/root/external-dns/state/base";

const DEPLOYMENT: &str = "# the DNS controller (comments and order stay)\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: external-dns\nspec:\n  selector:\n    matchLabels: {app: external-dns}\n  template:\n    metadata:\n      labels:\n        app: external-dns\n    spec:\n      containers:\n        - name: external-dns\n          image: registry.k8s.io/external-dns/external-dns:v0.15.0\n          envFrom:\n            - secretRef:\n                name: cloudprovider-dns-access\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: unrelated\nspec:\n  template:\n    metadata:\n      labels: {app: unrelated}\n    spec:\n      containers:\n        - name: x\n          image: x\n          envFrom:\n            - secretRef:\n                name: another-secret\n";

const CRONJOB: &str = "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: dns-audit\nspec:\n  schedule: \"0 * * * *\"\n  jobTemplate:\n    spec:\n      template:\n        metadata:\n          labels:\n            app: dns-audit\n        spec:\n          restartPolicy: Never\n          containers:\n            - name: audit\n              image: busybox\n              env:\n                - name: AWS_ACCESS_KEY_ID\n                  valueFrom:\n                    secretKeyRef:\n                      name: cloudprovider-dns-access\n                      key: accessKeyId\n";

const RELOADED: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: reloaded\n  annotations:\n    reloader.stakater.com/auto: \"true\"\nspec:\n  template:\n    metadata:\n      labels: {app: reloaded}\n    spec:\n      volumes:\n        - name: creds\n          secret:\n            secretName: cloudprovider-dns-access\n      containers:\n        - name: x\n          image: x\n";

const SHARED: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: shared\nspec:\n  template:\n    metadata:\n      labels: {app: shared}\n    spec:\n      volumes:\n        - name: creds\n          projected:\n            sources:\n              - secret:\n                  name: cloudprovider-dns-access\n      containers:\n        - name: x\n          image: x\n";

/// The dev1 overlay with its workloads, a shared base, and resources that must not be
/// followed (a URL, a path out of the repo, a symlink out of it).
fn layout(env: &Env, restart: bool) {
    layout_with(env, restart, true)
}

/// [`layout`], with or without the hostile resources (`kubectl kustomize` refuses those).
fn layout_with(env: &Env, restart: bool, hostile: bool) {
    let work = env.f.path("work");
    let w = |rel: &str, text: &str| {
        let p = work.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(&format!("{OVERLAY}/deployment.yaml"), DEPLOYMENT);
    w(&format!("{OVERLAY}/cronjob.yaml"), CRONJOB);
    w(&format!("{OVERLAY}/reloaded.yaml"), RELOADED);
    w(&format!("{BASE}/shared.yaml"), SHARED);
    w(
        &format!("{BASE}/kustomization.yaml"),
        "resources:\n  - shared.yaml\n",
    );
    // Outside the repo: a build whose Deployment reads the Secret too. Neither the symlink
    // to it nor a path climbing out of the repo is followed.
    let outsider = env.f.path("outsider");
    let hostile_resources = if hostile {
        "  - ../../../../../../../outsider\n  - outside\n  - outside.yaml\n  - outside/d.yaml\n  - https://github.com/evil/base?ref=main\n"
    } else {
        ""
    };
    std::fs::create_dir_all(&outsider).unwrap();
    std::fs::write(
        outsider.join("kustomization.yaml"),
        "resources:\n  - d.yaml\n",
    )
    .unwrap();
    std::fs::write(
        outsider.join("d.yaml"),
        SHARED.replace("name: shared", "name: outsider"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&outsider, work.join(format!("{OVERLAY}/outside"))).unwrap();
    std::os::unix::fs::symlink(&outsider, work.join(format!("{OVERLAY}/outside.yaml"))).unwrap();
    w(
        &format!("{OVERLAY}/kustomization.yaml"),
        &format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: external-dns\nresources:\n  - sealedSeacret-cloud-dns.yaml\n  - deployment.yaml\n  - cronjob.yaml\n  - reloaded.yaml\n  - ../../base\n{hostile_resources}"
        ),
    );
    if restart {
        let cfg = work.join(".secret-manager.yaml");
        let mut c = std::fs::read_to_string(&cfg).unwrap();
        c.push_str("consumers:\n  restart: true\n");
        std::fs::write(cfg, c).unwrap();
    }
    env.f
        .commit_and_publish("external-dns and its consumers", &[DEV1]);
}

/// A file on main (`show` drops the final newline; every file here has one).
fn main_file(env: &Env, rel: &str) -> String {
    format!("{}\n", env.f.show("dev", "main", rel))
}

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
    let plan = &r
        .steps
        .iter()
        .find(|s| s.action == Action::Stage)
        .unwrap()
        .detail;
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

/// Off unless the repo asks for it; and a secret can opt out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_are_left_alone_unless_asked_and_a_secret_can_opt_out() {
    for opt_out in [false, true] {
        let env = Env::new();
        layout(&env, opt_out);
        if opt_out {
            let work = env.f.path("work");
            let p = work.join(DNS);
            let text = std::fs::read_to_string(&p).unwrap();
            std::fs::write(
                &p,
                text.replace(
                    "        secret-manager/source: \"aws\"\n",
                    "        secret-manager/source: \"aws\"\n        secret-manager/restartConsumers: \"false\"\n",
                ),
            )
            .unwrap();
            env.f.commit_and_publish("opt out", &[DEV1]);
        }
        let r = env.run(&env.opts(t(T0))).await;
        assert!(r.failures.is_empty(), "{}", errors(&r));
        let plan = &r
            .steps
            .iter()
            .find(|s| s.action == Action::Stage)
            .unwrap()
            .detail;
        assert!(!plan.contains("restart"), "{plan}");
        assert_eq!(
            main_file(&env, &format!("{OVERLAY}/deployment.yaml")),
            DEPLOYMENT
        );
        assert_eq!(main_file(&env, &format!("{OVERLAY}/cronjob.yaml")), CRONJOB);
    }
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

/// What Argo CD would apply: the real `kubectl kustomize` builds the cluster's overlay
/// after each of two rotations, and every workload that reads the Secret — in the
/// overlay's files and in the shared base — has the new key's hash in its pod template
/// (the tool's patch is updated, not listed twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "environment: needs kubectl (scripts/test runs it)"]
async fn the_overlay_still_builds_and_restarts_every_consumer() {
    secret_manager_testkit::tier::environment("kubectl");
    let env = Env::new();
    layout_with(&env, true, false);
    for now in [T0, "2027-06-01T00:00:00Z"] {
        let mut o = env.opts(t(now));
        o.filter.older_than = Some(chrono::Duration::zero());
        let r = env.run(&o).await;
        assert!(r.failures.is_empty(), "{}", errors(&r));
        assert_eq!(
            r.steps
                .iter()
                .filter(|s| s.action == Action::Stage && s.done)
                .count(),
            1,
            "{now}"
        );
        let hash = secret_manager::consumers::rotated_value(&env.main_key(DNS));
        let work = env.f.path("work");
        git(&work, &["pull", "--quiet", "--ff-only", "origin", "main"]);
        let out = std::process::Command::new("kubectl")
            .args(["kustomize", work.join(OVERLAY).to_str().unwrap()])
            .output()
            .unwrap();
        let built = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&built).unwrap();
        for (kind, name, template) in [
            ("Deployment", "external-dns", "/spec/template"),
            ("CronJob", "dns-audit", "/spec/jobTemplate/spec/template"),
            ("Deployment", "shared", "/spec/template"),
        ] {
            let d = docs
                .iter()
                .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("{kind}/{name} in\n{built}"));
            assert_eq!(
                d.pointer(&format!(
                    "{template}/metadata/annotations/secret-manager~1rotated"
                )),
                Some(&serde_json::Value::String(hash.clone())),
                "{kind}/{name}: {d}"
            );
            assert_eq!(d["metadata"]["namespace"], "external-dns");
        }
        let k = main_file(&env, &format!("{OVERLAY}/kustomization.yaml"));
        assert_eq!(
            k.matches("secret-manager-restart-deployment-shared.yaml")
                .count(),
            1,
            "{k}"
        );
    }
}

/// Hostile workloads in the build: one whose name would walk out of the overlay as a
/// patch file name, one whose name carries terminal escapes. No file is written outside
/// the overlay, the plan shows every name escaped, and the rotation still lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_workloads_write_nothing_outside_the_overlay() {
    let env = Env::new();
    let work = env.f.path("work");
    let hostile = SHARED.replace("name: shared", "name: \"../../../../../../../escaped\"");
    let escapes = DEPLOYMENT.replace(
        "name: external-dns\nspec",
        "name: \"dns\\e[2J\\e]52;c;eA==\\a\"\nspec",
    );
    std::fs::write(work.join(format!("{BASE}/hostile.yaml")), &hostile).unwrap();
    std::fs::write(work.join(format!("{OVERLAY}/escapes.yaml")), &escapes).unwrap();
    layout(&env, true);
    let base_k = work.join(format!("{BASE}/kustomization.yaml"));
    std::fs::write(&base_k, "resources:\n  - shared.yaml\n  - hostile.yaml\n").unwrap();
    let k = work.join(format!("{OVERLAY}/kustomization.yaml"));
    let text = std::fs::read_to_string(&k).unwrap();
    std::fs::write(
        &k,
        text.replace(
            "  - reloaded.yaml\n",
            "  - reloaded.yaml\n  - escapes.yaml\n",
        ),
    )
    .unwrap();
    env.f.commit_and_publish("hostile workloads", &[DEV1]);
    let mut o = env.opts(t(T0));
    o.dry_run = true;
    let r = env.run(&o).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    let plan = &r
        .steps
        .iter()
        .find(|s| s.action == Action::Stage)
        .unwrap()
        .detail;
    assert!(
        !plan.contains('\u{1b}') && !plan.contains('\u{7}'),
        "{plan:?}"
    );
    assert!(plan.contains("Deployment/dns\\u{1b}[2J"), "escaped: {plan}");
    // The name that would leave the overlay is not patched: said, not written.
    assert!(
        plan.contains(
            "consumers not restarted by the tool: Deployment/../../../../../../../escaped"
        ),
        "{plan}"
    );
    let r = env.run(&env.opts(t(T0))).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    let stage = git(
        &env.f.path("dev.git"),
        &["log", "--format=%H", "--grep=stage rotation", "-1", "main"],
    );
    let files = git(
        &env.f.path("dev.git"),
        &["show", "--name-only", "--format=", &stage],
    );
    assert!(
        files
            .lines()
            .all(|f| f.starts_with(OVERLAY) || f.starts_with(".secret-manager/")),
        "only the overlay and the record change: {files}"
    );
    assert!(!files.contains("escaped"), "{files}");
    assert!(!env.f.path("escaped.yaml").exists());
}
