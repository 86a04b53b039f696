//! Rotation records: `.secret-manager/rotations/<id>.yaml` (DESIGN §7).
//!
//! A record is committed together with the new ciphertexts (stage), updated when every
//! cluster has the change (publish), and deleted by the revoke commit. Because the state
//! lives in git, a run on a fresh clone (a CronJob pod) continues where the last one
//! stopped. Records hold key ids, never secret values.

use crate::config::{ConfigResult, from_yaml};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Directory of rotation records, repo-relative.
pub const RECORDS_DIR: &str = ".secret-manager/rotations";

/// One manifest a rotation rewrote.
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

/// A staged or published rotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationRecord {
    /// Format version.
    pub version: u32,
    /// Rotation id (also the file name).
    pub id: String,
    /// `rotate` (a new key replaces the old) or `delete` (the manifests are removed).
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Source.
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
}

fn default_kind() -> String {
    "rotate".into()
}

impl RotationRecord {
    /// Whether this record removes manifests instead of rotating a key.
    pub fn is_delete(&self) -> bool {
        self.kind == "delete"
    }

    /// Repo-relative path of this record.
    pub fn path(&self) -> String {
        format!("{RECORDS_DIR}/{}.yaml", self.id)
    }

    /// Clusters the rotation must reach.
    pub fn clusters(&self) -> Vec<String> {
        let mut c: Vec<String> = self.manifests.iter().map(|m| m.cluster.clone()).collect();
        c.sort();
        c.dedup();
        c
    }

    /// Whether every cluster has the change.
    pub fn fully_published(&self) -> bool {
        self.clusters()
            .iter()
            .all(|c| self.published_at.contains_key(c))
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

/// Loads every record under `root`.
pub fn load_records(root: &Path) -> ConfigResult<Vec<RotationRecord>> {
    let dir = root.join(RECORDS_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let rel = p.strip_prefix(root).unwrap_or(&p).to_path_buf();
        let src =
            std::fs::read_to_string(&p).map_err(|source| crate::config::ConfigError::Read {
                path: rel.clone(),
                source,
            })?;
        out.push(from_yaml::<RotationRecord>(&rel, &src)?);
    }
    Ok(out)
}
