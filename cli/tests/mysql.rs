//! The `mysql` source against a real MariaDB server: alternating users, what the server
//! sees, and a whole rotation through the binary.

use crate::common::db;
use crate::common::maria::Maria;
use crate::common::{GitFleet, cmd, decrypt_value, git, run_cmd};
use secret_manager::mysql_source::{MysqlProvider, PASSWORD, USERNAME};
use secret_manager::provider::{KeyId, Provider, Revoke, Revoked, Target};

const ADMIN_PW: &str = "rotator-admin-pw";

fn setup_server(m: &Maria) {
    m.sql(&format!(
        "CREATE USER rotator@'%' IDENTIFIED BY '{ADMIN_PW}'; \
         GRANT CREATE USER, PROCESS, SELECT ON *.* TO rotator@'%'; \
         GRANT ALL ON secret_manager.* TO rotator@'%'; \
         CREATE DATABASE shop; CREATE TABLE shop.orders (id int); \
         CREATE USER app_a@'%'; CREATE USER app_b@'%'; \
         GRANT SELECT ON shop.* TO app_a@'%', app_b@'%';"
    ));
}

fn target(current: Option<&str>) -> Target {
    Target {
        source: "mysql".into(),
        params: [("instance", "shop"), ("users", "app_a,app_b")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        current_key: current.map(|k| KeyId(k.into())),
        referenced: current.map(|k| KeyId(k.into())).into_iter().collect(),
    }
}

fn can_log_in(m: &Maria, user: &str, password: &str) -> bool {
    m.sql_as(user, password, "SELECT count(*) FROM shop.orders")
        .status
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "environment: needs MariaDB (scripts/test runs it)"]
async fn alternating_accounts_keep_a_working_login_and_never_send_a_clear_password() {
    let m = Maria::start();
    setup_server(&m);
    let p = MysqlProvider::default().with_admin_url("shop", &m.url("rotator", ADMIN_PW));
    secret_manager::provider::testing::conformance(&p, &target(None)).await;

    let first = p.mint(&target(None)).await.unwrap();
    let first_pw = first.fields[PASSWORD].expose().to_owned();
    assert_eq!(first.fields[USERNAME].expose(), "app_a");
    p.verify(&first).await.unwrap();
    let second = p.mint(&target(Some(&first.key_id.0))).await.unwrap();
    let second_pw = second.fields[PASSWORD].expose().to_owned();
    assert_eq!(second.fields[USERNAME].expose(), "app_b");
    assert!(can_log_in(&m, "app_a", &first_pw));
    assert!(can_log_in(&m, "app_b", &second_pw));

    let t = target(Some(&second.key_id.0));
    assert_eq!(
        p.revoke(&t, &first.key_id, Revoke::Delete).await.unwrap(),
        Revoked::Done
    );
    assert!(
        !can_log_in(&m, "app_a", &first_pw),
        "the old account is locked out"
    );
    assert!(can_log_in(&m, "app_b", &second_pw));
    assert_eq!(
        m.sql("SELECT count(*) FROM mysql.user WHERE user = 'app_a'"),
        "1",
        "never dropped"
    );
    assert_eq!(
        p.revoke(&t, &first.key_id, Revoke::Delete).await.unwrap(),
        Revoked::AlreadyGone
    );
    let third = p.mint(&t).await.unwrap();
    assert_eq!(third.fields[USERNAME].expose(), "app_a");
    let e = p.mint(&target(Some(&third.key_id.0))).await.unwrap_err();
    assert!(e.to_string().contains("still holds generation"), "{e}");
    // An account the tool's table does not name is neither listed nor revoked.
    assert_eq!(
        p.revoke(&t, &KeyId("app_b.99".into()), Revoke::Delete)
            .await
            .unwrap(),
        Revoked::AlreadyGone
    );
    assert!(can_log_in(&m, "app_b", &second_pw));

    let log = m.log();
    assert!(
        log.contains("IDENTIFIED BY PASSWORD"),
        "statements are logged"
    );
    for pw in [
        first_pw.as_str(),
        second_pw.as_str(),
        third.fields[PASSWORD].expose(),
    ] {
        assert!(!log.contains(pw), "a password reached the server log");
    }
    let e = MysqlProvider::default()
        .preflight(&target(None))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("SECRET_MANAGER_MYSQL_SHOP_URL"), "{e}");
}

