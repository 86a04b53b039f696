//! Alone in its own test binary: tracing's callsite interest cache is process-global,
//! so a capture installed while other tests run in parallel threads can miss events.

mod common;
use common::*;

use secret_manager_azure::api::{Provider, Revoke};
use secret_manager_testkit::graph::ADMIN_SECRET;

/// Every provider operation at TRACE level (azure_core's and reqwest's logs included): no
/// secret — neither the admin's client secret nor a minted one — may appear in the
/// captured logs or in any error string.
#[tokio::test(flavor = "current_thread")]
async fn no_secret_in_trace_logs_or_errors() {
    let cap = secret_manager_testkit::TraceCapture::start();
    let (g, id) = setup().await;
    let p = provider(&g);
    let t = target(&id);
    p.preflight(&t).await.unwrap();
    let m1 = p.mint(&t).await.unwrap();
    g.state().propagation = std::time::Duration::from_secs(5);
    p.verify(&m1).await.unwrap();
    let m2 = p.mint(&t).await.unwrap();
    p.keys(&t).await.unwrap();
    let mut errors = Vec::new();
    g.state().throttle = 1;
    errors.push(p.mint(&t).await.unwrap_err().to_string());
    p.revoke(&t, &m2.key_id, Revoke::Delete).await.unwrap();
    p.revoke(&t, &m2.key_id, Revoke::Delete).await.unwrap();
    let strict = provider(&g).with_propagation_window(std::time::Duration::ZERO);
    errors.push(strict.verify(&m2).await.unwrap_err().to_string());
    p.revoke(&t, &m1.key_id, Revoke::Delete).await.unwrap();
    let logs = cap.finish();
    assert!(logs.contains("addPassword"), "logging was captured: {logs}");
    let secrets = [
        ADMIN_SECRET.to_string(),
        m1.fields["ClientSecret"].expose().to_string(),
        m2.fields["ClientSecret"].expose().to_string(),
    ];
    for s in &secrets {
        assert!(
            !logs.contains(s.as_str()),
            "a secret appears in the TRACE logs"
        );
        for e in &errors {
            assert!(!e.contains(s.as_str()), "a secret appears in an error: {e}");
        }
    }
}
