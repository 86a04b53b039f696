//! The `mysql` source: MariaDB (and MySQL 5.7) passwords with **alternating users** — the
//! same strategy as the `postgres` source (see there): a pair of accounts with the same
//! grants, the standby gets the new password, the old account is locked out (a password
//! nobody holds) once every cluster has the new one. Accounts are never dropped.
//!
//! MariaDB keeps no comment on an account, so which generation each account holds lives in
//! a table the tool owns, `secret_manager.generations` (created on the first mint). An
//! account the table does not name holds no key the tool can revoke.
//!
//! New passwords are sent as `mysql_native_password` hashes computed here
//! (`IDENTIFIED BY PASSWORD '*…'`): the clear password never reaches the server or its
//! logs. A standby with live connections (`information_schema.processlist`) is not minted
//! over. The admin connection is the operator's: `SECRET_MANAGER_MYSQL_<INSTANCE>_URL`, a
//! `mysql://` URL of an account with `CREATE USER` and access to `secret_manager.*`; TLS
//! is required off the loopback interface.

use crate::postgres_source::parse_key;
use crate::provider::{
    Capabilities, KeyId, KeyInfo, KeyStatus, Minted, Provider, ProviderError, ProviderResult,
    Revoke, Revoked, SecretValue, Target,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mysql_async::prelude::Queryable;
use std::collections::HashMap;
use std::sync::Mutex;

/// The source name.
pub const NAME: &str = "mysql";
/// Output field: the account name to log in as.
pub const USERNAME: &str = "Username";
/// Output field: its password.
pub const PASSWORD: &str = "Password";
const PASSWORD_LENGTH: usize = 32;

/// The environment variable holding the admin URL of `instance`.
pub fn url_env(instance: &str) -> String {
    format!(
        "SECRET_MANAGER_MYSQL_{}_URL",
        instance.to_ascii_uppercase().replace('-', "_")
    )
}

/// `*` and the upper-case hex of SHA1(SHA1(password)): what `mysql_native_password`
/// stores, accepted by `IDENTIFIED BY PASSWORD`.
pub fn native_hash(password: &str) -> String {
    use sha1::Digest as _;
    let inner = sha1::Sha1::digest(password.as_bytes());
    format!("*{}", hex::encode_upper(sha1::Sha1::digest(inner)))
}

#[derive(Clone, Debug)]
struct Pair {
    instance: String,
    users: [String; 2],
    host: String,
}

impl Pair {
    fn of(t: &Target) -> ProviderResult<Pair> {
        let bad = |message: String| ProviderError::Permanent {
            provider: NAME.into(),
            operation: "preflight",
            message,
        };
        let instance = t.param("instance")?.trim();
        if !(1..=32).contains(&instance.len())
            || !instance
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(bad(format!(
                "instance `{}`: give a name of lower-case letters, digits, `-` and `_` (its admin URL is in {})",
                crate::text::escape_cut(instance, 40),
                url_env("<instance>")
            )));
        }
        let users: Vec<&str> = t.param("users")?.split(',').map(str::trim).collect();
        let [a, b] = users[..] else {
            return Err(bad(
                "users: give the two accounts of the pair, e.g. `app_a,app_b`".into(),
            ));
        };
        for u in [a, b] {
            if u.len() > 32 || parse_key(&format!("{u}.0")).is_none() {
                return Err(bad(format!(
                    "users: `{}` is not an account name this source manages (lower-case letters, digits, `_`, at most 32)",
                    crate::text::escape_cut(u, 70)
                )));
            }
        }
        if a == b {
            return Err(bad("users: the two accounts of the pair must differ".into()));
        }
        let host = t.params.get("host").map_or("%", |h| h.trim());
        if host.is_empty()
            || host.len() > 60
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_%:".contains(&b))
        {
            return Err(bad(format!(
                "host `{}`: the accounts' host part, e.g. % or 10.0.%",
                crate::text::escape_cut(host, 60)
            )));
        }
        Ok(Pair {
            instance: instance.to_owned(),
            users: [a.to_owned(), b.to_owned()],
            host: host.to_owned(),
        })
    }

    fn index(&self, user: &str) -> Option<usize> {
        self.users.iter().position(|u| u == user)
    }
}

/// What `secret_manager.generations` says about an account.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Mark {
    None,
    Active { generation: u64, at: DateTime<Utc> },
    Revoked { generation: u64 },
}

