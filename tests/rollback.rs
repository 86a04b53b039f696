//! `rotate --rollback`: a rotation whose new key cannot be delivered is taken back while
//! its old key still works — the old ciphertexts back on main and on the pointers, then
//! the new key revoked — and never once the old key is gone.

use crate::support::engine::{DEV1, DNS, DNS_KEY, Env, T0, at, errors, t};
use crate::support::git;
use secret_manager::engine::{Action, Phase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_restores_the_old_key_everywhere_then_revokes_the_new_one() {
    let env = Env::new();
    let original = env.f.show("dev", "main", DNS);
    // A rotation with a one-hour grace period: published, the old key still there.
    let mut o = env.opts(t(T0));
    o.revoke_after = chrono::Duration::hours(1);
    let r = env.run(&o).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    let new_key = env.main_key(DNS);
    assert_ne!(new_key, DNS_KEY);
    assert_eq!(env.keys().len(), 2);

    // The plan says what it would do, and changes nothing.
    let before = env.all_refs();
    let mut back = env.opts(at(T0, 5));
    back.revoke_after = chrono::Duration::hours(1);
    back.rollback = true;
    back.dry_run = true;
    let r = env.run(&back).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    let plan = r
        .steps
        .iter()
        .find(|s| s.action == Action::Rollback)
        .unwrap();
    assert!(
        plan.detail.contains(&format!(
            "restore the old key {DNS_KEY} in 1 manifest(s), publish to {DEV1}, then revoke the new key {new_key} after 1h"
        )),
        "{}",
        plan.detail
    );
    assert_eq!(env.all_refs(), before);

    // The rollback: main and the pointer hold the old ciphertext again, byte for byte;
    // both keys still exist (the grace period runs again, for the new key).
    back.dry_run = false;
    let r = env.run(&back).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    assert_eq!(
        (
            r.count(Action::Rollback),
            r.count(Action::Publish),
            r.count(Action::Revoke)
        ),
        (1, 1, 0),
        "{:#?}",
        r.steps
    );
    assert_eq!(
        env.f.show("dev", "main", DNS),
        original,
        "the file as before the rotation"
    );
    assert_eq!(
        env.f
            .show("dev", &format!("refs/heads/cluster/{DEV1}"), DNS),
        original,
        "the cluster's pointer has it"
    );
    assert_eq!(
        env.keys().len(),
        2,
        "the new key waits out the grace period"
    );
    let records = env.records_on_main();
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0].ends_with("-rollback.yaml"), "{records:?}");
    let log = git(
        &env.f.path("dev.git"),
        &["log", "--format=%B", "-3", "main"],
    );
    assert!(log.contains("Secret-Manager-Action: rollback"), "{log}");
    assert!(
        log.contains(&format!("Secret-Manager-Old-Key: {new_key}")),
        "{log}"
    );

    // An ordinary run after the grace period revokes the new key, and only it.
    let mut later = env.opts(at(T0, 70));
    later.revoke_after = chrono::Duration::hours(1);
    let r = env.run(&later).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    assert_eq!(r.count(Action::Revoke), 1, "{:#?}", r.steps);
    assert_eq!(env.keys(), vec![DNS_KEY.to_string()]);
    assert!(env.records_on_main().is_empty());
    assert_eq!(env.main_key(DNS), DNS_KEY);

    // Nothing is in flight any more: a rollback finds nothing to take back.
    back.now = at(T0, 80);
    let r = env.run(&back).await;
    assert!(
        r.failures.is_empty() && r.count(Action::Rollback) == 0,
        "{:#?}",
        r.steps
    );
    assert_eq!(env.keys(), vec![DNS_KEY.to_string()]);
}

