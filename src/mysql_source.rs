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
//! is required off the loopback interface, and always when
//! `SECRET_MANAGER_MYSQL_<INSTANCE>_CA_FILE` names the operator's CA (trusted besides the
//! driver's public roots).

use crate::db_logins::{Kind, Mark, RevokeWith, Strategy, nobodys_password};
pub use crate::db_logins::{PASSWORD, USERNAME};
use crate::provider::{
    Capabilities, KeyId, KeyInfo, Minted, Provider, ProviderError, ProviderResult, Revoke, Revoked,
    Target,
};
use async_trait::async_trait;
use chrono::Utc;
use mysql_async::prelude::Queryable;
use std::collections::HashMap;
use std::sync::Mutex;

/// The source name.
pub const NAME: &str = "mysql";
/// MariaDB's logins are accounts (`user@host`; user names up to 32 characters here, so
/// they fit MySQL 5.7's limit too).
const KIND: Kind = Kind {
    source: NAME,
    login: "account",
    max_len: 32,
    url_env,
};

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

/// The accounts of an identity and the host part they share.
#[derive(Clone, Debug)]
struct Accounts {
    base: crate::db_logins::Logins,
    host: String,
}

impl std::ops::Deref for Accounts {
    type Target = crate::db_logins::Logins;
    fn deref(&self) -> &Self::Target {
        &self.base
    }
}

impl Accounts {
    fn of(t: &Target) -> ProviderResult<Accounts> {
        let base = crate::db_logins::Logins::of(KIND, t)?;
        let host = t.params.get("host").map_or("%", |h| h.trim());
        if host.is_empty()
            || host.len() > 60
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_%:".contains(&b))
        {
            return Err(ProviderError::Permanent {
                provider: NAME.into(),
                operation: "preflight",
                message: format!(
                    "host `{}`: the accounts' host part, e.g. % or 10.0.%",
                    crate::text::escape_cut(host, 60)
                ),
            });
        }
        Ok(Accounts {
            base,
            host: host.to_owned(),
        })
    }
}

/// Checks a target's annotations without a connection (lint): instance, users, host,
/// strategy, revokeWith, password policy.
pub fn check(t: &Target) -> ProviderResult<()> {
    Accounts::of(t).map(drop)
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
        // A certificate the operator's trust does not accept: retrying does not help.
        other if other.to_string().contains("certificate") => ProviderError::Permanent {
            provider: NAME.into(),
            operation,
            message: other.to_string(),
        },
        other => ProviderError::Transient {
            provider: NAME.into(),
            operation,
            message: other.to_string(),
        },
    }
}

/// The environment variable naming the CA certificate file (PEM) that `instance`'s server
/// certificate must chain to.
pub fn ca_env(instance: &str) -> String {
    format!(
        "SECRET_MANAGER_MYSQL_{}_CA_FILE",
        instance.to_ascii_uppercase().replace('-', "_")
    )
}

fn admin_opts(
    urls: &HashMap<String, String>,
    cas: &HashMap<String, std::path::PathBuf>,
    instance: &str,
) -> ProviderResult<mysql_async::Opts> {
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
    let ca = cas
        .get(instance)
        .cloned()
        .or_else(|| std::env::var_os(ca_env(instance)).map(std::path::PathBuf::from));
    if let Some(path) = ca {
        // Checked here, so that a bad file is named before any connection.
        crate::postgres_source::ca_certificates(NAME, &path)?;
        b = b.ssl_opts(mysql_async::SslOpts::default().with_root_certs(vec![path.into()]));
    } else if opts.ssl_opts().is_none() && !local {
        b = b.ssl_opts(mysql_async::SslOpts::default());
    }
    Ok(b.into())
}

/// MariaDB and MySQL accounts with alternating users (see the module documentation).
#[derive(Default)]
pub struct MysqlProvider {
    minted: Mutex<HashMap<String, (String, String)>>,
    urls: HashMap<String, String>,
    cas: HashMap<String, std::path::PathBuf>,
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

    /// Trusts the certificates in `file` (PEM) for `instance`'s server instead of its
    /// environment variable.
    pub fn with_ca_file(mut self, instance: &str, file: &std::path::Path) -> MysqlProvider {
        self.cas.insert(instance.to_owned(), file.to_owned());
        self
    }

    async fn admin(&self, pair: &Accounts, op: &'static str) -> ProviderResult<mysql_async::Conn> {
        mysql_async::Conn::new(admin_opts(&self.urls, &self.cas, &pair.instance)?)
            .await
            .map_err(|e| err(op, &e))
    }

