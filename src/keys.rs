//! `keys`: what exists at the source for every managed identity, next to what the repo
//! references — how an operator sees orphans and the two-key squeeze before a rotation.

use crate::list::Filter;
use crate::provider::{KeyId, KeyStatus, Target};
use crate::providers::Providers;
use crate::scan::Found;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// Manifests that share one identity at one source.
#[derive(Debug, Clone)]
pub struct Identity<'a> {
    /// Source name.
    pub source: String,
    /// Display form, e.g. `123456789012/external-dns-bot`.
    pub identity: String,
    /// What the provider needs.
    pub target: Target,
    /// Manifests holding a key of this identity.
    pub manifests: Vec<&'a Found>,
}

/// The display identity of a source's parameters.
pub fn identity_label(source: &str, params: &BTreeMap<String, String>) -> String {
    let g = |k: &str| params.get(k).map(String::as_str).unwrap_or("?");
    match source {
        "aws" => format!("{}/{}", g("account"), g("username")),
        "azure" => format!("{}/{}", g("tenantId"), g("applicationObjectId")),
        "gcp" => g("serviceAccount").to_owned(),
        "random" => g("id").to_owned(),
        // One deploy key per `id` (a cluster's Argo CD each) on the same repository.
        "github-deploy-key" | "gitlab-deploy-token" => {
            let at = if source == "github-deploy-key" {
                g("repository")
            } else if let Some(group) = params.get("group") {
                group.as_str()
            } else {
                g("project")
            };
            match params.get("id") {
                Some(id) => format!("{at}:{id}"),
                None => at.to_owned(),
            }
        }
        _ => params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Groups the selected managed secrets by (source, identity).
pub fn identities<'a>(
    found: &'a [Found],
    filter: &Filter,
    now: DateTime<Utc>,
) -> Vec<Identity<'a>> {
    let mut groups: BTreeMap<(String, String), Identity<'a>> = BTreeMap::new();
    for f in found.iter().filter(|f| filter.matches(f, now)) {
        let Some(m) = &f.managed else { continue };
        let params = m.params();
        let label = identity_label(&m.source, &params);
        let g = groups
            .entry((m.source.clone(), label.clone()))
            .or_insert_with(|| Identity {
                source: m.source.clone(),
                identity: label,
                target: Target {
                    source: m.source.clone(),
                    params,
                    current_key: None,
                    referenced: Vec::new(),
                },
                manifests: Vec::new(),
            });
        if let Some(k) = &m.key_id {
            let k = KeyId(k.clone());
            if !g.target.referenced.contains(&k) {
                g.target.referenced.push(k);
            }
        }
        g.manifests.push(f);
    }
    groups
        .into_values()
        .map(|mut g| {
            if g.target.referenced.len() == 1 {
                g.target.current_key = g.target.referenced.first().cloned();
            }
            g
        })
        .collect()
}

/// One row of `keys` (JSON field names are part of the interface).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyRow {
    /// The credential source (`aws`, `azure`, `gcp`, `random`, a database, a plugin).
    pub source: String,
    /// Identity label.
    pub identity: String,
    /// The key's id at its source.
    pub key_id: String,
    /// Created at the source.
    pub created: Option<String>,
    /// `active`, `inactive`, `expired`, or `missing` (referenced but absent at the source).
    pub status: String,
    /// Last use, where the source reports it.
    pub last_used: Option<String>,
    /// When the key stops working by itself, where the source sets an end date (Azure
    /// secrets, GCP keys with an expiry).
    pub expires: Option<String>,
    /// `current` (referenced by a manifest), `pending` (the old or new key of a rotation
    /// in flight), `claimed` (minted under a live claim: a run is staging it), `orphan`
    /// (minted under an expired claim and never committed: the next `rotate` deletes it),
    /// or `foreign` (referenced by nothing and not minted by secret-manager: it is never
    /// deleted by the tool).
    pub role: String,
    /// `file:line` of every manifest referencing the key.
    pub referenced_by: Vec<String>,
    /// For a `pending` key: where its rotation stands, in `list`'s words (`proposed`,
    /// `staged`, `published`, `disabled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<String>,
}

/// A failure to list one identity's keys.
#[derive(Debug)]
pub struct KeysFailure {
    /// The credential source (`aws`, `azure`, `gcp`, `random`, a database, a plugin).
    pub source: String,
    /// The identity label the source keys belong to (an IAM user, an application, a service account).
    pub identity: String,
    /// Error text.
    pub error: String,
    /// The machine has no usable credentials for the source (the same for every identity
    /// of it: said once, not once per identity).
    pub no_credentials: bool,
}

fn ts(d: Option<DateTime<Utc>>) -> Option<String> {
    d.map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// The role of an unreferenced key: which claim (if any) explains it.
fn unreferenced_role(
    id: &Identity<'_>,
    k: &crate::provider::KeyInfo,
    claims: &[crate::journal::Claim],
    now: DateTime<Utc>,
) -> &'static str {
    let refs: std::collections::BTreeSet<String> =
        id.target.referenced.iter().map(|k| k.0.clone()).collect();
    let claim = claims
        .iter()
        .filter(|c| c.source == id.source && c.identity == id.identity)
        .find(|c| c.owns(k, &refs));
    match claim {
        Some(c) if c.expired(now) => "orphan",
        Some(_) => "claimed",
        None => "foreign",
    }
}

