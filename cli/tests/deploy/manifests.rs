//! The kustomizations of deploy/: every install renders, validates strictly and is locked
//! down; identities compose; shards split a fleet with every credential in one shard.

use super::{args, deploy, documents, env_var, of_kind, one, pod_spec, psa, render, validate};
use crate::common::{cmd, copy_dir, run_cmd, testdata};
use serde_json::Value;
use std::path::Path;

/// Every shipped install, with the sources of its CronJobs (one per job, in order).
const INSTALLS: &[(&str, &[&str])] = &[
    ("overlays/aws", &["aws"]),
    ("overlays/azure", &["azure"]),
    ("overlays/gcp", &["gcp"]),
    ("examples/sharded", &["aws", "aws"]),
    ("examples/aws-require-synced", &["aws"]),
    ("examples/aws-monitored", &["aws"]),
];

/// Bytes of a Kubernetes quantity such as `2Gi` or `64Mi`.
fn bytes(q: &str) -> u64 {
    let (n, mult) = [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)]
        .iter()
        .find_map(|(s, m)| q.strip_suffix(s).map(|n| (n, *m)))
        .unwrap_or((q, 1));
    n.parse::<u64>().unwrap_or_else(|_| panic!("quantity {q}")) * mult
}

/// The rotate subcommand's flags of a CronJob (everything after `rotate`).
fn rotate_flags(cj: &Value) -> Vec<String> {
    let a = args(cj);
    let at = a.iter().position(|x| x == "rotate").expect("rotate");
    a[at + 1..].to_vec()
}

fn flag_values(flags: &[String], name: &str) -> Vec<String> {
    flags
        .iter()
        .filter_map(|f| f.strip_prefix(&format!("--{name}=")).map(str::to_owned))
        .collect()
}

fn check_cronjob(install: &str, cj: &Value, source: &str) {
    let name = cj["metadata"]["name"].as_str().unwrap();
    let what = format!("{install}: {name}");
    // It rotates its own source and nothing else.
    assert!(
        name.starts_with(&format!("secret-manager-{source}")),
        "{what}"
    );
    assert_eq!(
        flag_values(&rotate_flags(cj), "source"),
        vec![source.to_owned()],
        "{what}"
    );
    let spec = &cj["spec"];
    assert_eq!(spec["concurrencyPolicy"], "Forbid", "{what}");
    assert!(spec["startingDeadlineSeconds"].is_u64(), "{what}");
    assert!(spec["timeZone"].is_string(), "{what}");
    assert!(spec["failedJobsHistoryLimit"].as_u64() >= Some(1), "{what}");
    let job = &spec["jobTemplate"]["spec"];
    assert_eq!(job["backoffLimit"], 0, "{what}");
    assert!(job["activeDeadlineSeconds"].is_u64(), "{what}");
    // A TTL would delete failed Jobs (and their logs) regardless of the history limit.
    assert!(job["ttlSecondsAfterFinished"].is_null(), "{what}");
    let pod = pod_spec(cj);
    let v = psa::violations(pod);
    assert!(v.is_empty(), "{what}: Pod Security restricted: {v:?}");
    assert_eq!(pod["automountServiceAccountToken"], false, "{what}");
    let c = &pod["containers"][0];
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"], true,
        "{what}"
    );
    // Storage: the emptyDirs fit in the ephemeral-storage limit, and temporary worktrees
    // land on the work volume.
    let empty_dirs: u64 = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["emptyDir"]["sizeLimit"].as_str())
        .map(bytes)
        .sum();
    let limit = bytes(
        c["resources"]["limits"]["ephemeral-storage"]
            .as_str()
            .unwrap(),
    );
    let request = bytes(
        c["resources"]["requests"]["ephemeral-storage"]
            .as_str()
            .unwrap(),
    );
    assert!(
        empty_dirs <= limit && request <= limit && empty_dirs > 0,
        "{what}"
    );
    let work = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "work")
        .unwrap()["mountPath"]
        .as_str()
        .unwrap();
    assert!(
        env_var(cj, "TMPDIR").is_some_and(|t| t.starts_with(&format!("{work}/"))),
        "{what}: TMPDIR not on the work volume"
    );
    if source == "aws" {
        assert_eq!(env_var(cj, "AWS_EC2_METADATA_DISABLED"), Some("true"));
    }
    if source == "azure" {
        assert_eq!(
            cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"],
            "true",
            "{what}"
        );
    }
}