    /// Each account of the pair (in pair order) with what the tool's table says; a
    /// missing account is an error.
    async fn marks(
        conn: &mut mysql_async::Conn,
        pair: &Accounts,
        op: &'static str,
    ) -> ProviderResult<Vec<Mark>> {
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
                        "account '{u}'@'{}' (create the account{} before the first rotation)",
                        pair.host,
                        if pair.users.len() == 2 {
                            "s of the pair, with the same grants,"
                        } else {
                            ""
                        }
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
        let mut out = vec![Mark::None; pair.users.len()];
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

    /// Sets `user`'s password (and unlocks it: a login revoked with `nologin` works
    /// again), or with `password: None` locks it (`revokeWith: nologin`).
    async fn set_password(
        conn: &mut mysql_async::Conn,
        pair: &Accounts,
        user: &str,
        password: Option<&str>,
        op: &'static str,
    ) -> ProviderResult<()> {
        // Names are validated (letters, digits, `_`; the host also `.-%:`); the hash is
        // `*` and hex.
        let change = match password {
            Some(p) => format!("IDENTIFIED BY PASSWORD '{}' ACCOUNT UNLOCK", native_hash(p)),
            None => "ACCOUNT LOCK".to_owned(),
        };
        conn.query_drop(format!("ALTER USER '{user}'@'{}' {change}", pair.host))
            .await
            .map_err(|e| err(op, &e))
    }

    async fn record(
        conn: &mut mysql_async::Conn,
        pair: &Accounts,
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
            reports_last_use: false,
        }
    }

    async fn preflight(&self, t: &Target) -> ProviderResult<()> {
        let pair = Accounts::of(t)?;
        if let Some(k) = &t.current_key {
            pair.key(KIND, k)?;
        }
        let mut conn = self.admin(&pair, "preflight").await?;
        Self::marks(&mut conn, &pair, "preflight").await.map(drop)
    }

    async fn keys(&self, t: &Target) -> ProviderResult<Vec<KeyInfo>> {
        let pair = Accounts::of(t)?;
        let mut conn = self.admin(&pair, "keys").await?;
        let marks = Self::marks(&mut conn, &pair, "keys").await?;
        let _ = conn.disconnect().await;
        Ok(pair.keys(&marks, t))
    }

    async fn mint(&self, t: &Target) -> ProviderResult<Minted> {
        let pair = Accounts::of(t)?;
        let si = pair.standby(KIND, t)?;
        let standby = pair.users[si].clone();
        let mut conn = self.admin(&pair, "mint").await?;
        let marks = Self::marks(&mut conn, &pair, "mint").await?;
        let sessions: Option<i64> = conn
            .exec_first(
                "SELECT count(*) FROM information_schema.processlist WHERE user = ?",
                (&standby,),
            )
            .await
            .map_err(|e| err("mint", &e))?;
        pair.check_standby(KIND, si, &marks, sessions.unwrap_or(0), t)?;
        let generation = crate::db_logins::next_generation(&marks, t);
        let password = pair.new_password();
        // The password first: the table never names a key that does not work.
        Self::set_password(&mut conn, &pair, &standby, Some(&password), "mint").await?;
        if pair.strategy == Strategy::SingleUser {
            tracing::warn!(
                account = %standby,
                generation,
                "single-user rotation: the account's previous password stopped working now; consumers fail to log in until they run with the new value"
            );
        }
        Self::record(&mut conn, &pair, &standby, generation, false, "mint").await?;
        let _ = conn.disconnect().await;
        let minted = crate::db_logins::minted(standby.clone(), generation, password, Utc::now());
        self.minted
            .lock()
            .expect("mysql state")
            .insert(minted.key_id.0.clone(), (pair.instance.clone(), standby));
        Ok(minted)
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
        let opts =
            mysql_async::OptsBuilder::from_opts(admin_opts(&self.urls, &self.cas, &instance)?)
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
        let pair = Accounts::of(t)?;
        let (i, generation) = pair.key(KIND, key)?;
        let user = pair.users[i].as_str();
        let mut conn = self.admin(&pair, "revoke").await?;
        let marks = Self::marks(&mut conn, &pair, "revoke").await?;
        if !crate::db_logins::still_holds(&marks[i], generation) {
            return Ok(Revoked::AlreadyGone);
        }
        let nobody = match pair.revoke_with {
            RevokeWith::Password => Some(nobodys_password()),
            RevokeWith::NoLogin => None,
        };
        Self::set_password(&mut conn, &pair, user, nobody.as_deref(), "revoke").await?;
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
