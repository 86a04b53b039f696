//! The `postgres` source: database passwords with **alternating users**.
//!
//! An identity is a pair of login roles with the same grants (`users: app_a,app_b`). The
//! manifest references one of them (its key id is `<role>.<generation>`, e.g.
//! `app_a.3`); minting sets a new password on the other one (the standby), verify logs in
//! with it, and once every cluster has the new value, revoking the old key sets the old
//! role's password to a random value nobody holds. A role is never dropped, and which
//! role is current comes from the manifests, never from guessing. While a rotation is in
//! flight both roles work, so consumers never see a failed login.
//!
//! What the database remembers is the role's comment, written with each change:
//! `secret-manager: generation 4 set 2026-12-03T10:00:00Z` (or `revoked generation 4 …`).
//! It tells `keys` which generation each role holds and since when, so a run that died
//! after minting is cleaned up like any other source's key. A role whose comment the tool
//! did not write holds no key the tool can revoke.
//!
//! New passwords are sent as SCRAM-SHA-256 verifiers computed here: the clear password
//! never reaches the server, its statement log or `pg_stat_statements`. A standby role
//! with live sessions (`pg_stat_activity`) is not minted over: something still uses it.
//!
//! The admin connection comes from the operator, never from the repo: the annotation
//! `instance` names an environment variable `SECRET_MANAGER_POSTGRES_<INSTANCE>_URL`
//! holding a `postgres://` URL of a role with `CREATEROLE`. TLS is required unless the
//! host is the loopback interface or a Unix socket, or the URL says `sslmode=disable`; the
//! server's certificate and name are verified, against the operator's CA when
//! `SECRET_MANAGER_POSTGRES_<INSTANCE>_CA_FILE` names one (then TLS is always required).

use crate::db_logins::{Kind, Logins, Mark, RevokeWith, Strategy, nobodys_password};
pub use crate::db_logins::{PASSWORD, USERNAME, parse_key};
use crate::provider::{
    Capabilities, KeyId, KeyInfo, Minted, Provider, ProviderError, ProviderResult, Revoke, Revoked,
    Target,
};
use async_trait::async_trait;
use chrono::Utc;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio_postgres::config::{Host, SslMode};

/// The source name.
pub const NAME: &str = "postgres";
/// PostgreSQL's logins are roles (names up to 63 bytes).
const KIND: Kind = Kind {
    source: NAME,
    login: "role",
    max_len: 63,
    url_env,
};
/// How long a connection or a statement may take.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// The environment variable holding the admin URL of `instance`.
pub fn url_env(instance: &str) -> String {
    format!(
        "SECRET_MANAGER_POSTGRES_{}_URL",
        instance.to_ascii_uppercase().replace('-', "_")
    )
}

const MARK: &str = "secret-manager: ";

fn parse_mark(comment: Option<&str>) -> Mark {
    let Some(rest) = comment.and_then(|c| c.strip_prefix(MARK)) else {
        return Mark::None;
    };
    let words: Vec<&str> = rest.split_whitespace().collect();
    match words[..] {
        ["generation", g, "set", at] => match (g.parse(), at.parse()) {
            (Ok(generation), Ok(at)) => Mark::Active { generation, at },
            _ => Mark::None,
        },
        ["revoked", "generation", g, ..] => g
            .parse()
            .map_or(Mark::None, |generation| Mark::Revoked { generation }),
        _ => Mark::None,
    }
}

fn err(operation: &'static str, e: &tokio_postgres::Error) -> ProviderError {
    // The server's message (no password: the driver never puts one in an error), or the
    // whole chain of causes (a TLS handshake says why only in its source).
    let message = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut m = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                m.push_str(&format!(": {c}"));
                cause = c.source();
            }
            m
        }
    };
    let denied = e
        .as_db_error()
        .is_some_and(|db| matches!(db.code().code(), "42501" | "28P01" | "28000"));
    if denied {
        ProviderError::AccessDenied {
            provider: NAME.into(),
            operation,
            message,
        }
    } else if e.as_db_error().is_none() && !message.contains("certificate") {
        ProviderError::Transient {
            provider: NAME.into(),
            operation,
            message,
        }
    } else {
        // A server error, or a certificate the operator's trust does not accept: retrying
        // does not help.
        ProviderError::Permanent {
            provider: NAME.into(),
            operation,
            message,
        }
    }
}

/// The environment variable naming the CA certificate file (PEM) that `instance`'s server
/// certificate must chain to.
pub fn ca_env(instance: &str) -> String {
    format!(
        "SECRET_MANAGER_POSTGRES_{}_CA_FILE",
        instance.to_ascii_uppercase().replace('-', "_")
    )
}

/// Checks a target's annotations without a connection (lint): instance, users, strategy,
/// revokeWith, password policy.
pub fn check(t: &Target) -> ProviderResult<()> {
    Logins::of(KIND, t).map(drop)
}

/// How to reach an instance as its admin.
struct Admin {
    config: tokio_postgres::Config,
    /// The operator's CA certificates (PEM file), the only roots trusted when set.
    ca: Option<std::path::PathBuf>,
}

