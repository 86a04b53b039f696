//! The Azure provider against a fake Entra ID + Microsoft Graph (HTTPS on loopback, real
//! REST shapes), through the real azure_identity credentials and reqwest.

mod common;
use common::*;

use secret_manager_azure::api::testing::conformance;
use secret_manager_azure::api::{KeyId, KeyStatus, Provider, ProviderError, Revoke};
use secret_manager_azure::{AzureProvider, credential_chain_from};
use secret_manager_testkit::graph::{ADMIN_CLIENT_ID, TENANT};
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_against_fake_graph() {
    let (g, id) = setup().await;
    g.state().add_password(&id, chrono::Duration::days(100));
    let p = provider(&g);
    conformance(&p, &target(&id)).await;
    let log = g.state().log.clone();
    assert!(
        log.iter()
            .any(|l| l == &format!("POST /{TENANT}/oauth2/v2.0/token")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l == &format!("POST /v1.0/applications/{id}/addPassword")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l == &format!("POST /v1.0/applications/{id}/removePassword")),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_fields_sign_in_and_keys_show_expiry() {
    let (g, id) = setup().await;
    let (old, _) = g.state().add_password(&id, chrono::Duration::days(800));
    let p = provider(&g);
    let t = target(&id);
    let m = p.mint(&t).await.unwrap();
    let names: Vec<&str> = m.fields.keys().map(String::as_str).collect();
    assert_eq!(names, ["ClientId", "ClientSecret", "KeyId", "TenantId"]);
    assert_eq!(m.fields["ClientId"].expose(), APP_ID);
    assert_eq!(m.fields["TenantId"].expose(), TENANT);
    assert_eq!(m.fields["KeyId"].expose(), m.key_id.0);
    let stored = g.state().apps[&id].passwords.last().unwrap().secret.clone();
    assert_eq!(m.fields["ClientSecret"].expose(), stored);
    // A new secret is rejected until it has replicated (20 s here): verify waits.
    g.state().propagation = std::time::Duration::from_secs(20);
    let m2 = p.mint(&t).await.unwrap();
    let clock = g.state().clock.clone();
    p.verify(&m2).await.unwrap();
    assert!(
        clock.now() >= std::time::Duration::from_secs(20),
        "{:?}",
        clock.now()
    );
    p.revoke(&t, &m2.key_id, Revoke::Delete).await.unwrap();
    // The operator is the credential link that really signed in.
    assert_eq!(
        m.operator.as_deref(),
        Some(format!("azure client secret (client {ADMIN_CLIENT_ID})").as_str())
    );
    let keys = p.keys(&t).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].id, KeyId(old.clone()));
    assert_eq!(
        keys[0].status,
        KeyStatus::Expired,
        "a 2-year secret created 800 days ago"
    );
    assert_eq!(keys[1].status, KeyStatus::Active);
    // Graph cannot disable: Disable removes the password.
    p.revoke(&t, &KeyId(old.clone()), Revoke::Disable)
        .await
        .unwrap();
    assert_eq!(g.state().key_ids(&id), vec![m.key_id.0.clone()]);
}

fn sign_ins(g: &secret_manager_testkit::graph::FakeGraph) -> usize {
    g.state()
        .log
        .iter()
        .filter(|l| l.ends_with("/oauth2/v2.0/token"))
        .count()
}

/// A secret Entra never accepts (AADSTS7000215 for good): verify polls for exactly the
/// documented window on the fake's clock, then fails permanently and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_spans_the_propagation_window_then_gives_up() {
    let (g, id) = setup().await;
    let p = provider(&g);
    let m = p.mint(&target(&id)).await.unwrap();
    g.state().propagation = std::time::Duration::from_secs(3600);
    g.state()
        .apps
        .get_mut(&id)
        .unwrap()
        .passwords
        .last_mut()
        .unwrap()
        .usable_at = std::time::Duration::from_secs(3600);
    let clock = g.state().clock.clone();
    let before = sign_ins(&g);
    let err = p.verify(&m).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("AADSTS7000215"), "{text}");
    assert!(text.contains("60s propagation window"), "{text}");
    assert!(!err.is_retryable());
    assert_eq!(clock.now(), secret_manager_azure::PROPAGATION_WINDOW);
    let attempts = sign_ins(&g) - before;
    assert!((6..=14).contains(&attempts), "{attempts} sign-ins in 60 s");
}

