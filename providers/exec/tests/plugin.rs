//! The exec provider against the example plugin in testdata/plugins.

use secret_manager_exec::ExecProvider;
use secret_manager_exec::api::{Provider, ProviderError, Target};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn plugin() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/plugins/secret-manager-provider-demo"
    ))
}

fn target() -> Target {
    let mut params = BTreeMap::new();
    params.insert("account".to_owned(), "acme".to_owned());
    Target {
        source: "demo".into(),
        params,
        current_key: None,
        referenced: Vec::new(),
    }
}

// The demo plugin keeps state under the working directory of the test process.
fn in_temp_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::env::set_current_dir(d.path()).unwrap();
    d
}

#[tokio::test]
async fn conformance_and_protocol_details() {
    let _d = in_temp_dir();
    let p = ExecProvider::new("demo", plugin());
    secret_manager_provider::testing::conformance(&p, &target()).await;
    let caps = p.query_capabilities().await.unwrap();
    assert_eq!(caps.max_keys_per_identity, Some(3));
    // keyLimit errors map to KeyLimit; missing parameters are permanent.
    for _ in 0..3 {
        p.mint(&target()).await.unwrap();
    }
    let e = p.mint(&target()).await.unwrap_err();
    assert!(matches!(e, ProviderError::KeyLimit { .. }), "{e}");
    let mut t = target();
    t.params.clear();
    let e = p.preflight(&t).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "demo: preflight failed: missing parameter account"
    );
}