/// Single user and `revokeWith: nologin` at a real MariaDB: the one account's password is
/// replaced (the old one stops working at once, revoking the previous generation finds
/// nothing left), and a nologin revoke locks the account (`ACCOUNT LOCK`) until the next
/// mint unlocks it with a new password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "environment: needs MariaDB (scripts/test runs it)"]
async fn single_user_replaces_the_password_and_nologin_locks_the_account() {
    let m = Maria::start();
    setup_server(&m);
    m.sql("CREATE USER app@'%'; GRANT SELECT ON shop.* TO app@'%';");
    let p = MysqlProvider::default().with_admin_url("shop", &m.url("rotator", ADMIN_PW));
    db::single_user_and_nologin(&p, &server(&m)).await;
    assert_eq!(
        m.sql("SELECT count(*) FROM mysql.user WHERE user IN ('app', 'app_a', 'app_b')"),
        "3",
        "never dropped"
    );
}

/// This server for the scenarios the database sources share.
fn server(m: &Maria) -> db::Server<'_> {
    db::Server {
        source: "mysql",
        instance: "shop",
        url_env: "SECRET_MANAGER_MYSQL_SHOP_URL",
        admin_url: m.url("rotator", ADMIN_PW),
        pair: Box::new(target),
        can_log_in: Box::new(|u, p| can_log_in(m, u, p)),
        login_disabled: Box::new(|u| {
            m.sql(&format!("SHOW CREATE USER {u}@'%'"))
                .contains("ACCOUNT LOCK")
        }),
        generation: Box::new(|u| {
            m.sql(&format!(
                "SELECT generation FROM secret_manager.generations WHERE account_user = '{u}' AND revoked = 0"
            ))
            .parse()
            .ok()
        }),
        // MariaDB's processlist check is the standby's, not single user's: no session held.
        logged_in: Box::new(|_, _| Box::new(|| ())),
    }
}

