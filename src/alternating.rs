//! The **alternating users** strategy, shared by the database sources (`postgres`,
//! `mysql`): what it decides, without a database connection.
//!
//! An identity is a pair of logins with the same grants (`app_a`, `app_b`). The manifest
//! references one of them; a mint sets a new password on the other (the *standby*), so the
//! one in use keeps working until every cluster has the new value and the old login is
//! revoked (its password replaced by one nobody holds; never dropped). A key id is
//! `<user>.<generation>`, so the engine's two-key model, claims and audit apply unchanged.
//!
//! Each source keeps a [`Mark`] per login — which generation it holds, or that it was
//! revoked — where its database allows (a role comment in PostgreSQL, a table in MariaDB).
//! A login without a mark holds nothing the tool can revoke.

use crate::provider::{
    KeyId, KeyInfo, KeyStatus, Minted, ProviderError, ProviderResult, SecretValue, Target,
};
use chrono::{DateTime, Utc};

/// Output field: the login name.
pub const USERNAME: &str = "Username";
/// Output field: its password.
pub const PASSWORD: &str = "Password";
/// Length of a generated password (OS RNG, letters and digits).
pub const PASSWORD_LENGTH: usize = 32;

/// Which database a pair lives in, for names and messages.
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
        /// The generation.
        generation: u64,
        /// When its password was set.
        at: DateTime<Utc>,
    },
    /// Held `generation` until it was revoked.
    Revoked {
        /// The generation.
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

/// The pair of an identity (annotations `instance` and `users`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    /// Which admin connection.
    pub instance: String,
    /// The two logins.
    pub users: [String; 2],
}

impl Pair {
    /// The pair a target names; a clear error for a bad instance or user list.
    pub fn of(kind: Kind, t: &Target) -> ProviderResult<Pair> {
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
        let users: Vec<&str> = t.param("users")?.split(',').map(str::trim).collect();
        let [a, b] = users[..] else {
            return Err(bad(format!(
                "users: give the two {}s of the pair, e.g. `app_a,app_b`",
                kind.login
            )));
        };
        for u in [a, b] {
            if u.len() > kind.max_len || !valid_user(u) {
                return Err(bad(format!(
                    "users: `{}` is not a {} name this source manages (lower-case letters, digits, `_`, at most {})",
                    crate::text::escape_cut(u, 70),
                    kind.login,
                    kind.max_len
                )));
            }
        }
        if a == b {
            return Err(bad(format!(
                "users: the two {}s of the pair must differ",
                kind.login
            )));
        }
        Ok(Pair {
            instance: instance.to_owned(),
            users: [a.to_owned(), b.to_owned()],
        })
    }

    /// The index of `user` in the pair.
    pub fn index(&self, user: &str) -> Option<usize> {
        self.users.iter().position(|u| u == user)
    }

    /// The index of the login that gets the next password: the one the manifest does not
    /// reference (the first for a new secret). Which one is current comes from the
    /// manifest, never from the database.
    pub fn standby(&self, kind: Kind, t: &Target) -> ProviderResult<usize> {
        match t.current_key.as_ref().and_then(|k| parse_key(&k.0)) {
            None => Ok(0),
            Some((u, _)) => {
                self.index(u)
                    .map(|i| 1 - i)
                    .ok_or_else(|| ProviderError::IdentityMismatch {
                        provider: kind.source.into(),
                        message: format!(
                            "{} {u} is not one of the pair ({})",
                            kind.login,
                            self.users.join(", ")
                        ),
                    })
            }
        }
    }

    /// The login and generation `key` names; an error when it is not one of the pair's.
    pub fn key(&self, kind: Kind, key: &KeyId) -> ProviderResult<(usize, u64)> {
        parse_key(&key.0)
            .and_then(|(u, g)| self.index(u).map(|i| (i, g)))
            .ok_or_else(|| ProviderError::IdentityMismatch {
                provider: kind.source.into(),
                message: format!(
                    "key id {} is not `<{}>.<generation>` of one of the pair's {}s ({})",
                    crate::text::escape_cut(&key.0, 80),
                    kind.login,
                    kind.login,
                    self.users.join(", ")
                ),
            })
    }

    /// The keys the identity holds: each login's active generation, and a login set up by
    /// hand (no mark) that the manifest references — its key is live.
    pub fn keys(&self, marks: &[Mark; 2], t: &Target) -> Vec<KeyInfo> {
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

    /// Whether the standby `si` may get a new password: it holds no key (minting over one
    /// would break whoever uses it) and nothing is logged in as it (`sessions`, counted by
    /// the caller; a connection pool still holding the previous password).
    pub fn check_standby(
        &self,
        kind: Kind,
        si: usize,
        marks: &[Mark; 2],
        sessions: i64,
    ) -> ProviderResult<()> {
        let standby = &self.users[si];
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
}

/// The next generation: above every one recorded and the one the manifest references.
pub fn next_generation(marks: &[Mark; 2], t: &Target) -> u64 {
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

/// A new password (OS RNG, letters and digits).
pub fn new_password(len: usize) -> String {
    crate::random_source::generate(crate::random_source::ALPHABETS[0].1, len)
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
        let pair = Pair::of(PG, &t).unwrap();
        assert_eq!(pair.standby(PG, &t).unwrap(), 1);
        let t = target("app_a,app_b", Some("app_b.2"));
        assert_eq!(pair.standby(PG, &t).unwrap(), 0);
        assert_eq!(pair.standby(PG, &target("app_a,app_b", None)).unwrap(), 0);
        let e = pair
            .standby(PG, &target("app_a,app_b", Some("other.1")))
            .unwrap_err();
        assert!(e.to_string().contains("not one of the pair"), "{e}");
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
            assert!(Pair::of(PG, &target(users, None)).is_err(), "{users}");
        }
        let mut t = target("a,b", None);
        t.params.insert("instance".into(), "../x".into());
        let e = Pair::of(PG, &t).unwrap_err();
        assert!(e.to_string().contains("X_<instance>_URL"), "{e}");
        let my = Kind { max_len: 32, ..PG };
        assert!(Pair::of(my, &target(&format!("a,{}", "b".repeat(33)), None)).is_err());
    }

    #[test]
    fn a_standby_holding_a_key_or_sessions_is_not_minted_over() {
        let pair = Pair::of(PG, &target("a,b", None)).unwrap();
        let held = [
            Mark::None,
            Mark::Active {
                generation: 3,
                at: Utc::now(),
            },
        ];
        let e = pair.check_standby(PG, 1, &held, 0).unwrap_err();
        assert!(e.to_string().contains("still holds generation 3"), "{e}");
        let e = pair.check_standby(PG, 0, &held, 2).unwrap_err().to_string();
        assert!(e.contains("2 live session"), "{e}");
        assert!(pair.check_standby(PG, 0, &held, 0).is_ok());
        // keys: the active generation, and a hand-made login the manifest references.
        let t = target("a,b", Some("a.1"));
        let ids: Vec<String> = pair.keys(&held, &t).into_iter().map(|k| k.id.0).collect();
        assert_eq!(ids, vec!["a.1", "b.3"]);
    }
}
