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
//! host is the loopback interface or a Unix socket, or the URL says `sslmode=disable`.

use crate::provider::{
    Capabilities, KeyId, KeyInfo, KeyStatus, Minted, Provider, ProviderError, ProviderResult,
    Revoke, Revoked, SecretValue, Target,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio_postgres::config::{Host, SslMode};

/// The source name.
pub const NAME: &str = "postgres";
/// Output field: the role name to log in as.
pub const USERNAME: &str = "Username";
/// Output field: its password.
pub const PASSWORD: &str = "Password";
/// Length of a generated password (alphanumeric, ~190 bits).
const PASSWORD_LENGTH: usize = 32;
/// How long a connection or a statement may take.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// The environment variable holding the admin URL of `instance`.
pub fn url_env(instance: &str) -> String {
    format!(
        "SECRET_MANAGER_POSTGRES_{}_URL",
        instance.to_ascii_uppercase().replace('-', "_")
    )
}

fn valid_instance(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A role name this source manages: a plain lower-case SQL identifier (no quoting needed,
/// no `.`, which separates the generation in a key id).
fn valid_role(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `<role>.<generation>` of a key id.
pub fn parse_key(id: &str) -> Option<(&str, u64)> {
    let (role, generation) = id.rsplit_once('.')?;
    (valid_role(role) && generation.bytes().all(|b| b.is_ascii_digit()))
        .then(|| generation.parse().ok().map(|g| (role, g)))
        .flatten()
}

/// The pair of an identity.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pair {
    instance: String,
    users: [String; 2],
}

impl Pair {
    fn of(t: &Target) -> ProviderResult<Pair> {
        let bad = |message: String| ProviderError::Permanent {
            provider: NAME.into(),
            operation: "preflight",
            message,
        };
        let instance = t.param("instance")?.trim();
        if !valid_instance(instance) {
            return Err(bad(format!(
                "instance `{}`: give a name of lower-case letters, digits, `-` and `_` (its admin URL is in {})",
                crate::text::escape_cut(instance, 40),
                url_env("<instance>")
            )));
        }
        let users: Vec<&str> = t.param("users")?.split(',').map(str::trim).collect();
        let [a, b] = users[..] else {
            return Err(bad(
                "users: give the two login roles of the pair, e.g. `app_a,app_b`".into(),
            ));
        };
        for u in [a, b] {
            if !valid_role(u) {
                return Err(bad(format!(
                    "users: `{}` is not a role name this source manages (lower-case letters, digits, `_`)",
                    crate::text::escape_cut(u, 70)
                )));
            }
        }
        if a == b {
            return Err(bad("users: the two roles of the pair must differ".into()));
        }
        Ok(Pair {
            instance: instance.to_owned(),
            users: [a.to_owned(), b.to_owned()],
        })
    }

    fn other(&self, role: &str) -> Option<&str> {
        match role {
            r if r == self.users[0] => Some(&self.users[1]),
            r if r == self.users[1] => Some(&self.users[0]),
            _ => None,
        }
    }
}

/// What a role's comment says.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Mark {
    /// Not written by this tool (or no comment).
    None,
    /// Holds `generation`, set at `at`.
    Active { generation: u64, at: DateTime<Utc> },
    /// Held `generation` until it was revoked.
    Revoked { generation: u64 },
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

fn generation_of(m: &Mark) -> u64 {
    match m {
        Mark::Active { generation, .. } | Mark::Revoked { generation } => *generation,
        Mark::None => 0,
    }
}

fn err(operation: &'static str, e: &tokio_postgres::Error) -> ProviderError {
    // The server's message (no password: the driver never puts one in an error).
    let message = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
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
    } else if e.as_db_error().is_none() {
        ProviderError::Transient {
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

/// The admin URL of `instance` (from `urls`, else its environment variable), parsed; TLS
/// made mandatory off the loopback interface.
fn admin_config(
    urls: &HashMap<String, String>,
    instance: &str,
) -> ProviderResult<tokio_postgres::Config> {
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
    if cfg.get_ssl_mode() == SslMode::Prefer && !local {
        cfg.ssl_mode(SslMode::Require);
    }
    cfg.connect_timeout(TIMEOUT);
    Ok(cfg)
}

/// TLS with the system's root certificates, through AWS-LC (the build's crypto provider).
fn tls() -> ProviderResult<tokio_postgres_rustls::MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
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

async fn connect(
    cfg: &tokio_postgres::Config,
    operation: &'static str,
) -> ProviderResult<tokio_postgres::Client> {
    let (client, connection) = cfg.connect(tls()?).await.map_err(|e| err(operation, &e))?;
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

    async fn admin(
        &self,
        pair: &Pair,
        operation: &'static str,
    ) -> ProviderResult<tokio_postgres::Client> {
        connect(&admin_config(&self.urls, &pair.instance)?, operation).await
    }

    /// Each role of the pair (in pair order) with its comment; a missing role is an error.
    async fn marks(
        client: &tokio_postgres::Client,
        pair: &Pair,
        operation: &'static str,
    ) -> ProviderResult<[Mark; 2]> {
        let rows = client
            .query(
                "SELECT rolname::text, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = ANY($1)",
                &[&pair.users.to_vec()],
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
                        "role {user} (create both roles of the pair, with the same grants, before the first rotation)"
                    ),
                })?;
            Ok(parse_mark(row.get::<_, Option<String>>(1).as_deref()))
        };
        Ok([mark(&pair.users[0])?, mark(&pair.users[1])?])
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
        }
    }

    async fn preflight(&self, t: &Target) -> ProviderResult<()> {
        let pair = Pair::of(t)?;
        if let Some(k) = &t.current_key
            && parse_key(&k.0).is_none_or(|(role, _)| pair.other(role).is_none())
        {
            return Err(ProviderError::IdentityMismatch {
                provider: NAME.into(),
                message: format!(
                    "key id {} is not `<role>.<generation>` of one of the pair's roles ({})",
                    crate::text::escape_cut(&k.0, 80),
                    pair.users.join(", ")
                ),
            });
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
        let pair = Pair::of(t)?;
        let client = self.admin(&pair, "keys").await?;
        let marks = Self::marks(&client, &pair, "keys").await?;
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
                // A role set up by hand that the manifest references: its key is live.
                Mark::None => {
                    if let Some(k) = t
                        .current_key
                        .iter()
                        .chain(&t.referenced)
                        .find(|k| parse_key(&k.0).is_some_and(|(r, _)| r == user))
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
        let current = t
            .current_key
            .as_ref()
            .and_then(|k| parse_key(&k.0))
            .map(|(role, _)| role.to_owned());
        let standby = match &current {
            Some(role) => pair.other(role).map(str::to_owned).ok_or_else(|| {
                ProviderError::IdentityMismatch {
                    provider: NAME.into(),
                    message: format!(
                        "role {role} is not one of the pair ({})",
                        pair.users.join(", ")
                    ),
                }
            })?,
            // A new secret: the first role of the pair.
            None => pair.users[0].clone(),
        };
        let client = self.admin(&pair, "mint").await?;
        let marks = Self::marks(&client, &pair, "mint").await?;
        let si = usize::from(standby != pair.users[0]);
        if let Mark::Active { generation, .. } = marks[si] {
            // The standby still holds a key: minting over it would break whoever uses it.
            return Err(ProviderError::KeyLimit {
                provider: NAME.into(),
                identity: pair.users.join(","),
                count: 2,
                hint: format!(
                    "role {standby} still holds generation {generation}; revoke {standby}.{generation} first"
                ),
            });
        }
        let sessions: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
                &[&standby],
            )
            .await
            .map_err(|e| err("mint", &e))?
            .get(0);
        if sessions > 0 {
            return Err(ProviderError::Permanent {
                provider: NAME.into(),
                operation: "mint",
                message: format!(
                    "the standby role {standby} has {sessions} live session(s): something still logs in as it (a connection pool holding the previous password?); the rotation waits until they end"
                ),
            });
        }
        let generation = marks.iter().map(generation_of).max().unwrap_or(0).max(
            t.current_key
                .as_ref()
                .and_then(|k| parse_key(&k.0))
                .map_or(0, |(_, g)| g),
        ) + 1;
        let password =
            crate::random_source::generate(crate::random_source::ALPHABETS[0].1, PASSWORD_LENGTH);
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        let now = Utc::now();
        // Identifiers are validated lower-case names; the verifier is base64, `$` and `:`.
        let sql = format!(
            "BEGIN; ALTER ROLE \"{standby}\" WITH LOGIN PASSWORD '{verifier}'; COMMENT ON ROLE \"{standby}\" IS '{MARK}generation {generation} set {}'; COMMIT;",
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| err("mint", &e))?;
        let id = format!("{standby}.{generation}");
        self.minted
            .lock()
            .expect("postgres state")
            .insert(id.clone(), pair.instance.clone());
        Ok(Minted {
            key_id: KeyId(id),
            created: now,
            fields: [
                (USERNAME.to_owned(), SecretValue::new(standby)),
                (PASSWORD.to_owned(), SecretValue::new(password)),
            ]
            .into(),
            operator: None,
        })
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
        let mut cfg = admin_config(&self.urls, &instance)?;
        cfg.user(field(USERNAME)?.expose())
            .password(field(PASSWORD)?.expose());
        let client = connect(&cfg, "verify").await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| err("verify", &e))?;
        Ok(())
    }

    async fn revoke(&self, t: &Target, key: &KeyId, _how: Revoke) -> ProviderResult<Revoked> {
        let pair = Pair::of(t)?;
        let (role, generation) = parse_key(&key.0)
            .filter(|(role, _)| pair.other(role).is_some())
            .ok_or_else(|| ProviderError::IdentityMismatch {
                provider: NAME.into(),
                message: format!(
                    "key id {} is not `<role>.<generation>` of one of the pair's roles ({})",
                    crate::text::escape_cut(&key.0, 80),
                    pair.users.join(", ")
                ),
            })?;
        let client = self.admin(&pair, "revoke").await?;
        let marks = Self::marks(&client, &pair, "revoke").await?;
        let i = usize::from(role != pair.users[0]);
        // Only the generation this key names: a role that moved on (or was never ours)
        // is not touched.
        match &marks[i] {
            Mark::Active { generation: g, .. } if *g == generation => {}
            _ => return Ok(Revoked::AlreadyGone),
        }
        let nobody = crate::random_source::generate(crate::random_source::ALPHABETS[0].1, 48);
        let verifier = postgres_protocol::password::scram_sha_256(nobody.as_bytes());
        let sql = format!(
            "BEGIN; ALTER ROLE \"{role}\" WITH PASSWORD '{verifier}'; COMMENT ON ROLE \"{role}\" IS '{MARK}revoked generation {generation} at {}'; COMMIT;",
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
