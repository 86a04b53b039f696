//! The GCP provider against a fake IAM Admin API (real REST paths, JSON and error
//! envelopes, the 10-key limit, self-signed JWT checking), through the real
//! google-cloud-iam-admin-v1 client and google-cloud-auth service-account credentials.

mod common;
use common::*;

use secret_manager_gcp::api::testing::conformance;
use secret_manager_gcp::api::{KeyStatus, Provider, ProviderError, Revoke};
use secret_manager_testkit::iam::MAX_KEYS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_against_fake_iam() {
    let f = setup().await;
    f.state().seed_key(EMAIL, chrono::Duration::days(40), false);
    let p = provider(&f).await;
    conformance(&p, &target()).await;
    let log = f.state().log.clone();
    let base = format!("/v1/projects/{PROJECT}/serviceAccounts/{EMAIL}/keys");
    assert!(log.iter().any(|l| l == &format!("POST {base}")), "{log:?}");
    assert!(
        log.iter()
            .any(|l| l.starts_with(&format!("DELETE {base}/"))),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_key_file_authenticates_and_disable_is_a_real_state() {
    let f = setup().await;
    let p = provider(&f).await;
    let t = target();
    let m = p.mint(&t).await.unwrap();
    let names: Vec<&str> = m.fields.keys().map(String::as_str).collect();
    assert_eq!(names, ["ClientEmail", "KeyFileJson", "KeyId"]);
    assert_eq!(m.fields["ClientEmail"].expose(), EMAIL);
    assert_eq!(m.key_id.0.len(), 40);
    let file: serde_json::Value = serde_json::from_str(m.fields["KeyFileJson"].expose()).unwrap();
    assert_eq!(file["type"], "service_account");
    assert_eq!(file["private_key_id"], m.key_id.0.as_str());
    assert_eq!(file["client_email"], EMAIL);
    // Not propagated for two attempts, then the self-signed JWT is accepted.
    f.state().unpropagated = 2;
    p.verify(&m).await.unwrap();
    assert_eq!(f.state().unpropagated, 0);
    // The Google-managed key is not listed: only USER_MANAGED keys are ours.
    assert_eq!(p.keys(&t).await.unwrap().len(), 1);
    p.revoke(&t, &m.key_id, Revoke::Disable).await.unwrap();
    assert_eq!(f.state().is_disabled(EMAIL, &m.key_id.0), Some(true));
    let keys = p.keys(&t).await.unwrap();
    assert_eq!(keys[0].status, KeyStatus::Inactive);
    // A disabled key no longer authenticates.
    let mut strict = provider(&f).await;
    strict.verify_policy = fast(2);
    let err = strict.verify(&m).await.unwrap_err();
    assert!(err.to_string().contains("Unauthenticated"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_ten_key_limit_mint_stops_and_deletes_nothing() {
    let f = setup().await;
    let p = provider(&f).await;
    let t = target();
    for _ in 0..MAX_KEYS {
        f.state().seed_key(EMAIL, chrono::Duration::days(30), false);
    }
    // Even an unreferenced, disabled key is not the provider's to delete: only the
    // engine knows which keys it minted itself.
    f.state().accounts.get_mut(EMAIL).unwrap().keys[1].disabled = true;
    let before = f.state().user_keys(EMAIL);
    let err = p.mint(&t).await.unwrap_err();
    assert!(matches!(err, ProviderError::KeyLimit { .. }), "{err}");
    assert!(err.to_string().contains(EMAIL), "{err}");
    assert_eq!(f.state().user_keys(EMAIL), before, "nothing deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retryable_and_the_shared_policy_retries_it() {
    let f = setup().await;
    let p = provider(&f).await;
    let t = target();
    f.state().throttle = 1;
    let err = p.keys(&t).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("ResourceExhausted"), "{err}");
    f.state().throttle = 3;
    let keys = fast(5).run("keys", || p.keys(&t)).await.unwrap();
    assert!(keys.is_empty());
    assert_eq!(f.state().throttle, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_and_missing_account_are_reported_clearly() {
    let f = setup().await;
    let p = provider(&f).await;
    let t = target();
    f.state().deny = true;
    let before = f.state().log.len();
    let err = fast(5).run("mint", || p.mint(&t)).await.unwrap_err();
    assert!(matches!(err, ProviderError::AccessDenied { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("iam.serviceAccountKeys.create"), "{text}");
    assert!(text.contains("roles/iam.serviceAccountKeyAdmin"), "{text}");
    assert_eq!(
        f.state().log.len(),
        before + 1,
        "permanent errors are not retried"
    );
    f.state().deny = false;
    let mut other = target();
    other.params.insert(
        "serviceAccount".into(),
        "ghost@payments-prod.iam.gserviceaccount.com".into(),
    );
    let err = p.preflight(&other).await.unwrap_err();
    assert!(matches!(err, ProviderError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("ghost@"), "{err}");
    other.params.remove("project");
    assert_eq!(
        p.mint(&other).await.unwrap_err().to_string(),
        "gcp: missing parameter `project`"
    );
}