fn check_network_policy(install: &str, docs: &[Value], gcp: bool) {
    let np = one(docs, "NetworkPolicy");
    let types = np["spec"]["policyTypes"].as_array().unwrap();
    assert!(types.contains(&"Ingress".into()) && types.contains(&"Egress".into()));
    assert!(
        np["spec"]["ingress"].as_array().is_none_or(Vec::is_empty),
        "{install}: ingress must be denied"
    );
    // It selects every rotation pod.
    let selector = np["spec"]["podSelector"]["matchLabels"]
        .as_object()
        .unwrap();
    for cj in of_kind(docs, "CronJob") {
        let labels = &cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"];
        for (k, v) in selector {
            assert_eq!(&labels[k], v, "{install}: the policy misses a pod");
        }
    }
    let kubectl = of_kind(docs, "CronJob").iter().any(|cj| {
        pod_spec(cj)["containers"][0]["image"]
            .as_str()
            .is_some_and(|i| i.ends_with("-kubectl"))
    });
    let mut metadata_rules = 0;
    for rule in np["spec"]["egress"].as_array().unwrap() {
        let ports: Vec<u64> = rule["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["port"].as_u64().unwrap())
            .collect();
        let blocks: Vec<&Value> = rule["to"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t.get("ipBlock"))
            .collect();
        for b in &blocks {
            let except: Vec<&str> = b["except"]
                .as_array()
                .map(|e| e.iter().map(|x| x.as_str().unwrap()).collect())
                .unwrap_or_default();
            match b["cidr"].as_str().unwrap() {
                "0.0.0.0/0" => assert!(except.contains(&"169.254.0.0/16"), "{install}"),
                "::/0" => assert!(except.contains(&"fd00:ec2::254/128"), "{install}"),
                "169.254.169.254/32" | "169.254.169.252/32" => metadata_rules += 1,
                other => panic!("{install}: unexpected egress to {other}"),
            }
        }
        let to_pushgateway = rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
            == "prometheus-pushgateway";
        if blocks.is_empty() && to_pushgateway {
            // components/monitoring: the Pushgateway's pods, on its port only.
            assert_eq!(ports, vec![9091], "{install}: only the Pushgateway's port");
        } else if blocks.is_empty() {
            assert_eq!(ports, vec![53, 53], "{install}: only DNS to pods");
        } else if blocks[0]["cidr"].as_str().unwrap().starts_with("169.254.") {
            assert!(
                ports == vec![80] || ports == vec![988],
                "{install}: {ports:?}"
            );
        } else if kubectl {
            // components/kubectl: self-managed API servers listen on 6443.
            assert_eq!(ports, vec![443, 22, 6443], "{install}");
        } else {
            assert_eq!(ports, vec![443, 22], "{install}");
        }
    }
    // Only GKE workload identity reaches the metadata server.
    assert_eq!(metadata_rules, if gcp { 2 } else { 0 }, "{install}");
}

#[test]
#[ignore = "environment: needs kubectl (scripts/test runs it)"]
fn every_install_renders_validates_and_is_locked_down() {
    for (install, sources) in INSTALLS {
        let rendered = render(&deploy(install));
        if let Err(e) = validate(&rendered) {
            panic!("{install}: {e}");
        }
        let docs = documents(&rendered);
        let ns = one(&docs, "Namespace");
        assert_eq!(
            ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted",
            "{install}"
        );
        let sa = one(&docs, "ServiceAccount");
        assert_eq!(sa["automountServiceAccountToken"], false, "{install}");
        let annotations = sa["metadata"]["annotations"].as_object().unwrap();
        for s in *sources {
            let key = match *s {
                "aws" => "eks.amazonaws.com/role-arn",
                "azure" => "azure.workload.identity/client-id",
                _ => "iam.gke.io/gcp-service-account",
            };
            assert!(annotations.contains_key(key), "{install}: SA lacks {key}");
        }
        let cronjobs = of_kind(&docs, "CronJob");
        assert_eq!(cronjobs.len(), sources.len(), "{install}");
        for (cj, source) in cronjobs.iter().zip(sources.iter()) {
            check_cronjob(install, cj, source);
        }
        check_network_policy(install, &docs, sources.contains(&"gcp"));
    }
}

#[test]
#[ignore = "environment: needs kubectl (scripts/test runs it)"]
fn the_validator_rejects_what_the_cluster_would() {
    let rendered = render(&deploy("overlays/aws"));
    validate(&rendered).unwrap();
    for (from, to, expect) in [
        (
            "concurrencyPolicy: Forbid",
            "concurrencyPolicy: 7",
            "CronJob",
        ),
        (
            "concurrencyPolicy: Forbid",
            "concurencyPolicy: Forbid",
            "CronJob",
        ),
        ("encryptedData:", "encrytedData:", "encryptedData"),
        ("    type: Opaque", "    tpye: Opaque", "tpye"),
        ("kind: SealedSecret", "kind: SealedSecrte", "no schema"),
    ] {
        assert!(rendered.contains(from), "{from}");
        let err = validate(&rendered.replacen(from, to, 1)).expect_err(&format!("accepted {to}"));
        assert!(err.contains(expect), "{to}: {err}");
    }
}

#[test]
#[ignore = "environment: needs kubectl (scripts/test runs it)"]
fn the_gates_variant_has_kubectl_a_kubeconfig_and_target_rbac() {
    let docs = documents(&render(&deploy("examples/aws-require-synced")));
    let cj = one(&docs, "CronJob");
    let c = &pod_spec(cj)["containers"][0];
    assert!(
        c["image"].as_str().unwrap().ends_with("-kubectl"),
        "{}",
        c["image"]
    );
    assert!(rotate_flags(cj).contains(&"--require-synced".to_owned()));
    let kubeconfig = env_var(cj, "KUBECONFIG").unwrap();
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "kubeconfig")
        .unwrap();
    assert!(kubeconfig.starts_with(mount["mountPath"].as_str().unwrap()));
    assert_eq!(mount["readOnly"], true);
    let secret = pod_spec(cj)["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "kubeconfig")
        .unwrap()["secret"]["secretName"]
        .clone();
    assert!(
        of_kind(&docs, "SealedSecret")
            .iter()
            .any(|s| s["metadata"]["name"] == secret),
        "the kubeconfig SealedSecret ships with the component"
    );
    // On the target clusters: read-only, exactly what the gate and controller:// use.
    let rendered = render(&deploy("target-cluster"));
    validate(&rendered).unwrap();
    let rbac = documents(&rendered);
    let rules: Vec<&Value> = of_kind(&rbac, "ClusterRole")
        .into_iter()
        .chain(of_kind(&rbac, "Role"))
        .flat_map(|r| r["rules"].as_array().unwrap())
        .collect();
    let verbs: Vec<&Value> = rules
        .iter()
        .flat_map(|r| r["verbs"].as_array().unwrap())
        .collect();
    // `get` only, but for listing pods (--require-consumers-restarted): pod specs and
    // status, never a Secret's data — no rule names secrets.
    for r in &rules {
        let verbs = r["verbs"].as_array().unwrap();
        let pods = r["resources"] == serde_json::json!(["pods"]);
        assert!(
            verbs.iter().all(|v| *v == "get" || (pods && *v == "list")),
            "{r}"
        );
    }
    assert!(!verbs.is_empty());
    let mut resources: Vec<&str> = rules
        .iter()
        .flat_map(|r| r["resources"].as_array().unwrap())
        .map(|r| r.as_str().unwrap())
        .collect();
    resources.sort();
    assert_eq!(
        resources,
        vec!["applications", "pods", "sealedsecrets", "services/proxy"]
    );
    // Argo CD's Applications are read in Argo CD's namespace only, not cluster-wide.
    let argocd: Vec<&Value> = of_kind(&rbac, "Role")
        .into_iter()
        .filter(|r| r["rules"][0]["resources"][0] == "applications")
        .collect();
    assert_eq!(argocd.len(), 1);
    assert_eq!(argocd[0]["metadata"]["namespace"], "argocd");
}

/// `to` relative to `dir` (kustomize refuses absolute paths).
pub(super) fn relative(dir: &Path, to: &Path) -> String {
    let depth = dir.canonicalize().unwrap().components().count() - 1;
    format!(
        "{}{}",
        "../".repeat(depth),
        to.canonicalize()
            .unwrap()
            .display()
            .to_string()
            .trim_start_matches('/')
    )
}

#[test]
#[ignore = "environment: needs kubectl (scripts/test runs it)"]
fn identities_compose_and_each_job_keeps_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let r = |p: &str| relative(dir.path(), &deploy(p));
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: secret-manager\nresources:\n  - {}\n  - {}\n  - {}\n  - {}\ncomponents:\n  - {}\n  - {}\n  - {}\n",
            r("base"),
            r("sources/aws"),
            r("sources/azure"),
            r("sources/gcp"),
            r("identity/aws"),
            r("identity/azure"),
            r("identity/gcp"),
        ),
    )
    .unwrap();
    let rendered = render(dir.path());
    validate(&rendered).unwrap();
    let docs = documents(&rendered);
    let sa = one(&docs, "ServiceAccount");
    let annotations = sa["metadata"]["annotations"].as_object().unwrap();
    for key in [
        "eks.amazonaws.com/role-arn",
        "azure.workload.identity/client-id",
        "azure.workload.identity/tenant-id",
        "iam.gke.io/gcp-service-account",
    ] {
        assert!(annotations.contains_key(key), "stacking dropped {key}");
    }
    let cronjobs = of_kind(&docs, "CronJob");
    assert_eq!(cronjobs.len(), 3);
    for (cj, source) in cronjobs.iter().zip(["aws", "azure", "gcp"]) {
        check_cronjob("aws+azure+gcp", cj, source);
    }
    check_network_policy("aws+azure+gcp", &docs, true);
}

