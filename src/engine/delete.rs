//! `delete`: remove the selected SealedSecret documents and write a deletion record, one
//! commit per credential. Publishing and revoking the key (unless another manifest still
//! uses it) are the next phases' job, as for a rotation.

use super::context::Ctx;
use super::edits::record_manifest;
use super::outcome::{Outcome, Said};
use super::plan::{busy_reason, index};
use super::report::{Action, EngineError, Phase, Step};
use crate::journal::{Change, RecordKind, RotationRecord, TrailerAction, trailers};
use crate::manifest::edit::{remove_document, remove_item, write_in_worktree};
use crate::scan::Found;
use std::collections::{BTreeMap, BTreeSet};

/// Removes the documents of one credential's manifests, highest index first so earlier
/// indices stay valid.
fn remove_documents(ctx: &Ctx<'_>, manifests: &[&Found]) -> Result<(), EngineError> {
    let mut ordered = manifests.to_vec();
    ordered.sort_by(|a, b| {
        (&b.file, b.doc.doc_index, b.doc.item).cmp(&(&a.file, a.doc.doc_index, a.doc.item))
    });
    for f in ordered {
        let file = f.file.display().to_string();
        let path = ctx.writer.dir().join(&f.file);
        let err = |message: String| EngineError::Edit {
            file: file.clone(),
            message,
        };
        let src = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
        let removed = match f.doc.item {
            Some(i) => remove_item(&src, f.doc.doc_index, i),
            None => remove_document(&src, f.doc.doc_index),
        };
        match removed.map_err(|e| err(e.to_string()))? {
            Some(text) => {
                write_in_worktree(&path, text.as_bytes()).map_err(|e| err(e.to_string()))?
            }
            None => std::fs::remove_file(&path).map_err(|e| err(e.to_string()))?,
        }
    }
    Ok(())
}

/// Drops the kustomization entries of the files `delete` removed whole, then checks that
/// every kustomization the change touches still resolves its files. Returns the
/// kustomizations changed.
fn fix_kustomizations(ctx: &Ctx<'_>, files: &[String]) -> Result<Vec<String>, EngineError> {
    let root = ctx.writer.dir();
    let gone: Vec<String> = files
        .iter()
        .filter(|f| !root.join(f).exists())
        .cloned()
        .collect();
    let err = |file: &str, e: super::kustomize::KustomizeError| EngineError::Edit {
        file: file.to_owned(),
        message: e.to_string(),
    };
    let changed = super::kustomize::drop_entries(root, &gone)
        .map_err(|m| err(gone.first().map_or("", String::as_str), m))?;
    let dirs: Vec<std::path::PathBuf> = files
        .iter()
        .chain(&changed)
        .filter_map(|f| std::path::Path::new(f).parent().map(|p| p.to_path_buf()))
        .collect();
    super::kustomize::check_resolves(root, &dirs)
        .map_err(|m| err(files.first().map_or("", String::as_str), m))?;
    Ok(changed)
}

/// `Name <email>` of the commits this run makes.
fn committer(ctx: &Ctx<'_>) -> Option<String> {
    let ident = ctx.writer.git().run(&["var", "GIT_COMMITTER_IDENT"]).ok()?;
    let end = ident.find('>')?;
    Some(ident[..=end].trim().to_owned()).filter(|s| !s.is_empty())
}

/// One credential key's manifests to delete.
struct Selected<'f> {
    source: String,
    identity: String,
    key: String,
    params: BTreeMap<String, String>,
    manifests: Vec<&'f Found>,
}

/// The selected manifests, one group per (source, identity, key).
fn select<'f>(ctx: &Ctx<'_>, found: &'f [Found]) -> Vec<Selected<'f>> {
    let opts = ctx.opts;
    let mut by_key: BTreeMap<(String, String, String), Selected<'f>> = BTreeMap::new();
    for ident in index(found, ctx.now()) {
        for f in ident.manifests.iter().copied() {
            if !opts.filter.matches(f, opts.now) {
                continue;
            }
            let key = f
                .managed
                .as_ref()
                .and_then(|m| m.key_id.clone())
                .unwrap_or_default();
            by_key
                .entry((ident.source.clone(), ident.identity.clone(), key.clone()))
                .or_insert_with(|| Selected {
                    source: ident.source.clone(),
                    identity: ident.identity.clone(),
                    key,
                    params: ident.target.params.clone(),
                    manifests: Vec::new(),
                })
                .manifests
                .push(f);
        }
    }
    by_key.into_values().collect()
}

/// Stages the deletion of every selected credential's manifests. Returns the records.
pub(super) async fn stage(
    ctx: &mut Ctx<'_>,
    records: &[RotationRecord],
) -> Outcome<Vec<RotationRecord>> {
    let mut said = ctx.said();
    let scan = ctx.scan();
    let mut out = Vec::new();
    for sel in select(ctx, &scan.secrets) {
        if ctx.cancelled() {
            break;
        }
        if let Some(rec) = stage_one(ctx, &mut said, records, sel).await {
            out.push(rec);
        }
    }
    said.with(out)
}

