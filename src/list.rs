//! `list`: filters over the scan and the rows users see.

use crate::annotations::Managed;
use crate::scan::Found;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeSet;

/// Lifecycle state of a SealedSecret as `list` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// No `source` annotation: not managed by this tool.
    Unmanaged,
    /// Managed, but its annotations cannot drive a rotation (see `lint`).
    Invalid,
    /// Older than the policy's maximum age.
    Due,
    /// Managed and younger than the policy's maximum age.
    Ok,
    /// A rotation (or deletion) of it is in flight on the remote's main: staged,
    /// proposed, published and waiting to revoke the old key, or disabled.
    Rotating,
}

impl State {
    /// Lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unmanaged => "unmanaged",
            State::Invalid => "invalid",
            State::Due => "due",
            State::Ok => "ok",
            State::Rotating => "rotating",
        }
    }
}

/// Selection shared by list, rotate and delete.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only secrets older than this (unknown age counts as old).
    pub older_than: Option<chrono::Duration>,
    /// Only these sources (any, when empty).
    pub sources: Vec<String>,
    /// Only these cluster ids (with `cluster_globs`: any, when both are empty).
    pub clusters: Vec<String>,
    /// Only cluster ids matching one of these globs (e.g. `aws.eu-*`).
    pub cluster_globs: Vec<globset::GlobMatcher>,
    /// What to do with shared manifests (no cluster id in their path).
    pub shared: Shared,
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only names matching this glob.
    pub name: Option<globset::GlobSet>,
    /// Include unmanaged SealedSecrets.
    pub include_unmanaged: bool,
    /// Manifests sealed with an outdated certificate (see [`crate::reseal`]), when known.
    pub outdated: Option<std::sync::Arc<BTreeSet<crate::reseal::ManifestAt>>>,
    /// With `outdated`: what it does to the selection.
    pub reseal: Reseal,
}

/// How [`Filter::outdated`] changes a selection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reseal {
    /// Not at all.
    #[default]
    Ignore,
    /// Outdated manifests are selected whatever their age (`rotate --reseal
    /// --older-than`): due or outdated.
    AlsoOutdated,
    /// Only outdated manifests (`list --cert-outdated`, `rotate --reseal` alone).
    OnlyOutdated,
}

/// Shared manifests (no cluster id in their path) in a selection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Shared {
    /// Selected with every cluster selection (the default).
    #[default]
    Include,
    /// Never selected: for every shard but the one that owns shared manifests.
    Exclude,
    /// Only shared manifests, nothing under a cluster id.
    Only,
}

/// One row of `list` (JSON field names are part of the interface).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListRow {
    /// Cluster id, `(shared)` or `(ambiguous)`.
    pub cluster: String,
    /// Effective namespace (empty when unresolved).
    pub namespace: String,
    /// Outer metadata name.
    pub name: String,
    /// `strict`, `namespace-wide` or `cluster-wide`.
    pub scope: String,
    /// Source annotation (empty for unmanaged).
    pub source: String,
    /// Current key id (empty when unknown).
    pub key_id: String,
    /// RFC 3339 creation date, when known.
    pub create_date: Option<String>,
    /// Whole days since creation, when known.
    pub age_days: Option<i64>,
    /// Repo-relative file.
    pub file: String,
    /// 1-based line of the document start.
    pub line: usize,
    /// Zero-based document index in the file.
    pub document: usize,
    /// Lifecycle state.
    pub state: State,
    /// `<prefix>sealedWith`: the fingerprint of the certificate it was sealed with.
    pub sealed_with: Option<String>,
    /// Whether that is the cluster's current certificate (`None`: no fingerprint, no
    /// single cluster, or the certificate cannot be read).
    pub cert_current: Option<bool>,
    /// For `rotating`: where the rotation stands (e.g. `staged, waiting for
    /// aws.us-east-1.prod1`, `published 2026-12-01T10:00:00Z, old key AKIA… not revoked yet`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<String>,
    /// Secret keys rendered from a value template, as `key=template` (from the
    /// `template.<key>` annotations; a malformed one is left out: `lint` names it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub templated: Vec<String>,
    /// With `consumers.restart`: the workloads that read the Secret and what a rotation
    /// does about each (`Deployment/app (file): restarted`, `…: not restarted by the tool
    /// (why)`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<String>,
}

fn parsed_date(m: &Managed) -> Option<DateTime<Utc>> {
    m.create_date().and_then(Result::ok)
}