fn err(operation: &'static str, e: &mysql_async::Error) -> ProviderError {
    match e {
        mysql_async::Error::Server(s) => {
            let message = format!("{} ({})", s.message, s.code);
            // 1044/1045: access denied; 1142/1227: a privilege missing.
            if matches!(s.code, 1044 | 1045 | 1142 | 1227) {
                ProviderError::AccessDenied {
                    provider: NAME.into(),
                    operation,
                    message,
                }
            } else {
                ProviderError::Permanent {
                    provider: NAME.into(),
                    operation,
                    message,
                }
            }
        }
        other => ProviderError::Transient {
            provider: NAME.into(),
            operation,
            message: other.to_string(),
        },
    }
}

fn admin_opts(urls: &HashMap<String, String>, instance: &str) -> ProviderResult<mysql_async::Opts> {
    let var = url_env(instance);
    let url = match urls.get(instance) {
        Some(u) => u.clone(),
        None => std::env::var(&var).map_err(|_| ProviderError::NoCredentials {
            provider: NAME.into(),
            message: format!(
                "no admin connection for instance `{instance}`: set {var} to a mysql:// URL of an account with CREATE USER"
            ),
        })?,
    };
    let opts = mysql_async::Opts::from_url(&url).map_err(|_| ProviderError::NoCredentials {
        provider: NAME.into(),
        // The URL may hold a password: never quote it.
        message: format!("{var} is not a valid mysql:// URL"),
    })?;
    let local = matches!(opts.ip_or_hostname(), "localhost" | "127.0.0.1" | "::1");
    let mut b = mysql_async::OptsBuilder::from_opts(opts.clone()).prefer_socket(false);
    if opts.ssl_opts().is_none() && !local {
        b = b.ssl_opts(mysql_async::SslOpts::default());
    }
    Ok(b.into())
}

/// MariaDB and MySQL accounts with alternating users (see the module documentation).
#[derive(Default)]
pub struct MysqlProvider {
    minted: Mutex<HashMap<String, (String, String)>>,
    urls: HashMap<String, String>,
}

