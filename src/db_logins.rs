//! The logins of a database identity and the two rotation strategies the database sources
//! (`postgres`, `mysql`) share: what they decide, without a database connection.
//!
//! **Alternating users** (the default): an identity is a pair of logins with the same
//! grants (`app_a`, `app_b`). The manifest references one of them; a mint sets a new
//! password on the other (the *standby*), so the one in use keeps working until every
//! cluster has the new value and the old login is revoked (its password replaced by one
//! nobody holds, or login disabled; never dropped).
//!
//! **Single user** (`strategy: single-user`, only when chosen): one login, whose password a
//! mint replaces. There is no overlap: consumers fail to log in from the mint until they
//! run with the new value, so the engine runs it only with the consumers gate or an
//! explicit `--allow-login-gap` ([`single_user`]). Revoking the previous generation then
//! finds nothing left to do: the login moved on.
//!
//! A key id is `<user>.<generation>` either way, so the engine's two-key model, claims and
//! audit apply unchanged. Each source keeps a [`Mark`] per login — which generation it
//! holds, or that it was revoked — where its database allows (a role comment in
//! PostgreSQL, a table in MariaDB). A login without a mark holds nothing the tool can
//! revoke.

use crate::provider::{
    KeyId, KeyInfo, KeyStatus, Minted, ProviderError, ProviderResult, SecretValue, Target,
};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Output field: the login name.
pub const USERNAME: &str = "Username";
/// Output field: its password.
pub const PASSWORD: &str = "Password";
/// Length of a generated password when the `length` annotation is absent (OS RNG).
pub const PASSWORD_LENGTH: usize = 32;
/// Lengths a password policy may ask for.
pub const PASSWORD_LENGTHS: std::ops::RangeInclusive<usize> = 16..=128;
/// The `strategy` annotation's value that chooses single-user rotation.
pub const SINGLE_USER: &str = "single-user";
/// The default strategy's name.
pub const ALTERNATING_USERS: &str = "alternating-users";

/// Whether a secret's source annotations choose the single-user strategy (the engine asks,
/// before anything is minted, whether the run may leave its consumers without a login).
pub fn single_user(params: &BTreeMap<String, String>) -> bool {
    params.get("strategy").map(|s| s.trim()) == Some(SINGLE_USER)
}

/// Which database an identity lives in, for names and messages.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    /// The source name (`postgres`, `mysql`).
    pub source: &'static str,
    /// What a login is called there (`role`, `account`).
    pub login: &'static str,
    /// Longest login name.
    pub max_len: usize,
    /// The environment variable of an instance's admin URL.
    pub url_env: fn(&str) -> String,
}

/// An instance name: lower-case letters, digits, `-` and `_` (it names an environment
/// variable).
pub fn valid_instance(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A login name the sources manage: a plain lower-case SQL identifier (no quoting needed,
/// no `.`, which separates the generation in a key id).
fn valid_user(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `<user>.<generation>` of a key id.
pub fn parse_key(id: &str) -> Option<(&str, u64)> {
    let (user, generation) = id.rsplit_once('.')?;
    (valid_user(user) && generation.bytes().all(|b| b.is_ascii_digit()))
        .then(|| generation.parse().ok().map(|g| (user, g)))
        .flatten()
}

/// What the tool recorded about one login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Nothing recorded by this tool.
    None,
    /// Holds `generation`, set at `at`.
    Active {
        /// Which password of the credential's history the login holds (1, 2, ...).
        generation: u64,
        /// When its password was set.
        at: DateTime<Utc>,
    },
    /// Held `generation` until it was revoked.
    Revoked {
        /// The password the login held before it was revoked.
        generation: u64,
    },
}

impl Mark {
    /// The generation it names (0 for none).
    pub fn generation(&self) -> u64 {
        match self {
            Mark::Active { generation, .. } | Mark::Revoked { generation } => *generation,
            Mark::None => 0,
        }
    }
}

/// How a secret's logins rotate (annotation `strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Two logins; the standby gets the new password (the default).
    AlternatingUsers,
    /// One login whose password is replaced: no overlap.
    SingleUser,
}

/// What revoking a login does (annotation `revokeWith`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeWith {
    /// Its password becomes a random value nobody holds (the default).
    Password,
    /// Login is disabled (`NOLOGIN` in PostgreSQL, `ACCOUNT LOCK` in MariaDB/MySQL); the
    /// next mint enables it again.
    NoLogin,
}

