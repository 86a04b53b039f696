//! [`FakeProvider`]: an in-memory credential source for in-process engine tests.
//!
//! It keeps keys per identity with creation and last-use times and a key limit, like a
//! cloud does, and can be scripted: fail the N-th call of an operation (transiently or for
//! good), or run a hook before a call (to create a "break-glass" key, or to crash the run
//! in the middle of a mint). Every call is counted.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secret_manager_provider::{
    Capabilities, KeyId, KeyInfo, KeyStatus, Minted, Provider, ProviderError, ProviderResult,
    Revoke, Revoked, SecretValue, Target,
};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A provider operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `preflight`.
    Preflight,
    /// `keys`.
    Keys,
    /// `mint`.
    Mint,
    /// `verify`.
    Verify,
    /// `revoke`.
    Revoke,
}

/// How a scripted call fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fail {
    /// Throttling: retryable.
    Transient,
    /// Rejected for good.
    Permanent,
    /// Missing permission.
    AccessDenied,
}

/// One key at the fake source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeKey {
    /// Key id.
    pub id: String,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// Active or inactive at the source.
    pub status: KeyStatus,
    /// Last use.
    pub last_used: Option<DateTime<Utc>>,
}

type Hook = Box<dyn Fn(Op, u32, &Target) + Send + Sync>;

#[derive(Default)]
struct State {
    keys: BTreeMap<String, Vec<FakeKey>>,
    secrets: BTreeMap<String, String>,
    script: Vec<(Op, u32, Fail)>,
    always: BTreeMap<Op, Fail>,
    calls: BTreeMap<Op, u32>,
    next: u64,
}

/// An in-memory provider. `name` is the `source` it answers for.
pub struct FakeProvider {
    name: &'static str,
    max_keys: Option<u32>,
    reports_last_use: bool,
    state: Mutex<State>,
    hook: Mutex<Option<Hook>>,
}