impl std::fmt::Debug for MysqlProvider {
    // Admin URLs carry passwords: only the instance names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlProvider")
            .field("instances", &self.urls.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl MysqlProvider {
    /// Uses `url` as the admin connection of `instance` instead of its environment
    /// variable (tests, programs embedding the library).
    pub fn with_admin_url(mut self, instance: &str, url: &str) -> MysqlProvider {
        self.urls.insert(instance.to_owned(), url.to_owned());
        self
    }

    async fn admin(&self, pair: &Pair, op: &'static str) -> ProviderResult<mysql_async::Conn> {
        mysql_async::Conn::new(admin_opts(&self.urls, &pair.instance)?)
            .await
            .map_err(|e| err(op, &e))
    }

    /// Each account of the pair (in pair order) with what the tool's table says; a
    /// missing account is an error.
    async fn marks(
        conn: &mut mysql_async::Conn,
        pair: &Pair,
        op: &'static str,
    ) -> ProviderResult<[Mark; 2]> {
        for u in &pair.users {
            let found: Option<String> = conn
                .exec_first(
                    "SELECT user FROM mysql.user WHERE user = ? AND host = ?",
                    (u, &pair.host),
                )
                .await
                .map_err(|e| err(op, &e))?;
            if found.is_none() {
                return Err(ProviderError::NotFound {
                    provider: NAME.into(),
                    what: format!(
                        "account '{u}'@'{}' (create both accounts of the pair, with the same grants, before the first rotation)",
                        pair.host
                    ),
                });
            }
        }
        let table: Option<i64> = conn
            .query_first(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = 'secret_manager' AND table_name = 'generations'",
            )
            .await
            .map_err(|e| err(op, &e))?;
        let mut out = [Mark::None, Mark::None];
        if table.is_none() {
            return Ok(out);
        }
        for (i, u) in pair.users.iter().enumerate() {
            let row: Option<(u64, String, i8)> = conn
                .exec_first(
                    "SELECT generation, set_at, revoked FROM secret_manager.generations WHERE account_user = ? AND account_host = ?",
                    (u, &pair.host),
                )
                .await
                .map_err(|e| err(op, &e))?;
            out[i] = match row {
                Some((generation, _, 1)) => Mark::Revoked { generation },
                Some((generation, at, _)) => match at.parse() {
                    Ok(at) => Mark::Active { generation, at },
                    Err(_) => Mark::None,
                },
                None => Mark::None,
            };
        }
        Ok(out)
    }

    async fn set_password(
        conn: &mut mysql_async::Conn,
        pair: &Pair,
        user: &str,
        password: &str,
        op: &'static str,
    ) -> ProviderResult<()> {
        // Names are validated (letters, digits, `_`; the host also `.-%:`); the hash is
        // `*` and hex.
        conn.query_drop(format!(
            "ALTER USER '{user}'@'{}' IDENTIFIED BY PASSWORD '{}'",
            pair.host,
            native_hash(password)
        ))
        .await
        .map_err(|e| err(op, &e))
    }

    async fn record(
        conn: &mut mysql_async::Conn,
        pair: &Pair,
        user: &str,
        generation: u64,
        revoked: bool,
        op: &'static str,
    ) -> ProviderResult<()> {
        conn.query_drop(
            "CREATE DATABASE IF NOT EXISTS secret_manager; \
             CREATE TABLE IF NOT EXISTS secret_manager.generations (account_user VARCHAR(80) NOT NULL, account_host VARCHAR(255) NOT NULL, generation BIGINT UNSIGNED NOT NULL, set_at VARCHAR(32) NOT NULL, revoked TINYINT NOT NULL, PRIMARY KEY (account_user, account_host))",
        )
        .await
        .map_err(|e| err(op, &e))?;
        conn.exec_drop(
            "REPLACE INTO secret_manager.generations VALUES (?, ?, ?, ?, ?)",
            (
                user,
                &pair.host,
                generation,
                Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                i8::from(revoked),
            ),
        )
        .await
        .map_err(|e| err(op, &e))
    }
}

#[async_trait]
impl Provider for MysqlProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_keys_per_identity: Some(2),
            can_disable: false,
            needs_propagation: false,
        }
    }

    async fn preflight(&self, t: &Target) -> ProviderResult<()> {
        let pair = Pair::of(t)?;
        if let Some(k) = &t.current_key
            && parse_key(&k.0).is_none_or(|(u, _)| pair.index(u).is_none())
        {
            return Err(ProviderError::IdentityMismatch {
                provider: NAME.into(),
                message: format!(
                    "key id {} is not `<account>.<generation>` of one of the pair's accounts ({})",
                    crate::text::escape_cut(&k.0, 80),
                    pair.users.join(", ")
                ),
            });
        }
        let mut conn = self.admin(&pair, "preflight").await?;
        Self::marks(&mut conn, &pair, "preflight").await.map(drop)
    }

    async fn keys(&self, t: &Target) -> ProviderResult<Vec<KeyInfo>> {
        let pair = Pair::of(t)?;
        let mut conn = self.admin(&pair, "keys").await?;
        let marks = Self::marks(&mut conn, &pair, "keys").await?;
        let mut out = Vec::new();
        for (user, mark) in pair.users.iter().zip(&marks) {
            match mark {
                Mark::Active { generation, at } => out.push(KeyInfo {
                    id: KeyId(format!("{user}.{generation}")),
                    created: Some(*at),
                    status: KeyStatus::Active,
                    last_used: None,
                    expires: None,
                }),
                Mark::None => {
                    if let Some(k) = t
                        .current_key
                        .iter()
                        .chain(&t.referenced)
                        .find(|k| parse_key(&k.0).is_some_and(|(u, _)| u == user))
                    {
                        out.push(KeyInfo {
                            id: k.clone(),
                            created: None,
                            status: KeyStatus::Active,
                            last_used: None,
                            expires: None,
                        });
                    }
                }
                Mark::Revoked { .. } => {}
            }
        }
        Ok(out)
    }

    async fn mint(&self, t: &Target) -> ProviderResult<Minted> {
        let pair = Pair::of(t)?;
        let current = t.current_key.as_ref().and_then(|k| parse_key(&k.0));
        let si = match current {
            Some((u, _)) => {
                1 - pair
                    .index(u)
                    .ok_or_else(|| ProviderError::IdentityMismatch {
                        provider: NAME.into(),
                        message: format!(
                            "account {u} is not one of the pair ({})",
                            pair.users.join(", ")
                        ),
                    })?
            }
            None => 0,
        };
        let standby = pair.users[si].clone();
        let mut conn = self.admin(&pair, "mint").await?;
        let marks = Self::marks(&mut conn, &pair, "mint").await?;
        if let Mark::Active { generation, .. } = marks[si] {
            return Err(ProviderError::KeyLimit {
                provider: NAME.into(),
                identity: pair.users.join(","),
                count: 2,
                hint: format!(
                    "account {standby} still holds generation {generation}; revoke {standby}.{generation} first"
                ),
            });
        }
        let sessions: Option<i64> = conn
            .exec_first(
                "SELECT count(*) FROM information_schema.processlist WHERE user = ?",
                (&standby,),
            )
            .await
            .map_err(|e| err("mint", &e))?;
        let sessions = sessions.unwrap_or(0);
        if sessions > 0 {
            return Err(ProviderError::Permanent {
                provider: NAME.into(),
                operation: "mint",
                message: format!(
                    "the standby account {standby} has {sessions} live connection(s): something still logs in as it (a connection pool holding the previous password?); the rotation waits until they end"
                ),
            });
        }
        let generation = marks
            .iter()
            .map(|m| match m {
                Mark::Active { generation, .. } | Mark::Revoked { generation } => *generation,
                Mark::None => 0,
            })
            .chain(current.map(|(_, g)| g))
            .max()
            .unwrap_or(0)
            + 1;
        let password =
            crate::random_source::generate(crate::random_source::ALPHABETS[0].1, PASSWORD_LENGTH);
        // The password first: the table never names a key that does not work.
        Self::set_password(&mut conn, &pair, &standby, &password, "mint").await?;
        Self::record(&mut conn, &pair, &standby, generation, false, "mint").await?;
        let _ = conn.disconnect().await;
        let id = format!("{standby}.{generation}");
        self.minted
            .lock()
            .expect("mysql state")
            .insert(id.clone(), (pair.instance.clone(), standby.clone()));
        Ok(Minted {
            key_id: KeyId(id),
            created: Utc::now(),
            fields: [
                (USERNAME.to_owned(), SecretValue::new(standby)),
                (PASSWORD.to_owned(), SecretValue::new(password)),
            ]
            .into(),
            operator: None,
        })
    }

    async fn verify(&self, m: &Minted) -> ProviderResult<()> {
        let (instance, user) = self
            .minted
            .lock()
            .expect("mysql state")
            .get(&m.key_id.0)
            .cloned()
            .ok_or_else(|| ProviderError::Permanent {
                provider: NAME.into(),
                operation: "verify",
                message: format!("key {} was not minted by this run", m.key_id),
            })?;
        let password = m
            .fields
            .get(PASSWORD)
            .ok_or_else(|| ProviderError::Permanent {
                provider: NAME.into(),
                operation: "verify",
                message: format!("no field {PASSWORD}"),
            })?;
        let opts = mysql_async::OptsBuilder::from_opts(admin_opts(&self.urls, &instance)?)
            .user(Some(user))
            .pass(Some(password.expose()))
            .db_name(None::<String>);
        let mut conn = mysql_async::Conn::new(opts)
            .await
            .map_err(|e| err("verify", &e))?;
        conn.query_drop("SELECT 1")
            .await
            .map_err(|e| err("verify", &e))?;
        let _ = conn.disconnect().await;
        Ok(())
    }

    async fn revoke(&self, t: &Target, key: &KeyId, _how: Revoke) -> ProviderResult<Revoked> {
        let pair = Pair::of(t)?;
        let (user, generation) = parse_key(&key.0)
            .filter(|(u, _)| pair.index(u).is_some())
            .ok_or_else(|| ProviderError::IdentityMismatch {
                provider: NAME.into(),
                message: format!(
                    "key id {} is not `<account>.<generation>` of one of the pair's accounts ({})",
                    crate::text::escape_cut(&key.0, 80),
                    pair.users.join(", ")
                ),
            })?;
        let mut conn = self.admin(&pair, "revoke").await?;
        let marks = Self::marks(&mut conn, &pair, "revoke").await?;
        let i = pair.index(user).expect("checked");
        match &marks[i] {
            Mark::Active { generation: g, .. } if *g == generation => {}
            _ => return Ok(Revoked::AlreadyGone),
        }
        let nobody = crate::random_source::generate(crate::random_source::ALPHABETS[0].1, 48);
        Self::set_password(&mut conn, &pair, user, &nobody, "revoke").await?;
        Self::record(&mut conn, &pair, user, generation, true, "revoke").await?;
        let _ = conn.disconnect().await;
        Ok(Revoked::Done)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_native_hash_is_what_the_server_computes() {
        // SELECT PASSWORD('password') on MariaDB / MySQL 5.7.
        assert_eq!(
            super::native_hash("password"),
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        );
    }
}
