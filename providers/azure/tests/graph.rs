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
    // A new secret is rejected twice (not replicated yet), then accepted: verify waits.
    g.state().unpropagated = 2;
    p.verify(&m).await.unwrap();
    assert_eq!(g.state().unpropagated, 0);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_gives_up_on_a_secret_entra_never_accepts() {
    let (g, id) = setup().await;
    let mut p = provider(&g);
    p.verify_policy = fast(3);
    let m = p.mint(&target(&id)).await.unwrap();
    // The password is removed behind our back: sign-in keeps failing with AADSTS7000215.
    g.state().apps.get_mut(&id).unwrap().passwords.clear();
    let err = p.verify(&m).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("AADSTS7000215"), "{text}");
    let sign_ins = g
        .state()
        .log
        .iter()
        .filter(|l| l.ends_with("/oauth2/v2.0/token"))
        .count();
    assert_eq!(
        sign_ins,
        1 + 3,
        "admin sign-in once, then three verify attempts"
    );
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