/// Whether the secret has what a rotation needs: a key id, a date, valid mappings, a
/// sealing label, and one cluster (or shared).
fn rotatable(f: &Found, m: &Managed) -> bool {
    m.key_id.is_some()
        && parsed_date(m).is_some()
        && m.values_ok()
        && (f.namespace.is_some() || !f.doc.scope.needs_namespace())
        && f.doc.name.is_some()
        && !matches!(f.attribution, crate::scan::Attribution::Ambiguous(_))
}

/// The state of `f` at `now` under `max_age`.
pub fn state_of(f: &Found, now: DateTime<Utc>, max_age: chrono::Duration) -> State {
    match &f.managed {
        None => State::Unmanaged,
        Some(m) if !rotatable(f, m) => State::Invalid,
        Some(m) => match parsed_date(m) {
            Some(d) if now - d < max_age => State::Ok,
            _ => State::Due,
        },
    }
}

impl Filter {
    /// Whether `f` is selected at `now`.
    pub fn matches(&self, f: &Found, now: DateTime<Utc>) -> bool {
        let Some(m) = &f.managed else {
            return self.include_unmanaged
                && self.sources.is_empty()
                && self.older_than.is_none()
                && self.common(f);
        };
        if !self.sources.is_empty() && !self.sources.contains(&m.source) {
            return false;
        }
        let outdated = self
            .outdated
            .as_ref()
            .is_some_and(|o| o.contains(&crate::reseal::at(f)));
        if self.reseal == Reseal::OnlyOutdated && !outdated {
            return false;
        }
        if let Some(min) = self.older_than
            && !(self.reseal == Reseal::AlsoOutdated && outdated)
        {
            // Unknown or unparseable age counts as old: it needs attention.
            if parsed_date(m).is_some_and(|d| now - d < min) {
                return false;
            }
        }
        self.common(f)
    }

    /// Whether cluster `id` is in the cluster selection (everything, when it is empty).
    pub fn selects_cluster(&self, id: &str) -> bool {
        (self.clusters.is_empty() && self.cluster_globs.is_empty())
            || self.clusters.iter().any(|c| c == id)
            || self.cluster_globs.iter().any(|g| g.is_match(id))
    }

    fn common(&self, f: &Found) -> bool {
        let ok = match &f.attribution {
            crate::scan::Attribution::Shared => self.shared != Shared::Exclude,
            _ if self.shared == Shared::Only => false,
            crate::scan::Attribution::Cluster(c) => self.selects_cluster(c),
            crate::scan::Attribution::Ambiguous(v) => v.iter().any(|c| self.selects_cluster(c)),
        };
        if !ok {
            return false;
        }
        if let Some(ns) = &self.namespace
            && f.namespace.as_deref() != Some(ns.as_str())
        {
            return false;
        }
        if let Some(g) = &self.name
            && !f.doc.name.as_deref().is_some_and(|n| g.is_match(n))
        {
            return false;
        }
        true
    }
}

/// With `consumers.restart` (`repo`'s config): fills each managed row's
/// [`ListRow::consumers`] — the workloads a rotation of it would restart, and those it
/// would not, with why — unless the secret opts out (`restartConsumers: "false"`).
pub fn mark_consumers(rows: &mut [ListRow], found: &[Found], repo: &crate::Repo) {
    use crate::consumers::{Fate, RESTART_CONSUMERS, Wanted, find};
    if !repo.config.restart_consumers {
        return;
    }
    let ids: std::collections::BTreeSet<String> = repo.inventory.ids().map(str::to_owned).collect();
    for row in rows.iter_mut() {
        let Some(f) = found.iter().find(|f| {
            f.file.to_string_lossy() == row.file.as_str() && f.doc.doc_index == row.document
        }) else {
            continue;
        };
        let (Some(m), Some(name), Some(cluster)) =
            (&f.managed, f.doc.name.as_deref(), f.attribution.cluster())
        else {
            continue;
        };
        if m.all
            .get(RESTART_CONSUMERS)
            .is_some_and(|v| v.trim() == "false")
        {
            continue;
        }
        let wanted = Wanted {
            file: &f.file,
            namespace: f.namespace.as_deref(),
            name,
            cluster,
        };
        row.consumers = find(&repo.root, wanted, &ids)
            .iter()
            .map(|c| {
                let what = match &c.fate {
                    Fate::Restart | Fate::Patch { .. } => "restarted".to_owned(),
                    Fate::Reloader => "restarted by Reloader".to_owned(),
                    Fate::Manual(why) => format!("not restarted by the tool ({why})"),
                };
                format!("{}: {what}", c.describe())
            })
            .collect();
    }
}