/// The logins of an identity (annotations `instance`, `users`, `strategy`, `revokeWith`,
/// `length`, `alphabet`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logins {
    /// Which admin connection.
    pub instance: String,
    /// The logins: two for alternating users, one for single user.
    pub users: Vec<String>,
    /// How they rotate.
    pub strategy: Strategy,
    /// What revoking does.
    pub revoke_with: RevokeWith,
    /// New passwords: drawn from this alphabet ...
    pub alphabet: &'static str,
    /// ... this long.
    pub length: usize,
}

impl Logins {
    /// The logins a target names; a clear error for a bad instance, user list or policy.
    pub fn of(kind: Kind, t: &Target) -> ProviderResult<Logins> {
        let bad = |message: String| ProviderError::Permanent {
            provider: kind.source.into(),
            operation: "preflight",
            message,
        };
        let instance = t.param("instance")?.trim();
        if !valid_instance(instance) {
            return Err(bad(format!(
                "instance `{}`: give a name of lower-case letters, digits, `-` and `_` (its admin URL is in {})",
                crate::text::escape_cut(instance, 40),
                (kind.url_env)("<instance>")
            )));
        }
        let strategy = match t.params.get("strategy").map(|s| s.trim()) {
            None | Some(ALTERNATING_USERS) => Strategy::AlternatingUsers,
            Some(SINGLE_USER) => Strategy::SingleUser,
            Some(other) => {
                return Err(bad(format!(
                    "strategy `{}`: `{ALTERNATING_USERS}` (the default: two {}s, no login gap) or `{SINGLE_USER}` (one {}, consumers fail to log in until they restart)",
                    crate::text::escape_cut(other, 40),
                    kind.login,
                    kind.login
                )));
            }
        };
        let revoke_with = match t.params.get("revokeWith").map(|s| s.trim()) {
            None | Some("password") => RevokeWith::Password,
            Some("nologin") => RevokeWith::NoLogin,
            Some(other) => {
                return Err(bad(format!(
                    "revokeWith `{}`: `password` (the default: a password nobody holds) or `nologin` (login disabled)",
                    crate::text::escape_cut(other, 40)
                )));
            }
        };
        let users: Vec<&str> = t.param("users")?.split(',').map(str::trim).collect();
        match (strategy, users.len()) {
            (Strategy::AlternatingUsers, 2) | (Strategy::SingleUser, 1) => {}
            (Strategy::AlternatingUsers, _) => {
                return Err(bad(format!(
                    "users: give the two {}s of the pair, e.g. `app_a,app_b` (or one {} with strategy `{SINGLE_USER}`)",
                    kind.login, kind.login
                )));
            }
            (Strategy::SingleUser, _) => {
                return Err(bad(format!(
                    "users: strategy `{SINGLE_USER}` rotates one {}: give just its name",
                    kind.login
                )));
            }
        }
        for u in &users {
            if u.len() > kind.max_len || !valid_user(u) {
                return Err(bad(format!(
                    "users: `{}` is not a {} name this source manages (lower-case letters, digits, `_`, at most {})",
                    crate::text::escape_cut(u, 70),
                    kind.login,
                    kind.max_len
                )));
            }
        }
        if users.len() == 2 && users[0] == users[1] {
            return Err(bad(format!(
                "users: the two {}s of the pair must differ",
                kind.login
            )));
        }
        let (alphabet, length) =
            crate::random_source::policy_of(kind.source, t, PASSWORD_LENGTHS, PASSWORD_LENGTH)?;
        Ok(Logins {
            instance: instance.to_owned(),
            users: users.into_iter().map(str::to_owned).collect(),
            strategy,
            revoke_with,
            alphabet,
            length,
        })
    }

    /// The index of `user` among the logins.
    pub fn index(&self, user: &str) -> Option<usize> {
        self.users.iter().position(|u| u == user)
    }

