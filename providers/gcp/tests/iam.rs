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
    p.verify(&m).await.unwrap();
    // The Google-managed key is not listed: only USER_MANAGED keys are ours.
    assert_eq!(p.keys(&t).await.unwrap().len(), 1);
    p.revoke(&t, &m.key_id, Revoke::Disable).await.unwrap();
    assert_eq!(f.state().is_disabled(EMAIL, &m.key_id.0), Some(true));
    let keys = p.keys(&t).await.unwrap();
    assert_eq!(keys[0].status, KeyStatus::Inactive);
    // A disabled key no longer authenticates: verify waits out the window, then says so.
    let strict = provider(&f)
        .await
        .with_propagation_window(std::time::Duration::from_secs(5));
    let err = strict.verify(&m).await.unwrap_err();
    assert!(err.to_string().contains("Unauthenticated"), "{err}");
    assert!(err.to_string().contains("5s propagation window"), "{err}");
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

/// Google: a new key may need "60 seconds or more". verify polls until the window (120 s
/// by default) is over, on the fake's clock: a key that starts working at 75 s passes; one
/// that would need 200 s fails after exactly 120 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_spans_googles_propagation_window() {
    use std::time::Duration;
    let f = setup().await;
    let p = provider(&f).await;
    let clock = f.state().clock.clone();
    f.state().propagation = Duration::from_secs(75);
    let m = p.mint(&target()).await.unwrap();
    p.verify(&m).await.unwrap();
    assert!(clock.now() >= Duration::from_secs(75), "{:?}", clock.now());
    assert!(clock.now() < secret_manager_gcp::PROPAGATION_WINDOW);
    f.state().propagation = Duration::from_secs(200);
    let start = clock.now();
    let m = p.mint(&target()).await.unwrap();
    let err = p.verify(&m).await.unwrap_err();
    assert_eq!(clock.now() - start, secret_manager_gcp::PROPAGATION_WINDOW);
    assert!(err.to_string().contains("120s propagation window"), "{err}");
    assert!(!err.is_retryable());
}

/// IAM answers 403 when deleting (or disabling) a key that is already gone: revoke
/// confirms with a list and reports success; a 403 for a key that exists stays an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_is_idempotent_against_the_403_iam_gives_for_missing_keys() {
    let f = setup().await;
    let p = provider(&f).await;
    let t = target();
    let m = p.mint(&t).await.unwrap();
    p.revoke(&t, &m.key_id, Revoke::Delete).await.unwrap();
    let before = f.state().log.len();
    p.revoke(&t, &m.key_id, Revoke::Delete).await.unwrap();
    p.revoke(&t, &m.key_id, Revoke::Disable).await.unwrap();
    let log = f.state().log[before..].to_vec();
    assert!(log.iter().any(|l| l.starts_with("DELETE ")), "{log:?}");
    assert!(
        log.iter().any(|l| l.starts_with("GET ")),
        "confirmed by a list: {log:?}"
    );
    let kept = p.mint(&t).await.unwrap();
    f.state().deny = true;
    let err = p
        .revoke(&t, &kept.key_id, Revoke::Delete)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::AccessDenied { .. }), "{err}");
}

/// The organization policy that forbids keys is not a full account: it says which
/// constraint refused, and nothing about a key limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_org_policy_against_keys_is_told_apart_from_the_key_limit() {
    let f = setup().await;
    let p = provider(&f).await;
    f.state().keys_forbidden = true;
    let err = p.mint(&target()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Permanent { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("constraints/iam.disableServiceAccountKeyCreation"),
        "{text}"
    );
    assert!(!text.contains("10 keys"), "{text}");
    f.state().keys_forbidden = false;
    for _ in 0..MAX_KEYS {
        f.state().seed_key(EMAIL, chrono::Duration::days(30), false);
    }
    let err = p.mint(&target()).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::KeyLimit { count: 10, .. }),
        "{err}"
    );
}

