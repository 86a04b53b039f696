//! The database sources' scenarios, run against each real server (PostgreSQL, MariaDB).
//! What differs between them is said by a [`Server`]: how a login is tried, what a
//! disabled login looks like, which generation the server records for a login, and how
//! the binary reaches its admin connection.

use super::{GitFleet, Run, cmd, decrypt_value, run_cmd};
use secret_manager::provider::{Provider, Revoke, Revoked, Target};

/// A real database server under test.
// One closure per thing a scenario asks the server; named types would only rename them.
#[allow(clippy::type_complexity)]
pub struct Server<'a> {
    /// `postgres` or `mysql`.
    pub source: &'static str,
    /// The `instance` annotation.
    pub instance: &'static str,
    /// The environment variable of its admin URL, and the URL.
    pub url_env: &'static str,
    pub admin_url: String,
    /// The pair's target (`users: app_a,app_b`) with `current` as the manifest's key.
    pub pair: Box<dyn Fn(Option<&str>) -> Target + 'a>,
    /// Whether `user` logs in with `password`.
    pub can_log_in: Box<dyn Fn(&str, &str) -> bool + 'a>,
    /// Whether `user`'s login is disabled (`NOLOGIN`, `ACCOUNT LOCK`), not just refused.
    pub login_disabled: Box<dyn Fn(&str) -> bool + 'a>,
    /// The generation the tool recorded as held by `user`, if any.
    pub generation: Box<dyn Fn(&str) -> Option<u64> + 'a>,
    /// Logs in as `user` with `password` and stays; the returned function ends it (a
    /// server whose test cannot hold a session returns one that does nothing).
    pub logged_in: Box<dyn Fn(&str, &str) -> Box<dyn FnOnce() + 'a> + 'a>,
}

const DEV1: &str = "aws.eu-central-1.dev1";

impl Server<'_> {
    /// The single-user target of login `app` (a password policy of 40 hex characters).
    fn single(&self, current: Option<&str>) -> Target {
        let mut t = (self.pair)(current);
        for (k, v) in [
            ("users", "app"),
            ("strategy", "single-user"),
            ("length", "40"),
            ("alphabet", "hex"),
        ] {
            t.params.insert(k.into(), v.into());
        }
        t
    }

    fn with(&self, current: Option<&str>, k: &str, v: &str) -> Target {
        let mut t = (self.pair)(current);
        t.params.insert(k.into(), v.into());
        t
    }

    /// `create` of a secret `name` on dev1 (`service1`) through the binary, published.
    pub fn create(&self, f: &GitFleet, rel: &str, name: &str, params: &[&str]) {
        let work = f.path("work");
        let mut c = cmd();
        c.env(self.url_env, &self.admin_url)
            .args([
                "--repo",
                work.to_str().unwrap(),
                "create",
                "--source",
                self.source,
            ])
            .args(["--cluster", DEV1, "--namespace", "service1", "--name", name])
            .args(["--key-mappings", "[DB_USER:Username,DB_PASSWORD:Password]"])
            .args(["--param", &format!("instance={}", self.instance)]);
        for p in params {
            c.args(["--param", p]);
        }
        let r = run_cmd(c.arg("-w").arg(work.join(rel)));
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        f.commit_and_publish(&format!("Add {name}"), &[DEV1]);
    }

    /// `rotate --yes` of secret `name` through the binary at `now` (`--revoke-after 0s`,
    /// `--allow-login-gap`), with `failpoint` set if given.
    pub fn rotate(&self, f: &GitFleet, name: &str, now: &str, failpoint: Option<&str>) -> Run {
        let mut c = cmd();
        c.env(self.url_env, &self.admin_url)
            .env("SECRET_MANAGER_NOW", now)
            .args([
                "--repo",
                f.path("work").to_str().unwrap(),
                "--yes",
                "rotate",
            ])
            .args([
                "--source",
                self.source,
                "--name",
                name,
                "--older-than",
                "0s",
            ])
            .args(["--revoke-after", "0s", "--allow-login-gap"]);
        if let Some(p) = failpoint {
            c.env("SECRET_MANAGER_FAILPOINT", p);
        }
        run_cmd(&mut c)
    }
}

/// The login (user, password) the manifest `rel` holds on main.
pub fn published_login(f: &GitFleet, rel: &str, name: &str) -> (String, String) {
    let file = f.path(&format!("{name}-check.yaml"));
    std::fs::write(&file, f.show("dev", "main", rel)).unwrap();
    let secret = format!("service1/{name}");
    let get =
        |k: &str| String::from_utf8(decrypt_value(&file, 0, DEV1, &secret, k).unwrap()).unwrap();
    (get("DB_USER"), get("DB_PASSWORD"))
}