/// The admin URL of `instance` (from `urls`, else its environment variable), parsed; TLS
/// made mandatory off the loopback interface and whenever the operator names a CA.
fn admin_config(
    urls: &HashMap<String, String>,
    cas: &HashMap<String, std::path::PathBuf>,
    instance: &str,
) -> ProviderResult<Admin> {
    let var = url_env(instance);
    let url = match urls.get(instance) {
        Some(u) => u.clone(),
        None => std::env::var(&var).map_err(|_| ProviderError::NoCredentials {
            provider: NAME.into(),
            message: format!(
                "no admin connection for instance `{instance}`: set {var} to a postgres:// URL of a role with CREATEROLE"
            ),
        })?,
    };
    let mut cfg: tokio_postgres::Config =
        url.parse().map_err(|_| ProviderError::NoCredentials {
            provider: NAME.into(),
            // The URL may hold a password: never quote it.
            message: format!("{var} is not a valid postgres:// URL"),
        })?;
    let local = cfg.get_hosts().iter().all(|h| match h {
        Host::Tcp(name) => matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1"),
        Host::Unix(_) => true,
    });
    let ca = cas
        .get(instance)
        .cloned()
        .or_else(|| std::env::var_os(ca_env(instance)).map(std::path::PathBuf::from));
    if ca.is_some() || (cfg.get_ssl_mode() == SslMode::Prefer && !local) {
        cfg.ssl_mode(SslMode::Require);
    }
    cfg.connect_timeout(TIMEOUT);
    Ok(Admin { config: cfg, ca })
}

/// The certificates of the operator's CA file (PEM, at most 1 MiB).
pub(crate) fn ca_certificates(
    source: &str,
    path: &std::path::Path,
) -> ProviderResult<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject as _;
    let bad = |message: String| ProviderError::NoCredentials {
        provider: source.into(),
        message: format!("CA file {}: {message}", path.display()),
    };
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let pem = crate::fsx::read_capped(file, 1 << 20).map_err(|e| match e {
        crate::fsx::Capped::TooLarge(n) => {
            bad(format!("{n} bytes, over the 1 MiB a CA file may have"))
        }
        crate::fsx::Capped::Io(e) => bad(e.to_string()),
    })?;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("not PEM certificates ({e})")))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// TLS through AWS-LC (the build's crypto provider), verifying the server's certificate
/// and name against the operator's CA when given, else the system's root certificates.
fn tls(ca: Option<&std::path::Path>) -> ProviderResult<tokio_postgres_rustls::MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            for c in ca_certificates(NAME, path)? {
                roots.add(c).map_err(|e| ProviderError::NoCredentials {
                    provider: NAME.into(),
                    message: format!("CA file {}: {e}", path.display()),
                })?;
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ProviderError::Permanent {
        provider: NAME.into(),
        operation: "connect",
        message: e.to_string(),
    })?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

