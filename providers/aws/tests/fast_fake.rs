//! The AWS provider against the testkit's fast IAM/STS fake (the concurrency benchmark's
//! endpoint) through the real SDK: the fake must answer in shapes the SDK parses, and a
//! rotation of one credential must stay within the documented call budget.

use secret_manager_aws::AwsProvider;
use secret_manager_aws::api::{KeyId, Provider, ProviderError, Revoke, Target};
use secret_manager_testkit::FakeAws;
use std::collections::BTreeMap;
use std::time::Duration;

async fn provider(url: &str) -> AwsProvider {
    let config = aws_config::defaults(aws_config::BehaviorVersion::v2026_01_12())
        .endpoint_url(url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            secret_manager_testkit::aws::ADMIN_KEY_ID,
            "testing",
            None,
            None,
            "test",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    AwsProvider::from_config(config).with_propagation_window(Duration::from_secs(2))
}

fn target(user: &str, current: Option<&str>) -> Target {
    let mut params = BTreeMap::new();
    params.insert("username".to_owned(), user.to_owned());
    params.insert(
        "account".to_owned(),
        secret_manager_testkit::aws::ACCOUNT.to_owned(),
    );
    Target {
        source: "aws".into(),
        params,
        current_key: current.map(|k| KeyId(k.to_owned())),
        referenced: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_against_the_fast_fake() {
    let f = FakeAws::start(Duration::ZERO).await;
    f.state().users.insert("bot".into(), Vec::new());
    let p = provider(&f.server.url).await;
    secret_manager_provider::testing::conformance(&p, &target("bot", None)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_makes_five_calls_and_the_run_one_more() {
    let f = FakeAws::start(Duration::from_millis(5)).await;
    let (user, old) = f.state().seed(1).remove(0);
    let p = provider(&f.server.url).await;
    let t = target(&user, Some(&old));
    p.preflight(&t).await.unwrap();
    let keys = p.keys(&t).await.unwrap();
    assert_eq!(keys.len(), 1);
    let m = p.mint(&t).await.unwrap();
    p.verify(&m).await.unwrap();
    p.revoke(&t, &KeyId(old.clone()), Revoke::Delete)
        .await
        .unwrap();
    assert_eq!(f.state().key_ids(&user), vec![m.key_id.0.clone()]);
    let calls = f.state().calls.clone();
    let want: BTreeMap<String, u64> = [
        // once per account per run (the caller), once for verify with the new key
        ("GetCallerIdentity", 2),
        ("GetUser", 1),
        ("ListAccessKeys", 1),
        ("CreateAccessKey", 1),
        ("DeleteAccessKey", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(
        calls, want,
        "the per-credential call budget of docs/providers/aws.md"
    );

    // A second credential in the same run: the caller is not asked again.
    let (user2, old2) = f.state().seed(1).remove(0);
    let t2 = target(&user2, Some(&old2));
    f.state().calls.clear();
    p.preflight(&t2).await.unwrap();
    p.keys(&t2).await.unwrap();
    let m2 = p.mint(&t2).await.unwrap();
    p.verify(&m2).await.unwrap();
    p.revoke(&t2, &KeyId(old2), Revoke::Delete).await.unwrap();
    assert_eq!(f.state().calls.values().sum::<u64>(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_keeps_the_limits_the_engine_relies_on() {
    let f = FakeAws::start(Duration::ZERO).await;
    let (user, _) = f.state().seed(1).remove(0);
    let p = provider(&f.server.url).await;
    let t = target(&user, None);
    let m = p.mint(&t).await.unwrap();
    let err = p.mint(&t).await.unwrap_err();
    assert!(matches!(err, ProviderError::KeyLimit { .. }), "{err}");
    // A revoked key no longer signs: verify with it is refused, not accepted.
    p.revoke(&t, &m.key_id, Revoke::Delete).await.unwrap();
    let err = p.verify(&m).await.unwrap_err();
    assert!(err.to_string().contains("GetCallerIdentity"), "{err}");
    let err = p.preflight(&target("nobody", None)).await.unwrap_err();
    assert!(matches!(err, ProviderError::NotFound { .. }), "{err}");
}