/// Sign-in errors that waiting cannot fix stop verify at once, with what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_sign_in_errors_are_not_waited_out() {
    use secret_manager_testkit::graph::OTHER_TENANT;
    let (g, id) = setup().await;
    let p = provider(&g);
    let clock = g.state().clock.clone();
    for (tenant, expect) in [
        (OTHER_TENANT, "AADSTS700016"),
        ("00000000-0000-4000-8000-000000000000", "AADSTS90002"),
    ] {
        let mut t = target(&id);
        t.params.insert("tenantId".into(), tenant.into());
        let m = p.mint(&t).await.unwrap();
        let before = sign_ins(&g);
        let err = p.verify(&m).await.unwrap_err();
        assert!(err.to_string().contains(expect), "{err}");
        assert!(err.to_string().contains("tenantId annotation"), "{err}");
        assert_eq!(sign_ins(&g) - before, 1, "{expect}: one attempt");
        // Preflight catches both before anything is minted.
        let err = p.preflight(&t).await.unwrap_err();
        assert!(err.to_string().contains(tenant), "{err}");
    }
    // Expired already: AADSTS7000222.
    let m = p.mint(&target(&id)).await.unwrap();
    g.state()
        .apps
        .get_mut(&id)
        .unwrap()
        .passwords
        .last_mut()
        .unwrap()
        .end = chrono::Utc::now() - chrono::Duration::hours(1);
    let err = p.verify(&m).await.unwrap_err();
    assert!(err.to_string().contains("AADSTS7000222"), "{err}");
    assert_eq!(clock.now(), std::time::Duration::ZERO, "no waiting at all");
}

/// Graph reads lag writes: a rollback right after addPassword does not see the new secret
/// in a read. revoke never reads first — it removes, and "not found" means done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_does_not_trust_a_stale_read() {
    let (g, id) = setup().await;
    let p = provider(&g);
    let t = target(&id);
    g.state().read_lag = std::time::Duration::from_secs(30);
    let m = p.mint(&t).await.unwrap();
    assert!(p.keys(&t).await.unwrap().is_empty(), "the read lags");
    p.revoke(&t, &m.key_id, Revoke::Delete).await.unwrap();
    assert!(g.state().key_ids(&id).is_empty(), "really removed");
    p.revoke(&t, &m.key_id, Revoke::Delete).await.unwrap();
    // A missing application is an error, not "already revoked".
    let err = p
        .revoke(&target(APP_ID), &m.key_id, Revoke::Delete)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::NotFound { .. }), "{err}");
}

/// Graph asks to wait (429/503 with Retry-After): the shared policy waits that long within
/// its bound, and gives up at once beyond it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_from_graph_is_honoured() {
    let (g, id) = setup().await;
    let p = provider(&g);
    let t = target(&id);
    let clock = g.state().clock.clone();
    let policy = secret_manager_azure::api::RetryPolicy::default();
    p.keys(&t).await.unwrap();
    {
        let mut s = g.state();
        s.throttle = 1;
        s.throttle_status = 503;
        s.retry_after = 41;
    }
    policy
        .run_on(clock.as_ref(), "keys", || p.keys(&t))
        .await
        .unwrap();
    assert!(
        clock.now() >= std::time::Duration::from_secs(41),
        "{:?}",
        clock.now()
    );
    {
        let mut s = g.state();
        s.throttle = 1;
        s.throttle_status = 429;
        s.retry_after = 315;
    }
    let before = clock.now();
    let err = policy
        .run_on(clock.as_ref(), "keys", || p.keys(&t))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("asked to wait 315s"), "{err}");
    assert_eq!(clock.now(), before);
}

