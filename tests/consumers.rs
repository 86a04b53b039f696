//! Consumers restart through git, in-process: with `consumers: {restart: true}` the stage
//! commit annotates the pod templates of the workloads that read a rotated Secret in the
//! cluster's own files; off unless asked; hostile workloads write nothing outside the
//! overlay; and (environment: kubectl) the overlay still builds. What the binary shows
//! and the consumers gate are `cli/tests/consumers.rs`.

use crate::support::consumers::{
    BASE, CRONJOB, DEPLOYMENT, OVERLAY, SHARED, layout, layout_with, main_file,
};
use crate::support::engine::{DEV1, DNS, Env, T0, errors, stage_detail, t};
use crate::support::git;
use secret_manager::engine::Action;

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
        let plan = stage_detail(&r);
        assert!(!plan.contains("restart"), "{plan}");
        assert_eq!(
            main_file(&env, &format!("{OVERLAY}/deployment.yaml")),
            DEPLOYMENT
        );
        assert_eq!(main_file(&env, &format!("{OVERLAY}/cronjob.yaml")), CRONJOB);
    }
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
    let plan = stage_detail(&r);
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
