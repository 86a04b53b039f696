//! Unit tests of the gates' readings of what clusters and sources say.

use super::*;

#[test]
fn synced_gate_reads_the_controller_status() {
    let ok = serde_json::json!({
        "metadata": {"generation": 3},
        "spec": {"template": {"metadata": {"annotations": {"secret-manager/accessKeyId": "NEW"}}}},
        "status": {"observedGeneration": 3, "conditions": [{"type": "Synced", "status": "True"}]}
    });
    assert_eq!(synced(&ok, "secret-manager/accessKeyId", "NEW"), Ok(()));
    let other = synced(&ok, "secret-manager/accessKeyId", "OTHER").unwrap_err();
    assert_eq!(other, NotSynced::OtherKey("NEW".into()));
    assert_eq!(other.to_string(), "the cluster still has key NEW");
    let mut stale = ok.clone();
    stale["status"]["observedGeneration"] = 2.into();
    assert_eq!(
        synced(&stale, "secret-manager/accessKeyId", "NEW"),
        Err(NotSynced::Generation {
            observed: Some(2),
            current: Some(3)
        })
    );
    let mut failing = ok.clone();
    failing["status"]["conditions"][0]["status"] = "False".into();
    assert_eq!(
        synced(&failing, "secret-manager/accessKeyId", "NEW"),
        Err(NotSynced::NotYet)
    );
    // What the cluster says is shown escaped.
    let mut hostile = ok.clone();
    hostile["spec"]["template"]["metadata"]["annotations"]["secret-manager/accessKeyId"] =
        "\u{1b}]8;;x\u{7}K".into();
    let shown = synced(&hostile, "secret-manager/accessKeyId", "NEW")
        .unwrap_err()
        .to_string();
    assert!(!shown.contains('\u{1b}'), "{shown:?}");
}

/// Ready only when Synced and Healthy at a commit id; Degraded is its own verdict;
/// a revision that is not a commit id (a branch name, an option) is never read.
#[test]
fn the_argocd_state_needs_synced_healthy_and_a_commit() {
    let rev = "0123456789abcdef0123456789abcdef01234567";
    let app = |sync: &str, health: &str, revision: &str| {
        serde_json::json!({"status": {
            "sync": {"status": sync, "revision": revision},
            "health": {"status": health, "message": "pod crashes\u{1b}[2J"}
        }})
    };
    assert_eq!(
        argocd_state(&app("Synced", "Healthy", rev)),
        Argo::Ready(crate::gitops::git::Oid::parse(rev).unwrap())
    );
    assert!(matches!(
        argocd_state(&app("OutOfSync", "Healthy", rev)),
        Argo::Waiting(w) if w.contains("OutOfSync")
    ));
    assert!(matches!(
        argocd_state(&app("Synced", "Progressing", rev)),
        Argo::Waiting(w) if w.contains("Progressing")
    ));
    match argocd_state(&app("Synced", "Degraded", rev)) {
        Argo::Degraded(why) => {
            assert!(why.contains("pod crashes"), "{why}");
            assert!(!why.contains('\u{1b}'), "escaped: {why:?}");
        }
        other => panic!("{other:?}"),
    }
    for hostile in ["main", "--output=/tmp/x", "HEAD~1", "0123456789abcdef"] {
        assert!(
            matches!(
                argocd_state(&app("Synced", "Healthy", hostile)),
                Argo::Waiting(_)
            ),
            "{hostile}"
        );
    }
}

#[test]
fn only_a_missing_sealedsecret_is_a_wait() {
    assert_eq!(
        kubectl_failure("Error from server (NotFound): sealedsecrets.bitnami.com \"x\" not found"),
        None
    );
    let e = kubectl_failure("error: context \"dev9\" does not exist").unwrap();
    assert!(e.contains("kubeContext"), "{e}");
    let e = kubectl_failure("Error from server (Forbidden): sealedsecrets.bitnami.com \"x\" is forbidden: User \"bot\" cannot get resource").unwrap();
    assert!(e.contains("grant `get`"), "{e}");
    assert!(kubectl_failure("Unable to connect to the server: dial tcp: i/o timeout").is_some());
}

#[test]
fn the_plan_names_the_gates_of_the_run_and_of_the_rotations_promise() {
    let mut opts = crate::engine::RotateOptions::new("2026-12-01T00:00:00Z".parse().unwrap());
    assert_eq!(planned(&opts, None), "");
    opts.require_synced = true;
    let promise = crate::journal::record::Promise {
        revoke_after_seconds: 3600,
        revoke_mode: crate::engine::RevokeMode::Delete,
        require_synced: false,
        require_old_key_unused: false,
        require_argocd_synced: false,
        require_consumers_restarted: false,
        require_gate_command: true,
    };
    assert_eq!(
        planned(&opts, Some(&promise)),
        " and once each cluster's SealedSecret shows the new key Synced, the gate command passes"
    );
}
