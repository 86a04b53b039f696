//! The `mysql` source against a real MariaDB server: alternating users, what the server
//! sees, and a whole rotation through the binary.

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