async fn connect(admin: &Admin, operation: &'static str) -> ProviderResult<tokio_postgres::Client> {
    let (client, connection) = admin
        .config
        .connect(tls(admin.ca.as_deref())?)
        .await
        .map_err(|e| err(operation, &e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

/// Database passwords with alternating users (see the module documentation).
#[derive(Default)]
pub struct PostgresProvider {
    /// The instance of each key minted by this process (verify logs in there).
    minted: Mutex<HashMap<String, String>>,
    /// Admin URLs given by the program instead of the environment.
    urls: HashMap<String, String>,
    /// CA files given by the program instead of the environment.
    cas: HashMap<String, std::path::PathBuf>,
}

impl std::fmt::Debug for PostgresProvider {
    // Admin URLs carry passwords: only the instance names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresProvider")
            .field("instances", &self.urls.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PostgresProvider {
    /// Uses `url` as the admin connection of `instance` instead of its environment
    /// variable (tests, programs embedding the library).
    pub fn with_admin_url(mut self, instance: &str, url: &str) -> PostgresProvider {
        self.urls.insert(instance.to_owned(), url.to_owned());
        self
    }

    /// Uses the certificates in `file` (PEM) as the only CA of `instance`'s server instead
    /// of its environment variable.
    pub fn with_ca_file(mut self, instance: &str, file: &std::path::Path) -> PostgresProvider {
        self.cas.insert(instance.to_owned(), file.to_owned());
        self
    }

    async fn admin(
        &self,
        pair: &Logins,
        operation: &'static str,
    ) -> ProviderResult<tokio_postgres::Client> {
        connect(
            &admin_config(&self.urls, &self.cas, &pair.instance)?,
            operation,
        )
        .await
    }

    /// Each role of the pair (in pair order) with its comment; a missing role is an error.
    async fn marks(
        client: &tokio_postgres::Client,
        pair: &Logins,
        operation: &'static str,
    ) -> ProviderResult<Vec<Mark>> {
        let rows = client
            .query(
                "SELECT rolname::text, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = ANY($1)",
                &[&pair.users],
            )
            .await
            .map_err(|e| err(operation, &e))?;
        let mark = |user: &str| -> ProviderResult<Mark> {
            let row = rows
                .iter()
                .find(|r| r.get::<_, String>(0) == user)
                .ok_or_else(|| ProviderError::NotFound {
                    provider: NAME.into(),
                    what: format!(
                        "role {user} (create the role{} before the first rotation)",
                        if pair.users.len() == 2 {
                            "s of the pair, with the same grants,"
                        } else {
                            ""
                        }
                    ),
                })?;
            Ok(parse_mark(row.get::<_, Option<String>>(1).as_deref()))
        };
        pair.users.iter().map(|u| mark(u)).collect()
    }
}

#[async_trait]
impl Provider for PostgresProvider {
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
        let pair = Logins::of(KIND, t)?;
        if let Some(k) = &t.current_key {
            pair.key(KIND, k)?;
        }
        let client = self.admin(&pair, "preflight").await?;
        let row = client
            .query_one(
                "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .map_err(|e| err("preflight", &e))?;
        if !row.get::<_, bool>(0) {
            return Err(ProviderError::AccessDenied {
                provider: NAME.into(),
                operation: "preflight",
                message: format!(
                    "the admin role of {} lacks CREATEROLE: it cannot set the pair's passwords",
                    url_env(&pair.instance)
                ),
            });
        }
        Self::marks(&client, &pair, "preflight").await.map(drop)
    }

    async fn keys(&self, t: &Target) -> ProviderResult<Vec<KeyInfo>> {
        let pair = Logins::of(KIND, t)?;
        let client = self.admin(&pair, "keys").await?;
        let marks = Self::marks(&client, &pair, "keys").await?;
        Ok(pair.keys(&marks, t))
    }

    async fn mint(&self, t: &Target) -> ProviderResult<Minted> {
        let pair = Logins::of(KIND, t)?;
        let si = pair.standby(KIND, t)?;
        let standby = pair.users[si].clone();
        let client = self.admin(&pair, "mint").await?;
        let marks = Self::marks(&client, &pair, "mint").await?;
        let sessions: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
                &[&standby],
            )
            .await
            .map_err(|e| err("mint", &e))?
            .get(0);
        pair.check_standby(KIND, si, &marks, sessions, t)?;
        let generation = crate::db_logins::next_generation(&marks, t);
        let password = pair.new_password();
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        let now = Utc::now();
        // Identifiers are validated lower-case names; the verifier is base64, `$` and `:`.
        // LOGIN: a role revoked with `nologin` logs in again.
        let sql = format!(
            "BEGIN; ALTER ROLE \"{standby}\" WITH LOGIN PASSWORD '{verifier}'; COMMENT ON ROLE \"{standby}\" IS '{MARK}generation {generation} set {}'; COMMIT;",
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| err("mint", &e))?;
        if pair.strategy == Strategy::SingleUser {
            tracing::warn!(
                role = %standby,
                generation,
                "single-user rotation: the role's previous password stopped working now; consumers fail to log in until they run with the new value"
            );
        }
        let minted = crate::db_logins::minted(standby, generation, password, now);
        self.minted
            .lock()
            .expect("postgres state")
            .insert(minted.key_id.0.clone(), pair.instance.clone());
        Ok(minted)
    }

    async fn verify(&self, m: &Minted) -> ProviderResult<()> {
        let instance = self
            .minted
            .lock()
            .expect("postgres state")
            .get(&m.key_id.0)
            .cloned()
            .ok_or_else(|| ProviderError::Permanent {
                provider: NAME.into(),
                operation: "verify",
                message: format!("key {} was not minted by this run", m.key_id),
            })?;
        let field = |f: &str| {
            m.fields.get(f).ok_or_else(|| ProviderError::Permanent {
                provider: NAME.into(),
                operation: "verify",
                message: format!("no field {f}"),
            })
        };
        let mut admin = admin_config(&self.urls, &self.cas, &instance)?;
        admin
            .config
            .user(field(USERNAME)?.expose())
            .password(field(PASSWORD)?.expose());
        let client = connect(&admin, "verify").await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| err("verify", &e))?;
        Ok(())
    }

    async fn revoke(&self, t: &Target, key: &KeyId, _how: Revoke) -> ProviderResult<Revoked> {
        let pair = Logins::of(KIND, t)?;
        let (i, generation) = pair.key(KIND, key)?;
        let role = &pair.users[i];
        let client = self.admin(&pair, "revoke").await?;
        let marks = Self::marks(&client, &pair, "revoke").await?;
        if !crate::db_logins::still_holds(&marks[i], generation) {
            return Ok(Revoked::AlreadyGone);
        }
        let lock_out = match pair.revoke_with {
            RevokeWith::Password => {
                let verifier =
                    postgres_protocol::password::scram_sha_256(nobodys_password().as_bytes());
                format!("WITH PASSWORD '{verifier}'")
            }
            RevokeWith::NoLogin => "WITH NOLOGIN".to_owned(),
        };
        let sql = format!(
            "BEGIN; ALTER ROLE \"{role}\" {lock_out}; COMMENT ON ROLE \"{role}\" IS '{MARK}revoked generation {generation} at {}'; COMMIT;",
            Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| err("revoke", &e))?;
        Ok(Revoked::Done)
    }
}

#[cfg(test)]
mod tests;
