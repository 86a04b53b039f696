//! Rotation records: `.secret-manager/rotations/<id>.yaml` on main.
//!
//! A record is committed together with the new ciphertexts (stage), updated when clusters
//! receive the change (publish), and deleted by the commit that revokes the old key (or,
//! with `revokeMode: disable`, marked disabled and deleted once the key is gone). Records
//! hold key ids, never secret values. Files written by every earlier version load: new
//! fields are optional, `kind` defaults to `rotate`.

use super::trailers::{SecretTrailer, TrailerAction, TrailerBlock};
use crate::provider::{KeyId, Target};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Directory of rotation records, repo-relative.
pub const RECORDS_DIR: &str = ".secret-manager/rotations";

/// One manifest a rotation rewrote (or a deletion removed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordManifest {
    /// Repo-relative file.
    pub file: String,
    /// Document index.
    pub document: usize,
    /// Cluster the file belongs to.
    pub cluster: String,
    /// `namespace/name`.
    pub secret: String,
}

impl RecordManifest {
    /// The manifest as a `Secret-Manager-Secret` trailer.
    pub fn trailer(&self) -> SecretTrailer {
        let (namespace, name) = self.secret.split_once('/').unwrap_or(("-", &self.secret));
        SecretTrailer {
            cluster: self.cluster.clone(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            file: self.file.clone(),
            document: self.document,
        }
    }
}

/// The pull request that proposes a rotation (pull-request mode).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Proposal {
    /// The branch with the sealed change.
    pub branch: String,
    /// The pull (merge) request's number, once opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
    /// Its web URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When the run proposed it.
    pub opened_at: DateTime<Utc>,
}

/// Pull-request mode: a hot-fix for one cluster waiting to reach main by pull request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hotfix {
    /// The hot-fix commit (the change on top of the cluster's pointer).
    pub commit: String,
    /// Its branch.
    pub branch: String,
    /// The pull request's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
    /// Its web URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// What a record does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// A new key replaces the old one.
    #[default]
    Rotate,
    /// The manifests were removed; the key goes unless another manifest still uses it.
    Delete,
}

/// Where a record stands. The record file exists in every state; the commit that ends
/// the rotation deletes it (the audit trail keeps the history).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotationState {
    /// Pull-request mode: the change waits in a pull request; main does not have it yet.
    Proposed {
        /// The pull request.
        proposal: Proposal,
    },
    /// Committed on main; these clusters' pointers do not have it yet.
    Staged {
        /// Clusters still to publish to.
        pending: Vec<String>,
    },
    /// Every pointer has it; the revocation gates decide when the old key goes.
    Published {
        /// When the last cluster received it.
        since: DateTime<Utc>,
    },
    /// The old key was disabled; it is deleted once the grace period has passed again.
    Disabled {
        /// When it was disabled.
        since: DateTime<Utc>,
    },
}

impl RotationState {
    /// The state's name, as `list` and errors say it.
    pub fn name(&self) -> &'static str {
        match self {
            RotationState::Proposed { .. } => "proposed",
            RotationState::Staged { .. } => "staged",
            RotationState::Published { .. } => "published",
            RotationState::Disabled { .. } => "disabled",
        }
    }
}

/// A state change that does not apply where the record stands (publishing a rotation that
/// waits for its pull request, disabling one not yet published). Never applied: the
/// record is left as it was and the run reports it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rotation {id}: cannot {action} a rotation that is {state}")]
pub struct IllegalTransition {
    /// The record.
    pub id: String,
    /// What was asked.
    pub action: &'static str,
    /// Where it stands.
    pub state: &'static str,
}

/// A rotation rolled back before its old key went: this record restores the old key
/// (its `newKeyId`) and revokes the rotation's new key (its `oldKeyId`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackOf {
    /// The rotation rolled back (its record id).
    pub rotation: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// What the run that staged a rotation promised: its grace period, revoke mode and gates.
