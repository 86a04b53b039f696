//! The AWS provider against a real `moto_server` through the real SDK.
//!
//! `scripts/test` installs moto into `target/venv`; `MOTO_SERVER` overrides the path.

use secret_manager_aws::AwsProvider;
use secret_manager_aws::api::{KeyId, Provider, ProviderError, RetryPolicy, Revoke, Target};
use secret_manager_testkit::MotoServer;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn moto_bin() -> String {
    std::env::var("MOTO_SERVER").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/venv/bin/moto_server"
        )
        .to_owned()
    })
}

/// Starts moto on a free loopback port and waits until it has bound it.
fn moto() -> MotoServer {
    MotoServer::start(&moto_bin())
}

async fn sdk_config(url: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::v2026_01_12())
        .endpoint_url(url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await
}

async fn create_user(url: &str, user: &str) {
    let iam = aws_sdk_iam::Client::new(&sdk_config(url).await);
    iam.create_user().user_name(user).send().await.unwrap();
}

fn target(user: &str) -> Target {
    let mut params = BTreeMap::new();
    params.insert("username".to_owned(), user.to_owned());
    params.insert("account".to_owned(), "123456789012".to_owned());
    Target {
        source: "aws".into(),
        params,
        current_key: None,
        referenced: Vec::new(),
    }
}

/// Creates `user` in `account` through a role assumed there (moto acts in the role's
/// account for credentials it issued).
async fn create_user_in(url: &str, user: &str, account: &str) {
    let base = sdk_config(url).await;
    let role =
        aws_config::sts::AssumeRoleProvider::builder(format!("arn:aws:iam::{account}:role/setup"))
            .session_name("setup")
            .configure(&base)
            .build()
            .await;
    let conf = base
        .to_builder()
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(role))
        .build();
    aws_sdk_iam::Client::new(&conf)
        .create_user()
        .user_name(user)
        .send()
        .await
        .unwrap();
}

async fn provider_with_roles(
    url: &str,
    roles: BTreeMap<String, secret_manager_aws::AccountRole>,
    run: &str,
) -> AwsProvider {
    let p = provider(url).await;
    p.with_roles(roles, run)
}