/// Quota is per minute: beyond it IAM answers 429 with a RetryInfo delay to the next
/// minute, and the shared policy waits exactly that (on the fake's clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_minute_quota_is_waited_out_as_iam_asks() {
    use std::time::Duration;
    let f = setup().await;
    let p = provider(&f).await;
    let clock = f.state().clock.clone();
    clock.advance(Duration::from_secs(10));
    f.state().quota_per_minute = Some(3);
    let t = target();
    let policy = secret_manager_gcp::api::RetryPolicy::default();
    for _ in 0..7 {
        policy
            .run_on(clock.as_ref(), "keys", || p.keys(&t))
            .await
            .unwrap();
    }
    // 3 in minute 0, 3 in minute 1, 1 in minute 2: two waits to the next full minute.
    let now = clock.now();
    assert!(
        now >= Duration::from_secs(120) && now < Duration::from_secs(125),
        "{now:?}"
    );
    p.keys(&t).await.unwrap();
    p.keys(&t).await.unwrap();
    let err = p.keys(&t).await.unwrap_err();
    assert_eq!(
        err.retry_after().map(|d| d.as_secs()),
        Some(60 - (now.as_secs() % 60))
    );
}

/// The old key's use since publish comes from the Policy Analyzer's key activity, reported
/// by day: used on a later day is "used"; used on the day of publish is "pending" until the
/// data covers a whole day after it, then "idle"; no activity waits two days; the request
/// names the key's full resource name; the API not enabled says what to enable; a hostile
/// key id never reaches the filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_key_use_comes_from_the_policy_analyzer_by_day() {
    use secret_manager_gcp::api::{KeyId, Usage};
    let f = setup().await;
    let old = f.state().seed_key(EMAIL, chrono::Duration::days(40), false);
    let p = provider(&f)
        .await
        .with_policy_analyzer(Some(f.server.url.clone()));
    let t = target();
    let key = KeyId(old.clone());
    let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    let published = at("2026-11-20T18:00:00Z");
    let now = at("2026-11-25T00:00:00Z");

    // Never used: idle once two days of daily data have passed.
    assert!(matches!(
        p.usage_since(&t, &key, published, at("2026-11-21T00:00:00Z"))
            .await
            .unwrap(),
        Usage::Pending(_)
    ));
    assert_eq!(
        p.usage_since(&t, &key, published, now).await.unwrap(),
        Usage::Idle
    );

    // Used on the day of publish (before it, or after: a day cannot tell).
    f.state()
        .key_uses
        .push((old.clone(), at("2026-11-20T17:00:00Z")));
    f.state().analyzed_until = at("2026-11-21T12:00:00Z");
    let usage = p.usage_since(&t, &key, published, now).await.unwrap();
    assert!(
        matches!(&usage, Usage::Pending(why) if why.contains("2026-11-22T08:00:00Z")),
        "{usage:?}"
    );
    f.state().analyzed_until = at("2026-11-22T09:00:00Z");
    assert_eq!(
        p.usage_since(&t, &key, published, now).await.unwrap(),
        Usage::Idle
    );
    // ... and again on the next day: used after publish.
    f.state()
        .key_uses
        .push((old.clone(), at("2026-11-21T20:00:00Z")));
    assert_eq!(
        p.usage_since(&t, &key, published, now).await.unwrap(),
        Usage::Used(at("2026-11-21T08:00:00Z"))
    );
    let log = f.state().log.clone();
    assert!(
        log.iter().any(|l| l
            == &format!(
                "GET /v1/projects/{PROJECT}/locations/global/activityTypes/serviceAccountKeyLastAuthentication/activities:query"
            )),
        "{log:?}"
    );

    f.state().analyzer_disabled = true;
    let e = p
        .usage_since(&t, &key, published, now)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Policy Analyzer API") && e.contains("activityAnalysisViewer"),
        "{e}"
    );
    f.state().analyzer_disabled = false;

    let calls = f.state().log.len();
    let e = p
        .usage_since(&t, &KeyId(format!("{old}\" OR x=\"")), published, now)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("nothing was asked"), "{e}");
    assert_eq!(f.state().log.len(), calls, "nothing was sent");
}