/// They travel with the record, so a later run (another shard, a hand run with other
/// flags) never shortens the grace period or drops a gate: it applies the stricter of the
/// promise and its own flags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Promise {
    /// Grace period between publish and revoke, in seconds.
    pub revoke_after_seconds: i64,
    /// Delete or disable the old key.
    pub revoke_mode: crate::config::RevokeMode,
    /// Wait for the controller to show the new key (`--require-synced`).
    #[serde(default)]
    pub require_synced: bool,
    /// Wait until the old key is unused (`--require-old-key-unused`).
    #[serde(default)]
    pub require_old_key_unused: bool,
    /// Wait until each cluster's Argo CD application is Synced at a revision with the new
    /// key, and Healthy (`--require-argocd-synced`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_argocd_synced: bool,
    /// Wait until every pod that reads the Secret has the new value
    /// (`--require-consumers-restarted`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_consumers_restarted: bool,
    /// Wait until the operator's gate command passes for each cluster (`--gate-command`;
    /// the command itself is the operator's and is not recorded).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_gate_command: bool,
}

/// A staged, published or disabled rotation (or deletion).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationRecord {
    /// Format version.
    pub version: u32,
    /// Rotation id (also the file name).
    pub id: String,
    /// Rotation or deletion.
    #[serde(default)]
    pub kind: RecordKind,
    /// The credential source (`aws`, `azure`, `gcp`, `random`, a database, a plugin).
    pub source: String,
    /// Identity label.
    pub identity: String,
    /// Identity parameters (annotation values, not secret).
    pub params: BTreeMap<String, String>,
    /// The key being replaced.
    pub old_key_id: String,
    /// The new key (empty for a deletion).
    #[serde(default)]
    pub new_key_id: String,
    /// When the new key was staged.
    pub staged_at: DateTime<Utc>,
    /// Manifests rewritten.
    pub manifests: Vec<RecordManifest>,
    /// When each cluster's pointer first contained the change.
    #[serde(default)]
    pub published_at: BTreeMap<String, DateTime<Utc>>,
    /// Who ran it (cloud identity), for the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// The run that staged it (absent in records of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// When that run claimed the credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<DateTime<Utc>>,
    /// When the old key was disabled (`revokeMode: disable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<DateTime<Utc>>,
    /// Pull-request mode: the pull request that proposes the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<Proposal>,
    /// Pull-request mode: the commit on main that brought the change, once merged
    /// (a merge commit, a squash or a rebased commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging_commit: Option<String>,
    /// Pull-request mode: hot-fixes waiting for their pull requests, by cluster.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hotfixes: BTreeMap<String, Hotfix>,
    /// The grace period, revoke mode and gates it was staged with (absent in records of
    /// earlier versions: the run's own flags apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promised: Option<Promise>,
    /// A rollback: the rotation it takes back, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<RollbackOf>,
    /// Pull-request mode: a reviewer closed this rotation's rollback without merging it
    /// (why, and when). A failing gate then keeps the old key and says so, but does not
    /// propose the rollback again; `rotate --rollback` still can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_declined: Option<String>,
}

