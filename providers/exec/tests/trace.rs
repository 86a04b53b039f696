//! Alone in its own test binary: tracing's callsite interest cache is process-global, and
//! the demo plugin keeps its state in the working directory, which this test changes.

use secret_manager_exec::ExecProvider;
use secret_manager_exec::api::{Provider, Revoke, Target};

/// Every plugin operation at TRACE level: no minted secret in the logs or in an error.
#[tokio::test(flavor = "current_thread")]
async fn no_secret_in_trace_logs_or_errors() {
    let cap = secret_manager_testkit::TraceCapture::start();
    let dir = tempfile::tempdir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    let plugin = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/plugins/secret-manager-provider-demo"
    ));
    let p = ExecProvider::new("demo", plugin);
    let t = Target {
        source: "demo".into(),
        params: [("account".to_string(), "acme".to_string())].into(),
        current_key: None,
        referenced: Vec::new(),
    };
    p.preflight(&t).await.unwrap();
    let mut minted = Vec::new();
    for _ in 0..3 {
        let m = p.mint(&t).await.unwrap();
        p.verify(&m).await.unwrap();
        minted.push(m);
    }
    p.keys(&t).await.unwrap();
    // The fourth key exceeds the plugin's limit: an error string to check too.
    let errors = [p.mint(&t).await.unwrap_err().to_string()];
    for m in &minted {
        p.revoke(&t, &m.key_id, Revoke::Delete).await.unwrap();
        p.revoke(&t, &m.key_id, Revoke::Delete).await.unwrap();
    }
    let logs = cap.finish();
    assert!(logs.contains("demo"), "logging was captured: {logs}");
    let mut checked = 0;
    for m in &minted {
        for v in m.fields.values() {
            if v.expose() == m.key_id.0 || v.len() < 8 {
                continue;
            }
            checked += 1;
            assert!(
                !logs.contains(v.expose()),
                "a secret appears in the TRACE logs"
            );
            for e in &errors {
                assert!(!e.contains(v.expose()), "a secret appears in: {e}");
            }
        }
    }
    assert!(checked >= 3, "the plugin returned secret fields");
}
