//! `--require-consumers-restarted`: the old key goes only once every pod that reads the
//! rotated Secret has the new value.
//!
//! Through `kubectl get pods` in the Secret's namespace, for each cluster: a pod that names
//! the Secret in its spec (`env[].valueFrom.secretKeyRef`, `envFrom[].secretRef`,
//! `volumes[].secret`, a projected volume) has the new value when its pod template carries
//! the stage's `secret-manager/rotated` hash, when it started after the cluster received
//! the change, or when it reads the Secret only as a whole volume (no `subPath`, no env)
//! and the kubelet's sync period has passed since. Any other pod still holds the old value:
//! the gate waits. A pod with the new value that crash-loops or cannot start its
//! containers fails the gate (exit 14): the old key stays until someone looks — the
//! moment to roll back, not to revoke.

use super::context::Ctx;
use super::gate::{Gate, Got, kubectl_get};
use super::report::WaitingOn;
use crate::journal::RotationRecord;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Default of `--kubelet-sync-period`: the kubelet's default sync (1 min) plus its Secret
/// cache's TTL (1 min).
pub const DEFAULT_KUBELET_SYNC_SECONDS: i64 = 120;

/// Container states that mean the new value does not work.
const BROKEN: &[&str] = &[
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "RunContainerError",
];

/// What the pods of one namespace show.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pods {
    /// Every pod that reads the Secret has the new value, and is Ready.
    Ready,
    /// Some do not yet: which, and why.
    Waiting(String),
    /// A pod with the new value does not come up.
    Broken(String),
}

/// How a pod spec reads the Secret `name`, if it does.
#[derive(Debug, Default)]
struct Reads {
    env: bool,
    volumes: Vec<String>,
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn reads(spec: &Value, name: &str) -> Option<Reads> {
    let mut r = Reads::default();
    let containers = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| arr(&spec[*k]));
    for c in containers.clone() {
        r.env |= arr(&c["env"])
            .iter()
            .any(|e| e["valueFrom"]["secretKeyRef"]["name"] == name)
            || arr(&c["envFrom"])
                .iter()
                .any(|e| e["secretRef"]["name"] == name);
    }
    for v in arr(&spec["volumes"]) {
        let projected = arr(&v["projected"]["sources"])
            .iter()
            .any(|s| s["secret"]["name"] == name);
        if (v["secret"]["secretName"] == name || projected)
            && let Some(n) = v["name"].as_str()
        {
            r.volumes.push(n.to_owned());
        }
    }
    // A volume mounted with `subPath` never updates: it reads like env.
    let sub_path = containers.flat_map(|c| arr(&c["volumeMounts"])).any(|m| {
        m["subPath"].as_str().is_some_and(|s| !s.is_empty())
            && m["name"]
                .as_str()
                .is_some_and(|n| r.volumes.iter().any(|v| v == n))
    });
    r.env |= sub_path;
    (r.env || !r.volumes.is_empty()).then_some(r)
}