async fn provider(url: &str) -> AwsProvider {
    AwsProvider::from_config(sdk_config(url).await).with_propagation_window(Duration::from_secs(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
async fn conformance_suite_against_moto() {
    let m = moto();
    create_user(&m.url, "external-dns-dev1").await;
    let p = provider(&m.url).await;
    secret_manager_provider::testing::conformance(&p, &target("external-dns-dev1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
async fn at_the_two_key_limit_mint_stops_and_deletes_nothing() {
    let m = moto();
    create_user(&m.url, "bot").await;
    let p = provider(&m.url).await;
    let t = target("bot");
    let k1 = p.mint(&t).await.unwrap().key_id;
    let k2 = p.mint(&t).await.unwrap().key_id;
    // Even an unreferenced, inactive key is not the provider's to delete: only the
    // engine knows which keys it minted itself.
    p.revoke(&t, &k2, Revoke::Disable).await.unwrap();
    let err = p.mint(&t).await.unwrap_err();
    assert!(matches!(err, ProviderError::KeyLimit { .. }), "{err}");
    assert!(err.to_string().contains("IAM user bot"), "{err}");
    let ids: Vec<KeyId> = p
        .keys(&t)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids.len(), 2, "nothing deleted: {ids:?}");
    assert!(ids.contains(&k1) && ids.contains(&k2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
async fn preflight_refuses_a_manifest_of_another_account() {
    let m = moto();
    create_user(&m.url, "bot").await;
    let p = provider(&m.url).await;
    let mut t = target("bot");
    t.params.insert("account".into(), "999999999999".into());
    let err = p.preflight(&t).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, ProviderError::IdentityMismatch { .. }),
        "{msg}"
    );
    assert!(
        msg.contains("999999999999") && msg.contains("123456789012"),
        "{msg}"
    );
    assert!(msg.contains("providers.aws.accounts"), "{msg}");
    assert!(!err.is_retryable());
}

/// Users of two accounts in one provider: the second account's calls go through a role
/// assumed in it (moto acts in the role's account for the assumed credentials).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
async fn a_role_per_account_reaches_users_of_several_accounts() {
    let m = moto();
    create_user(&m.url, "bot").await;
    let other = "111111111111";
    let mut roles = std::collections::BTreeMap::new();
    roles.insert(
        other.to_owned(),
        secret_manager_aws::AccountRole {
            role_arn: format!("arn:aws:iam::{other}:role/secret-manager"),
            external_id: Some("fleet".into()),
        },
    );
    let p = provider_with_roles(&m.url, roles, "20261121T120000Z-00c0ffee").await;
    // A user of that account, created through the same assumed role.
    let mut t2 = target("remote-bot");
    t2.params.insert("account".into(), other.into());
    create_user_in(&m.url, "remote-bot", other).await;
    p.preflight(&target("bot")).await.unwrap();
    p.preflight(&t2).await.unwrap();
    let minted = p.mint(&t2).await.unwrap();
    let op = minted.operator.clone().unwrap();
    assert!(op.contains(other), "operator is the assumed role: {op}");
    assert!(
        op.contains("secret-manager-20261121T120000Z-00c0ffee"),
        "session names the run: {op}"
    );
    let keys = p.keys(&t2).await.unwrap();
    assert_eq!(keys.len(), 1);
    // The default account's user is untouched and separate.
    assert!(p.keys(&target("bot")).await.unwrap().is_empty());
    p.revoke(&t2, &minted.key_id, Revoke::Delete).await.unwrap();
    assert!(p.keys(&t2).await.unwrap().is_empty());
}

/// A loopback proxy in front of moto that answers the first `fail` requests with an IAM
/// error (`code`, HTTP `status`) and forwards the rest.
async fn faulty_proxy(
    upstream: String,
    fail: usize,
    status: u16,
    code: &'static str,
) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let seen2 = seen.clone();
    let up = upstream.trim_start_matches("http://").to_owned();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let n = seen2.fetch_add(1, Ordering::SeqCst);
            let up = up.clone();
            tokio::spawn(async move {
                // Read one request (headers + Content-Length body).
                let mut buf = Vec::new();
                let mut tmp = [0u8; 8192];
                let header_end = loop {
                    let k = s.read(&mut tmp).await.unwrap_or(0);
                    if k == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..k]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                while buf.len() < header_end + len {
                    let k = s.read(&mut tmp).await.unwrap_or(0);
                    if k == 0 {
                        break;
                    }
                    buf.extend_from_slice(&tmp[..k]);
                }
                if n < fail {
                    let body = format!(
                        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>injected {code}</Message></Error><RequestId>r{n}</RequestId></ErrorResponse>"
                    );
                    let resp = format!(
                        "HTTP/1.1 {status} Error\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    return;
                }
                // Forward with Connection: close so one request maps to one connection.
                let head = head.replacen("\r\n", "\r\nConnection: close\r\n", 1);
                let mut u = tokio::net::TcpStream::connect(&up).await.unwrap();
                u.write_all(head.as_bytes()).await.unwrap();
                u.write_all(&buf[header_end..]).await.unwrap();
                let mut resp = Vec::new();
                let _ = u.read_to_end(&mut resp).await;
                let _ = s.write_all(&resp).await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
async fn throttling_is_retryable_and_the_shared_policy_retries_it() {
    let m = moto();
    create_user(&m.url, "bot").await;
    let (url, seen) = faulty_proxy(m.url.clone(), 3, 400, "Throttling").await;
    let p = provider(&url).await;
    let t = target("bot");
    let policy = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..RetryPolicy::default()
    };
    let keys = policy.run("keys", || p.keys(&t)).await.unwrap();
    assert!(keys.is_empty());
    assert_eq!(
        seen.load(Ordering::SeqCst),
        4,
        "three throttled attempts, then success"
    );
    // Without retries the same error surfaces as retryable.
    let (url, _) = faulty_proxy(m.url.clone(), 1, 400, "Throttling").await;
    let err = provider(&url).await.keys(&t).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

/// IAM answers LimitExceeded right after a delete it has not made visible: the user lists
/// one key, so the create is tried again within the propagation window (it created
/// nothing) instead of failing as a full user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
async fn limit_exceeded_with_room_is_propagation_and_the_create_is_retried() {
    let m = moto();
    create_user(&m.url, "bot").await;
    let (url, seen) = faulty_proxy(m.url.clone(), 1, 409, "LimitExceeded").await;
    let clock = std::sync::Arc::new(secret_manager_testkit::VirtualClock::default());
    let p = provider(&url).await.with_clock(clock.clone());
    let t = target("bot");
    let minted = p.mint(&t).await.unwrap();
    assert!(
        seen.load(Ordering::SeqCst) >= 3,
        "create, list, create again"
    );
    assert!(
        clock.now() >= Duration::from_millis(500),
        "it waited before trying again"
    );
    assert_eq!(p.keys(&t).await.unwrap().len(), 1);
    // A user that really is full: KeyLimit at once, with the real count.
    p.mint(&t).await.unwrap();
    let mut t2 = t.clone();
    t2.referenced = vec![minted.key_id.clone()];
    let before = clock.now();
    let e = p.mint(&t2).await.unwrap_err();
    assert!(matches!(e, ProviderError::KeyLimit { count: 2, .. }), "{e}");
    assert_eq!(clock.now(), before, "no wait for a full user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
async fn access_denied_is_reported_clearly_and_not_retried() {
    let m = moto();
    create_user(&m.url, "bot").await;
    let (url, seen) = faulty_proxy(m.url.clone(), 100, 403, "AccessDenied").await;
    let p = provider(&url).await;
    let policy = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..RetryPolicy::default()
    };
    let t = target("bot");
    let err = policy
        .run("preflight", || p.preflight(&t))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProviderError::AccessDenied {
                operation: "GetCallerIdentity",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "aws: access denied for GetCallerIdentity: AccessDenied: injected AccessDenied"
    );
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "permanent errors are not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
async fn missing_user_and_parameters() {
    let m = moto();
    let p = provider(&m.url).await;
    let err = p.preflight(&target("nobody")).await.unwrap_err();
    assert!(matches!(err, ProviderError::NotFound { .. }), "{err}");
    let mut t = target("x");
    t.params.remove("username");
    assert_eq!(
        p.mint(&t).await.unwrap_err().to_string(),
        "aws: missing parameter `username`"
    );
}

/// Every provider operation at TRACE level (the SDK's own logs included): no secret value
/// may appear in the captured logs or in any error string.
#[tokio::test(flavor = "current_thread")]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
async fn no_secret_in_trace_logs_or_errors() {
    let m = moto();
    create_user(&m.url, "bot").await;
    let cap = secret_manager_testkit::TraceCapture::start();
    let p = provider(&m.url).await;
    let mut t = target("bot");
    p.preflight(&t).await.unwrap();
    let m1 = p.mint(&t).await.unwrap();
    p.verify(&m1).await.unwrap();
    let m2 = p.mint(&t).await.unwrap();
    t.referenced = vec![m1.key_id.clone(), m2.key_id.clone()];
    let mut errors = vec![p.mint(&t).await.unwrap_err().to_string()];
    p.keys(&t).await.unwrap();
    p.revoke(&t, &m2.key_id, Revoke::Disable).await.unwrap();
    p.revoke(&t, &m2.key_id, Revoke::Delete).await.unwrap();
    p.revoke(&t, &m1.key_id, Revoke::Delete).await.unwrap();
    // Verifying a deleted key fails: its error must not quote the secret either.
    let strict = provider(&m.url)
        .await
        .with_propagation_window(Duration::ZERO);
    if let Err(e) = strict.verify(&m1).await {
        errors.push(e.to_string());
    }
    errors.push(format!("{m1:?} {m2:?}"));
    let logs = cap.finish();
    assert!(
        logs.len() > 1000,
        "TRACE capture looks empty ({} bytes)",
        logs.len()
    );
    for m in [&m1, &m2] {
        let secret = m.fields["SecretAccessKey"].expose();
        assert!(
            !logs.contains(secret),
            "secret access key found in TRACE logs"
        );
        for e in &errors {
            assert!(!e.contains(secret), "secret access key found in: {e}");
        }
    }
}

/// verify waits out the whole documented window (on a virtual clock) for a key STS keeps
/// rejecting, then fails permanently and says so; a key accepted after a few rejections
/// passes. (moto's STS accepts any key, so a proxy plays the rejecting STS.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
async fn verify_spans_the_propagation_window_then_gives_up() {
    let m = moto();
    create_user(&m.url, "bot").await;
    let t = target("bot");
    let minted = provider(&m.url).await.mint(&t).await.unwrap();
    let clock = std::sync::Arc::new(secret_manager_testkit::VirtualClock::default());
    let (url, seen) = faulty_proxy(m.url.clone(), 1000, 403, "InvalidClientTokenId").await;
    let p = provider(&url)
        .await
        .with_propagation_window(secret_manager_aws::PROPAGATION_WINDOW)
        .with_clock(clock.clone());
    let e = p.verify(&minted).await.unwrap_err();
    assert_eq!(clock.now(), secret_manager_aws::PROPAGATION_WINDOW);
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("30s propagation window"), "{e}");
    let attempts = seen.load(Ordering::SeqCst);
    assert!((5..=12).contains(&attempts), "{attempts} attempts in 30 s");
    // Rejected three times, then accepted: done inside the window.
    let clock = std::sync::Arc::new(secret_manager_testkit::VirtualClock::default());
    let (url, _) = faulty_proxy(m.url.clone(), 3, 403, "InvalidClientTokenId").await;
    let p = provider(&url)
        .await
        .with_propagation_window(secret_manager_aws::PROPAGATION_WINDOW)
        .with_clock(clock.clone());
    p.verify(&minted).await.unwrap();
    assert!(clock.now() > Duration::ZERO && clock.now() < Duration::from_secs(30));
    // Any other error is a verdict: no waiting.
    let clock = std::sync::Arc::new(secret_manager_testkit::VirtualClock::default());
    let (url, seen) = faulty_proxy(m.url.clone(), 1000, 400, "InvalidAction").await;
    let p = provider(&url).await.with_clock(clock.clone());
    p.verify(&minted).await.unwrap_err();
    assert_eq!(
        (clock.now(), seen.load(Ordering::SeqCst)),
        (Duration::ZERO, 1)
    );
}