/// New secrets get the configured lifetime (or the annotation's), `keys` shows it, and a
/// tenant policy that refuses the lifetime or any secret at all says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_lifetime_and_tenant_policies() {
    let (g, id) = setup().await;
    let day = std::time::Duration::from_secs(86400);
    let p = provider(&g).with_secret_lifetime(Some(180 * day));
    let t = target(&id);
    let m = p.mint(&t).await.unwrap();
    let keys = p.keys(&t).await.unwrap();
    let k = keys.iter().find(|k| k.id == m.key_id).unwrap();
    let days = (k.expires.unwrap() - chrono::Utc::now()).num_days();
    assert!((179..=180).contains(&days), "{days}");
    let mut short = t.clone();
    short.params.insert("secretLifetime".into(), "30d".into());
    let m = p.mint(&short).await.unwrap();
    let k = p
        .keys(&t)
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.id == m.key_id)
        .unwrap();
    assert!((29..=30).contains(&(k.expires.unwrap() - chrono::Utc::now()).num_days()));
    g.state().max_password_lifetime = Some(chrono::Duration::days(90));
    let err = p.mint(&t).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("CredentialInvalidLifetimeAsPerAppPolicy"),
        "{err}"
    );
    assert!(err.to_string().contains("secretLifetime"), "{err}");
    g.state().block_passwords = true;
    let err = p.mint(&short).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("CredentialTypeNotAllowedAsPerAppPolicy"),
        "{err}"
    );
    let mut bad = t.clone();
    bad.params
        .insert("secretLifetime".into(), "soon\u{1b}[31m".into());
    let err = p.preflight(&bad).await.unwrap_err();
    assert!(err.to_string().contains("not a duration"), "{err}");
    assert!(!err.to_string().contains('\u{1b}'), "{err}");
}