/// Single user at the server: login `app`'s password is replaced while something is
/// logged in with it (that is the strategy), by the policy (40 hex characters); the old
/// one stops working at once; revoking the previous generation finds nothing left; the
/// contract of a single-key identity holds. Then `revokeWith: nologin` on the pair: the
/// login is disabled, not dropped, and the next mint enables it again.
pub async fn single_user_and_nologin(p: &dyn Provider, s: &Server<'_>) {
    use secret_manager::db_logins::{PASSWORD, USERNAME};
    let first = p.mint(&s.single(None)).await.unwrap();
    let first_pw = first.fields[PASSWORD].expose().to_owned();
    assert_eq!((first.key_id.0.as_str(), first_pw.len()), ("app.1", 40));
    assert!(
        first_pw.bytes().all(|b| b.is_ascii_hexdigit()),
        "the policy's alphabet"
    );
    p.verify(&first).await.unwrap();
    let end_session = (s.logged_in)("app", &first_pw);
    let second = p.mint(&s.single(Some("app.1"))).await.unwrap();
    end_session();
    assert_eq!(second.key_id.0, "app.2");
    assert!(
        !(s.can_log_in)("app", &first_pw),
        "no overlap: the old one is gone"
    );
    assert!((s.can_log_in)("app", second.fields[PASSWORD].expose()));
    let t = s.single(Some("app.2"));
    let ids: Vec<String> = p
        .keys(&t)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id.0)
        .collect();
    assert_eq!(ids, ["app.2"]);
    assert_eq!(
        p.revoke(&t, &first.key_id, Revoke::Delete).await.unwrap(),
        Revoked::AlreadyGone
    );
    assert!((s.can_log_in)("app", second.fields[PASSWORD].expose()));
    secret_manager::provider::testing::conformance_replacing(p, &t).await;

    let a = p
        .mint(&s.with(None, "revokeWith", "nologin"))
        .await
        .unwrap();
    let b = p
        .mint(&s.with(Some(&a.key_id.0), "revokeWith", "nologin"))
        .await
        .unwrap();
    let t = s.with(Some(&b.key_id.0), "revokeWith", "nologin");
    assert_eq!(
        p.revoke(&t, &a.key_id, Revoke::Delete).await.unwrap(),
        Revoked::Done
    );
    assert!((s.login_disabled)("app_a"), "disabled, not dropped");
    assert!(!(s.can_log_in)("app_a", a.fields[PASSWORD].expose()));
    let c = p.mint(&t).await.unwrap();
    assert_eq!(c.fields[USERNAME].expose(), "app_a");
    assert!(
        (s.can_log_in)("app_a", c.fields[PASSWORD].expose()),
        "enabled by the mint"
    );
}

/// A run killed right after it set a new password (both strategies): alternating users
/// keep the consumers' login working throughout; single user shows its documented gap
/// (the manifest's password is dead until the next run); the next run, after the dead
/// run's lease, locks out the orphaned generation and rotates: the manifest's value logs
/// in, the one before does not, and the login holds generation 3, not the orphan's 2.
pub fn crash_after_mint_converges(s: &Server<'_>) {
    for (name, params, single) in [
        ("pair-db", &["users=app_a,app_b"][..], false),
        (
            "single-db",
            &["users=app", "strategy=single-user"][..],
            true,
        ),
    ] {
        let f = GitFleet::new();
        let rel = format!("applications/service1/state/overlays/{DEV1}/{name}.yaml");
        s.create(&f, &rel, name, params);
        let before = published_login(&f, &rel, name);
        assert!((s.can_log_in)(&before.0, &before.1));
        let r = s.rotate(&f, name, "2027-01-01T00:00:00Z", Some("after-mint"));
        assert_eq!(r.code, 86, "{name}: {}", r.stderr);
        assert_eq!(
            (s.can_log_in)(&before.0, &before.1),
            !single,
            "{name}: alternating users keep the login; single user has its gap"
        );
        let r = s.rotate(&f, name, "2027-01-01T00:15:00Z", None);
        assert_eq!(r.code, 0, "{name}: {}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("1 orphan(s) cleaned"),
            "{name}: {}",
            r.stderr
        );
        let after = published_login(&f, &rel, name);
        assert!(
            (s.can_log_in)(&after.0, &after.1),
            "{name}: the new value logs in"
        );
        assert!(
            !(s.can_log_in)(&before.0, &before.1),
            "{name}: the old one is revoked"
        );
        assert_eq!((s.generation)(&after.0), Some(3), "{name}");
    }
}