/// Removes one credential key's documents, writes its deletion record and commits.
async fn stage_one(
    ctx: &mut Ctx<'_>,
    said: &mut Said,
    records: &[RotationRecord],
    sel: Selected<'_>,
) -> Option<RotationRecord> {
    let Selected {
        source,
        identity,
        key,
        params,
        manifests,
    } = sel;
    let set = |v: Vec<String>| -> Vec<String> {
        v.into_iter().collect::<BTreeSet<_>>().into_iter().collect()
    };
    let files = set(manifests
        .iter()
        .map(|f| f.file.display().to_string())
        .collect());
    let clusters = set(manifests
        .iter()
        .filter_map(|f| f.attribution.cluster().map(str::to_owned))
        .collect());
    let mut step = Step::new(
        Action::Delete,
        &source,
        &identity,
        format!(
            "remove {} SealedSecret document(s), publish to {}, then revoke the key if nothing else uses it",
            manifests.len(),
            clusters.join(", ")
        ),
    );
    step.old_key_id = Some(key.clone());
    step.clusters = clusters.clone();
    step.files = files.clone();
    if let Some(why) = busy_reason(&source, &identity, records, &ctx.listed_claims, &ctx.run) {
        step.action = Action::Busy;
        step.detail = format!("{why}; delete after it finishes");
        said.step(step);
        return None;
    }
    if let Some(f) = manifests.iter().find(|f| f.attribution.cluster().is_none()) {
        let e = EngineError::NotUnderCluster {
            file: f.file.display().to_string(),
        };
        said.fail(Phase::Preflight, &source, &identity, None, e);
        return None;
    }
    if ctx.opts.dry_run {
        said.step(step);
        return None;
    }
    let now = ctx.now();
    let mut rec = RotationRecord {
        version: 1,
        id: format!(
            "delete-{}-{}",
            ctx.opts.now.format("%Y%m%dT%H%M%SZ"),
            &crate::seal::fingerprint_hex(format!("{identity}{key}").as_bytes())[..8]
        ),
        kind: RecordKind::Delete,
        source: source.clone(),
        identity: identity.clone(),
        params,
        old_key_id: key,
        new_key_id: String::new(),
        staged_at: now,
        manifests: manifests.iter().map(|f| record_manifest(f)).collect(),
        published_at: BTreeMap::new(),
        // No source call names a caller for a deletion: the audit trail says who ran it
        // (git's committer identity of the run).
        operator: committer(ctx),
        run: Some(ctx.run.0.clone()),
        claimed_at: None,
        disabled_at: None,
        proposal: None,
        staging_commit: None,
        hotfixes: Default::default(),
        promised: Some(super::promise(ctx.opts)),
        rollback_of: None,
        rollback_declined: None,
    };
    let kustomizations = remove_documents(ctx, &manifests)
        .and_then(|()| fix_kustomizations(ctx, &files))
        .and_then(|k| {
            ctx.store().write(&[Change::Put(&rec)])?;
            Ok(k)
        });
    let kustomizations = match kustomizations {
        Ok(k) => k,
        Err(e) => {
            let _ = ctx.writer.discard();
            said.fail(Phase::Mint, &source, &identity, None, e);
            return None;
        }
    };
    let mut paths = files;
    paths.extend(kustomizations);
    paths.push(rec.path());
    let subject = format!(
        "secret-manager: delete {} ({}) from {}",
        identity,
        source,
        clusters.join(", ")
    );
    let blocks = [rec.trailer(TrailerAction::DeleteSecret)];
    if ctx.pr_mode() {
        let manifests = files_of(&paths, &rec);
        let mut recs = [rec];
        if let Err(e) =
            super::propose::propose(ctx, said, &mut recs, &manifests, &subject, &blocks).await
        {
            let _ = ctx.writer.discard();
            said.fail(Phase::Publish, &source, &identity, None, e);
            return None;
        }
        let [r] = recs;
        rec = r;
        step.action = Action::Propose;
        step.detail = format!(
            "proposed in {}; after merge: {}",
            rec.proposal
                .as_ref()
                .and_then(|p| p.url.clone())
                .unwrap_or_else(|| "a pull request the next run opens".into()),
            step.detail
        );
    } else if let Err(e) = ctx
        .writer
        .commit_and_push(&paths, &trailers::message(&subject, &blocks))
    {
        said.fail(Phase::Publish, &source, &identity, None, e.into());
        return None;
    }
    step.done = true;
    said.step(step);
    Some(rec)
}

/// The manifest paths among `paths` (everything but the record).
fn files_of(paths: &[String], rec: &RotationRecord) -> Vec<String> {
    paths
        .iter()
        .filter(|p| **p != rec.path())
        .cloned()
        .collect()
}
