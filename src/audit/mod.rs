//! `audit export`: who rotated what and when, rebuilt from git.
//!
//! Every commit the tool makes carries `Secret-Manager-*` trailers. The export walks main
//! and every cluster pointer (deduplicated by commit), turns each tool commit into one
//! record per action and secret, and adds `manual` records for commits without our
//! trailers that changed a key id annotation by hand — so an auditor sees those too.
//! Records hold key ids and names, never secret values. Schema: docs/audit.md.

use crate::gitops::git::{Git, GitResult};
use crate::journal::trailers::{self, TrailerAction, TrailerBlock};
use serde::Serialize;
use std::collections::BTreeMap;

/// Version of the record schema (the `schemaVersion` field).
pub const SCHEMA_VERSION: u32 = 1;

/// One audit record (JSON field names and CSV columns are part of the interface).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Commit time (committer date, RFC 3339).
    pub time: String,
    /// `claim`, `stage`, `publish`, `revoke`, `delete-disabled`, `revoke-skipped`,
    /// `delete`, `cleanup`, `undo`, `abandon`, `merge-hotfix`, `reconcile`, or `manual`.
    pub action: String,
    /// Cluster id.
    pub cluster: String,
    /// Namespace of the secret.
    pub namespace: String,
    /// Name of the secret.
    pub name: String,
    /// Repo-relative file.
    pub file: String,
    /// The credential source (`aws`, `azure`, `gcp`, `random`, a database, a plugin).
    pub source: String,
    /// Key replaced or revoked.
    pub old_key_id: String,
    /// Key introduced.
    pub new_key_id: String,
    /// The rotation record's id (empty for events outside a rotation).
    pub rotation_id: String,
    /// Commit id.
    pub commit: String,
    /// Cloud caller identity the provider saw (e.g. an STS ARN).
    pub operator: String,
    /// Git author (`Name <email>`).
    pub git_author: String,
    /// For `publish`: when the cluster's pointer received the change.
    pub published_at: String,
    /// The run that acted (for `cleanup` and `abandon`: the run that died).
    pub run: String,
    /// The identity at the source (e.g. `123456789012/external-dns-bot`).
    pub identity: String,
    /// Why, for events that need a reason (cleanup, undo, abandon, kept keys).
    pub detail: String,
}

/// Export settings.
#[derive(Clone, Debug, Default)]
pub struct AuditOptions {
    /// `git log --since`.
    pub since: Option<String>,
    /// `git log --until`.
    pub until: Option<String>,
    /// Only this cluster.
    pub cluster: Option<String>,
    /// Only this source.
    pub source: Option<String>,
    /// Annotation prefix, for manual-change detection.
    pub prefix: String,
    /// Known cluster ids, for attributing manual changes.
    pub cluster_ids: std::collections::BTreeSet<String>,
}

const FIELD: char = '\u{1f}';
const RECORD: char = '\u{1e}';

#[derive(Default)]
struct Commit {
    id: String,
    time: String,
    author: String,
    body: String,
}

