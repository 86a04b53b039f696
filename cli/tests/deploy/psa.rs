//! The Pod Security Standards "restricted" profile (baseline included), field by field, as
//! the Kubernetes documentation lists them, checked on rendered pod specs. No admission
//! controller runs here, so the rules are written down; the negative controls below prove
//! each one can fail.

use serde_json::{Value, json};

const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
const VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|k| pod[*k].as_array())
        .flatten()
        .collect()
}

fn is_true(v: &Value) -> bool {
    v.as_bool() == Some(true)
}

/// Every way `pod` (a pod spec) violates the restricted profile; empty when it complies.
pub fn violations(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let psc = &pod["securityContext"];
    for k in ["hostNetwork", "hostPID", "hostIPC"] {
        if is_true(&pod[k]) {
            out.push(format!("{k} is set"));
        }
    }
    for v in pod["volumes"].as_array().into_iter().flatten() {
        let kind = v
            .as_object()
            .unwrap()
            .keys()
            .find(|k| *k != "name")
            .cloned()
            .unwrap_or_default();
        if !VOLUME_TYPES.contains(&kind.as_str()) {
            out.push(format!("volume {} is of type {kind}", v["name"]));
        }
    }
    for s in psc["sysctls"].as_array().into_iter().flatten() {
        if !SAFE_SYSCTLS.contains(&s["name"].as_str().unwrap_or("")) {
            out.push(format!("sysctl {} is not safe", s["name"]));
        }
    }
    let pod_non_root = is_true(&psc["runAsNonRoot"]);
    let pod_seccomp = psc["seccompProfile"]["type"].as_str();
    if psc["runAsUser"] == 0 {
        out.push("pod runAsUser is 0".into());
    }
    check_common(psc, "pod", &mut out);
    for c in containers(pod) {
        let name = c["name"].as_str().unwrap_or("?");
        let sc = &c["securityContext"];
        check_common(sc, name, &mut out);
        if is_true(&sc["privileged"]) {
            out.push(format!("{name}: privileged"));
        }
        if sc["allowPrivilegeEscalation"].as_bool() != Some(false) {
            out.push(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        let non_root = match sc["runAsNonRoot"].as_bool() {
            Some(v) => v,
            None => pod_non_root,
        };
        if !non_root {
            out.push(format!("{name}: runAsNonRoot is not true"));
        }
        if sc["runAsUser"] == 0 {
            out.push(format!("{name}: runAsUser is 0"));
        }
        let seccomp = sc["seccompProfile"]["type"].as_str().or(pod_seccomp);
        if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
            out.push(format!("{name}: seccompProfile is {seccomp:?}"));
        }
        let caps = &sc["capabilities"];
        if !caps["drop"]
            .as_array()
            .is_some_and(|d| d.iter().any(|c| c == "ALL"))
        {
            out.push(format!("{name}: capabilities do not drop ALL"));
        }
        for add in caps["add"].as_array().into_iter().flatten() {
            if add != "NET_BIND_SERVICE" {
                out.push(format!("{name}: adds capability {add}"));
            }
        }
        if sc["procMount"].as_str().is_some_and(|p| p != "Default") {
            out.push(format!("{name}: procMount {}", sc["procMount"]));
        }
        for p in c["ports"].as_array().into_iter().flatten() {
            if p["hostPort"].as_u64().is_some_and(|h| h != 0) {
                out.push(format!("{name}: hostPort {}", p["hostPort"]));
            }
        }
    }
    out
}

/// Rules that apply to the pod's and to each container's securityContext alike.
fn check_common(sc: &Value, who: &str, out: &mut Vec<String>) {
    if is_true(&sc["windowsOptions"]["hostProcess"]) {
        out.push(format!("{who}: hostProcess"));
    }
    if sc["appArmorProfile"]["type"] == "Unconfined" {
        out.push(format!("{who}: AppArmor Unconfined"));
    }
    if sc["seccompProfile"]["type"] == "Unconfined" {
        out.push(format!("{who}: seccomp Unconfined"));
    }
    let se = &sc["seLinuxOptions"];
    if let Some(t) = se["type"].as_str()
        && ![
            "container_t",
            "container_init_t",
            "container_kvm_t",
            "container_engine_t",
        ]
        .contains(&t)
    {
        out.push(format!("{who}: SELinux type {t}"));
    }
    if !se["user"].is_null() || !se["role"].is_null() {
        out.push(format!("{who}: SELinux user or role set"));
    }
}

/// The checker catches each kind of violation, one at a time, on a compliant pod.
#[test]
fn each_rule_can_fail() {
    let good = json!({
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532,
                             "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "w", "emptyDir": {}}],
        "containers": [{"name": "c", "securityContext": {
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]
    });
    assert_eq!(violations(&good), Vec::<String>::new());
    let c = "/containers/0/securityContext";
    for (pointer, value, expect) in [
        ("/hostNetwork", json!(true), "hostNetwork"),
        ("/hostPID", json!(true), "hostPID"),
        (
            "/volumes/0",
            json!({"name": "h", "hostPath": {"path": "/"}}),
            "hostPath",
        ),
        (
            "/securityContext/sysctls",
            json!([{"name": "kernel.msgmax", "value": "1"}]),
            "sysctl",
        ),
        (
            "/securityContext/runAsNonRoot",
            json!(false),
            "runAsNonRoot",
        ),
        ("/securityContext/runAsUser", json!(0), "runAsUser is 0"),
        (
            "/securityContext/seccompProfile",
            json!({"type": "Unconfined"}),
            "seccomp",
        ),
        (&format!("{c}/privileged"), json!(true), "privileged"),
        (
            &format!("{c}/allowPrivilegeEscalation"),
            json!(true),
            "allowPrivilegeEscalation",
        ),
        (&format!("{c}/capabilities/drop"), json!([]), "drop ALL"),
        (
            &format!("{c}/capabilities/add"),
            json!(["SYS_ADMIN"]),
            "SYS_ADMIN",
        ),
        (&format!("{c}/procMount"), json!("Unmasked"), "procMount"),
        (
            &format!("{c}/seLinuxOptions"),
            json!({"type": "spc_t"}),
            "SELinux",
        ),
        (
            &format!("{c}/appArmorProfile"),
            json!({"type": "Unconfined"}),
            "AppArmor",
        ),
        (
            &format!("{c}/windowsOptions"),
            json!({"hostProcess": true}),
            "hostProcess",
        ),
        (
            "/containers/0/ports",
            json!([{"containerPort": 80, "hostPort": 80}]),
            "hostPort",
        ),
    ] {
        let mut bad = good.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = bad.pointer_mut(parent).unwrap();
        match target {
            Value::Array(a) => a[key.parse::<usize>().unwrap()] = value,
            Value::Object(o) => {
                o.insert(key.to_owned(), value);
            }
            _ => unreachable!(),
        }
        let v = violations(&bad);
        assert!(
            v.iter().any(|m| m.contains(expect)),
            "{pointer}: expected a violation mentioning {expect}, got {v:?}"
        );
    }
    // Without a pod-level seccomp profile, each container needs its own.
    let mut bad = good.clone();
    bad["securityContext"]
        .as_object_mut()
        .unwrap()
        .remove("seccompProfile");
    assert!(
        violations(&bad)
            .iter()
            .any(|m| m.contains("seccompProfile"))
    );
}