/// Reads `kubectl get pods -o json` for the Secret `secret`: the pods that read it, and
/// whether each has the new value (the pod-template annotation `annotation` = `value`, a
/// start after `published`, or a whole-volume mount older than `sync`). What the cluster
/// says is escaped before it is shown.
pub(super) fn pods_state(
    list: &Value,
    secret: &str,
    annotation: &str,
    value: &str,
    published: DateTime<Utc>,
    now: DateTime<Utc>,
    sync: chrono::Duration,
) -> Pods {
    let mut waiting: Vec<String> = Vec::new();
    for pod in arr(&list["items"]) {
        let Some(r) = reads(&pod["spec"], secret) else {
            continue;
        };
        if matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        ) {
            continue;
        }
        let name = crate::text::escape_cut(pod["metadata"]["name"].as_str().unwrap_or("?"), 100);
        let started = pod["status"]["startTime"]
            .as_str()
            .and_then(|t| t.parse::<DateTime<Utc>>().ok());
        let restarted = pod["metadata"]["annotations"][annotation] == value
            || started.is_some_and(|t| t >= published);
        if restarted {
            let statuses = arr(&pod["status"]["containerStatuses"])
                .iter()
                .chain(arr(&pod["status"]["initContainerStatuses"]));
            for s in statuses {
                if let Some(reason) = s["state"]["waiting"]["reason"]
                    .as_str()
                    .filter(|r| BROKEN.contains(r))
                {
                    return Pods::Broken(format!(
                        "pod {name} runs the new value and is in {reason}"
                    ));
                }
            }
            let ready = arr(&pod["status"]["conditions"])
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            if !ready {
                waiting.push(format!("pod {name} has the new value but is not Ready"));
            }
        } else if !r.env && now - published >= sync {
            // A whole-volume mount: the kubelet has refreshed it by now.
        } else {
            waiting.push(format!(
                "pod {name} still runs with the old value (started {})",
                started.map_or("at an unknown time".into(), crate::journal::record::ts)
            ));
        }
    }
    match waiting.len() {
        0 => Pods::Ready,
        n if n > 3 => Pods::Waiting(format!("{} and {} more", waiting[..3].join("; "), n - 3)),
        _ => Pods::Waiting(waiting.join("; ")),
    }
}

