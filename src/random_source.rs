//! The `random` source: generated secrets with no external system — HMAC keys, session
//! and webhook secrets, passwords an application sets for itself.
//!
//! A value is generated from the operating system's RNG by a policy (annotations `length`,
//! default 32, and `alphabet`); its key id is a random name unrelated to the value
//! (`rnd-` and 20 hex digits), so ids can be shown, logged and recorded. Nothing outside
//! the repo holds the value: the keys of an identity are the ones the repo references
//! plus those this run minted and not yet revoked, verify has nothing to ask, and revoke
//! forgets the key. Rotation, publishing, gates and the audit trail are the engine's, as
//! for any source.
//!
//! The identity is the annotation `id`: manifests with the same `id` share one value (a
//! secret two applications must agree on); a different `id` is a different value.

use crate::provider::{
    Capabilities, KeyId, KeyInfo, KeyStatus, Minted, Provider, ProviderError, ProviderResult,
    Revoke, Revoked, SecretValue, Target,
};
use async_trait::async_trait;
use std::collections::BTreeSet;
use std::sync::Mutex;

/// The source name.
pub const NAME: &str = "random";
/// The output field a key mapping names (`[password:Value]`).
pub const FIELD: &str = "Value";
/// Length when the `length` annotation is absent.
pub const DEFAULT_LENGTH: usize = 32;
/// Shortest and longest value a policy may ask for.
pub const LENGTHS: std::ops::RangeInclusive<usize> = 16..=4096;

/// The alphabets a policy may name (`alphabet` annotation; default `alnum`).
pub const ALPHABETS: &[(&str, &str)] = &[
    (
        "alnum",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    ),
    ("hex", "0123456789abcdef"),
    (
        "base64url",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
    ),
    (
        "ascii",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,-./:;<=>?@[]^_{|}~",
    ),
];

/// The policy of `t`: its alphabet and length, or what is wrong with its annotations.
pub fn policy(t: &Target) -> ProviderResult<(&'static str, usize)> {
    t.param("id")?;
    policy_of(NAME, t, LENGTHS, DEFAULT_LENGTH)
}