    /// The index of the login that gets the next password: for alternating users the one
    /// the manifest does not reference (the first for a new secret), for a single user
    /// that user. Which one is current comes from the manifest, never from the database.
    pub fn standby(&self, kind: Kind, t: &Target) -> ProviderResult<usize> {
        match t.current_key.as_ref().and_then(|k| parse_key(&k.0)) {
            None => Ok(0),
            Some((u, _)) => self
                .index(u)
                .map(|i| match self.strategy {
                    Strategy::AlternatingUsers => 1 - i,
                    Strategy::SingleUser => i,
                })
                .ok_or_else(|| ProviderError::IdentityMismatch {
                    provider: kind.source.into(),
                    message: format!("{} {u} is not one of {}", kind.login, self.users.join(", ")),
                }),
        }
    }

    /// The login and generation `key` names; an error when it is not one of the logins'.
    pub fn key(&self, kind: Kind, key: &KeyId) -> ProviderResult<(usize, u64)> {
        parse_key(&key.0)
            .and_then(|(u, g)| self.index(u).map(|i| (i, g)))
            .ok_or_else(|| ProviderError::IdentityMismatch {
                provider: kind.source.into(),
                message: format!(
                    "key id {} is not `<{}>.<generation>` of {}",
                    crate::text::escape_cut(&key.0, 80),
                    kind.login,
                    self.users.join(", ")
                ),
            })
    }

    /// The keys the identity holds: each login's active generation, and a login set up by
    /// hand (no mark) that the manifest references — its key is live.
    pub fn keys(&self, marks: &[Mark], t: &Target) -> Vec<KeyInfo> {
        let live = |id: KeyId, created| KeyInfo {
            id,
            created,
            status: KeyStatus::Active,
            last_used: None,
            expires: None,
        };
        let mut out = Vec::new();
        for (user, mark) in self.users.iter().zip(marks) {
            match mark {
                Mark::Active { generation, at } => {
                    out.push(live(KeyId(format!("{user}.{generation}")), Some(*at)));
                }
                Mark::None => {
                    if let Some(k) = t
                        .current_key
                        .iter()
                        .chain(&t.referenced)
                        .find(|k| parse_key(&k.0).is_some_and(|(u, _)| u == user))
                    {
                        out.push(live(k.clone(), None));
                    }
                }
                Mark::Revoked { .. } => {}
            }
        }
        out
    }

    /// Whether login `si` may get a new password. Alternating users: the standby holds no
    /// key (minting over one would break whoever uses it) and nothing is logged in as it
    /// (`sessions`, counted by the caller; a connection pool still holding the previous
    /// password). Single user: replacing the password in use is the strategy, but a new
    /// secret (no key in the manifest) does not take over a login something is logged in
    /// as.
    pub fn check_standby(
        &self,
        kind: Kind,
        si: usize,
        marks: &[Mark],
        sessions: i64,
        t: &Target,
    ) -> ProviderResult<()> {
        let standby = &self.users[si];
        if self.strategy == Strategy::SingleUser {
            if t.current_key.is_none() && sessions > 0 {
                return Err(ProviderError::Permanent {
                    provider: kind.source.into(),
                    operation: "mint",
                    message: format!(
                        "{} {standby} has {sessions} live session(s) and this secret holds no key of it yet: a new single-user secret does not take over a login something uses",
                        kind.login
                    ),
                });
            }
            return Ok(());
        }
        if let Mark::Active { generation, .. } = marks[si] {
            return Err(ProviderError::KeyLimit {
                provider: kind.source.into(),
                identity: self.users.join(","),
                count: 2,
                hint: format!(
                    "{} {standby} still holds generation {generation}; revoke {standby}.{generation} first",
                    kind.login
                ),
            });
        }
        if sessions > 0 {
            return Err(ProviderError::Permanent {
                provider: kind.source.into(),
                operation: "mint",
                message: format!(
                    "the standby {} {standby} has {sessions} live session(s): something still logs in as it (a connection pool holding the previous password?); the rotation waits until they end",
                    kind.login
                ),
            });
        }
        Ok(())
    }

    /// A new password by the identity's policy (OS RNG).
    pub fn new_password(&self) -> String {
        crate::random_source::generate(self.alphabet, self.length)
    }
}