/// `create` and two rotations through the binary: the manifest alternates between the
/// accounts, its value logs in, the previous one stops working.
#[test]
#[ignore = "environment: needs MariaDB (scripts/test runs it)"]
fn a_mariadb_password_is_created_and_rotated_through_git() {
    let m = Maria::start();
    setup_server(&m);
    let f = GitFleet::new();
    let work = f.path("work");
    const DEV1: &str = "aws.eu-central-1.dev1";
    const REL: &str = "applications/service1/state/overlays/aws.eu-central-1.dev1/shop-db.yaml";
    let url = m.url("rotator", ADMIN_PW);
    let r = run_cmd(cmd().env("SECRET_MANAGER_MYSQL_SHOP_URL", &url).args([
        "--repo",
        work.to_str().unwrap(),
        "create",
        "--source",
        "mysql",
        "--cluster",
        DEV1,
        "--namespace",
        "service1",
        "--name",
        "shop-db",
        "--key-mappings",
        "[DB_USER:Username,DB_PASSWORD:Password]",
        "--param",
        "instance=shop",
        "--param",
        "users=app_a,app_b",
        "-w",
        work.join(REL).to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    f.commit_and_publish("Add the shop database credential", &[DEV1]);
    let login = |f: &GitFleet| -> (String, String) {
        let file = f.path("shop-check.yaml");
        std::fs::write(&file, f.show("dev", "main", REL)).unwrap();
        let get = |k: &str| {
            String::from_utf8(decrypt_value(&file, 0, DEV1, "service1/shop-db", k).unwrap())
                .unwrap()
        };
        (get("DB_USER"), get("DB_PASSWORD"))
    };
    let mut previous = login(&f);
    assert_eq!(previous.0, "app_a");
    assert!(can_log_in(&m, &previous.0, &previous.1));
    for (n, expect) in [(1, "app_b"), (2, "app_a")] {
        let logged = m.log().len();
        let r = run_cmd(
            cmd()
                .env("SECRET_MANAGER_MYSQL_SHOP_URL", &url)
                .env("SECRET_MANAGER_NOW", format!("2027-0{n}-01T00:00:00Z"))
                .args([
                    "--repo",
                    work.to_str().unwrap(),
                    "--yes",
                    "rotate",
                    "--source",
                    "mysql",
                    "--older-than",
                    "0s",
                    "--revoke-after",
                    "0s",
                ]),
        );
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        // The calls of one whole rotation (docs/benchmarks.md): statements and logins.
        let (statements, logins) = Maria::calls(&m.log()[logged..]);
        eprintln!(
            "mariadb rotation {n}: {logins} logins, {} statements:",
            statements.len()
        );
        for s in &statements {
            eprintln!("  {}", s.split(" IDENTIFIED ").next().unwrap_or(s));
        }
        // Pinned, as the AWS calls are (docs/benchmarks.md, "Calls per rotated credential,
        // by source"): a change that adds a call shows here.
        assert_eq!(
            (logins, statements.len()),
            (5, 33),
            "logins and statements of one rotation changed: update docs/benchmarks.md"
        );
        let now = login(&f);
        assert_eq!(now.0, expect);
        assert!(can_log_in(&m, &now.0, &now.1), "the new value logs in");
        assert!(
            !can_log_in(&m, &previous.0, &previous.1),
            "the previous value is revoked"
        );
        for out in [&r.stdout, &r.stderr] {
            assert!(!out.contains(&now.1) && !out.contains(ADMIN_PW));
        }
        previous = now;
    }
    let log = git(&f.path("dev.git"), &["log", "--format=%B", "main"]);
    assert!(log.contains("Secret-Manager-Action: revoke"), "{log}");
}

/// TLS against the operator's CA: with `..._CA_FILE` the admin connection and the
/// standby's login are TLS even on the loopback interface, and a server whose certificate
/// another CA signed is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "environment: needs MariaDB (scripts/test runs it)"]
async fn tls_is_verified_against_the_operators_ca() {
    let (m, pki) = Maria::start_tls();
    setup_server(&m);
    // The rotator may only connect over TLS: a plain connection would be refused.
    m.sql("ALTER USER rotator@'%' REQUIRE SSL; ALTER USER app_a@'%' REQUIRE SSL;");
    let url = m.url("rotator", ADMIN_PW);
    let plain = MysqlProvider::default().with_admin_url("shop", &url);
    assert!(
        plain.preflight(&target(None)).await.is_err(),
        "REQUIRE SSL holds"
    );
    let p = MysqlProvider::default()
        .with_admin_url("shop", &url)
        .with_ca_file("shop", &pki.ca);
    p.preflight(&target(None)).await.unwrap();
    let first = p.mint(&target(None)).await.unwrap();
    p.verify(&first).await.unwrap();
    let wrong = MysqlProvider::default()
        .with_admin_url("shop", &url)
        .with_ca_file("shop", &pki.other_ca);
    let e = wrong
        .preflight(&target(None))
        .await
        .unwrap_err()
        .to_string();
    assert!(!e.contains(ADMIN_PW), "{e}");
    assert!(
        e.to_lowercase().contains("certificate") || e.to_lowercase().contains("tls"),
        "{e}"
    );
}

/// A run killed right after it set a new password, at a real MariaDB (both strategies):
/// alternating accounts keep the consumers' login working; single user has its documented
/// gap; the next run (after the dead run's lease) locks out the orphaned generation,
/// rotates, and the manifest's value logs in while the one before does not.
#[cfg(feature = "failpoints")]
#[test]
#[ignore = "environment: needs MariaDB (scripts/test runs it)"]
fn a_crash_after_mint_converges_on_the_next_run_for_both_strategies() {
    let m = Maria::start();
    setup_server(&m);
    m.sql("CREATE USER app@'%'; GRANT SELECT ON shop.* TO app@'%';");
    db::crash_after_mint_converges(&server(&m));
}