/// An Entra ID outage while fetching the tool's own token is transient (retried), not
/// "access denied".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_outage_is_transient() {
    let (g, id) = setup().await;
    let p = provider(&g);
    g.state().token_outage = 1;
    let err = p.keys(&target(&id)).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(!matches!(err, ProviderError::AccessDenied { .. }), "{err}");
    p.keys(&target(&id)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retryable_and_the_shared_policy_retries_it() {
    let (g, id) = setup().await;
    let p = provider(&g);
    let t = target(&id);
    g.state().throttle = 1;
    let err = p.keys(&t).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("TooManyRequests"), "{err}");
    g.state().throttle = 3;
    let keys = fast(5).run("keys", || p.keys(&t)).await.unwrap();
    assert!(keys.is_empty());
    assert_eq!(g.state().throttle, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_and_wrong_ids_are_reported_clearly() {
    let (g, id) = setup().await;
    let p = provider(&g);
    let t = target(&id);
    g.state().deny = true;
    let err = fast(5).run("mint", || p.mint(&t)).await.unwrap_err();
    assert!(
        matches!(
            err,
            ProviderError::AccessDenied {
                operation: "addPassword",
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("Authorization_RequestDenied"), "{text}");
    assert!(text.contains("Application.ReadWrite.OwnedBy"), "{text}");
    assert!(g.state().key_ids(&id).is_empty(), "nothing minted");
    g.state().deny = false;

    // The appId where the object id belongs: 404 with the hint.
    let err = p.preflight(&target(APP_ID)).await.unwrap_err();
    assert!(matches!(err, ProviderError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("not its appId"), "{err}");
    // A clientId that is not this application's appId.
    let mut wrong = target(&id);
    wrong
        .params
        .insert("clientId".into(), "someone-else".into());
    let err = p.preflight(&wrong).await.unwrap_err();
    assert!(err.to_string().contains("has appId 6a1f2c3d"), "{err}");
    let mut missing = target(&id);
    missing.params.remove("tenantId");
    assert_eq!(
        p.mint(&missing).await.unwrap_err().to_string(),
        "azure: missing parameter `tenantId`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_admin_secret_names_every_credential_tried() {
    let (g, id) = setup().await;
    let ep = endpoints(&g);
    let vars: BTreeMap<&str, &str> = [
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", ADMIN_CLIENT_ID),
        ("AZURE_CLIENT_SECRET", "not-the-secret"),
    ]
    .into();
    let chain = credential_chain_from(&ep, |k| vars.get(k).map(|v| v.to_string())).unwrap();
    assert_eq!(
        chain.names(),
        ["managed identity", "client secret", "developer tools"]
    );
    let p = AzureProvider::new(chain, ep);
    let err = p.keys(&target(&id)).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ProviderError::AccessDenied { .. }), "{text}");
    assert!(text.contains("client secret: "), "{text}");
    assert!(text.contains("AADSTS7000215"), "{text}");
    assert!(text.contains("az login"), "{text}");
    assert!(!text.contains("not-the-secret"), "{text}");
}

/// No Azure variables, no managed identity, no `az`: one line saying what to set, as a
/// missing-credentials error (not "access denied").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_at_all_is_one_line_saying_what_to_set() {
    let (g, id) = setup().await;
    let ep = endpoints(&g);
    let chain = credential_chain_from(&ep, |_| None).unwrap();
    let p = AzureProvider::new(chain, ep);
    let err = p.keys(&target(&id)).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ProviderError::NoCredentials { .. }), "{text}");
    assert!(
        text.starts_with("azure: no Azure credentials found: set AZURE_TENANT_ID"),
        "{text}"
    );
    assert!(
        !text.contains("access denied") && !text.contains('\n'),
        "{text}"
    );
}

/// The old key's use since publish comes from the sign-in logs: a sign-in with that key
/// after publish is "used"; none is "pending" until the logs' delay has passed, then
/// "idle"; sign-ins with another key or before publish do not count; a tenant without
/// P1/P2 cannot tell (the gate falls back); a missing AuditLog.Read.All is an error that
/// names it; a hostile client id never reaches the filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_key_use_comes_from_the_sign_in_logs_with_their_delay() {
    use secret_manager_azure::api::{KeyId, Provider, Usage};
    use secret_manager_testkit::graph::SignIn;
    let (g, id) = setup().await;
    let p = provider(&g);
    let (old, _) = g.state().add_password(&id, chrono::Duration::days(90));
    let (other, _) = g.state().add_password(&id, chrono::Duration::days(1));
    let published: chrono::DateTime<chrono::Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
    let at = |m: i64| published + chrono::Duration::minutes(m);
    let t = target(&id);
    let key = KeyId(old.clone());
    {
        let mut s = g.state();
        for (k, m) in [(&old, -30), (&other, 20), (&old, -1)] {
            s.sign_ins.push(SignIn {
                app_id: APP_ID.into(),
                key_id: k.clone(),
                at: at(m),
            });
        }
    }
    let usage = p.usage_since(&t, &key, published, at(5)).await.unwrap();
    assert!(
        matches!(&usage, Usage::Pending(why) if why.contains("2026-12-01T10:10:00Z")),
        "{usage:?}"
    );
    assert_eq!(
        p.usage_since(&t, &key, published, at(60)).await.unwrap(),
        Usage::Idle
    );
    g.state().sign_ins.push(SignIn {
        app_id: APP_ID.into(),
        key_id: old.clone(),
        at: at(30),
    });
    assert_eq!(
        p.usage_since(&t, &key, published, at(60)).await.unwrap(),
        Usage::Used(at(30))
    );
    // The request: the beta sign-in logs, filtered on the service principal, the app, the
    // key and the time since publish; one page of one.
    let log = g.state().log.clone();
    assert!(
        log.iter().any(|l| l == "GET /beta/auditLogs/signIns"),
        "{log:?}"
    );

    g.state().premium = false;
    let usage = p.usage_since(&t, &key, published, at(60)).await.unwrap();
    assert!(
        matches!(&usage, Usage::Unknown(why) if why.contains("P1/P2")),
        "{usage:?}"
    );
    g.state().premium = true;
    g.state().audit_log_read = false;
    let e = p
        .usage_since(&t, &key, published, at(60))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("AuditLog.Read.All"), "{e}");
    assert!(!e.contains("Application.ReadWrite.OwnedBy"), "{e}");
    g.state().audit_log_read = true;

    let calls = g.state().log.len();
    let mut hostile = target(&id);
    hostile
        .params
        .insert("clientId".into(), format!("{APP_ID}' or appId ne '"));
    let e = p
        .usage_since(&hostile, &key, published, at(60))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not a GUID: nothing was asked"), "{e}");
    assert_eq!(g.state().log.len(), calls, "nothing was sent");
}