/// Each cluster's pods that read the record's Secrets have the new value.
pub(super) async fn check(ctx: &Ctx<'_>, rec: &RotationRecord, published: DateTime<Utc>) -> Gate {
    let annotation = format!("{}{}", ctx.prefix(), crate::consumers::ROTATED);
    let value = crate::consumers::rotated_value(&rec.new_key_id);
    for m in &rec.manifests {
        let (ns, name) = m.secret.split_once('/').unwrap_or(("", ""));
        let err = |message: String| Gate::Error {
            cluster: m.cluster.clone(),
            message,
        };
        let list = match kubectl_get(
            ctx,
            &m.cluster,
            ns,
            "pods",
            None,
            "--require-consumers-restarted",
        )
        .await
        {
            Ok(Got::Object(json)) => json,
            Ok(Got::Missing) => Value::Null,
            Err(e) => return err(e.to_string()),
        };
        let since = rec
            .published_at
            .get(&m.cluster)
            .copied()
            .unwrap_or(published);
        match pods_state(
            &list,
            name,
            &annotation,
            &value,
            since,
            ctx.now(),
            ctx.opts.kubelet_sync_period,
        ) {
            Pods::Ready => {}
            Pods::Waiting(why) => {
                return Gate::Wait(
                    WaitingOn::Consumers,
                    format!(
                        "waiting for the pods reading {ns}/{name} on {}: {why}",
                        m.cluster
                    ),
                );
            }
            Pods::Broken(why) => {
                return Gate::Failed {
                    cluster: m.cluster.clone(),
                    message: format!("{why} ({ns}/{name}); the old key stays"),
                };
            }
        }
    }
    Gate::Open
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    const PUBLISHED: &str = "2027-06-01T00:00:00Z";

    fn pod(name: &str, spec: Value, annotation: Option<&str>, started: &str, ready: bool) -> Value {
        json!({
            "metadata": {"name": name, "annotations": annotation.map(|a| json!({"secret-manager/rotated": a})).unwrap_or(json!({}))},
            "spec": spec,
            "status": {
                "phase": "Running",
                "startTime": started,
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
                "containerStatuses": [{"name": "app", "ready": ready, "state": {"running": {"startedAt": started}}}]
            }
        })
    }

    fn env_spec() -> Value {
        json!({"containers": [{"name": "app", "envFrom": [{"secretRef": {"name": "db"}}]}]})
    }

    fn volume_spec(sub_path: bool) -> Value {
        let mount = if sub_path {
            json!({"name": "creds", "mountPath": "/etc/db/password", "subPath": "password"})
        } else {
            json!({"name": "creds", "mountPath": "/etc/db"})
        };
        json!({
            "volumes": [{"name": "creds", "secret": {"secretName": "db"}}],
            "containers": [{"name": "app", "volumeMounts": [mount]}]
        })
    }

    fn state(pods: Vec<Value>, now: &str) -> Pods {
        pods_state(
            &json!({"kind": "List", "items": pods}),
            "db",
            "secret-manager/rotated",
            "abc",
            t(PUBLISHED),
            t(now),
            chrono::Duration::minutes(2),
        )
    }

    #[test]
    fn a_pod_that_read_the_old_value_at_start_holds_the_gate() {
        let old = "2027-05-31T00:00:00Z";
        let later = "2027-06-01T01:00:00Z";
        assert!(matches!(
            state(vec![pod("app-1", env_spec(), None, old, true)], later),
            Pods::Waiting(w) if w.contains("pod app-1 still runs with the old value (started 2027-05-31T00:00:00Z)")
        ));
        // The new template, or a start after publish: the new value.
        assert_eq!(
            state(
                vec![pod("app-2", env_spec(), Some("abc"), old, true)],
                later
            ),
            Pods::Ready
        );
        assert_eq!(
            state(
                vec![pod("app-3", env_spec(), None, "2027-06-01T00:05:00Z", true)],
                later
            ),
            Pods::Ready
        );
        // Another rotation's hash is not this one.
        assert!(matches!(
            state(
                vec![pod("app-4", env_spec(), Some("zzz"), old, true)],
                later
            ),
            Pods::Waiting(_)
        ));
    }

    #[test]
    fn a_whole_volume_updates_after_the_sync_period_and_a_sub_path_never() {
        let old = "2027-05-31T00:00:00Z";
        assert!(matches!(
            state(
                vec![pod("v", volume_spec(false), None, old, true)],
                "2027-06-01T00:01:00Z"
            ),
            Pods::Waiting(_)
        ));
        assert_eq!(
            state(
                vec![pod("v", volume_spec(false), None, old, true)],
                "2027-06-01T00:02:00Z"
            ),
            Pods::Ready
        );
        assert!(matches!(
            state(vec![pod("s", volume_spec(true), None, old, true)], "2027-06-02T00:00:00Z"),
            Pods::Waiting(w) if w.contains("pod s still runs with the old value")
        ));
    }

    #[test]
    fn a_restarted_pod_must_come_up_and_a_crash_loop_fails() {
        let new = "2027-06-01T00:05:00Z";
        assert!(matches!(
            state(vec![pod("n", env_spec(), Some("abc"), new, false)], "2027-06-01T00:06:00Z"),
            Pods::Waiting(w) if w.contains("not Ready")
        ));
        let mut crashing = pod("c\u{1b}[2J", env_spec(), Some("abc"), new, false);
        crashing["status"]["containerStatuses"][0]["state"] =
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}});
        let Pods::Broken(why) = state(vec![crashing], "2027-06-01T00:10:00Z") else {
            panic!("a crash loop with the new value fails the gate")
        };
        assert!(
            why.contains("CrashLoopBackOff") && !why.contains('\u{1b}'),
            "{why:?}"
        );
        // Pods that do not read the Secret, and finished ones, do not count.
        let other = pod(
            "other",
            json!({"containers": [{"name": "x", "envFrom": [{"secretRef": {"name": "not-db"}}]}]}),
            None,
            "2027-05-01T00:00:00Z",
            false,
        );
        let mut done = pod("job", env_spec(), None, "2027-05-01T00:00:00Z", false);
        done["status"]["phase"] = json!("Succeeded");
        assert_eq!(
            state(vec![other, done], "2027-06-01T00:10:00Z"),
            Pods::Ready
        );
        assert_eq!(state(vec![], "2027-06-01T00:10:00Z"), Pods::Ready);
    }
}