/// The next generation: above every one recorded and the one the manifest references.
pub fn next_generation(marks: &[Mark], t: &Target) -> u64 {
    marks
        .iter()
        .map(Mark::generation)
        .chain(
            t.current_key
                .as_ref()
                .and_then(|k| parse_key(&k.0))
                .map(|(_, g)| g),
        )
        .max()
        .unwrap_or(0)
        + 1
}

/// Whether revoking `generation` must act: the login still holds exactly it. A login that
/// moved on, or was never the tool's, is not touched.
pub fn still_holds(mark: &Mark, generation: u64) -> bool {
    matches!(mark, Mark::Active { generation: g, .. } if *g == generation)
}

/// A password nobody holds (what a revoke sets): OS RNG, letters and digits, never
/// returned.
pub fn nobodys_password() -> String {
    crate::random_source::generate(crate::random_source::ALPHABETS[0].1, 48)
}

/// The minted key: login `user` at `generation` with `password`.
pub fn minted(user: String, generation: u64, password: String, created: DateTime<Utc>) -> Minted {
    Minted {
        key_id: KeyId(format!("{user}.{generation}")),
        created,
        fields: [
            (USERNAME.to_owned(), SecretValue::new(user)),
            (PASSWORD.to_owned(), SecretValue::new(password)),
        ]
        .into(),
        operator: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG: Kind = Kind {
        source: "postgres",
        login: "role",
        max_len: 63,
        url_env: |i| format!("X_{i}_URL"),
    };

    fn target(users: &str, current: Option<&str>) -> Target {
        Target {
            source: "postgres".into(),
            params: [("instance", "main"), ("users", users)]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            current_key: current.map(|c| KeyId(c.into())),
            referenced: Vec::new(),
        }
    }

    #[test]
    fn key_ids_and_generations() {
        assert_eq!(parse_key("app_a.3"), Some(("app_a", 3)));
        assert_eq!(parse_key("app_a"), None);
        assert_eq!(parse_key("App.3"), None);
        assert_eq!(parse_key("a;drop.3"), None);
        assert_eq!(parse_key("app_a.-1"), None);
        let marks = [
            Mark::Revoked { generation: 4 },
            Mark::Active {
                generation: 5,
                at: Utc::now(),
            },
        ];
        assert_eq!(next_generation(&marks, &target("a,b", Some("b.2"))), 6);
        assert_eq!(
            next_generation(&[Mark::None, Mark::None], &target("a,b", Some("b.9"))),
            10
        );
        assert!(still_holds(&marks[1], 5));
        assert!(!still_holds(&marks[1], 4) && !still_holds(&marks[0], 4));
    }

    #[test]
    fn the_standby_is_the_login_the_manifest_does_not_reference() {
        let t = target("app_a,app_b", Some("app_a.1"));
        let pair = Logins::of(PG, &t).unwrap();
        assert_eq!(pair.standby(PG, &t).unwrap(), 1);
        let t = target("app_a,app_b", Some("app_b.2"));
        assert_eq!(pair.standby(PG, &t).unwrap(), 0);
        assert_eq!(pair.standby(PG, &target("app_a,app_b", None)).unwrap(), 0);
        let e = pair
            .standby(PG, &target("app_a,app_b", Some("other.1")))
            .unwrap_err();
        assert!(e.to_string().contains("is not one of app_a, app_b"), "{e}");
        assert!(pair.key(PG, &KeyId("other.1".into())).is_err());
        assert_eq!(pair.key(PG, &KeyId("app_b.7".into())).unwrap(), (1, 7));
    }

    #[test]
    fn hostile_pairs_are_refused_before_any_connection() {
        for users in [
            "app_a",
            "a,a",
            "a,b,c",
            "app_a,\"; DROP ROLE x; --",
            "app_a,App",
            "app_a,a.b",
        ] {
            assert!(Logins::of(PG, &target(users, None)).is_err(), "{users}");
        }
        let mut t = target("a,b", None);
        t.params.insert("instance".into(), "../x".into());
        let e = Logins::of(PG, &t).unwrap_err();
        assert!(e.to_string().contains("X_<instance>_URL"), "{e}");
        let my = Kind { max_len: 32, ..PG };
        assert!(Logins::of(my, &target(&format!("a,{}", "b".repeat(33)), None)).is_err());
    }

    #[test]
    fn a_standby_holding_a_key_or_sessions_is_not_minted_over() {
        let pair = Logins::of(PG, &target("a,b", None)).unwrap();
        let held = [
            Mark::None,
            Mark::Active {
                generation: 3,
                at: Utc::now(),
            },
        ];
        let e = pair
            .check_standby(PG, 1, &held, 0, &target("a,b", None))
            .unwrap_err();
        assert!(e.to_string().contains("still holds generation 3"), "{e}");
        let e = pair
            .check_standby(PG, 0, &held, 2, &target("a,b", None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 live session"), "{e}");
        assert!(
            pair.check_standby(PG, 0, &held, 0, &target("a,b", None))
                .is_ok()
        );
        // keys: the active generation, and a hand-made login the manifest references.
        let t = target("a,b", Some("a.1"));
        let ids: Vec<String> = pair.keys(&held, &t).into_iter().map(|k| k.id.0).collect();
        assert_eq!(ids, vec!["a.1", "b.3"]);
    }

    fn with(mut t: Target, k: &str, v: &str) -> Target {
        t.params.insert(k.into(), v.into());
        t
    }

    #[test]
    fn single_user_rotates_the_one_login_and_is_chosen_explicitly() {
        let one = with(target("app", Some("app.4")), "strategy", SINGLE_USER);
        assert!(single_user(&one.params));
        assert!(!single_user(&target("a,b", None).params));
        let l = Logins::of(PG, &one).unwrap();
        assert_eq!(l.strategy, Strategy::SingleUser);
        // The login that gets the password is the one in use.
        assert_eq!(l.standby(PG, &one).unwrap(), 0);
        let marks = [Mark::Active {
            generation: 4,
            at: Utc::now(),
        }];
        // Holding a key and having sessions is what a single-user login does.
        assert!(l.check_standby(PG, 0, &marks, 3, &one).is_ok());
        // A new secret does not take over a login in use.
        let new = with(target("app", None), "strategy", SINGLE_USER);
        let e = l.check_standby(PG, 0, &[Mark::None], 1, &new).unwrap_err();
        assert!(e.to_string().contains("does not take over"), "{e}");
        assert_eq!(next_generation(&marks, &one), 5);
        // After the mint the login holds 5: revoking 4 finds nothing to do.
        let moved = [Mark::Active {
            generation: 5,
            at: Utc::now(),
        }];
        assert!(!still_holds(&moved[0], 4));
        // One login for single user, two for alternating.
        for (users, strategy) in [("a,b", SINGLE_USER), ("a", ALTERNATING_USERS), ("a", "")] {
            let mut t = target(users, None);
            if !strategy.is_empty() {
                t = with(t, "strategy", strategy);
            }
            assert!(Logins::of(PG, &t).is_err(), "{users} {strategy}");
        }
        let e = Logins::of(PG, &with(target("a,b", None), "strategy", "--drop"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("strategy `--drop`"), "{e}");
    }

    #[test]
    fn revoke_mode_and_password_policy_come_from_annotations() {
        let t = target("a,b", None);
        let l = Logins::of(PG, &t).unwrap();
        assert_eq!((l.revoke_with, l.length), (RevokeWith::Password, 32));
        let t = with(
            with(with(t, "revokeWith", "nologin"), "length", "64"),
            "alphabet",
            "hex",
        );
        let l = Logins::of(PG, &t).unwrap();
        assert_eq!(l.revoke_with, RevokeWith::NoLogin);
        let pw = l.new_password();
        assert_eq!(pw.len(), 64);
        assert!(pw.bytes().all(|b| b.is_ascii_hexdigit()), "{pw}");
        for (k, v) in [
            ("revokeWith", "drop"),
            ("length", "8"),
            ("length", "4096"),
            ("alphabet", "'"),
        ] {
            assert!(
                Logins::of(PG, &with(target("a,b", None), k, v)).is_err(),
                "{k}={v}"
            );
        }
    }
}