/// The `length` and `alphabet` annotations of `t` for `source` (also the database
/// sources' password policy): lengths in `lengths`, `default` when absent.
pub(crate) fn policy_of(
    source: &str,
    t: &Target,
    lengths: std::ops::RangeInclusive<usize>,
    default: usize,
) -> ProviderResult<(&'static str, usize)> {
    let bad = |message: String| ProviderError::Permanent {
        provider: source.into(),
        operation: "preflight",
        message,
    };
    let length = match t.params.get("length") {
        None => default,
        Some(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| lengths.contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "length `{}`: give a number from {} to {}",
                    crate::text::escape(v),
                    lengths.start(),
                    lengths.end()
                ))
            })?,
    };
    let name = t.params.get("alphabet").map_or("alnum", |s| s.trim());
    let alphabet = ALPHABETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| *a)
        .ok_or_else(|| {
            bad(format!(
                "alphabet `{}`: one of {}",
                crate::text::escape(name),
                ALPHABETS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    Ok((alphabet, length))
}

/// Generated secrets (see the module documentation).
#[derive(Debug, Default)]
pub struct RandomProvider {
    /// Keys minted by this process and not revoked, and keys revoked by it.
    state: Mutex<(BTreeSet<String>, BTreeSet<String>)>,
}

/// `length` characters drawn uniformly from `alphabet` (rejection sampling: no modulo
/// bias) with the operating system's RNG.
pub(crate) fn generate(alphabet: &str, length: usize) -> String {
    use rand::Rng;
    let chars: Vec<char> = alphabet.chars().collect();
    let mut rng = rand::rngs::OsRng;
    (0..length)
        .map(|_| chars[rng.gen_range(0..chars.len())])
        .collect()
}

#[async_trait]
impl Provider for RandomProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_keys_per_identity: None,
            can_disable: false,
            needs_propagation: false,
            reports_last_use: false,
        }
    }

    async fn preflight(&self, t: &Target) -> ProviderResult<()> {
        policy(t).map(drop)
    }

    async fn keys(&self, t: &Target) -> ProviderResult<Vec<KeyInfo>> {
        let (minted, revoked) = &*self.state.lock().expect("random state");
        let ids: BTreeSet<&str> = t
            .referenced
            .iter()
            .chain(t.current_key.iter())
            .map(|k| k.0.as_str())
            .chain(minted.iter().map(String::as_str))
            .filter(|id| !revoked.contains(*id))
            .collect();
        Ok(ids
            .into_iter()
            .map(|id| KeyInfo {
                id: KeyId(id.to_owned()),
                created: None,
                status: KeyStatus::Active,
                last_used: None,
                expires: None,
            })
            .collect())
    }

    async fn mint(&self, t: &Target) -> ProviderResult<Minted> {
        let (alphabet, length) = policy(t)?;
        let id = format!("rnd-{}", hex::encode(rand::random::<[u8; 10]>()));
        self.state
            .lock()
            .expect("random state")
            .0
            .insert(id.clone());
        Ok(Minted {
            key_id: KeyId(id),
            created: chrono::Utc::now(),
            fields: [(
                FIELD.to_owned(),
                SecretValue::new(generate(alphabet, length)),
            )]
            .into(),
            operator: None,
        })
    }

    async fn verify(&self, _: &Minted) -> ProviderResult<()> {
        Ok(())
    }

    async fn revoke(&self, _: &Target, key: &KeyId, _: Revoke) -> ProviderResult<Revoked> {
        let (minted, revoked) = &mut *self.state.lock().expect("random state");
        minted.remove(&key.0);
        Ok(if revoked.insert(key.0.clone()) {
            Revoked::Done
        } else {
            Revoked::AlreadyGone
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(params: &[(&str, &str)]) -> Target {
        Target {
            source: NAME.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            current_key: None,
            referenced: Vec::new(),
        }
    }

    #[tokio::test]
    async fn conformance_and_policy() {
        let p = RandomProvider::default();
        let t = target(&[("id", "payments/webhook")]);
        secret_manager_provider::testing::conformance(&p, &t).await;
        let m = p
            .mint(&target(&[
                ("id", "x"),
                ("length", "64"),
                ("alphabet", "hex"),
            ]))
            .await
            .unwrap();
        let v = m.fields[FIELD].expose().to_owned();
        assert_eq!(v.len(), 64);
        assert!(v.bytes().all(|b| b.is_ascii_hexdigit()), "{v}");
        assert!(m.key_id.0.starts_with("rnd-") && m.key_id.0.len() == 24);
        assert!(crate::provider::is_valid_key_id(NAME, &m.key_id.0));
        // Two values never repeat (190 bits each by default).
        let a = p.mint(&t).await.unwrap().fields[FIELD].expose().to_owned();
        let b = p.mint(&t).await.unwrap().fields[FIELD].expose().to_owned();
        assert_ne!(a, b);
        assert_eq!(a.len(), DEFAULT_LENGTH);
        for (params, what) in [
            (&[("length", "32")][..], "missing parameter `id`"),
            (
                &[("id", "x"), ("length", "8")][..],
                "length `8`: give a number from 16 to 4096",
            ),
            (
                &[("id", "x"), ("alphabet", "emoji")][..],
                "alphabet `emoji`: one of alnum, hex",
            ),
        ] {
            let e = p.preflight(&target(params)).await.unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        }
    }

    #[test]
    fn every_character_of_the_alphabet_is_drawn() {
        let v = generate("ab", 2000);
        assert!(v.contains('a') && v.contains('b'));
        let v = generate(ALPHABETS[0].1, 20_000);
        for c in ALPHABETS[0].1.chars() {
            assert!(v.contains(c), "{c}");
        }
    }
}
