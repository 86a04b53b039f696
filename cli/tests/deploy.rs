//! deploy/: kustomize overlays render and validate; the binary runs the CronJob's way.

use crate::common::{Moto, cmd, git, run_cmd};
use crate::rotate::{DEV1, USER, setup};
use secret_manager::manifest::yaml::{Node, parse_documents};
use std::path::Path;
use std::process::Command;

fn kubectl_kustomize(overlay: &str) -> String {
    let out = Command::new("kubectl")
        .args([
            "kustomize",
            &format!(
                "{}/deploy/overlays/{overlay}",
                crate::common::root().display()
            ),
        ])
        .output()
        .expect("kubectl is needed for the deploy tests (kustomize is built in)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn validate(file: &Path) -> std::process::Output {
    let bin = std::env::var("KUBERNETES_VALIDATE").unwrap_or_else(|_| {
        crate::common::root()
            .join("target/venv/bin/kubernetes-validate")
            .display()
            .to_string()
    });
    assert!(
        Path::new(&bin).exists(),
        "kubernetes-validate not found at {bin}: run scripts/test"
    );
    Command::new(bin)
        .arg("--strict")
        .arg(file)
        .output()
        .unwrap()
}

fn s<'a>(n: &'a Node<'a>, path: &[&str]) -> &'a str {
    n.path(path)
        .and_then(Node::as_str)
        .unwrap_or_else(|| panic!("missing {path:?}"))
}

#[test]
fn overlays_render_validate_and_are_locked_down() {
    for (overlay, annotation) in [
        ("aws", "eks.amazonaws.com/role-arn"),
        ("azure", "azure.workload.identity/client-id"),
        ("gcp", "iam.gke.io/gcp-service-account"),
    ] {
        let rendered = kubectl_kustomize(overlay);
        let docs = parse_documents(&rendered).unwrap();
        let kind = |k: &str| {
            docs.iter()
                .filter_map(|d| d.root.as_ref())
                .find(|r| r.get_str("kind") == Some(k))
                .unwrap_or_else(|| panic!("{overlay}: no {k}"))
        };
        let sa = kind("ServiceAccount");
        assert!(
            sa.path(&["metadata", "annotations", annotation]).is_some(),
            "{overlay}: SA lacks {annotation}"
        );
        let cj = kind("CronJob");
        assert_eq!(s(cj, &["spec", "concurrencyPolicy"]), "Forbid");
        assert!(cj.path(&["spec", "startingDeadlineSeconds"]).is_some());
        assert_eq!(s(cj, &["spec", "jobTemplate", "spec", "backoffLimit"]), "0");
        let pod = cj
            .path(&["spec", "jobTemplate", "spec", "template", "spec"])
            .unwrap();
        assert_eq!(s(pod, &["securityContext", "runAsNonRoot"]), "true");
        let Some(secret_manager::manifest::yaml::NodeKind::Sequence { items, .. }) =
            pod.get("containers").map(|c| &c.kind)
        else {
            panic!()
        };
        let c = &items[0];
        assert_eq!(s(c, &["securityContext", "readOnlyRootFilesystem"]), "true");
        assert_eq!(
            s(c, &["securityContext", "allowPrivilegeEscalation"]),
            "false"
        );
        assert!(
            rendered.contains("drop:\n                - ALL") || rendered.contains("- ALL"),
            "{overlay}: capabilities not dropped"
        );
        assert!(
            rendered.contains("emptyDir"),
            "{overlay}: the clone needs an emptyDir"
        );
        for arg in ["--yes", "--non-interactive", "--log-format=json", "rotate"] {
            assert!(
                rendered.contains(&format!("- {arg}")),
                "{overlay}: missing arg {arg}"
            );
        }
        if overlay == "azure" {
            assert!(
                rendered.contains("azure.workload.identity/use: \"true\""),
                "{rendered}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, &rendered).unwrap();
        let out = validate(&file);
        assert!(
            out.status.success(),
            "{overlay}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Negative control: the validator does reject a broken CronJob.
        std::fs::write(
            &file,
            rendered.replace("concurrencyPolicy: Forbid", "concurrencyPolicy: 7"),
        )
        .unwrap();
        assert!(
            !validate(&file).status.success(),
            "{overlay}: validator accepted a broken manifest"
        );
    }
}

/// Runs like the CronJob: no TTY, --clone from the bare remote, JSON logs.
fn cron_run(
    f: &crate::common::GitFleet,
    moto: &Moto,
    now: &str,
    extra_env: &[(&str, &str)],
) -> crate::common::Run {
    let dest = tempfile::tempdir().unwrap();
    let mut c = cmd();
    moto.env(&mut c)
        .env("SECRET_MANAGER_NOW", now)
        .env("GIT_AUTHOR_NAME", "secret-manager")
        .env("GIT_AUTHOR_EMAIL", "sm@example.com")
        .env("GIT_COMMITTER_NAME", "secret-manager")
        .env("GIT_COMMITTER_EMAIL", "sm@example.com")
        .stdin(std::process::Stdio::null());
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.args([
        &format!("--clone={}", f.path("dev.git").display()),
        &format!("--clone-remote=prod={}", f.path("prod.git").display()),
        &format!("--repo={}", dest.path().join("repo").display()),
        "--yes",
        "--non-interactive",
        "--log-format=json",
        "rotate",
        "--older-than=90d",
        "--source=aws",
        "--name=route53",
        "--revoke-after=0s",
    ]);
    run_cmd(&mut c)
}

fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn cronjob_style_runs_log_json_and_exit_right() {
    let (f, moto, old) = setup();
    // Nothing due yet (the key is brand new): exit 0, no ref moves.
    let refs = git(&f.path("dev.git"), &["for-each-ref"]);
    let r = cron_run(&f, &moto, "2026-11-21T12:00:00Z", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    json_lines(&r.stderr);
    assert_eq!(git(&f.path("dev.git"), &["for-each-ref"]), refs);
    // A failing provider: exit 10, nothing changed.
    let r = cron_run(
        &f,
        &moto,
        "2027-06-01T00:00:00Z",
        &[("AWS_ENDPOINT_URL_IAM", "http://127.0.0.1:9")],
    );
    assert_eq!(r.code, 10, "{}", r.stderr);
    let logs = json_lines(&r.stderr);
    assert!(
        logs.iter()
            .any(|l| l["level"] == "ERROR" && l["phase"] == "Preflight"),
        "{logs:#?}"
    );
    assert_eq!(moto.key_ids(USER), vec![old.clone()]);
    // Due: a full rotation, one JSON event per phase, no secret in the logs.
    let r = cron_run(&f, &moto, "2027-06-01T00:00:00Z", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let logs = json_lines(&r.stderr);
    for action in ["stage", "publish", "revoke"] {
        assert!(
            logs.iter()
                .any(|l| l["action"] == action && l["done"] == true),
            "no {action} event: {logs:#?}"
        );
    }
    assert!(
        logs.iter().any(|l| l["message"] == "rotate run finished"),
        "summary event"
    );
    let keys = moto.key_ids(USER);
    assert_eq!(keys.len(), 1);
    assert_ne!(keys[0], old);
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("m.yaml");
    std::fs::write(&p, f.show("dev", "main", crate::rotate::REL)).unwrap();
    let secret =
        crate::common::decrypt_value(&p, 0, DEV1, crate::rotate::LABEL, "secretAccessKey").unwrap();
    assert!(
        !r.stderr.contains(std::str::from_utf8(&secret).unwrap()),
        "secret in logs"
    );
    // Credentials in the clone URL are refused before anything runs.
    let r = run_cmd(cmd().args(["--clone=https://user:token@git.example.com/x.git", "list"]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("must not contain credentials") && !r.stderr.contains("token@"),
        "{}",
        r.stderr
    );
}