/// The example repo plus a shared aws manifest (no cluster id in its path).
fn fleet_with_shared_manifest() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&testdata("example-repo"), dir.path());
    let from = "applications/root/external-dns/state/overlays/aws.eu-central-1.dev1/sealedSeacret-cloud-dns.yaml";
    let to = dir
        .path()
        .join("applications/root/external-dns/state/base/sealed-shared-dns.yaml");
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(dir.path().join(from), &to).unwrap();
    dir
}

/// `list -o json` with a shard's selection flags: the files it would rotate.
fn shard_files(repo: &Path, flags: &[String]) -> Vec<String> {
    let selection: Vec<&String> = flags
        .iter()
        .filter(|f| {
            ["--source=", "--cluster=", "--shared="]
                .iter()
                .any(|p| f.starts_with(p))
        })
        .collect();
    let r = run_cmd(
        cmd()
            .arg("--repo")
            .arg(repo)
            .args(["list", "-o", "json"])
            .args(selection),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows: Vec<Value> = serde_json::from_str(&r.stdout).unwrap();
    rows.iter()
        .map(|r| format!("{}#{}", r["file"].as_str().unwrap(), r["document"]))
        .collect()
}

#[test]
#[ignore = "environment: needs kubectl (scripts/test runs it)"]
fn shards_share_resources_once_and_split_the_fleet_exactly() {
    let docs = documents(&render(&deploy("examples/sharded")));
    for kind in ["Namespace", "ServiceAccount", "ConfigMap", "NetworkPolicy"] {
        one(&docs, kind);
    }
    assert_eq!(
        of_kind(&docs, "SealedSecret").len(),
        1,
        "git credentials once"
    );
    let cronjobs = of_kind(&docs, "CronJob");
    assert_eq!(cronjobs.len(), 2);
    let mut minutes = Vec::new();
    for cj in &cronjobs {
        // Every name a shard refers to exists as rendered (nothing renamed away).
        let pod = pod_spec(cj);
        let named = |kind: &str, name: &Value| {
            assert!(
                of_kind(&docs, kind)
                    .iter()
                    .any(|d| &d["metadata"]["name"] == name),
                "{}: no {kind} {name}",
                cj["metadata"]["name"]
            )
        };
        named("ServiceAccount", &pod["serviceAccountName"]);
        named(
            "ConfigMap",
            &pod["containers"][0]["envFrom"][0]["configMapRef"]["name"],
        );
        for v in pod["volumes"].as_array().unwrap() {
            if let Some(s) = v.get("secret") {
                named("SealedSecret", &s["secretName"]);
            }
        }
        minutes.push(
            cj["spec"]["schedule"]
                .as_str()
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_owned(),
        );
    }
    minutes.dedup();
    assert_eq!(minutes.len(), 2, "schedules are staggered");
    // Run each shard's selection on a fleet: every aws manifest, shared ones included, is
    // in exactly one shard.
    let repo = fleet_with_shared_manifest();
    let all = shard_files(repo.path(), &["--source=aws".to_owned()]);
    assert!(
        all.iter().any(|f| f.contains("state/base/")),
        "the fixture has a shared manifest: {all:?}"
    );
    let mut seen: Vec<String> = Vec::new();
    for cj in &cronjobs {
        let files = shard_files(repo.path(), &rotate_flags(cj));
        assert!(
            !files.is_empty(),
            "{} selects nothing",
            cj["metadata"]["name"]
        );
        seen.extend(files);
    }
    seen.sort();
    let mut all = all;
    all.sort();
    assert_eq!(seen, all, "each manifest in exactly one shard");
}

/// Kubernetes' recommended labels on every object of every install (and the target-cluster
/// RBAC), and on each CronJob's pod template; the version label is the workspace version
/// and the version of the image the CronJob runs.
#[test]
#[ignore = "environment: needs kubectl (scripts/test runs it)"]
fn every_object_and_pod_template_carries_the_recommended_labels() {
    let manifest = std::fs::read_to_string(crate::common::root().join("Cargo.toml")).unwrap();
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap();
    let check = |install: &str, what: &str, labels: &Value| {
        for name in [
            "name",
            "instance",
            "version",
            "component",
            "part-of",
            "managed-by",
        ] {
            let key = format!("app.kubernetes.io/{name}");
            assert!(
                labels[&key].as_str().is_some_and(|v| !v.is_empty()),
                "{install}: {what} lacks {key}: {labels}"
            );
        }
        assert_eq!(
            labels["app.kubernetes.io/name"], "secret-manager",
            "{install}: {what}"
        );
        assert_eq!(
            labels["app.kubernetes.io/part-of"], "secret-manager",
            "{install}: {what}"
        );
        assert_eq!(
            labels["app.kubernetes.io/version"], version,
            "{install}: {what}"
        );
    };
    let installs = INSTALLS.iter().map(|(i, _)| *i).chain(["target-cluster"]);
    for install in installs {
        let docs = documents(&render(&deploy(install)));
        assert!(!docs.is_empty());
        for d in &docs {
            let what = format!("{} {}", d["kind"], d["metadata"]["name"]);
            check(install, &what, &d["metadata"]["labels"]);
        }
        for cj in of_kind(&docs, "CronJob") {
            check(
                install,
                "pod template",
                &cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"],
            );
            let image = pod_spec(cj)["containers"][0]["image"].as_str().unwrap();
            let tag = image.rsplit_once(':').unwrap().1;
            assert!(
                tag == version || tag.starts_with(&format!("{version}-")),
                "{install}: image {image} is not version {version}"
            );
        }
    }
}

/// examples/remote-base installs a release's overlay as a remote base pinned by the tag of
/// this version; with the remote resolved to this checkout, it renders, validates and its
/// patches reach the objects.
#[test]
#[ignore = "environment: needs kubectl (scripts/test runs it)"]
fn the_remote_base_example_is_pinned_by_tag_and_renders() {
    let text = std::fs::read_to_string(deploy("examples/remote-base/kustomization.yaml")).unwrap();
    let manifest = std::fs::read_to_string(crate::common::root().join("Cargo.toml")).unwrap();
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap();
    let remote = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("- https://"))
        .expect("a remote resource");
    let (url, reference) = remote.split_once("?ref=").expect("pinned with ?ref=");
    assert_eq!(
        reference,
        format!("v{version}"),
        "pinned to this release's tag"
    );
    let (_, path) = url.split_once("//").expect("repo//path form");
    assert_eq!(path, "deploy/overlays/aws");

    let dir = tempfile::tempdir().unwrap();
    let local = text.replace(
        &format!("https://{remote}"),
        &relative(dir.path(), &deploy("overlays/aws")),
    );
    std::fs::write(dir.path().join("kustomization.yaml"), local).unwrap();
    let rendered = render(dir.path());
    if let Err(e) = validate(&rendered) {
        panic!("{e}");
    }
    let docs = documents(&rendered);
    let cm = one(&docs, "ConfigMap");
    assert_eq!(
        cm["data"]["CONFIG_REPO_URL"],
        "git@git.example.com:platform/gitops-config.git"
    );
    let cj = one(&docs, "CronJob");
    assert_eq!(
        pod_spec(cj)["containers"][0]["image"],
        format!("registry.example.com/platform/secret-manager:{version}")
    );
    check_cronjob("examples/remote-base", cj, "aws");
}
