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
        // The one just created and the example fleet's own (service2/webhook on dev2).
        r.stderr
            .contains("2 staged, 0 deleted, 2 published, 2 revoked"),
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
    let webhook = "applications/service2/state/overlays/gcp.europe-west1.dev2/sealed-webhook.yaml";
    assert_ne!(
        f.show("dev", "main", webhook),
        std::fs::read_to_string(crate::common::testdata(&format!("example-repo/{webhook}")))
            .unwrap()
            .trim_end(),
        "the example fleet's generated secret was rotated too"
    );
    assert_eq!(
        f.show("dev", "refs/tags/tag/dev2", webhook),
        f.show("dev", "main", webhook),
        "and published to its cluster"
    );
    // No value reached the output.
    for v in [&before, &after] {
        assert!(!r.stdout.contains(v.as_str()) && !r.stderr.contains(v.as_str()));
    }
}

/// Adds `keys` (secret key → template name) to the session secret at `REL` and the
/// `templates:` to the repo's configuration, committed and published.
fn template_the_session_secret(
    f: &GitFleet,
    secret_type: Option<&str>,
    keys: &[(&str, &str)],
    templates: &str,
) {
    let work = f.path("work");
    let path = work.join(REL);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        if let Some(t) = secret_type
            && line.trim_start().starts_with("type: ")
            && indent.len() == 4
        {
            // spec.template.type
            out.push_str(&format!("{indent}type: {t}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line.trim_start().starts_with("secret-manager/keyMappings:") {
            for (k, t) in keys {
                out.push_str(&format!("{indent}secret-manager/template.{k}: {t}\n"));
            }
        }
        if let Some(ct) = line.trim_start().strip_prefix("SESSION_SECRET: ") {
            for (k, _) in keys {
                out.push_str(&format!("{indent}{k}: {ct}\n"));
            }
        }
    }
    std::fs::write(&path, out).unwrap();
    let config = work.join(".secret-manager.yaml");
    let mut c = std::fs::read_to_string(&config).unwrap();
    c.push_str(templates);
    std::fs::write(&config, c).unwrap();
    f.commit_and_publish("Template the session secret", &[DEV1]);
}

fn create_session_secret(f: &GitFleet) {
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
        "-w",
        work.join(REL).to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    f.commit_and_publish("Add a session secret", &[DEV1]);
}

fn rotate_random(f: &GitFleet) -> crate::common::Run {
    let mut c = cmd();
    c.env("SECRET_MANAGER_NOW", "2027-06-01T00:00:00Z")
        .env("GIT_AUTHOR_NAME", "Rotator")
        .env("GIT_AUTHOR_EMAIL", "rotator@example.com")
        .args([
            "--repo",
            f.path("work").to_str().unwrap(),
            "--yes",
            "rotate",
            "--source",
            "random",
            "--cluster",
            DEV1,
            "--older-than",
            "0s",
            "--revoke-after",
            "0s",
        ]);
    run_cmd(&mut c)
}

fn decrypted(f: &GitFleet, key: &str) -> String {
    let text = f.show("dev", "main", REL);
    let file = f.path("templated-check.yaml");
    std::fs::write(&file, &text).unwrap();
    String::from_utf8(decrypt_value(&file, 0, DEV1, "service1/session-secret", key).unwrap())
        .unwrap()
}

#[test]
fn templated_keys_are_rendered_from_the_new_value_and_linted() {
    let f = GitFleet::new();
    create_session_secret(&f);
    template_the_session_secret(
        &f,
        None,
        &[("DATABASE_URL", "pg-url"), ("config.json", "app-json")],
        "templates:\n  pg-url: \"postgres://app:{{ Value|urlencode }}@db.service1:5432/app\"\n  app-json: |\n    {\"session\": {{ Value|tojson }}, \"b64\": {{ Value|b64encode|tojson }}}\n",
    );
    let work = f.path("work");
    let lint = run_cmd(
        cmd()
            .env("SECRET_MANAGER_NOW", "2027-06-01T00:00:00Z")
            .args(["--repo", work.to_str().unwrap(), "lint"]),
    );
    assert_eq!(lint.code, 0, "{}\n{}", lint.stdout, lint.stderr);
    // list shows which keys are templated: -o wide and -o json.
    let wide = run_cmd(cmd().args(["--repo", work.to_str().unwrap(), "-o", "wide", "list"]));
    assert_eq!(wide.code, 0, "{}", wide.stderr);
    assert!(
        wide.stdout.lines().next().unwrap().contains("TEMPLATES"),
        "{}",
        wide.stdout
    );
    let row = wide
        .stdout
        .lines()
        .find(|l| l.contains("DATABASE_URL=pg-url"))
        .unwrap_or_else(|| panic!("{}", wide.stdout));
    assert!(row.contains("config.json=app-json"), "{row}");
    let json = run_cmd(cmd().args(["--repo", work.to_str().unwrap(), "-o", "json", "list"]));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json.stdout).unwrap();
    let templated: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r.get("templated").is_some())
        .collect();
    assert_eq!(templated.len(), 1, "{}", json.stdout);
    assert_eq!(
        templated[0]["templated"],
        serde_json::json!(["DATABASE_URL=pg-url", "config.json=app-json"])
    );

    let r = rotate_random(&f);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let value = decrypted(&f, "SESSION_SECRET");
    assert_eq!(
        decrypted(&f, "DATABASE_URL"),
        format!("postgres://app:{value}@db.service1:5432/app"),
        "alphanumeric values need no escaping"
    );
    let json: serde_json::Value = serde_json::from_str(&decrypted(&f, "config.json")).unwrap();
    assert_eq!(json["session"], value.as_str());
    use base64::Engine as _;
    assert_eq!(
        json["b64"],
        base64::engine::general_purpose::STANDARD.encode(&value)
    );
    assert!(!r.stdout.contains(&value) && !r.stderr.contains(&value));
    // The template annotations are not part of the identity: the record names it by id.
    let log = git(&f.path("dev.git"), &["log", "--format=%B", "-1", "main~1"]);
    assert!(!log.contains("template."), "{log}");

    // lint: a template that does not exist, and one that reads a field random lacks.
    let config = work.join(".secret-manager.yaml");
    let c = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        c.replace("{{ Value|tojson }}", "{{ ClientSecret|tojson }}"),
    )
    .unwrap();
    let text = std::fs::read_to_string(work.join(REL)).unwrap();
    std::fs::write(work.join(REL), text.replace(": pg-url", ": pg-urll")).unwrap();
    let lint = run_cmd(
        cmd()
            .env("SECRET_MANAGER_NOW", "2027-06-01T00:00:00Z")
            .args(["--repo", work.to_str().unwrap(), "lint"]),
    );
    assert_eq!(lint.code, 3, "findings: {}\n{}", lint.stdout, lint.stderr);
    assert!(
        lint.stdout.contains("unknown-template") && lint.stdout.contains("no template `pg-urll`"),
        "{}",
        lint.stdout
    );
    assert!(
        lint.stdout.contains("unknown-field")
            && lint
                .stdout
                .contains("uses `ClientSecret`, which is not an output field of random"),
        "{}",
        lint.stdout
    );
}