impl std::fmt::Debug for FakeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeProvider")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The fake's identity key for a target: its parameters, sorted, as `k=v,...`.
pub fn identity_key(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl FakeProvider {
    /// A source named `name` with a limit of two keys per identity (like AWS IAM users).
    pub fn new(name: &'static str) -> FakeProvider {
        FakeProvider {
            name,
            max_keys: Some(2),
            reports_last_use: true,
            state: Mutex::new(State::default()),
            hook: Mutex::new(None),
        }
    }

    /// Sets the key limit per identity (`None`: unlimited).
    pub fn with_max_keys(mut self, n: Option<u32>) -> Self {
        self.max_keys = n;
        self
    }

    /// A source that cannot tell when a key was last used (like Azure and GCP here).
    pub fn without_last_use(mut self) -> Self {
        self.reports_last_use = false;
        self
    }

    /// Adds an existing key to the identity `params` (e.g. the key a manifest holds).
    pub fn add_key(&self, params: &BTreeMap<String, String>, id: &str, created: DateTime<Utc>) {
        let mut s = self.state.lock().unwrap();
        s.keys
            .entry(identity_key(params))
            .or_default()
            .push(FakeKey {
                id: id.to_owned(),
                created,
                status: KeyStatus::Active,
                last_used: None,
            });
    }

    /// The keys of identity `params`, oldest first.
    pub fn keys_of(&self, params: &BTreeMap<String, String>) -> Vec<FakeKey> {
        self.state
            .lock()
            .unwrap()
            .keys
            .get(&identity_key(params))
            .cloned()
            .unwrap_or_default()
    }

    /// Deletes `key` behind the tool's back (an admin at the console).
    pub fn remove_key(&self, key: &str) {
        for keys in self.state.lock().unwrap().keys.values_mut() {
            keys.retain(|k| k.id != key);
        }
    }

    /// Every identity's keys.
    pub fn all_keys(&self) -> BTreeMap<String, Vec<FakeKey>> {
        self.state.lock().unwrap().keys.clone()
    }

    /// The secret value minted with `key` (what a cluster must decrypt).
    pub fn secret_of(&self, key: &str) -> Option<String> {
        self.state.lock().unwrap().secrets.get(key).cloned()
    }

    /// Sets the last use of `key`.
    pub fn set_last_used(&self, key: &str, t: DateTime<Utc>) {
        let mut s = self.state.lock().unwrap();
        for k in s.keys.values_mut().flatten() {
            if k.id == key {
                k.last_used = Some(t);
            }
        }
    }

    /// Makes call number `call` (1-based, counted per operation) of `op` fail with `how`.
    pub fn fail_on(&self, op: Op, call: u32, how: Fail) {
        self.state.lock().unwrap().script.push((op, call, how));
    }

    /// Makes every call of `op` fail with `how` (until [`FakeProvider::heal`]).
    pub fn fail_always(&self, op: Op, how: Fail) {
        self.state.lock().unwrap().always.insert(op, how);
    }

    /// Stops every `fail_always`.
    pub fn heal(&self) {
        self.state.lock().unwrap().always.clear();
    }

    /// Runs `f(op, call number, target)` before every call (after counting it).
    pub fn before_each(&self, f: impl Fn(Op, u32, &Target) + Send + Sync + 'static) {
        *self.hook.lock().unwrap() = Some(Box::new(f));
    }

    /// How many times `op` was called.
    pub fn calls(&self, op: Op) -> u32 {
        self.state
            .lock()
            .unwrap()
            .calls
            .get(&op)
            .copied()
            .unwrap_or(0)
    }

    fn enter(&self, op: Op, t: &Target) -> ProviderResult<()> {
        let (n, fail) = {
            let mut s = self.state.lock().unwrap();
            let n = {
                let c = s.calls.entry(op).or_default();
                *c += 1;
                *c
            };
            let fail = s.always.get(&op).copied().or_else(|| {
                s.script
                    .iter()
                    .find(|(o, c, _)| *o == op && *c == n)
                    .map(|(_, _, f)| *f)
            });
            (n, fail)
        };
        if let Some(h) = self.hook.lock().unwrap().as_ref() {
            h(op, n, t);
        }
        let operation = match op {
            Op::Preflight => "preflight",
            Op::Keys => "keys",
            Op::Mint => "mint",
            Op::Verify => "verify",
            Op::Revoke => "revoke",
        };
        let provider = self.name.to_owned();
        match fail {
            None => Ok(()),
            Some(Fail::Transient) => Err(ProviderError::Transient {
                provider,
                operation,
                message: format!("scripted throttling on call {n}"),
            }),
            Some(Fail::Permanent) => Err(ProviderError::Permanent {
                provider,
                operation,
                message: format!("scripted failure on call {n}"),
            }),
            Some(Fail::AccessDenied) => Err(ProviderError::AccessDenied {
                provider,
                operation,
                message: format!("scripted denial on call {n}"),
            }),
        }
    }

    fn new_id(&self, s: &mut State) -> String {
        s.next += 1;
        if self.name == "aws" {
            format!("AKIAFAKE{:012}", s.next)
        } else {
            format!("{}-key-{:06}", self.name, s.next)
        }
    }
}

fn target_of(m: &Minted) -> Option<&str> {
    m.fields.get("FakeIdentity").map(|v| v.expose())
}

#[async_trait]
impl Provider for FakeProvider {
    fn name(&self) -> &'static str {
        self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_keys_per_identity: self.max_keys,
            can_disable: true,
            needs_propagation: false,
            reports_last_use: self.reports_last_use,
        }
    }

    async fn preflight(&self, t: &Target) -> ProviderResult<()> {
        self.enter(Op::Preflight, t)
    }

    async fn keys(&self, t: &Target) -> ProviderResult<Vec<KeyInfo>> {
        self.enter(Op::Keys, t)?;
        Ok(self
            .keys_of(&t.params)
            .into_iter()
            .map(|k| KeyInfo {
                id: KeyId(k.id),
                created: Some(k.created),
                status: k.status,
                last_used: k.last_used,
                expires: None,
            })
            .collect())
    }

    async fn mint(&self, t: &Target) -> ProviderResult<Minted> {
        self.enter(Op::Mint, t)?;
        let mut s = self.state.lock().unwrap();
        let ident = identity_key(&t.params);
        let count = s.keys.get(&ident).map_or(0, Vec::len);
        if let Some(max) = self.max_keys
            && count as u32 >= max
        {
            return Err(ProviderError::KeyLimit {
                provider: self.name.into(),
                identity: ident,
                count,
                hint: "the fake source is full".into(),
            });
        }
        let id = self.new_id(&mut s);
        let secret = format!("fake-secret-{}-{:08x}", id, rand::random::<u32>());
        let created = Utc::now();
        s.keys.entry(ident.clone()).or_default().push(FakeKey {
            id: id.clone(),
            created,
            status: KeyStatus::Active,
            last_used: None,
        });
        s.secrets.insert(id.clone(), secret.clone());
        let mut fields = BTreeMap::new();
        for (name, v) in [
            ("AccessKeyId", id.clone()),
            ("KeyId", id.clone()),
            ("SecretAccessKey", secret.clone()),
            ("ClientSecret", secret.clone()),
            (
                "KeyFileJson",
                format!("{{\"private_key_id\":\"{id}\",\"secret\":\"{secret}\"}}"),
            ),
            (
                "ClientId",
                t.params.get("clientId").cloned().unwrap_or_default(),
            ),
            (
                "TenantId",
                t.params.get("tenantId").cloned().unwrap_or_default(),
            ),
            (
                "ClientEmail",
                t.params.get("serviceAccount").cloned().unwrap_or_default(),
            ),
            ("FakeIdentity", ident),
        ] {
            fields.insert(name.to_owned(), SecretValue::new(v));
        }
        Ok(Minted {
            key_id: KeyId(id),
            created,
            fields,
            operator: Some(format!("fake:{}:operator", self.name)),
        })
    }

    async fn verify(&self, m: &Minted) -> ProviderResult<()> {
        let t = Target {
            source: self.name.into(),
            params: BTreeMap::new(),
            current_key: Some(m.key_id.clone()),
            referenced: Vec::new(),
        };
        self.enter(Op::Verify, &t)?;
        let s = self.state.lock().unwrap();
        let live = target_of(m)
            .and_then(|ident| s.keys.get(ident))
            .is_some_and(|keys| {
                keys.iter()
                    .any(|k| k.id == m.key_id.0 && k.status == KeyStatus::Active)
            });
        if live {
            Ok(())
        } else {
            Err(ProviderError::Permanent {
                provider: self.name.into(),
                operation: "verify",
                message: format!("key {} does not authenticate", m.key_id),
            })
        }
    }

    async fn revoke(&self, t: &Target, key: &KeyId, how: Revoke) -> ProviderResult<Revoked> {
        self.enter(Op::Revoke, t)?;
        let mut s = self.state.lock().unwrap();
        let Some(keys) = s.keys.get_mut(&identity_key(&t.params)) else {
            return Ok(Revoked::AlreadyGone);
        };
        if !keys.iter().any(|k| k.id == key.0) {
            return Ok(Revoked::AlreadyGone);
        }
        {
            match how {
                Revoke::Delete => keys.retain(|k| k.id != key.0),
                Revoke::Disable => {
                    for k in keys.iter_mut().filter(|k| k.id == key.0) {
                        k.status = KeyStatus::Inactive;
                    }
                }
            }
        }
        Ok(Revoked::Done)
    }
}
