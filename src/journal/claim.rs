//! Claims: a run's exclusive hold on one credential, taken on the main remote BEFORE it
//! mints anything for it.
//!
//! A claim is a small YAML file, `<credential-id>.yaml`, in the claims table on the main
//! remote ([`crate::journal::table`]). The run adds it only if the credential has no file
//! yet, in a table commit pushed with a lease on the table it read, which the git server
//! applies as one atomic compare-and-swap: two runs can never both hold a claim, whatever
//! branch protection says about `main`. The claim ends when the run's stage commit has
//! landed (the record on main takes over), when it undid its mint, or — if the run died —
//! when a later run takes the expired claim over (again by lease) and cleans up after it.
//!
//! What a claim lets a later run delete: keys of the identity that did not exist when the
//! claim was made (`keysBefore`), were created inside the claim's window
//! (`mintsAfter` … `mintsBefore`, wall-clock, compared with the source's creation times),
//! and that no manifest and no record references. Nothing else, ever.

use super::record::ts;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::config::CLAIMS_REF_PREFIX;

/// Default lease of a claim: how long a run may hold a credential before another run
/// may consider it dead. A live run renews its claims before they run out.
pub const DEFAULT_LEASE: chrono::Duration = chrono::Duration::minutes(10);

/// Source timestamps are rounded (AWS reports whole seconds): a key created in the same
/// second as `mintsAfter` counts as inside the window.
pub const TIMESTAMP_SLACK: chrono::Duration = chrono::Duration::seconds(1);

/// The id of one run: when it started and a random suffix, e.g. `20261121T120000Z-3f9a1c`.
/// It names the run in claims, records, trailers and (AWS) the STS session.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub String);

impl RunId {
    /// A fresh id for a run starting at `now`.
    pub fn new(now: DateTime<Utc>) -> RunId {
        use rand::Rng as _;
        let suffix: u32 = rand::thread_rng().r#gen();
        RunId(format!("{}-{:08x}", now.format("%Y%m%dT%H%M%SZ"), suffix))
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The stable id of a credential (an identity at a source), safe in a ref name:
/// `<source>-<first 16 hex of sha256(source \n identity)>`.
pub fn credential_id(source: &str, identity: &str) -> String {
    let safe: String = source
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let h = crate::seal::fingerprint_hex(format!("{source}\n{identity}").as_bytes());
    format!("{safe}-{}", &h[..16])
}

/// `claim.yaml`: who holds a credential, since when, and what existed before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    /// Format version.
    pub version: u32,
    /// The run holding the claim.
    pub run: RunId,
    /// Where the run runs (pod or host name), for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The credential source (`aws`, `azure`, `gcp`, `random`, a database, a plugin).
    pub source: String,
    /// Identity label.
    pub identity: String,
    /// Identity parameters (annotation values, not secret): what a later run needs to
    /// list and revoke this identity's keys.
    pub params: BTreeMap<String, String>,
    /// The keys the run is replacing.
    pub old_keys: Vec<String>,
    /// Every key the identity had just before the claim: never this claim's to delete.
    pub keys_before: Vec<String>,
    /// When the run claimed it (the run's clock).
    pub claimed_at: DateTime<Utc>,
    /// When the claim runs out unless renewed (the run's clock).
    pub expires_at: DateTime<Utc>,
    /// Wall-clock time before the first mint under this claim: the start of the window
    /// in which the source's creation times of this claim's keys lie.
    pub mints_after: DateTime<Utc>,
    /// Wall-clock time after which the run mints nothing more under this claim: the end
    /// of the window. A run that needs longer renews its claim, which moves it.
    pub mints_before: DateTime<Utc>,
    /// When this claim took over an expired one, the run that had died.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_over: Option<RunId>,
    /// Whether the run may mint under this claim. A run that only publishes or revokes a
    /// recorded rotation claims with `false`: nothing of it is ever cleaned up.
    #[serde(default = "mints_default")]
    pub mints: bool,
}

fn mints_default() -> bool {
    true
}

impl Claim {
    /// A claim by `run` on (source, identity) made at `now` (the run's clock) for `lease`,
    /// with the identity's `keys_before` and the wall-clock window starting now.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        run: &RunId,
        source: &str,
        identity: &str,
        params: &BTreeMap<String, String>,
        old_keys: Vec<String>,
        keys_before: Vec<String>,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Claim {
        let wall = Utc::now();
        Claim {
            version: 1,
            run: run.clone(),
            host: std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .ok()
                .filter(|h| !h.is_empty()),
            source: source.to_owned(),
            identity: identity.to_owned(),
            params: params.clone(),
            old_keys,
            keys_before,
            claimed_at: now,
            expires_at: now + lease,
            mints_after: wall,
            mints_before: wall + lease,
            took_over: None,
            mints: true,
        }
    }