/// Marks the rows of manifests that a rotation record (as on the remote's main) is still
/// working on as [`State::Rotating`], saying where the rotation stands.
pub fn mark_in_flight(rows: &mut [ListRow], records: &[crate::journal::RotationRecord]) {
    use crate::journal::RotationState;
    for rec in records {
        let how = match rec.state() {
            RotationState::Proposed { proposal } => format!(
                "proposed in {}",
                proposal.url.clone().unwrap_or(proposal.branch.clone())
            ),
            RotationState::Staged { pending } => {
                format!("staged, waiting for {}", pending.join(", "))
            }
            RotationState::Published { since } => format!(
                "published {}, old key {} not revoked yet",
                since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                rec.old_key_id
            ),
            RotationState::Disabled { since } => format!(
                "old key disabled {}, deleted later",
                since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        };
        // A rollback's "old key" is the rotation's new key: say which rotation it takes back.
        let how = match &rec.rollback_of {
            Some(of) => format!("rollback of {}: {how}", of.rotation),
            None => how,
        };
        for m in &rec.manifests {
            for row in rows.iter_mut().filter(|r| {
                r.file == m.file
                    && r.document == m.document
                    && m.secret
                        == format!(
                            "{}/{}",
                            if r.namespace.is_empty() {
                                "-"
                            } else {
                                &r.namespace
                            },
                            if r.name.is_empty() { "-" } else { &r.name }
                        )
            }) {
                row.state = State::Rotating;
                row.rotation = Some(how.clone());
            }
        }
    }
}

/// Builds the rows for the selected secrets, oldest first (unknown age first).
pub fn rows(
    found: &[Found],
    filter: &Filter,
    now: DateTime<Utc>,
    max_age: chrono::Duration,
) -> Vec<ListRow> {
    rows_with_certs(found, filter, now, max_age, None)
}

/// [`rows`], with `sealedWith` and `certCurrent` filled from `certs` (and the annotation
/// prefix).
pub fn rows_with_certs(
    found: &[Found],
    filter: &Filter,
    now: DateTime<Utc>,
    max_age: chrono::Duration,
    certs: Option<(&crate::reseal::CurrentCerts, &str)>,
) -> Vec<ListRow> {
    let mut selected: Vec<(Option<DateTime<Utc>>, ListRow)> = found
        .iter()
        .filter(|f| filter.matches(f, now))
        .map(|f| {
            let date = f.managed.as_ref().and_then(parsed_date);
            let row = ListRow {
                cluster: f.attribution.label(),
                namespace: f.namespace.clone().unwrap_or_default(),
                name: f.doc.name.clone().unwrap_or_default(),
                scope: f.doc.scope.as_str().to_owned(),
                source: f
                    .managed
                    .as_ref()
                    .map(|m| m.source.clone())
                    .unwrap_or_default(),
                // An id without the source's format is shown escaped (state: invalid).
                key_id: f
                    .managed
                    .as_ref()
                    .and_then(|m| m.key_id.clone().or_else(|| m.invalid_key_id.clone()))
                    .unwrap_or_default(),
                create_date: date.map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                age_days: date.map(|d| (now - d).num_days()),
                file: f.file.to_string_lossy().into_owned(),
                line: f.doc.line,
                document: f.doc.doc_index,
                state: state_of(f, now, max_age),
                rotation: None,
                consumers: Vec::new(),
                templated: f
                    .managed
                    .as_ref()
                    .map(|m| {
                        m.templates()
                            .into_iter()
                            .filter_map(Result::ok)
                            .map(|(key, template)| format!("{key}={template}"))
                            .collect()
                    })
                    .unwrap_or_default(),
                sealed_with: certs
                    .and_then(|(_, prefix)| crate::reseal::CurrentCerts::sealed_with(f, prefix)),
                cert_current: certs.and_then(|(c, prefix)| c.is_current(f, prefix)),
            };
            (date, row)
        })
        .collect();
    selected.sort_by(|(da, a), (db, b)| {
        // Managed before unmanaged, then oldest first, then by location.
        (a.source.is_empty(), da.is_some(), da, &a.file, a.line).cmp(&(
            b.source.is_empty(),
            db.is_some(),
            db,
            &b.file,
            b.line,
        ))
    });
    selected.into_iter().map(|(_, r)| r).collect()
}