/// What `keys` shows: each selected identity's keys with their roles, the identities whose
/// source failed, and what could not be read (the rotations in flight, the claims on the
/// main remote) — without which keys show as `foreign`, for a warning.
#[derive(Debug)]
pub struct KeysReport {
    /// One row per key.
    pub rows: Vec<KeyRow>,
    /// Identities whose source could not be asked.
    pub failures: Vec<KeysFailure>,
    /// What could not be read, and what that means for the roles.
    pub warnings: Vec<String>,
}

/// The keys of `ids` (selected from `repo`'s manifests): reads the rotations in flight and
/// the claims on the main remote, then asks each source, `concurrency` at a time.
pub async fn report(
    repo: &crate::Repo,
    ids: &[Identity<'_>],
    providers: &Providers,
    now: DateTime<Utc>,
    concurrency: usize,
) -> crate::config::ConfigResult<KeysReport> {
    let fleet = crate::gitops::Fleet::new(repo);
    let pr_mode = repo.config.main_via == crate::config::MainVia::PullRequest;
    let in_flight = crate::journal::store::in_flight(&fleet, &repo.root, pr_mode)?;
    let mut warnings = Vec::new();
    if let Some(why) = in_flight.unread {
        warnings.push(format!(
            "{why}; keys of rotations in flight show as foreign"
        ));
    }
    let table = crate::journal::table::ClaimTable::new(&fleet, &repo.config.claim_ref_prefix);
    let claims: Vec<crate::journal::Claim> = match table.list() {
        Ok(l) => l.into_iter().filter_map(|l| l.claim.ok()).collect(),
        Err(e) => {
            warnings.push(format!(
                "cannot read the claims on the main remote ({e}); unreferenced keys show as foreign"
            ));
            Vec::new()
        }
    };
    let (rows, failures) = key_rows(
        providers,
        ids,
        &in_flight.records,
        &claims,
        now,
        concurrency,
    )
    .await;
    Ok(KeysReport {
        rows,
        failures,
        warnings,
    })
}

/// Lists keys for every identity, at most `concurrency` provider calls at a time.
/// `records` are the rotations in flight: their old and new keys get the role `pending`;
/// `claims` (read from the main remote) tell a key a run minted from a foreign one.
pub async fn key_rows(
    providers: &Providers,
    ids: &[Identity<'_>],
    records: &[crate::journal::RotationRecord],
    claims: &[crate::journal::Claim],
    now: DateTime<Utc>,
    concurrency: usize,
) -> (Vec<KeyRow>, Vec<KeysFailure>) {
    use futures::stream::{self, StreamExt};
    let results: Vec<_> = stream::iter(ids.iter().map(|id| async move {
        let p = providers.get(&id.source).await?;
        // Every key's last use is shown, the current one's too: no key is "current" to
        // the provider here (AWS skips the lookup for the current key).
        let t = Target {
            current_key: None,
            ..id.target.clone()
        };
        // The same preflight as `rotate` (no side effects): the credentials must act in the
        // manifest's account, or a same-named user of another account would be listed.
        p.preflight(&t).await?;
        p.keys(&t).await
    }))
    .buffered(concurrency.max(1))
    .collect()
    .await;
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (id, res) in ids.iter().zip(results) {
        let keys = match res {
            Ok(k) => k,
            Err(e) => {
                failures.push(KeysFailure {
                    source: id.source.clone(),
                    identity: id.identity.clone(),
                    no_credentials: matches!(
                        e,
                        crate::provider::ProviderError::NoCredentials { .. }
                    ),
                    error: e.to_string(),
                });
                continue;
            }
        };
        let refs = |k: &str| -> Vec<String> {
            id.manifests
                .iter()
                .filter(|f| f.managed.as_ref().and_then(|m| m.key_id.as_deref()) == Some(k))
                .map(|f| format!("{}:{}", f.file.display(), f.doc.line))
                .collect()
        };
        for k in &keys {
            let referenced_by = refs(&k.id.0);
            let rotation = records.iter().find(|r| {
                r.source == id.source
                    && r.identity == id.identity
                    && (r.old_key_id == k.id.0 || r.new_key_id == k.id.0)
            });
            rows.push(KeyRow {
                source: id.source.clone(),
                identity: id.identity.clone(),
                key_id: k.id.0.clone(),
                created: ts(k.created),
                status: match k.status {
                    KeyStatus::Active => "active",
                    KeyStatus::Inactive => "inactive",
                    KeyStatus::Expired => "expired",
                }
                .into(),
                last_used: ts(k.last_used),
                expires: ts(k.expires),
                role: if rotation.is_some() {
                    "pending"
                } else if referenced_by.is_empty() {
                    unreferenced_role(id, k, claims, now)
                } else {
                    "current"
                }
                .into(),
                referenced_by,
                rotation: rotation.map(|r| r.state().name().to_owned()),
            });
        }
        for r in &id.target.referenced {
            if !keys.iter().any(|k| &k.id == r) {
                rows.push(KeyRow {
                    source: id.source.clone(),
                    identity: id.identity.clone(),
                    key_id: r.0.clone(),
                    created: None,
                    status: "missing".into(),
                    last_used: None,
                    expires: None,
                    role: "current".into(),
                    referenced_by: refs(&r.0),
                    rotation: None,
                });
            }
        }
    }
    (rows, failures)
}