    /// A claim by `run` that only advances a recorded rotation: it mints nothing, so a
    /// run that dies holding it leaves nothing to clean up.
    pub fn advance(
        run: &RunId,
        source: &str,
        identity: &str,
        params: &BTreeMap<String, String>,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Claim {
        let mut c = Claim::new(
            run,
            source,
            identity,
            params,
            Vec::new(),
            Vec::new(),
            now,
            lease,
        );
        c.mints = false;
        c.mints_before = c.mints_after;
        c
    }

    /// Whether the claim has run out at `now` (the reader's clock).
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }

    /// Whether a key the source says was created at `created` can be this claim's:
    /// inside `[mintsAfter - slack, mintsBefore + slack]`. Unknown times never are.
    pub fn window_contains(&self, created: Option<DateTime<Utc>>) -> bool {
        created.is_some_and(|c| {
            c >= self.mints_after - TIMESTAMP_SLACK && c <= self.mints_before + TIMESTAMP_SLACK
        })
    }

    /// Whether a key that exists at the source now is one this claim's run minted and never
    /// committed: not there before the claim, created inside its window, referenced by
    /// nothing in `referenced`.
    pub fn owns(
        &self,
        key: &crate::provider::KeyInfo,
        referenced: &std::collections::BTreeSet<String>,
    ) -> bool {
        !referenced.contains(&key.id.0)
            && !self.keys_before.contains(&key.id.0)
            && self.window_contains(key.created)
    }

    /// The ref of this claim under `prefix`.
    pub fn refname(&self, prefix: &str) -> String {
        format!("{prefix}{}", credential_id(&self.source, &self.identity))
    }

    /// `claim.yaml`.
    pub fn to_yaml(&self) -> String {
        let mut s = String::from(
            "# secret-manager claim: a run holds this credential. No secret values.\n",
        );
        s.push_str(&serde_saphyr::to_string(self).expect("claims serialize"));
        s
    }

    /// Parses `claim.yaml` read from `origin` (for the error message).
    pub fn from_yaml(origin: &str, src: &str) -> crate::config::ConfigResult<Claim> {
        crate::config::from_yaml(std::path::Path::new(origin), src)
    }

    /// One line for people: who, since when, until when.
    pub fn describe(&self) -> String {
        format!(
            "claimed by run {}{} at {}, lease until {}",
            self.run,
            self.host
                .as_deref()
                .map(|h| format!(" on {h}"))
                .unwrap_or_default(),
            ts(self.claimed_at),
            ts(self.expires_at)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim() -> Claim {
        let t: DateTime<Utc> = "2026-11-21T12:00:00Z".parse().unwrap();
        Claim {
            version: 1,
            run: RunId("20261121T120000Z-00000001".into()),
            host: Some("pod-a".into()),
            source: "aws".into(),
            identity: "123456789012/bot".into(),
            params: [("username".to_string(), "bot".to_string())].into(),
            old_keys: vec!["AKIAOLD".into()],
            keys_before: vec!["AKIAOLD".into()],
            claimed_at: t,
            expires_at: t + DEFAULT_LEASE,
            mints_after: t,
            mints_before: t + DEFAULT_LEASE,
            took_over: None,
            mints: true,
        }
    }

    #[test]
    fn round_trips_and_knows_its_window() {
        let c = claim();
        assert_eq!(Claim::from_yaml("claim.yaml", &c.to_yaml()).unwrap(), c);
        let t = c.mints_after;
        assert!(c.window_contains(Some(t)));
        assert!(c.window_contains(Some(t - chrono::Duration::milliseconds(500))));
        assert!(!c.window_contains(Some(t - chrono::Duration::seconds(60))));
        assert!(!c.window_contains(Some(t + DEFAULT_LEASE + chrono::Duration::seconds(5))));
        assert!(!c.window_contains(None));
        assert!(!c.expired(t + chrono::Duration::minutes(9)));
        assert!(c.expired(t + DEFAULT_LEASE));
    }

    #[test]
    fn credential_ids_are_ref_safe_and_distinct() {
        let a = credential_id("aws", "123456789012/bot");
        let b = credential_id("aws", "123456789012/bot2");
        assert_ne!(a, b);
        assert!(a.starts_with("aws-"));
        let p = credential_id("my plugin", "x=1,y=2");
        assert!(
            p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{p}"
        );
    }
}
