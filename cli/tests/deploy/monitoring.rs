//! deploy/monitoring: the alert rules pass promtool's checks and unit tests, and the rules
//! and the dashboard only use series the binary writes; components/monitoring wires the
//! Pushgateway and the webhook into the CronJob.

use super::{args, deploy, documents, of_kind, one, pod_spec, render};
use crate::common::{root, run_in, testdata};
use std::process::Command;

fn promtool(args: &[&str]) -> std::process::Output {
    secret_manager_testkit::tier::environment("promtool");
    Command::new(std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into()))
        .current_dir(deploy("monitoring"))
        .args(args)
        .output()
        .expect("promtool is needed (apt-get install prometheus; scripts/test installs it)")
}

#[test]
#[ignore = "environment: needs promtool (scripts/test runs it)"]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let check = promtool(&["check", "rules", "rules.yaml"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("SUCCESS: 7 rules found"));
    let test = promtool(&["test", "rules", "rules-test.yaml"]);
    assert!(
        test.status.success(),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}

/// `secret_manager_*` names in `text`.
fn names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("secret_manager_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn rules_and_dashboard_use_only_series_the_binary_writes() {
    let listed = run_in(&[
        "--repo",
        testdata("example-repo").to_str().unwrap(),
        "-o",
        "prometheus",
        "list",
    ]);
    let mut written = names(&listed.stdout);
    // The run's own series, written after `rotate` (tests/monitoring.rs reads them back).
    let source = std::fs::read_to_string(root().join("cli/src/metrics.rs")).unwrap();
    for run in [
        // Only written for manifests with a sealedWith (none in the example repo).
        "secret_manager_credential_cert_current",
        "secret_manager_run_timestamp_seconds",
        "secret_manager_run_success",
        "secret_manager_run_duration_seconds",
        "secret_manager_last_success_timestamp_seconds",
        "secret_manager_last_run_steps",
    ] {
        assert!(source.contains(&format!("\"{run}\"")), "{run}");
        written.insert(run.to_owned());
    }
    let rules = std::fs::read_to_string(deploy("monitoring/rules.yaml")).unwrap();
    let dashboard = std::fs::read_to_string(deploy("monitoring/dashboard.json")).unwrap();
    let d: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    assert!(d["panels"].as_array().unwrap().len() >= 6);
    for (what, text) in [("rules.yaml", &rules), ("dashboard.json", &dashboard)] {
        let used = names(text);
        assert!(!used.is_empty());
        for n in &used {
            assert!(written.contains(n), "{what} uses {n}, which nothing writes");
        }
    }
    // Every documented metric is one that is written.
    let doc = std::fs::read_to_string(root().join("docs/monitoring.md")).unwrap();
    for n in &written {
        assert!(
            doc.contains(n.as_str()),
            "docs/monitoring.md does not describe {n}"
        );
    }
}

#[test]
#[ignore = "environment: needs kubectl (scripts/test runs it)"]
fn the_monitoring_component_pushes_and_notifies_from_a_secret() {
    let docs = documents(&render(&deploy("examples/aws-monitored")));
    let cj = one(&docs, "CronJob");
    let a = args(cj);
    assert!(
        a.contains(&"--pushgateway=$(PUSHGATEWAY_URL)".to_string()),
        "{a:?}"
    );
    assert!(
        a.contains(&"--notify=env:SECRET_MANAGER_WEBHOOK_URL".to_string()),
        "{a:?}"
    );
    // The webhook URL comes from a Secret, never from argv or the ConfigMap.
    let hook = pod_spec(cj)["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "SECRET_MANAGER_WEBHOOK_URL")
        .expect("webhook env");
    assert_eq!(
        hook["valueFrom"]["secretKeyRef"]["name"],
        "secret-manager-webhook"
    );
    let cm = one(&docs, "ConfigMap");
    assert!(
        cm["data"]["PUSHGATEWAY_URL"]
            .as_str()
            .unwrap()
            .starts_with("http")
    );
    assert!(!serde_json::to_string(cm).unwrap().contains("hooks."));
    // Egress to the Pushgateway is allowed, and only to it on 9091.
    let np = one(&docs, "NetworkPolicy");
    assert_eq!(
        of_kind(&docs, "SealedSecret").len(),
        2,
        "git credentials and the webhook, both sealed"
    );
    let egress = np["spec"]["egress"].as_array().unwrap();
    let to_gw: Vec<_> = egress
        .iter()
        .filter(|e| {
            e["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["port"] == 9091)
        })
        .collect();
    assert_eq!(to_gw.len(), 1, "{egress:#?}");
    assert_eq!(
        to_gw[0]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "prometheus-pushgateway"
    );
}

/// The alert names of a rule group list, in order.
fn alerts(groups: &serde_json::Value) -> Vec<String> {
    groups
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_prometheus_rule_holds_the_rules_files_groups_and_every_alert_has_a_runbook() {
    let plain: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(deploy("monitoring/rules.yaml")).unwrap())
            .unwrap();
    let docs =
        documents(&std::fs::read_to_string(deploy("monitoring/prometheusrule.yaml")).unwrap());
    let rule = one(&docs, "PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        rule["spec"]["groups"], plain["groups"],
        "prometheusrule.yaml drifted from rules.yaml: copy the groups over"
    );
    let names = alerts(&plain["groups"]);
    assert_eq!(names.len(), 7, "{names:?}");
    let doc = std::fs::read_to_string(root().join("docs/monitoring.md")).unwrap();
    for r in plain["groups"][0]["rules"].as_array().unwrap() {
        let name = r["alert"].as_str().unwrap();
        let url = r["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no runbook_url"));
        let anchor = url
            .split_once("docs/monitoring.md#")
            .unwrap_or_else(|| panic!("{name}: {url} is not into docs/monitoring.md"))
            .1;
        assert_eq!(anchor, name.to_lowercase(), "{name}: {url}");
        assert!(
            doc.lines()
                .any(|l| l.starts_with('#') && l.trim_start_matches('#').trim() == name),
            "docs/monitoring.md has no runbook heading for {name}"
        );
    }
}