fn log(git: &Git, refs: &[String], o: &AuditOptions, extra: &[&str]) -> GitResult<String> {
    let mut args: Vec<String> = vec![
        "log".into(),
        "--no-color".into(),
        // The separator leads each record: with -p the patch follows the message.
        "--format=%x1e%H%x1f%cI%x1f%an <%ae>%x1f%B".into(),
    ];
    if let Some(s) = &o.since {
        args.push(format!("--since={s}"));
    }
    if let Some(u) = &o.until {
        args.push(format!("--until={u}"));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(refs.iter().cloned());
    args.push("--".into());
    git.run(&args)
}

fn commits(out: &str) -> Vec<Commit> {
    out.split(RECORD)
        .filter_map(|rec| {
            let rec = rec.trim_start_matches('\n');
            let mut f = rec.splitn(4, FIELD);
            Some(Commit {
                id: f.next()?.trim().to_owned(),
                time: f.next()?.to_owned(),
                author: f.next()?.to_owned(),
                body: f.next().unwrap_or_default().to_owned(),
            })
            .filter(|c| c.id.len() >= 40)
        })
        .collect()
}

fn records_of(c: &Commit, t: &TrailerBlock) -> Vec<AuditRecord> {
    let base = AuditRecord {
        schema_version: SCHEMA_VERSION,
        time: c.time.clone(),
        action: t.action.as_str().to_owned(),
        source: t.source.clone().unwrap_or_default(),
        old_key_id: t.old_key.clone().unwrap_or_default(),
        new_key_id: t.new_key.clone().unwrap_or_default(),
        rotation_id: t.rotation.clone().unwrap_or_default(),
        commit: c.id.clone(),
        operator: t.operator.clone().unwrap_or_default(),
        git_author: c.author.clone(),
        run: t.run.clone().unwrap_or_default(),
        identity: t.identity.clone().unwrap_or_default(),
        detail: t.reason.clone().unwrap_or_default(),
        ..AuditRecord::default()
    };
    let published: BTreeMap<&str, &str> = t
        .published
        .iter()
        .map(|(c, t)| (c.as_str(), t.as_str()))
        .collect();
    if t.secrets.is_empty() {
        // Pointer maintenance (merge-hotfix, reconcile): one record per cluster; events
        // about an identity rather than a manifest (cleanup, undo, abandon): one record.
        if t.clusters.is_empty() {
            return vec![base];
        }
        return t
            .clusters
            .iter()
            .map(|cluster| AuditRecord {
                cluster: cluster.clone(),
                ..base.clone()
            })
            .collect();
    }
    let mut out = Vec::new();
    for s in &t.secrets {
        if t.action == TrailerAction::Publish && !published.contains_key(s.cluster.as_str()) {
            continue;
        }
        let rec = AuditRecord {
            published_at: published
                .get(s.cluster.as_str())
                .map(|t| t.to_string())
                .unwrap_or_default(),
            cluster: s.cluster.clone(),
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            file: s.file.clone(),
            ..base.clone()
        };
        if t.action == TrailerAction::Stage
            && let Some(claimed) = &t.claimed
        {
            // The claim that preceded the stage: when the run took the credential.
            out.push(AuditRecord {
                time: claimed.clone(),
                action: "claim".into(),
                new_key_id: String::new(),
                ..rec.clone()
            });
        }
        out.push(rec);
    }
    out
}

/// Hand edits of key id annotations in commits without our trailers.
fn manual_records(git: &Git, refs: &[String], o: &AuditOptions) -> GitResult<Vec<AuditRecord>> {
    let pattern = format!("{}(accessKeyId|keyId)", regex_escape(&o.prefix));
    let out = log(
        git,
        refs,
        o,
        &[
            "--extended-regexp",
            &format!("-G{pattern}"),
            "-p",
            "--unified=0",
            "--no-renames",
        ],
    )?;
    let mut records = Vec::new();
    for c in commits(&out) {
        if !trailers::parse(&c.body).is_empty() {
            continue;
        }
        // `c.body` holds the message followed by the patch: per file, the key ids removed
        // and added, in order (two documents of one file changed in one commit are two
        // records).
        let mut changes: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
        let mut file = String::new();
        let (mut old, mut new) = (Vec::new(), Vec::new());
        let mut flush = |file: &str, old: &mut Vec<String>, new: &mut Vec<String>| {
            if !file.is_empty() && (!old.is_empty() || !new.is_empty()) {
                changes.push((file.to_owned(), std::mem::take(old), std::mem::take(new)));
            }
            old.clear();
            new.clear();
        };
        for line in c.body.lines() {
            if let Some(f) = line.strip_prefix("+++ b/") {
                flush(&file, &mut old, &mut new);
                file = f.to_owned();
            } else if line.starts_with("+++ /dev/null") {
                // A deleted file: its name came with `--- a/`.
            } else if let Some(f) = line.strip_prefix("--- a/") {
                flush(&file, &mut old, &mut new);
                file = f.to_owned();
            } else if line.starts_with("--- /dev/null") {
                flush(&file, &mut old, &mut new);
                file.clear();
            } else if let Some(rest) = line.strip_prefix('-').or_else(|| line.strip_prefix('+')) {
                let adding = line.starts_with('+');
                let t = rest.trim().trim_start_matches('"');
                for kind in ["accessKeyId", "keyId"] {
                    let key = format!("{}{kind}", o.prefix);
                    if let Some(v) = t.strip_prefix(&key) {
                        let v = v
                            .trim_start_matches('"')
                            .trim_start_matches(':')
                            .trim()
                            .trim_matches(['"', '\'', ','])
                            .to_owned();
                        if adding { new.push(v) } else { old.push(v) }
                    }
                }
            }
        }
        flush(&file, &mut old, &mut new);
        for (file, old, new) in changes {
            let docs = |rev: String| -> Vec<KeyDoc> {
                git.read_blobs(&[format!("{rev}:{file}")])
                    .ok()
                    .and_then(|mut b| b.pop().flatten())
                    .map(|text| key_docs(&text, &o.prefix))
                    .unwrap_or_default()
            };
            let (after, before) = (docs(c.id.clone()), docs(format!("{}^", c.id)));
            let cluster = crate::scan::attribute(std::path::Path::new(&file), &o.cluster_ids)
                .cluster()
                .unwrap_or_default()
                .to_owned();
            for i in 0..old.len().max(new.len()) {
                let (o_id, n_id) = (old.get(i).cloned(), new.get(i).cloned());
                let doc = n_id
                    .as_ref()
                    .and_then(|n| after.iter().find(|d| &d.key_id == n))
                    .or_else(|| {
                        o_id.as_ref()
                            .and_then(|k| before.iter().find(|d| &d.key_id == k))
                    });
                records.push(AuditRecord {
                    schema_version: SCHEMA_VERSION,
                    time: c.time.clone(),
                    action: "manual".into(),
                    cluster: cluster.clone(),
                    namespace: doc.map(|d| d.namespace.clone()).unwrap_or_default(),
                    name: doc.map(|d| d.name.clone()).unwrap_or_default(),
                    file: file.clone(),
                    source: doc.map(|d| d.source.clone()).unwrap_or_default(),
                    identity: doc.map(|d| d.identity.clone()).unwrap_or_default(),
                    old_key_id: o_id.unwrap_or_default(),
                    new_key_id: n_id.unwrap_or_default(),
                    commit: c.id.clone(),
                    git_author: c.author.clone(),
                    operator: c.author.clone(),
                    detail: "key id changed by hand (a commit without secret-manager trailers)"
                        .into(),
                    ..AuditRecord::default()
                });
            }
        }
    }
    Ok(records)
}

/// A managed SealedSecret of a file at some commit, by its key id.
struct KeyDoc {
    key_id: String,
    source: String,
    identity: String,
    namespace: String,
    name: String,
}

fn key_docs(text: &str, prefix: &str) -> Vec<KeyDoc> {
    let Ok(docs) = crate::manifest::yaml::parse_documents(text) else {
        return Vec::new();
    };
    docs.iter()
        .flat_map(crate::manifest::SealedSecretDoc::all_from_document)
        .filter_map(|d| {
            let m = crate::annotations::Managed::from_annotations(&d.template_annotations, prefix)?;
            Some(KeyDoc {
                key_id: m.key_id.clone()?,
                identity: crate::keys::identity_label(&m.source, &m.params()),
                source: m.source,
                namespace: d.namespace.clone().unwrap_or_default(),
                name: d.name.clone().unwrap_or_default(),
            })
        })
        .collect()
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '-' || c == '_' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

/// The refs the history of `repo`'s fleet is in, fetched now: main (the checkout's `HEAD`
/// when main was never fetched), every cluster's pointer, the journal ref of pull-request
/// mode (its publish, revoke and abandon commits) and the audit log (cleanups, undos,
/// promotions). What could not be fetched is said in the warnings; the export then comes
/// from the refs as last fetched.
pub fn history_refs(
    fleet: &crate::gitops::Fleet,
    repo: &crate::Repo,
) -> GitResult<(Vec<String>, Vec<String>)> {
    let mut warnings = Vec::new();
    if let Err(e) = fleet.fetch() {
        warnings.push(format!(
            "could not fetch the remotes ({e}); exporting from local refs"
        ));
    }
    let mut refs = vec![fleet.main_tracking()];
    for c in &repo.inventory.clusters {
        if fleet.pointer(c)?.is_some() {
            refs.push(crate::gitops::Fleet::pointer_tracking(c));
        }
    }
    if fleet.git().resolve(&refs[0])?.is_none() {
        refs[0] = "HEAD".into();
    }
    let journal = crate::journal::store::journal_target(fleet);
    if let Ok(Some(_)) = fleet.fetch_target(&journal) {
        refs.push(journal.tracking.clone());
    }
    match crate::gitops::events::EventLog::new(fleet).fetch() {
        Ok(Some(_)) => refs.push(crate::gitops::events::EVENTS_MIRROR.into()),
        Ok(None) => {}
        Err(e) => warnings.push(format!(
            "could not fetch the audit log {} ({e}); cleanups and undos are missing from the export",
            crate::gitops::events::EVENTS_REF
        )),
    }
    Ok((refs, warnings))
}

/// Records a promotion in the audit log (`refs/secret-manager/audit` on the main
/// remote): a promotion adds no commit to the pointer, so without this event the export
/// could not say who moved it.
pub fn record_promote(
    fleet: &crate::gitops::Fleet,
    c: &crate::inventory::Cluster,
    from: &str,
    to: &str,
    commits: usize,
) -> GitResult<()> {
    let mut b = TrailerBlock::new(TrailerAction::Promote);
    b.clusters = vec![c.id.clone()];
    b.reason = Some(format!(
        "{} on {} moved from {from} to {to} ({commits} commit(s), fast-forward)",
        crate::gitops::pointer_ref(c),
        c.remote
    ));
    let msg = trailers::message(&format!("secret-manager: promoted {}", c.id), &[b]);
    crate::gitops::events::EventLog::new(fleet)
        .append(&msg)
        .map(drop)
}

/// Rebuilds the audit history from `refs` (main and the pointers) of the clone at `git`.
pub fn export(git: &Git, refs: &[String], o: &AuditOptions) -> GitResult<Vec<AuditRecord>> {
    let out = log(
        git,
        refs,
        o,
        &["--grep=^Secret-Manager-Action: ", "--extended-regexp"],
    )?;
    // A hot-fix is a `cherry-pick -x` copy of a tool commit: its trailers repeat the
    // original's. The hot-fix shows up as its own merge-hotfix and publish records.
    let mut records: Vec<AuditRecord> = commits(&out)
        .iter()
        .filter(|c| !c.body.contains("(cherry picked from commit "))
        .flat_map(|c| {
            // A batch commit carries one trailer block per rotation, each opened by
            // `Secret-Manager-Action`.
            trailers::parse(&c.body)
                .iter()
                .flat_map(|t| records_of(c, t))
                .collect::<Vec<_>>()
        })
        .collect();
    records.extend(manual_records(git, refs, o)?);
    records.retain(|r| {
        o.cluster.as_deref().is_none_or(|c| r.cluster == c)
            && o.source.as_deref().is_none_or(|s| r.source == s)
    });
    // History order (oldest first, parents before children), not clock order: commits made
    // within the same second stay in the order they happened.
    let mut args: Vec<String> = vec!["rev-list".into(), "--date-order".into(), "--reverse".into()];
    args.extend(refs.iter().cloned());
    args.push("--".into());
    let order: std::collections::HashMap<String, usize> = git
        .run(&args)?
        .lines()
        .enumerate()
        .map(|(i, c)| (c.to_owned(), i))
        .collect();
    records.sort_by_key(|r| {
        (
            order.get(&r.commit).copied().unwrap_or(usize::MAX),
            r.action.clone(),
            r.cluster.clone(),
            r.file.clone(),
        )
    });
    records.dedup();
    Ok(records)
}

/// Writes records as CSV with a header row (same columns as the JSON fields).
pub fn write_csv<W: std::io::Write>(w: W, records: &[AuditRecord]) -> csv::Result<()> {
    let mut wr = csv::Writer::from_writer(w);
    for r in records {
        wr.serialize(r)?;
    }
    if records.is_empty() {
        wr.write_record([
            "schemaVersion",
            "time",
            "action",
            "cluster",
            "namespace",
            "name",
            "file",
            "source",
            "oldKeyId",
            "newKeyId",
            "rotationId",
            "commit",
            "operator",
            "gitAuthor",
            "publishedAt",
            "run",
            "identity",
            "detail",
        ])?;
    }
    wr.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_commit_splits_into_one_block_per_rotation() {
        let body = "secret-manager: stage rotation of 2 credentials\n\nSecret-Manager-Action: stage\nSecret-Manager-Rotation: r1\nSecret-Manager-Source: aws\nSecret-Manager-Secret: c1/ns/a a.yaml#0\nSecret-Manager-Old-Key: K1\nSecret-Manager-New-Key: K2\nSecret-Manager-Action: stage\nSecret-Manager-Rotation: r2\nSecret-Manager-Source: aws\nSecret-Manager-Secret: c2/ns/b b.yaml#0\nSecret-Manager-Old-Key: K3\nSecret-Manager-New-Key: K4\n";
        let c = Commit {
            body: body.into(),
            ..Commit::default()
        };
        let recs: Vec<AuditRecord> = trailers::parse(&c.body)
            .iter()
            .flat_map(|t| records_of(&c, t))
            .collect();
        let got: Vec<(&str, &str, &str, &str)> = recs
            .iter()
            .map(|r| {
                (
                    r.rotation_id.as_str(),
                    r.cluster.as_str(),
                    r.old_key_id.as_str(),
                    r.new_key_id.as_str(),
                )
            })
            .collect();
        assert_eq!(got, [("r1", "c1", "K1", "K2"), ("r2", "c2", "K3", "K4")]);
    }

    #[test]
    fn trailers_become_one_record_per_secret() {
        let c = Commit {
            id: "a".repeat(40),
            time: "2026-11-21T12:00:00+00:00".into(),
            author: "Op <op@example.com>".into(),
            body: "secret-manager: stage\n\nSecret-Manager-Action: stage\nSecret-Manager-Rotation: r1\nSecret-Manager-Source: aws\nSecret-Manager-Secret: c1/ns/n1 a/b.yaml#0\nSecret-Manager-Secret: c2/ns/n1 c/d.yaml#1\nSecret-Manager-Old-Key: K1\nSecret-Manager-New-Key: K2\nSecret-Manager-Operator: arn:x\n".into(),
        };
        let r = records_of(&c, &trailers::parse(&c.body)[0]);
        assert_eq!(r.len(), 2);
        assert_eq!(
            (
                r[1].cluster.as_str(),
                r[1].namespace.as_str(),
                r[1].name.as_str(),
                r[1].file.as_str()
            ),
            ("c2", "ns", "n1", "c/d.yaml")
        );
        assert_eq!(
            (
                r[0].old_key_id.as_str(),
                r[0].new_key_id.as_str(),
                r[0].operator.as_str()
            ),
            ("K1", "K2", "arn:x")
        );
    }
}