/// Once the old key is gone — revoked, or disabled — only forward: the rollback is an
/// error that says so, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_rollback_once_the_old_key_is_disabled() {
    let env = Env::new();
    let mut o = env.opts(t(T0));
    o.revoke_after = chrono::Duration::zero();
    o.revoke_mode = secret_manager::config::RevokeMode::Disable;
    let r = env.run(&o).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    assert_eq!(env.records_on_main().len(), 1, "disabled, deleted later");
    let new_key = env.main_key(DNS);
    let before = env.all_refs();
    let mut back = env.opts(at(T0, 5));
    back.rollback = true;
    let r = env.run(&back).await;
    assert_eq!(
        r.failures.iter().map(|f| f.phase).collect::<Vec<_>>(),
        vec![Phase::Preflight],
        "{}",
        errors(&r)
    );
    assert!(
        errors(&r).contains("is disabled already: only forward"),
        "{}",
        errors(&r)
    );
    assert_eq!(env.all_refs(), before, "nothing changed");
    assert_eq!(env.main_key(DNS), new_key);
}

/// `policy.publishDeadline`: a rotation that cannot reach a cluster (its pointer frozen)
/// waits, run after run, until the deadline; then it fails (14) and rolls back while the
/// old key works. Once the cluster takes changes again, it gets the rollback — no change
/// at all for it — and the new key goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_undelivered_past_the_deadline_rolls_back() {
    use crate::support::engine::{DNS_PROD, PROD1, hook};
    let env = Env::new();
    let cfg = env.f.path("work").join(".secret-manager.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            "  revokeMode: delete\n",
            "  revokeMode: delete\n  publishDeadline: 1h\n",
        ),
    )
    .unwrap();
    env.f
        .commit_and_publish("rotations must reach every cluster within an hour", &[]);
    let original = env.f.show("dev", "main", DNS_PROD);
    let frozen = hook(&env, "prod", "echo 'prod is frozen' >&2; exit 1");
    let mut o = env.opts(t(T0));
    o.filter.clusters = vec![PROD1.into()];
    let r = env.run(&o).await;
    assert_eq!(
        r.failures.iter().map(|f| f.phase).collect::<Vec<_>>(),
        vec![Phase::Publish],
        "{}",
        errors(&r)
    );
    let new_key = env.main_key(DNS_PROD);
    // Within the deadline: still only the frozen pointer.
    o.now = at(T0, 30);
    let r = env.run(&o).await;
    assert!(!errors(&r).contains("publishDeadline"), "{}", errors(&r));
    assert_eq!(r.count(Action::Rollback), 0);
    // Past it: a failure that says why, and the rollback.
    o.now = at(T0, 90);
    let r = env.run(&o).await;
    assert!(
        r.failures.iter().any(|f| f.phase == Phase::Gate
            && f.error.to_string().contains(
                "not delivered within policy.publishDeadline (1h) of staging at 2026-11-21T12:00:00Z: still not on aws.us-east-1.prod1"
            )),
        "{}",
        errors(&r)
    );
    assert_eq!(r.count(Action::Rollback), 1, "{:#?}", r.steps);
    assert_eq!(env.f.show("dev", "main", DNS_PROD), original);
    // The cluster takes changes again: it gets the rollback, and the new key goes.
    std::fs::remove_file(frozen).unwrap();
    o.now = at(T0, 100);
    let r = env.run(&o).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    assert_eq!(r.count(Action::Revoke), 1, "{:#?}", r.steps);
    assert!(env.records_on_main().is_empty());
    assert_eq!(
        env.f
            .show("prod", &format!("refs/heads/cluster/{PROD1}"), DNS_PROD),
        original
    );
    let prod = std::collections::BTreeMap::from([
        ("account".to_string(), "222222222222".to_string()),
        ("username".to_string(), "external-dns-prod1".to_string()),
    ]);
    let keys: Vec<String> = env.fake.keys_of(&prod).into_iter().map(|k| k.id).collect();
    assert!(!keys.contains(&new_key), "{keys:?}");
    assert_eq!(keys.len(), 1, "{keys:?}");
}