/// RFC 3339 with seconds, `Z` — the form of every time the tool writes.
pub fn ts(d: DateTime<Utc>) -> String {
    d.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl RotationRecord {
    /// Where the rotation stands.
    pub fn state(&self) -> RotationState {
        if let (Some(p), None) = (&self.proposal, &self.staging_commit) {
            return RotationState::Proposed {
                proposal: p.clone(),
            };
        }
        if let Some(since) = self.disabled_at {
            return RotationState::Disabled { since };
        }
        let pending: Vec<String> = self
            .clusters()
            .into_iter()
            .filter(|c| !self.published_at.contains_key(c))
            .collect();
        if pending.is_empty() {
            RotationState::Published {
                since: self
                    .published_at
                    .values()
                    .max()
                    .copied()
                    .unwrap_or(self.staged_at),
            }
        } else {
            RotationState::Staged { pending }
        }
    }

    /// Pull-request mode: `cluster`'s hot-fix waits for its own pull request.
    pub fn hotfix_proposed(&mut self, cluster: &str, hotfix: Hotfix) {
        self.hotfixes.insert(cluster.to_owned(), hotfix);
    }

    /// Pull-request mode: `cluster`'s hot-fix pull request is settled (merged or gone).
    pub fn hotfix_settled(&mut self, cluster: &str) {
        self.hotfixes.remove(cluster);
    }

    /// Whether this record removes manifests instead of rotating a key.
    pub fn is_delete(&self) -> bool {
        self.kind == RecordKind::Delete
    }

    /// Repo-relative path of this record.
    pub fn path(&self) -> String {
        format!("{RECORDS_DIR}/{}.yaml", self.id)
    }

    /// Clusters the rotation must reach, sorted.
    pub fn clusters(&self) -> Vec<String> {
        let mut c: Vec<String> = self.manifests.iter().map(|m| m.cluster.clone()).collect();
        c.sort();
        c.dedup();
        c
    }

    /// Repo-relative files the rotation touched, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut f: Vec<String> = self.manifests.iter().map(|m| m.file.clone()).collect();
        f.sort();
        f.dedup();
        f
    }

    /// What a provider needs to act on this record's identity. Both keys are referenced,
    /// so nothing may be deleted to make room.
    pub fn target(&self) -> Target {
        let mut referenced = vec![KeyId(self.old_key_id.clone())];
        if !self.new_key_id.is_empty() {
            referenced.push(KeyId(self.new_key_id.clone()));
        }
        Target {
            source: self.source.clone(),
            params: self.params.clone(),
            current_key: (!self.new_key_id.is_empty()).then(|| KeyId(self.new_key_id.clone())),
            referenced,
        }
    }

    /// The trailer block of a commit that does `action` to this record.
    pub fn trailer(&self, action: TrailerAction) -> TrailerBlock {
        let mut b = TrailerBlock::new(action);
        b.rotation = Some(self.id.clone());
        b.run = self.run.clone();
        b.source = Some(self.source.clone());
        b.identity = Some(self.identity.clone());
        b.secrets = self.manifests.iter().map(RecordManifest::trailer).collect();
        b.clusters = self.clusters();
        b.old_key = Some(self.old_key_id.clone());
        b.new_key = (!self.new_key_id.is_empty()).then(|| self.new_key_id.clone());
        b.operator = self.operator.clone();
        b
    }

    /// The `Published` lines for `clusters` (those with a publish time).
    pub fn published_trailers(&self, clusters: &[String]) -> Vec<(String, String)> {
        clusters
            .iter()
            .filter_map(|c| self.published_at.get(c).map(|t| (c.clone(), ts(*t))))
            .collect()
    }

    /// Serialized form (YAML).
    pub fn to_yaml(&self) -> String {
        let mut s = String::from(
            "# secret-manager rotation record: do not edit by hand. No secret values.\n",
        );
        s.push_str(&serde_saphyr::to_string(self).expect("records serialize"));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_yaml;
    use std::path::Path;

    fn fixture(name: &str) -> RotationRecord {
        let rel = format!("testdata/journal/{name}");
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(&rel);
        let src = std::fs::read_to_string(&path).unwrap();
        from_yaml::<RotationRecord>(Path::new(&rel), &src).unwrap()
    }

    #[test]
    fn records_of_the_previous_format_still_load() {
        // Written by the version before claims existed: no run, no claimedAt.
        let r = fixture("v1-published.yaml");
        assert_eq!(r.kind, RecordKind::Rotate);
        assert_eq!(r.old_key_id, "AKIAOLDOLDOLDOLD0001");
        assert_eq!(r.run, None);
        assert_eq!(
            r.state(),
            RotationState::Published {
                since: "2026-11-21T12:00:05Z".parse().unwrap()
            }
        );
        let staged = fixture("v1-staged-delete.yaml");
        assert!(staged.is_delete());
        assert_eq!(
            staged.state(),
            RotationState::Staged {
                pending: vec!["aws.us-east-1.prod1".into()]
            }
        );
    }

    #[test]
    fn yaml_round_trips_and_state_follows_the_fields() {
        let mut r = fixture("v1-published.yaml");
        r.run = Some("20261121T120000Z-abcdef".into());
        r.claimed_at = Some("2026-11-21T11:59:59Z".parse().unwrap());
        let back: RotationRecord = from_yaml(Path::new("x.yaml"), &r.to_yaml()).unwrap();
        assert_eq!(back, r);
        r.published_at.clear();
        assert_eq!(
            r.state(),
            RotationState::Staged {
                pending: vec!["aws.eu-central-1.dev1".into()]
            }
        );
        r.disabled_at = Some("2026-11-21T13:00:00Z".parse().unwrap());
        assert!(matches!(r.state(), RotationState::Disabled { .. }));
    }

    #[test]
    fn the_trailer_block_names_every_manifest_and_both_keys() {
        let r = fixture("v1-published.yaml");
        let b = r.trailer(TrailerAction::Publish);
        let parsed = super::super::trailers::parse(&b.render());
        assert_eq!(parsed, vec![b.clone()]);
        assert_eq!(b.secrets[0].namespace, "external-dns");
        assert_eq!(b.new_key.as_deref(), Some("AKIANEWNEWNEWNEW0001"));
    }
}
