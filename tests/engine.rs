//! The rotation engine in-process: `secret_manager::engine::rotate` over real local bare
//! dev/prod remotes, with `FakeProvider` as the source — no binary, no moto. Every phase,
//! gate, failure path, crash point and the claim rules are tested here; the binary tests
//! only check what the CLI adds.

use crate::support::engine::{
    DEV1, DNS, DNS_KEY, DNS_PROD, Env, LABEL, PROD1, T0, at, dns, errors, hook, t,
};
use crate::support::{git, git_input};
use chrono::{DateTime, Utc};
#[cfg(feature = "failpoints")]
use futures::FutureExt as _;
use secret_manager::engine::{Action, Cancel, During, Phase, RotateReport, Signal};
use secret_manager_testkit::{Fail, FakeProvider, Op};
use std::collections::BTreeMap;

fn count(r: &RotateReport, a: Action) -> usize {
    r.count(a)
}

fn phases(r: &RotateReport) -> Vec<Phase> {
    r.failures.iter().map(|f| f.phase).collect()
}

/// What failed, and in which part of the run `rotate()` had entered.
fn wheres(r: &RotateReport) -> Vec<(Phase, During)> {
    r.failures.iter().map(|f| (f.phase, f.during)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_publish_revoke_in_one_run_with_zero_grace() {
    let env = Env::new();
    let first_main = env.f.remote_ref("dev", "refs/heads/main").unwrap();
    let r = env.run(&env.opts(t(T0))).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    assert_eq!(
        (
            count(&r, Action::Stage),
            count(&r, Action::Publish),
            count(&r, Action::Revoke)
        ),
        (1, 1, 1)
    );
    env.assert_converged();
    assert_ne!(env.main_key(DNS), DNS_KEY);
    // Exactly one file changed on main, and the commits say what happened.
    let changed = git(
        &env.f.path("dev.git"),
        &["diff", "--name-only", &first_main, "main"],
    );
    assert_eq!(changed, DNS);
    let log = git(
        &env.f.path("dev.git"),
        &["log", "--format=%B", &format!("{first_main}..main")],
    );
    for trailer in [
        "Secret-Manager-Action: stage".to_string(),
        "Secret-Manager-Action: publish".into(),
        "Secret-Manager-Action: revoke".into(),
        format!("Secret-Manager-Old-Key: {DNS_KEY}"),
        format!("Secret-Manager-Run: {}", r.run),
        "Secret-Manager-Claimed: ".into(),
    ] {
        assert!(log.contains(&trailer), "missing {trailer}:\n{log}");
    }
    // Provider budget: one preflight, one listing, one mint, one verify, one revoke.
    for (op, n) in [
        (Op::Preflight, 1),
        (Op::Keys, 1),
        (Op::Mint, 1),
        (Op::Verify, 1),
        (Op::Revoke, 1),
    ] {
        assert_eq!(env.fake.calls(op), n, "{op:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_period_holds_the_old_key_until_a_later_run() {
    let env = Env::new();
    let mut o = env.opts(t(T0));
    o.revoke_after = chrono::Duration::hours(1);
    let r = env.run(&o).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    assert_eq!(count(&r, Action::Revoke), 0);
    let wait = r.steps.iter().find(|s| s.action == Action::Wait).unwrap();
    assert!(
        wait.detail.contains("published since 2026-11-21T12:00")
            && wait.detail.contains("after 2026-11-21T13:00"),
        "a wait says since when and until when: {}",
        wait.detail
    );
    assert_eq!(env.keys().len(), 2, "both keys live in the grace period");
    assert_eq!(env.records_on_main().len(), 1);
    // Busy for another rotation meanwhile; still waiting 30 minutes later.
    let mut o2 = o.clone();
    o2.now = at(T0, 30);
    let r = env.run(&o2).await;
    assert_eq!(count(&r, Action::Revoke), 0);
    assert_eq!(count(&r, Action::Stage), 0);
    assert_eq!(env.keys().len(), 2);
    // One row for the credential: it waits (this run advances it), it is not also `busy`.
    let actions: Vec<Action> = r.steps.iter().map(|s| s.action).collect();
    assert_eq!(actions, [Action::Wait], "{:?}", r.steps);
    o2.now = at(T0, 120);
    let r = env.run(&o2).await;
    assert_eq!(count(&r, Action::Revoke), 1, "{:?}", r.steps);
    env.assert_converged();
}

/// An old key someone deleted at the source during the grace period: the revoke says so
/// (it did not delete anything) and the rotation ends as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_key_already_gone_is_said_so_not_deleted_again() {
    let env = Env::new();
    let mut o = env.opts(t(T0));
    o.revoke_after = chrono::Duration::hours(1);
    let r = env.run(&o).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    let wait = r.steps.iter().find(|s| s.action == Action::Wait).unwrap();
    let old = wait.old_key_id.clone().unwrap();
    env.fake.remove_key(&old);
    o.now = at(T0, 120);
    let r = env.run(&o).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    let revoke = r.steps.iter().find(|s| s.action == Action::Revoke).unwrap();
    assert!(revoke.done);
    assert_eq!(
        revoke.detail,
        format!(
            "old key {old} was already gone at the source (deleted outside this run); nothing to delete"
        )
    );
    env.assert_converged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_changes_nothing_and_calls_nothing_with_side_effects() {
    let env = Env::new();
    let before = env.all_refs();
    let mut o = env.opts(t(T0));
    o.dry_run = true;
    let r = env.run(&o).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    let plan: Vec<_> = r
        .steps
        .iter()
        .filter(|s| s.action == Action::Stage)
        .collect();
    assert_eq!(plan.len(), 1);
    assert!(!plan[0].done);
    assert_eq!(plan[0].old_key_id.as_deref(), Some(DNS_KEY));
    assert_eq!(plan[0].identity, "111111111111/external-dns-dev1");
    assert_eq!(env.all_refs(), before);
    assert_eq!(env.fake.calls(Op::Mint), 0);
    assert_eq!(env.fake.calls(Op::Revoke), 0);
    assert_eq!(env.keys(), vec![DNS_KEY.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_preflight_changes_nothing() {
    let env = Env::new();
    env.fake.fail_always(Op::Preflight, Fail::AccessDenied);
    let before = env.all_refs();
    let r = env.run(&env.opts(t(T0))).await;
    assert_eq!(phases(&r), vec![Phase::Preflight], "{}", errors(&r));
    assert!(errors(&r).contains("scripted denial"), "{}", errors(&r));
    assert_eq!(wheres(&r), vec![(Phase::Preflight, During::Stage)]);
    assert_eq!(
        env.fake.calls(Op::Preflight),
        1,
        "permanent errors are not retried"
    );
    assert_eq!(env.fake.calls(Op::Mint), 0);
    assert_eq!(env.all_refs(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_layer_retries_idempotent_calls_and_never_mint() {
    let env = Env::new();
    env.fake.fail_on(Op::Keys, 1, Fail::Transient);
    env.fake.fail_on(Op::Revoke, 1, Fail::Transient);
    let r = env.run(&env.opts(t(T0))).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    assert_eq!(env.fake.calls(Op::Keys), 2);
    assert_eq!(env.fake.calls(Op::Revoke), 2);
    env.assert_converged();
    // A transient mint failure is not retried: the credential fails, the claim goes.
    let env = Env::new();
    env.fake.fail_on(Op::Mint, 1, Fail::Transient);
    let r = env.run(&env.opts(t(T0))).await;
    assert_eq!(phases(&r), vec![Phase::Mint], "{}", errors(&r));
    assert_eq!(env.fake.calls(Op::Mint), 1);
    assert_eq!(env.keys(), vec![DNS_KEY.to_string()]);
    assert!(env.f.claims("dev").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_does_not_verify_is_deleted_again_and_recorded() {
    let env = Env::new();
    env.fake.fail_always(Op::Verify, Fail::Permanent);
    let main_before = env.f.remote_ref("dev", "refs/heads/main");
    let r = env.run(&env.opts(t(T0))).await;
    assert_eq!(phases(&r), vec![Phase::Mint], "{}", errors(&r));
    assert!(errors(&r).contains("does not work"), "{}", errors(&r));
    let undo = r.steps.iter().find(|s| s.action == Action::Undo).unwrap();
    assert!(undo.done);
    assert_eq!(env.keys(), vec![DNS_KEY.to_string()], "the new key is gone");
    assert_eq!(env.f.remote_ref("dev", "refs/heads/main"), main_before);
    assert!(env.f.claims("dev").is_empty());
    let events = env.events();
    assert!(events.contains("Secret-Manager-Action: undo"), "{events}");
    assert!(
        events.contains(&format!(
            "Secret-Manager-New-Key: {}",
            undo.new_key_id.as_deref().unwrap()
        )),
        "{events}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_refusing_main_is_a_publish_failure_and_the_new_key_is_undone() {
    let env = Env::new();
    hook(
        &env,
        "dev",
        "while read old new ref; do [ \"$ref\" = refs/heads/main ] && { echo 'main is protected: open a pull request' >&2; exit 1; }; done; exit 0",
    );
    let main_before = env.f.remote_ref("dev", "refs/heads/main");
    let r = env.run(&env.opts(t(T0))).await;
    assert_eq!(phases(&r), vec![Phase::Publish], "{}", errors(&r));
    assert!(
        errors(&r).contains("main is protected"),
        "names the hook: {}",
        errors(&r)
    );
    // A git step (what decides the exit code) that failed while staging (where).
    assert_eq!(wheres(&r), vec![(Phase::Publish, During::Stage)]);
    assert_eq!(env.keys(), vec![DNS_KEY.to_string()], "minted key revoked");
    assert_eq!(env.f.remote_ref("dev", "refs/heads/main"), main_before);
    assert!(env.f.claims("dev").is_empty());
    assert_eq!(count(&r, Action::Undo), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pointer_keeps_the_old_key_until_a_later_run_publishes() {
    let env = Env::new();
    let mut o = env.opts(t(T0));
    o.filter.clusters = vec![PROD1.into()];
    let h = hook(&env, "prod", "echo 'prod is frozen' >&2; exit 1");
    let prod = BTreeMap::from([
        ("account".to_string(), "222222222222".to_string()),
        ("username".to_string(), "external-dns-prod1".to_string()),
    ]);
    let prod_key = env.main_key(DNS_PROD);
    let r = env.run(&o).await;
    assert_eq!(phases(&r), vec![Phase::Publish], "{}", errors(&r));
    assert!(errors(&r).contains("prod is frozen"), "{}", errors(&r));
    assert_eq!(wheres(&r), vec![(Phase::Publish, During::Publish)]);
    assert_eq!(r.failures[0].cluster.as_deref(), Some(PROD1));
    let keys: Vec<String> = env.fake.keys_of(&prod).into_iter().map(|k| k.id).collect();
    assert_eq!(keys.len(), 2, "staged, old key kept: {keys:?}");
    assert!(keys.contains(&prod_key));
    assert_eq!(env.records_on_main().len(), 1);
    std::fs::remove_file(h).unwrap();
    o.now = at(T0, 5);
    let r = env.run(&o).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    assert_eq!(
        (count(&r, Action::Publish), count(&r, Action::Revoke)),
        (1, 1)
    );
    let new = env.main_key(DNS_PROD);
    assert_eq!(
        env.fake
            .keys_of(&prod)
            .into_iter()
            .map(|k| k.id)
            .collect::<Vec<_>>(),
        vec![new.clone()]
    );
    env.assert_sealed(DNS_PROD, PROD1, "prod", &new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_revoke_is_retried_by_the_next_run() {
    let env = Env::new();
    env.fake.fail_always(Op::Revoke, Fail::Permanent);
    let r = env.run(&env.opts(t(T0))).await;
    assert_eq!(phases(&r), vec![Phase::Revoke], "{}", errors(&r));
    assert_eq!(wheres(&r), vec![(Phase::Revoke, During::Revoke)]);
    assert_eq!(env.keys().len(), 2, "new key live, old key still works");
    assert_eq!(env.records_on_main().len(), 1);
    env.fake.heal();
    let r = env.run(&env.opts(at(T0, 10))).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    assert_eq!(count(&r, Action::Revoke), 1);
    env.assert_converged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_wait_while_pending_and_fail_when_they_cannot_be_evaluated() {
    // The old key was used after publish: wait.
    let env = Env::new();
    let mut o = env.opts(t(T0));
    o.require_old_key_unused = true;
    env.fake
        .set_last_used(DNS_KEY, Utc::now() + chrono::Duration::hours(1));
    let r = env.run(&o).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    let wait = r.steps.iter().find(|s| s.action == Action::Wait).unwrap();
    assert!(wait.detail.contains("old key was used"), "{}", wait.detail);
    assert_eq!(env.keys().len(), 2);
    // It went idle: the next run revokes.
    env.fake.set_last_used(DNS_KEY, at(T0, -60));
    let r = env.run(&env.opts(at(T0, 10))).await;
    assert_eq!(count(&r, Action::Revoke), 1, "{}", errors(&r));
    // --require-synced with a kube context that does not exist: an error, not a wait.
    let env = Env::new();
    let mut o = env.opts(t(T0));
    o.require_synced = true;
    let r = env.run(&o).await;
    assert_eq!(phases(&r), vec![Phase::Gate], "{}", errors(&r));
    assert_eq!(r.failures[0].cluster.as_deref(), Some(DEV1));
    assert_eq!(wheres(&r), vec![(Phase::Gate, During::Revoke)]);
    assert!(errors(&r).contains("kubectl"), "{}", errors(&r));
    assert_eq!(env.keys().len(), 2, "the old key stays");
}

/// A source that cannot tell when a key was last used: `--require-old-key-unused` does not
/// pass as if it had looked — the old key waits out the grace period only, and the revoke
/// (and its dry-run plan) says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_blind_to_key_use_says_so_and_keeps_only_the_grace_period() {
    let env = Env::with(FakeProvider::new("aws").without_last_use());
    let mut o = env.opts(t(T0));
    o.require_old_key_unused = true;
    o.revoke_after = chrono::Duration::minutes(30);
    // A use after publish that this source cannot report: it is not consulted.
    env.fake
        .set_last_used(DNS_KEY, Utc::now() + chrono::Duration::hours(1));
    let r = env.run(&o).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    assert_eq!(count(&r, Action::Revoke), 0, "the grace period holds");
    assert_eq!(env.keys().len(), 2);
    o.now = at(T0, 40);
    o.dry_run = true;
    let plan = env.run(&o).await;
    let step = plan
        .steps
        .iter()
        .find(|s| s.action == Action::Revoke)
        .expect("a revoke in the plan");
    assert!(
        step.detail
            .contains("cannot tell whether the old key is still used"),
        "{}",
        step.detail
    );
    o.dry_run = false;
    let r = env.run(&o).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    let step = r
        .steps
        .iter()
        .find(|s| s.action == Action::Revoke)
        .expect("revoked after the grace period");
    assert!(
        step.detail.contains("deleted old key")
            && step.detail.contains("fell back to the grace period"),
        "{}",
        step.detail
    );
    env.assert_converged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_mode_disables_first_and_deletes_after_the_grace_period() {
    let env = Env::new();
    let mut o = env.opts(t(T0));
    o.revoke_mode = secret_manager::config::RevokeMode::Disable;
    o.revoke_after = chrono::Duration::minutes(30);
    env.run(&o).await;
    o.now = at(T0, 40);
    let r = env.run(&o).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    let old = env
        .fake
        .keys_of(&dns())
        .into_iter()
        .find(|k| k.id == DNS_KEY)
        .unwrap();
    assert_eq!(old.status, secret_manager::provider::KeyStatus::Inactive);
    assert_eq!(
        env.records_on_main().len(),
        1,
        "the record waits to delete it"
    );
    o.now = at(T0, 60);
    let r = env.run(&o).await;
    let wait = r.steps.iter().find(|s| s.action == Action::Wait).unwrap();
    assert!(
        wait.detail.contains("old key disabled since"),
        "{}",
        wait.detail
    );
    o.now = at(T0, 80);
    let r = env.run(&o).await;
    assert_eq!(count(&r, Action::Revoke), 1, "{:?}", r.steps);
    env.assert_converged();
    let log = git(&env.f.path("dev.git"), &["log", "--format=%B", "main"]);
    assert!(
        log.contains("Secret-Manager-Action: delete-disabled"),
        "{log}"
    );
}

/// Pushes a claim on the dev1 DNS credential as another run would.
fn foreign_claim(env: &Env, now: DateTime<Utc>) {
    let other = env.f.clone_as("other");
    let repo = secret_manager::Repo::open(&other).unwrap();
    let fleet = secret_manager::gitops::Fleet::new(&repo);
    let refs =
        secret_manager::journal::table::ClaimTable::new(&fleet, &repo.config.claim_ref_prefix);
    let c = secret_manager::journal::Claim::new(
        &secret_manager::journal::RunId("20261121T115500Z-0therrun".into()),
        "aws",
        "111111111111/external-dns-dev1",
        &dns(),
        vec![DNS_KEY.into()],
        vec![DNS_KEY.into()],
        now,
        chrono::Duration::minutes(10),
    );
    let taken = refs.create(vec![c]).unwrap();
    assert!(matches!(
        taken[0],
        secret_manager::journal::table::Taken::Won(_)
    ));
}

/// A file in the claims table that is no claim (written by hand, or by an attacker who can
/// push claims) keeps its credential away from every run, with the remedy in the error,
/// and nobody else's claim is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_claim_in_the_table_blocks_its_credential_with_the_remedy() {
    let env = Env::new();
    let other = env.f.clone_as("other");
    let id = secret_manager::journal::credential_id("aws", "111111111111/external-dns-dev1");
    let blob = git_input(
        &other,
        &["hash-object", "-w", "--stdin"],
        b"\x1b[31mnot: [a claim",
    );
    let tree = git_input(
        &other,
        &["mktree"],
        format!("100644 blob {blob}\t{id}.yaml\n").as_bytes(),
    );
    let commit = git(&other, &["commit-tree", tree.trim(), "-m", "junk"]);
    git(
        &other,
        &[
            "push",
            "--quiet",
            "origin",
            &format!("{}:refs/secret-manager/claims/table", commit.trim()),
        ],
    );
    let r = env.run(&env.opts(t(T0))).await;
    assert_eq!(phases(&r), vec![Phase::Preflight], "{}", errors(&r));
    let e = errors(&r);
    assert!(
        e.contains(&format!("remove {id}.yaml from the claims table")),
        "{e}"
    );
    assert!(
        !e.contains('\x1b'),
        "terminal escapes reach the message: {e}"
    );
    assert_eq!(env.fake.calls(Op::Mint), 0);
    assert_eq!(env.keys(), vec![DNS_KEY.to_string()]);
    assert_eq!(
        env.f.claims("dev"),
        vec![id],
        "the file stays until removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_claim_makes_the_credential_busy_and_an_expired_one_is_released() {
    let env = Env::new();
    foreign_claim(&env, t(T0));
    let r = env.run(&env.opts(at(T0, 2))).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    let busy = r.steps.iter().find(|s| s.action == Action::Busy).unwrap();
    assert!(
        busy.detail.contains("20261121T115500Z-0therrun"),
        "{}",
        busy.detail
    );
    assert_eq!(env.fake.calls(Op::Mint), 0);
    // The other run died. After its lease: released (nothing to clean), then rotated.
    let r = env.run(&env.opts(at(T0, 15))).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    assert_eq!(count(&r, Action::Abandon), 1);
    assert_eq!(count(&r, Action::Cleanup), 0);
    assert_eq!(count(&r, Action::Stage), 1);
    env.assert_converged();
    assert!(env.events().contains("Secret-Manager-Action: abandon"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_key_is_never_deleted_and_names_itself_when_it_blocks_a_slot() {
    let env = Env::new();
    // A human's break-glass key, one minute before the run.
    env.fake.add_key(
        &dns(),
        "AKIABREAKGLASS000001",
        Utc::now() - chrono::Duration::minutes(1),
    );
    let r = env.run(&env.opts(t(T0))).await;
    assert_eq!(phases(&r), vec![Phase::Mint], "{}", errors(&r));
    let e = errors(&r);
    assert!(e.contains("AKIABREAKGLASS000001"), "{e}");
    assert!(e.contains("not minted by secret-manager"), "{e}");
    assert!(e.contains("delete or deactivate it yourself"), "{e}");
    assert_eq!(env.fake.calls(Op::Mint), 0);
    assert_eq!(env.fake.calls(Op::Revoke), 0);
    assert_eq!(env.keys().len(), 2);
}

/// A run that dies right after minting leaves its claim; after the lease the next run
/// deletes exactly the key that run minted — not a key a human made meanwhile — and
/// records it in the audit log.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_runs_key_is_cleaned_up_and_nothing_else() {
    let env = Env::with(FakeProvider::new("aws").with_max_keys(Some(4)));
    env.fake.add_key(
        &dns(),
        "AKIABREAKGLASS000001",
        Utc::now() - chrono::Duration::minutes(1),
    );
    let crashed = secret_manager::FAILPOINT
        .scope(
            "after-mint".to_string(),
            std::panic::AssertUnwindSafe(env.run(&env.opts(t(T0)))).catch_unwind(),
        )
        .await;
    assert!(crashed.is_err(), "the run died at the failpoint");
    let orphan = env
        .keys()
        .into_iter()
        .find(|k| k != DNS_KEY && !k.contains("BREAKGLASS"))
        .expect("the dead run minted a key");
    assert_eq!(env.f.claims("dev").len(), 1);
    let r = env.run(&env.opts(at(T0, 15))).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    let cleanup = r
        .steps
        .iter()
        .find(|s| s.action == Action::Cleanup)
        .unwrap();
    assert_eq!(cleanup.old_key_id.as_deref(), Some(orphan.as_str()));
    assert!(cleanup.done);
    let keys = env.keys();
    assert!(!keys.contains(&orphan));
    assert!(
        keys.contains(&"AKIABREAKGLASS000001".to_string()),
        "{keys:?}"
    );
    assert_eq!(keys.len(), 2, "break-glass + the new key: {keys:?}");
    let events = env.events();
    assert!(
        events.contains("Secret-Manager-Action: cleanup"),
        "{events}"
    );
    assert!(
        events.contains(&format!("Secret-Manager-Old-Key: {orphan}")),
        "{events}"
    );
}

/// A crash at every phase boundary: the next run after the lease converges, with the
/// change published once and nothing left behind.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_crash_point_converges() {
    for point in [
        "before-mint",
        "after-mint",
        "before-commit",
        "after-stage",
        "after-publish",
        "after-revoke",
    ] {
        let env = Env::new();
        let crashed = secret_manager::FAILPOINT
            .scope(
                point.to_string(),
                std::panic::AssertUnwindSafe(env.run(&env.opts(t(T0)))).catch_unwind(),
            )
            .await;
        assert!(crashed.is_err(), "{point}: crashed");
        assert_eq!(
            env.keys().contains(&DNS_KEY.to_string()),
            point != "after-revoke",
            "{point}: the old key survives every crash before its revocation"
        );
        assert!(
            env.keys().contains(&env.main_key(DNS)),
            "{point}: main references a key that exists"
        );
        let r = env.run(&env.opts(at(T0, 15))).await;
        assert!(r.failures.is_empty(), "{point}: {}", errors(&r));
        env.assert_converged();
        let publishes = git(&env.f.path("dev.git"), &["log", "--format=%s", "main"])
            .lines()
            .filter(|l| l.contains("published rotation"))
            .count();
        assert_eq!(publishes, 1, "{point}: published exactly once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_remote_fails_only_its_clusters() {
    let env = Env::new();
    git(
        &env.f.path("work"),
        &["remote", "set-url", "prod", "/nonexistent/prod.git"],
    );
    let mut o = env.opts(t(T0));
    o.filter.clusters.clear();
    o.filter.namespace = Some("external-dns".into());
    let r = env.run(&o).await;
    // dev1 rotated; prod1 failed before anything was minted for it.
    assert_eq!(phases(&r), vec![Phase::Publish], "{}", errors(&r));
    assert_eq!(r.failures[0].cluster.as_deref(), Some(PROD1));
    assert!(
        errors(&r).contains("/nonexistent/prod.git"),
        "{}",
        errors(&r)
    );
    env.assert_converged();
    assert_eq!(env.fake.calls(Op::Mint), 1, "nothing minted for prod1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_of_the_previous_version_is_finished() {
    let env = Env::new();
    // Rotation staged and published by the version before claims: new key at the source
    // and in the manifest, old key still there, record in the old format on main.
    let new = "AKIANEWNEWNEWNEW0001";
    env.fake.add_key(&dns(), new, at(T0, -60));
    let work = env.f.path("work");
    let text = std::fs::read_to_string(work.join(DNS)).unwrap();
    std::fs::write(work.join(DNS), text.replace(DNS_KEY, new)).unwrap();
    let record = std::fs::read_to_string(crate::support::testdata("journal/v1-published.yaml"))
        .unwrap()
        .replace("AKIAOLDOLDOLDOLD0001", DNS_KEY)
        .replace("123456789012/", "111111111111/")
        .replace("\"123456789012\"", "\"111111111111\"")
        .replace(
            "applications/root/external-dns/state/overlays/aws.eu-central-1.dev1/route53.yaml",
            DNS,
        )
        .replace("external-dns/route53", LABEL);
    let rel = ".secret-manager/rotations/aws-20261121T120000Z-10017f28.yaml";
    std::fs::create_dir_all(work.join(".secret-manager/rotations")).unwrap();
    std::fs::write(work.join(rel), record).unwrap();
    env.f
        .commit_and_publish("A rotation from the previous version", &[DEV1]);
    let mut o = env.opts(at(T0, 120));
    o.filter.older_than = Some(chrono::Duration::days(90));
    let r = env.run(&o).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    assert_eq!(count(&r, Action::Revoke), 1, "{:?}", r.steps);
    assert_eq!(env.keys(), vec![new.to_string()]);
    assert!(env.records_on_main().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_before_staging_undoes_the_minted_key() {
    let env = Env::new();
    let cancel = Cancel::default();
    let flag = cancel.clone();
    env.fake.before_each(move |op, _, _| {
        if op == Op::Verify {
            flag.signal(Signal::Terminate);
        }
    });
    let mut o = env.opts(t(T0));
    o.cancel = Some(cancel);
    let main_before = env.f.remote_ref("dev", "refs/heads/main");
    let r = env.run(&o).await;
    assert_eq!(r.interrupted.as_deref(), Some("SIGTERM"));
    assert_eq!(count(&r, Action::Undo), 1, "the key in flight is undone");
    assert!(r.steps.iter().any(|s| s.action == Action::Interrupted));
    assert_eq!(env.keys(), vec![DNS_KEY.to_string()]);
    assert_eq!(env.f.remote_ref("dev", "refs/heads/main"), main_before);
    assert!(env.f.claims("dev").is_empty());
    // The next run converges.
    env.fake.before_each(|_, _, _| {});
    let r = env.run(&env.opts(at(T0, 1))).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    env.assert_converged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_manifest_publishes_and_revokes() {
    let env = Env::new();
    let mut o = env.opts(t(T0));
    o.delete = true;
    let r = env.run(&o).await;
    assert!(r.failures.is_empty(), "{}", errors(&r));
    assert_eq!(
        (
            count(&r, Action::Delete),
            count(&r, Action::Publish),
            count(&r, Action::Revoke)
        ),
        (1, 1, 1)
    );
    assert!(env.keys().is_empty());
    let tree = git(
        &env.f.path("dev.git"),
        &[
            "ls-tree",
            "-r",
            "--name-only",
            &format!("refs/heads/cluster/{DEV1}"),
        ],
    );
    assert!(!tree.contains(DNS), "the cluster no longer has it");
}