/// A template from the repo that reads a file, or renders a value its Secret type
/// refuses: nothing is committed, nothing is published, and no value is printed.
#[test]
fn a_hostile_or_broken_template_stages_nothing_and_quotes_no_value() {
    let f = GitFleet::new();
    create_session_secret(&f);
    let work = f.path("work");
    // A sandbox escape attempt is refused when the configuration loads.
    let config = work.join(".secret-manager.yaml");
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{original}templates:\n  evil: \"{{% include '/etc/passwd' %}}\"\n"),
    )
    .unwrap();
    let lint = run_cmd(
        cmd()
            .env("SECRET_MANAGER_NOW", "2027-06-01T00:00:00Z")
            .args(["--repo", work.to_str().unwrap(), "lint"]),
    );
    assert_ne!(lint.code, 0);
    assert!(
        lint.stderr
            .contains(".secret-manager.yaml: templates.evil:")
            && lint.stderr.contains("self-contained"),
        "{}",
        lint.stderr
    );
    assert!(!lint.stderr.contains("root:"), "{}", lint.stderr);
    std::fs::write(&config, &original).unwrap();

    // A .dockerconfigjson without `auths`: refused after minting, undone, nothing lands.
    template_the_session_secret(
        &f,
        Some("kubernetes.io/dockerconfigjson"),
        &[(".dockerconfigjson", "docker")],
        "templates:\n  docker: '{\"registry\": {{ Value|tojson }}}'\n",
    );
    let before = git(&f.path("dev.git"), &["rev-parse", "main"]);
    let before_value = decrypted(&f, "SESSION_SECRET");
    let r = rotate_random(&f);
    assert_ne!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("key .dockerconfigjson")
            && r.stderr.contains("must carry an `auths` object"),
        "{}",
        r.stderr
    );
    assert_eq!(git(&f.path("dev.git"), &["rev-parse", "main"]), before);
    assert_eq!(decrypted(&f, "SESSION_SECRET"), before_value);
    assert!(!r.stderr.contains("registry\": \""), "{}", r.stderr);
}

