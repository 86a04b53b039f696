//! Alone in its own test binary: tracing's callsite interest cache is process-global,
//! so a capture installed while other tests run in parallel threads can miss events.

mod common;
use common::*;

use secret_manager_gcp::api::{Provider, Revoke};

/// Every provider operation at TRACE level (the client library's logs included): no part
/// of a private key — the admin's or a minted one — may appear in the logs or errors.
#[tokio::test(flavor = "current_thread")]
async fn no_secret_in_trace_logs_or_errors() {
    let cap = secret_manager_testkit::TraceCapture::start();
    let f = setup().await;
    let p = provider(&f).await;
    let t = target();
    p.preflight(&t).await.unwrap();
    let m1 = p.mint(&t).await.unwrap();
    f.state().propagation = std::time::Duration::from_secs(3);
    p.verify(&m1).await.unwrap();
    let m2 = p.mint(&t).await.unwrap();
    p.keys(&t).await.unwrap();
    let mut errors = Vec::new();
    f.state().throttle = 1;
    errors.push(p.mint(&t).await.unwrap_err().to_string());
    p.revoke(&t, &m2.key_id, Revoke::Disable).await.unwrap();
    let strict = provider(&f)
        .await
        .with_propagation_window(std::time::Duration::ZERO);
    errors.push(strict.verify(&m2).await.unwrap_err().to_string());
    p.revoke(&t, &m2.key_id, Revoke::Delete).await.unwrap();
    p.revoke(&t, &m1.key_id, Revoke::Delete).await.unwrap();
    errors.push(format!("{m1:?}"));
    let logs = cap.finish();
    assert!(
        logs.contains("CreateServiceAccountKey"),
        "logging was captured: {logs}"
    );
    // The base64 body of each private key, a line of it, is what a leak would show.
    let mut needles = Vec::new();
    for file in [
        f.admin_key_json().to_string(),
        m1.fields["KeyFileJson"].expose().to_string(),
        m2.fields["KeyFileJson"].expose().to_string(),
    ] {
        let v: serde_json::Value = serde_json::from_str(&file).unwrap();
        let pem = v["private_key"].as_str().unwrap().to_string();
        needles.push(pem.lines().nth(3).unwrap().to_string());
    }
    for n in &needles {
        assert!(n.len() >= 60, "a full PEM line");
        if let Some(at) = logs.find(n.as_str()) {
            let line_start = logs[..at].rfind('\n').map_or(0, |i| i + 1);
            panic!(
                "private key material appears in the TRACE logs, in a line starting: {}",
                &logs[line_start..(line_start + 160).min(at)]
            );
        }
        for e in &errors {
            assert!(
                !e.contains(n.as_str()),
                "private key material appears in: {e}"
            );
        }
    }
}