/// `create --template KEY=NAME --type T`: the new Secret's templated keys are rendered from
/// the minted fields, checked against the type, and carry their template annotations, so
/// `lint` passes and every rotation renders them again. A template that is missing,
/// reads a field the source does not have, or is given for a mapped key too is a usage
/// error before anything is minted; a value that does not fit the type writes nothing.
#[test]
fn create_writes_templated_keys_and_their_annotations() {
    let f = GitFleet::new();
    let work = f.path("work");
    let config = work.join(".secret-manager.yaml");
    let mut c = std::fs::read_to_string(&config).unwrap();
    c.push_str(concat!(
        "templates:\n",
        "  pull: '{\"auths\": {\"registry.example\": {\"auth\": {{ (\"robot:\" ~ Value)|b64encode|tojson }}}}}'\n",
        "  broken-json: '{\"auths\": {{ Value }}'\n",
        "  no-auths: '{\"registry\": {{ Value|tojson }}}'\n",
        "  aws-only: '{{ SecretAccessKey }}'\n",
    ));
    std::fs::write(&config, c).unwrap();
    f.commit_and_publish("Registry templates", &[DEV1]);
    let rel = "applications/service1/state/overlays/aws.eu-central-1.dev1/pull.yaml";
    let create = |extra: &[&str]| {
        let mut args = vec![
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
            "registry-pull",
            "--param",
            "id=service1/registry",
            "-w",
        ];
        let out = work.join(rel);
        let out = out.to_str().unwrap().to_owned();
        args.push(&out);
        args.extend_from_slice(extra);
        run_cmd(cmd().args(&args))
    };
    let docker = ["--type", "kubernetes.io/dockerconfigjson"];
    for (extra, code, says) in [
        (
            vec!["--template", ".dockerconfigjson=nope"],
            2,
            "no template `nope`",
        ),
        (
            vec!["--template", ".dockerconfigjson=aws-only"],
            2,
            "reads `SecretAccessKey`, which random does not provide",
        ),
        (
            vec![
                "--key-mappings",
                "[.dockerconfigjson:Value]",
                "--template",
                ".dockerconfigjson=pull",
            ],
            2,
            "in --key-mappings too",
        ),
        (vec![], 2, "give --key-mappings, --template"),
        (
            vec!["--template", ".dockerconfigjson=broken-json"],
            11,
            "must be JSON",
        ),
        (
            vec!["--template", ".dockerconfigjson=no-auths"],
            11,
            "auths",
        ),
    ] {
        let mut all = extra.clone();
        all.extend_from_slice(&docker);
        let r = create(&all);
        assert_eq!(r.code, code, "{extra:?}: {}\n{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(says), "{extra:?}: {}", r.stderr);
        assert!(!work.join(rel).exists(), "{extra:?}: nothing written");
    }
    let r = create(&[
        "--template",
        ".dockerconfigjson=pull",
        "--type",
        "kubernetes.io/dockerconfigjson",
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let text = std::fs::read_to_string(work.join(rel)).unwrap();
    assert!(
        text.contains("secret-manager/template..dockerconfigjson: pull"),
        "{text}"
    );
    assert!(
        text.contains("type: kubernetes.io/dockerconfigjson"),
        "{text}"
    );
    assert!(
        !text.contains("keyMappings"),
        "every key is templated: {text}"
    );
    let rendered = String::from_utf8(
        decrypt_value(
            &work.join(rel),
            0,
            DEV1,
            "service1/registry-pull",
            ".dockerconfigjson",
        )
        .unwrap(),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&rendered).unwrap();
    assert!(v["auths"]["registry.example"]["auth"].is_string(), "{v}");
    let lint = run_cmd(
        cmd()
            .env("SECRET_MANAGER_NOW", "2027-06-01T00:00:00Z")
            .args(["--repo", work.to_str().unwrap(), "lint"]),
    );
    assert_eq!(lint.code, 0, "{}\n{}", lint.stdout, lint.stderr);
    // The next rotation renders it again from the new value.
    f.commit_and_publish("Add the registry pull secret", &[DEV1]);
    let r = rotate_random(&f);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let text = f.show("dev", "main", rel);
    let file = f.path("pull-check.yaml");
    std::fs::write(&file, &text).unwrap();
    let again = String::from_utf8(
        decrypt_value(
            &file,
            0,
            DEV1,
            "service1/registry-pull",
            ".dockerconfigjson",
        )
        .unwrap(),
    )
    .unwrap();
    assert_ne!(again, rendered, "rendered from the new value");
    assert!(serde_json::from_str::<serde_json::Value>(&again).unwrap()["auths"].is_object());
}

/// `--require-argocd-synced`: the old value goes only once the cluster's Argo CD
/// application (argocdApp) is Synced and Healthy at a revision whose file holds the new
/// key — not while it is out of sync, not at the old revision, and not when it is
/// Degraded, which is an error (14) that keeps the old value.
#[test]
fn the_argocd_gate_waits_for_a_healthy_sync_of_the_new_key() {
    const DEV2: &str = "gcp.europe-west1.dev2";
    let f = GitFleet::new();
    without_automatic_rollback(&f);
    let bin = tempfile::tempdir().unwrap();
    let state = bin.path().join("application.json");
    let kubectl = bin.path().join("kubectl");
    std::fs::write(
        &kubectl,
        format!(
            "#!/bin/sh\n[ \"$*\" = \"--context=dev2 --namespace=argocd get -o json -- applications.argoproj.io cluster-list\" ] || {{ echo \"unexpected: $*\" >&2; exit 1; }}\ncat {}\n",
            state.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = |sync: &str, health: &str, revision: &str| {
        let json = serde_json::json!({
            "metadata": {"name": "cluster-list", "namespace": "argocd"},
            "status": {
                "sync": {"status": sync, "revision": revision},
                "health": {"status": health, "message": "Deployment service2 exceeded its progress deadline"}
            }
        });
        std::fs::write(&state, json.to_string()).unwrap();
    };
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    let run = |now: &str| {
        f.bot(now).env("PATH", &path).rotate_now(&[
            "--source",
            "random",
            "--cluster",
            DEV2,
            "--older-than",
            "0s",
            "--require-argocd-synced",
        ])
    };
    let old_revision = crate::common::git(&f.path("dev.git"), &["rev-parse", "main"]);
    app("OutOfSync", "Healthy", &old_revision);
    let metrics = bin.path().join("rotate.prom");
    let r = f
        .bot("2027-06-01T00:00:00Z")
        .env("PATH", &path)
        .rotate_now(&[
            "--source",
            "random",
            "--cluster",
            DEV2,
            "--older-than",
            "0s",
            "--require-argocd-synced",
            "--metrics-file",
            metrics.to_str().unwrap(),
            "-o",
            "json",
        ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // What the rotation waits on, in the report and in the metrics.
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let waits: Vec<&serde_json::Value> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] == "wait")
        .collect();
    assert_eq!(waits.len(), 1, "{report:#}");
    assert_eq!(waits[0]["waitingOn"], "argocd", "{report:#}");
    assert!(
        waits[0]["detail"]
            .as_str()
            .unwrap()
            .contains("sync status OutOfSync"),
        "{report:#}"
    );
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("secret_manager_last_run_waiting{on=\"argocd\"} 1"),
        "{text}"
    );
    assert!(
        r.stderr
            .contains("1 staged, 0 deleted, 1 published, 0 revoked"),
        "{}",
        r.stderr
    );
    // Synced and Healthy, but at the revision before the change.
    app("Synced", "Healthy", &old_revision);
    let r = run("2027-06-01T00:10:00Z");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("0 revoked"), "{}", r.stderr);
    assert!(
        r.stdout.contains("does not hold the new key"),
        "{}",
        r.stdout
    );
    // At the pointer's commit, but the workloads do not come up: an error, the old
    // value stays.
    let repo = secret_manager::Repo::open(&f.path("work")).unwrap();
    let refname = secret_manager::gitops::pointer_ref(repo.inventory.get(DEV2).unwrap());
    let pointer = crate::common::git(
        &f.path("dev.git"),
        &["rev-parse", &format!("{refname}^{{commit}}")],
    );
    assert_ne!(pointer, old_revision);
    app("Synced", "Degraded", &pointer);
    let r = run("2027-06-01T00:20:00Z");
    assert_eq!(r.code, 14, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("Degraded"), "{}", r.stderr);
    assert!(r.stderr.contains("0 revoked"), "{}", r.stderr);
    // Healthy at the pointer's commit: the old value goes.
    app("Synced", "Healthy", &pointer);
    let r = run("2027-06-01T00:30:00Z");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("0 staged, 0 deleted, 0 published, 1 revoked"),
        "{}",
        r.stderr
    );
}

/// `--gate-command`: the operator's program decides per cluster — 75 waits, any other
/// failure is an error (14) quoting its stderr, 0 lets the old value go. It reads where
/// the new key is on stdin, never a value, and runs without the rotator's environment.
#[test]
fn the_gate_command_decides_per_cluster_and_never_sees_a_value() {
    const DEV2: &str = "gcp.europe-west1.dev2";
    let f = GitFleet::new();
    without_automatic_rollback(&f);
    let dir = tempfile::tempdir().unwrap();
    let verdict = dir.path().join("verdict");
    let seen = dir.path().join("seen.json");
    let env_seen = dir.path().join("env");
    let gate = dir.path().join("smoke-test");
    std::fs::write(
        &gate,
        format!(
            "#!/bin/sh\n[ \"$1\" = gate ] || exit 9\ncat > {seen}\nenv > {env}\ncase $(cat {verdict}) in\n  wait) echo 'pods still starting' >&2; exit 75 ;;\n  fail) printf 'smoke test failed: 503 from /healthz\\033[2J' >&2; exit 1 ;;\nesac\nexit 0\n",
            seen = seen.display(),
            env = env_seen.display(),
            verdict = verdict.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&gate, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |now: &str| {
        f.bot(now)
            .env("SECRET_MANAGER_TEST_CANARY", "rotator-only")
            .env("AWS_SECRET_ACCESS_KEY", "not-for-the-gate")
            .rotate_now(&[
                "--source",
                "random",
                "--cluster",
                DEV2,
                "--older-than",
                "0s",
                "--gate-command",
                gate.to_str().unwrap(),
            ])
    };
    std::fs::write(&verdict, "wait").unwrap();
    let r = run("2027-06-01T00:00:00Z");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("1 staged, 0 deleted, 1 published, 0 revoked"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("pods still starting"), "{}", r.stdout);
    let input: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&seen).unwrap()).unwrap();
    assert_eq!(input["cluster"], DEV2);
    assert_eq!(input["source"], "random");
    assert_eq!(input["secrets"][0]["namespace"], "service2");
    assert!(input["newKeyId"].as_str().unwrap().starts_with("rnd-"));
    // The value itself is nowhere in what the gate got.
    let rel = input["secrets"][0]["file"].as_str().unwrap().to_owned();
    let text = f.show("dev", "main", &rel);
    let file = f.path("gate-check.yaml");
    std::fs::write(&file, &text).unwrap();
    let name = format!("service2/{}", input["secrets"][0]["name"].as_str().unwrap());
    let sealed = crate::common::encrypted_data(&file, 0);
    let value =
        String::from_utf8(decrypt_value(&file, 0, DEV2, &name, &sealed[0].0).unwrap()).unwrap();
    let raw = std::fs::read_to_string(&seen).unwrap();
    assert!(!raw.contains(&value), "the gate saw the value");
    let env = std::fs::read_to_string(&env_seen).unwrap();
    assert!(!env.contains("rotator-only"), "{env}");
    assert!(!env.contains("not-for-the-gate"), "{env}");
    // A failing gate: an error, its stderr quoted (escaped), the old value kept.
    std::fs::write(&verdict, "fail").unwrap();
    let r = run("2027-06-01T00:10:00Z");
    assert_eq!(r.code, 14, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("smoke test failed: 503 from /healthz"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains('\u{1b}'), "escaped: {:?}", r.stderr);
    assert!(r.stderr.contains("0 revoked"), "{}", r.stderr);
    assert!(!r.stderr.contains("rolled back"), "{}", r.stderr);
    // A run without the flag cannot drop the gate the rotation was staged with.
    let r = f
        .bot("2027-06-01T00:20:00Z")
        .rotate_now(&["--source", "random", "--cluster", DEV2]);
    assert_eq!(r.code, 14, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("give this run the gate command too"),
        "{}",
        r.stderr
    );
    // Passing: the old value goes.
    std::fs::write(&verdict, "pass").unwrap();
    let r = run("2027-06-01T00:30:00Z");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("0 staged, 0 deleted, 0 published, 1 revoked"),
        "{}",
        r.stderr
    );
}

/// The Argo CD application's name comes from the repo (cluster-values): one that is not a
/// Kubernetes name — an option, a path — is an error (14) before kubectl runs, and
/// kubectl is never started.
#[test]
fn a_hostile_argocd_app_never_reaches_kubectl() {
    const DEV2: &str = "gcp.europe-west1.dev2";
    let bin = tempfile::tempdir().unwrap();
    let ran = bin.path().join("kubectl-ran");
    let kubectl = bin.path().join("kubectl");
    std::fs::write(
        &kubectl,
        format!("#!/bin/sh\necho \"$*\" >> {}\nexit 1\n", ran.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    for hostile in [
        "--kubeconfig=/tmp/evil-kubeconfig",
        "argocd/--context=prod",
        "../argocd/cluster-list",
        "argocd/cluster-list\\u001b]8;;x\\u0007",
    ] {
        let f = GitFleet::new();
        let values = f.path(&format!("work/cluster-values/{DEV2}.yaml"));
        let text = std::fs::read_to_string(&values).unwrap();
        let changed = text.replace(
            "argocdApp: cluster-list",
            &format!("argocdApp: \"{hostile}\""),
        );
        assert_ne!(changed, text);
        std::fs::write(&values, changed).unwrap();
        f.commit_and_publish("Point the gate elsewhere", &[DEV2]);
        let r = f
            .bot("2027-06-01T00:00:00Z")
            .env("PATH", &path)
            .rotate_now(&[
                "--source",
                "random",
                "--cluster",
                DEV2,
                "--older-than",
                "0s",
                "--require-argocd-synced",
            ]);
        assert_eq!(r.code, 14, "{hostile}: {}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("not asking kubectl"),
            "{hostile}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains('\u{1b}'), "{hostile}: {:?}", r.stderr);
        assert!(
            !ran.exists(),
            "{hostile}: kubectl ran: {}",
            std::fs::read_to_string(&ran).unwrap_or_default()
        );
    }
}

/// `policy.rollbackOnFailure: false` on main: a failing gate keeps the old key and says
/// so, run after run, and nothing rolls back by itself.
fn without_automatic_rollback(f: &GitFleet) {
    let cfg = f.path("work").join(".secret-manager.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("  revokeMode: delete\n"), "{text}");
    std::fs::write(
        &cfg,
        text.replace(
            "  revokeMode: delete\n",
            "  revokeMode: delete\n  rollbackOnFailure: false\n",
        ),
    )
    .unwrap();
    f.commit_and_publish("failing gates keep the old key, no rollback", &[]);
}
