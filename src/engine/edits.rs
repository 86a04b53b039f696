//! All-or-nothing file edits for one credential: seal each new key for every manifest
//! that holds the old one, rewrite only those values and our annotations, and write the
//! rotation records. Several credentials (or several documents) may share a file; a
//! credential that fails leaves every file as the previous credential left it.

use super::context::Ctx;
use super::plan::{Credential, KeyGroup};
use super::report::{EngineError, EngineResult};
use crate::annotations::{CREATE_DATE, SEALED_WITH, key_id_annotation};
use crate::journal::record::ts;
use crate::journal::{Change, RecordKind, RecordManifest, RotationRecord};
use crate::manifest::edit::{Edit, apply, write_in_worktree};
use crate::provider::Minted;
use crate::seal::{label, seal_value};
use std::collections::BTreeMap;

/// `namespace/name` of a manifest, `-` where unknown.
pub(super) fn secret_name(f: &crate::scan::Found) -> String {
    format!(
        "{}/{}",
        f.namespace.as_deref().unwrap_or("-"),
        f.doc.name.as_deref().unwrap_or("-")
    )
}

/// The record manifest of `f` (which is under one cluster: the plan checked).
pub(super) fn record_manifest(f: &crate::scan::Found) -> RecordManifest {
    RecordManifest {
        file: f.file.display().to_string(),
        document: f.doc.doc_index,
        cluster: f.attribution.cluster().unwrap_or_default().to_owned(),
        secret: secret_name(f),
    }
}

/// A record's id: source, the time the key was minted, and a hash of identity and key.
fn record_id(source: &str, identity: &str, minted: &Minted) -> String {
    format!(
        "{source}-{}-{}",
        minted.created.format("%Y%m%dT%H%M%SZ"),
        &crate::seal::fingerprint_hex(format!("{identity}{}", minted.key_id).as_bytes())[..8]
    )
}

/// The new text of every file one key group touches; `contents` holds files already
/// edited by this credential (read from disk otherwise, and remembered in `originals`).
async fn edit_group(
    ctx: &mut Ctx<'_>,
    cred: &Credential<'_>,
    group: &KeyGroup<'_>,
    minted: &Minted,
    contents: &mut BTreeMap<String, String>,
    originals: &mut BTreeMap<String, String>,
) -> EngineResult<Vec<RecordManifest>> {
    let mut rng = rand::rngs::OsRng;
    let prefix = ctx.prefix().to_owned();
    let mut manifests = Vec::new();
    for f in &group.manifests {
        let file = f.file.display().to_string();
        let edit_err = |message: String| EngineError::Edit {
            file: file.clone(),
            message,
        };
        let m = f.managed.as_ref().expect("managed");
        let mappings = m.key_mappings().and_then(Result::ok).unwrap_or_default();
        let cluster = f.attribution.cluster().unwrap_or_default().to_owned();
        let cert = ctx.cert(&cluster).await?;
        let l = label(f.doc.scope, f.namespace.as_deref(), f.doc.name.as_deref())
            .map_err(|e| edit_err(e.to_string()))?;
        let mut edit = Edit {
            doc_index: f.doc.doc_index,
            item: f.doc.item,
            ..Edit::default()
        };
        for km in &mappings {
            let v = field(minted, &cred.source, &km.field)?;
            let ct = seal_value(&mut rng, &cert, &l, v.expose().as_bytes())
                .map_err(|e| edit_err(e.to_string()))?;
            edit.encrypted.insert(km.secret_key.clone(), ct);
        }
        for t in m.templates() {
            // The plan only selects secrets whose template annotations parse.
            let Ok((key, name)) = t else { continue };
            let template_err = |message: String| EngineError::Template {
                file: file.clone(),
                key: key.clone(),
                message,
            };
            let src = ctx.repo.config.templates.get(&name).ok_or_else(|| {
                template_err(format!(
                    "no template `{name}` in .secret-manager.yaml's templates:"
                ))
            })?;
            let fields: BTreeMap<String, &str> = minted
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), v.expose()))
                .collect();
            let value = crate::template::render(&name, src, &fields)
                .map_err(|e| template_err(e.to_string()))?;
            crate::template::validate_for_type(f.doc.secret_type.as_deref(), &key, &value)
                .map_err(|e| template_err(e.to_string()))?;
            let ct = seal_value(&mut rng, &cert, &l, value.as_bytes())
                .map_err(|e| edit_err(e.to_string()))?;
            edit.encrypted.insert(key, ct);
        }
        edit.template_annotations.insert(
            format!("{prefix}{}", key_id_annotation(&cred.source)),
            minted.key_id.0.clone(),
        );
        edit.template_annotations
            .insert(format!("{prefix}{CREATE_DATE}"), ts(minted.created));
        edit.outer_annotations
            .insert(format!("{prefix}{SEALED_WITH}"), cert.fingerprint.clone());
        let src = match contents.get(&file) {
            Some(s) => s.clone(),
            None => {
                let path = ctx.writer.dir().join(&f.file);
                let s = std::fs::read_to_string(&path).map_err(|source| EngineError::Io {
                    path: file.clone(),
                    source,
                })?;
                originals.insert(file.clone(), s.clone());
                s
            }
        };
        let out = apply(&src, &edit).map_err(|e| edit_err(e.to_string()))?;
        contents.insert(file.clone(), out);
        manifests.push(record_manifest(f));
    }
    Ok(manifests)
}

/// Seals every minted key of `cred` into its manifests and writes the files and the
/// records — all or nothing. Returns the records and the files changed.
pub(super) async fn credential(
    ctx: &mut Ctx<'_>,
    cred: &Credential<'_>,
    minted: &[(usize, Minted)],
    claimed_at: chrono::DateTime<chrono::Utc>,
) -> EngineResult<(Vec<RotationRecord>, Vec<String>)> {
    let mut contents = BTreeMap::new();
    let mut originals = BTreeMap::new();
    let mut records = Vec::new();
    for (i, m) in minted {
        let group = &cred.groups[*i];
        let manifests = edit_group(ctx, cred, group, m, &mut contents, &mut originals).await?;
        restart_consumers(ctx, group, &m.key_id.0, &mut contents, &mut originals)?;
        records.push(RotationRecord {
            version: 1,
            id: record_id(&cred.source, &cred.identity, m),
            kind: RecordKind::Rotate,
            source: cred.source.clone(),
            identity: cred.identity.clone(),
            params: cred.params.clone(),
            old_key_id: group.old_key.clone(),
            new_key_id: m.key_id.0.clone(),
            staged_at: ctx.now(),
            manifests,
            published_at: BTreeMap::new(),
            operator: m.operator.clone(),
            run: Some(ctx.run.0.clone()),
            claimed_at: Some(claimed_at),
            disabled_at: None,
            proposal: None,
            staging_commit: None,
            hotfixes: Default::default(),
            promised: Some(super::promise(ctx.opts)),
            rollback_of: None,
            rollback_declined: None,
        });
    }
    write_all(ctx, &contents, &originals, &records)?;
    Ok((records, contents.into_keys().collect()))
}

/// The workloads that read the Secrets of `group`, when the repo asks for consumers to
/// be restarted (`consumers.restart`) and the secret does not opt out
/// (`secret-manager/restartConsumers: "false"`).
pub(super) fn consumers(ctx: &Ctx<'_>, group: &KeyGroup<'_>) -> Vec<crate::consumers::Consumer> {
    if !ctx.repo.config.restart_consumers {
        return Vec::new();
    }
    let ids: std::collections::BTreeSet<String> =
        ctx.repo.inventory.ids().map(str::to_owned).collect();
    let mut out: Vec<crate::consumers::Consumer> = Vec::new();
    for f in &group.manifests {
        let opted_out = f.managed.as_ref().is_some_and(|m| {
            m.all
                .get(crate::consumers::RESTART_CONSUMERS)
                .is_some_and(|v| v.trim() == "false")
        });
        let (Some(name), Some(cluster)) = (f.doc.name.as_deref(), f.attribution.cluster()) else {
            continue;
        };
        if opted_out {
            continue;
        }
        let wanted = crate::consumers::Wanted {
            file: &f.file,
            namespace: f.namespace.as_deref(),
            name,
            cluster,
        };
        for c in crate::consumers::find(ctx.writer.dir(), wanted, &ids) {
            if !out
                .iter()
                .any(|o| o.file == c.file && o.document == c.document && o.kind == c.kind)
            {
                out.push(c);
            }
        }
    }
    out
}

/// Annotates the pod template of every consumer of `group` the tool restarts with the
/// hash of `key_id` (the key the Secret now holds), in `contents` (verified
/// byte-preserving edits, like the manifests').
pub(super) fn restart_consumers(
    ctx: &Ctx<'_>,
    group: &KeyGroup<'_>,
    key_id: &str,
    contents: &mut BTreeMap<String, String>,
    originals: &mut BTreeMap<String, String>,
) -> EngineResult<()> {
    use crate::consumers::Fate;
    let key = format!("{}{}", ctx.prefix(), crate::consumers::ROTATED);
    let value = crate::consumers::rotated_value(key_id);
    let dir = ctx.writer.dir().to_path_buf();
    // The text of `rel` as this credential left it: edited already, on disk (remembered
    // as the original), or `None` when there is no such file.
    let mut current = |rel: &std::path::Path,
                       contents: &BTreeMap<String, String>|
     -> Result<Option<String>, crate::fsx::RepoFileError> {
        let file = rel.display().to_string();
        if let Some(s) = contents.get(&file) {
            return Ok(Some(s.clone()));
        }
        let s = crate::fsx::read_text_in_repo(&dir, rel, crate::fsx::MAX_MANIFEST_BYTES)?;
        if let Some(s) = &s {
            originals.insert(file, s.clone());
        }
        Ok(s)
    };
    for c in consumers(ctx, group) {
        let edit_err = |file: &std::path::Path, message: String| EngineError::Edit {
            file: file.display().to_string(),
            message: format!("restarting {}: {message}", c.describe()),
        };
        let annotate = |src: &str, doc: usize| {
            apply(
                src,
                &Edit {
                    doc_index: doc,
                    job_template: c.job_template,
                    template_annotations: [(key.clone(), value.clone())].into(),
                    ..Edit::default()
                },
            )
        };
        match &c.fate {
            Fate::Restart => {
                let src = current(&c.file, contents)
                    .map_err(|e| edit_err(&c.file, e.to_string()))?
                    .ok_or_else(|| edit_err(&c.file, "the file is gone".into()))?;
                let out =
                    annotate(&src, c.document).map_err(|e| edit_err(&c.file, e.to_string()))?;
                contents.insert(c.file.display().to_string(), out);
            }
            Fate::Patch {
                patch,
                kustomization,
                ..
            } => {
                // The tool's own patch in the overlay: updated when a rotation wrote it
                // before, else written; listed in the overlay's `patches:`.
                let out = match current(patch, contents)
                    .map_err(|e| edit_err(patch, e.to_string()))?
                {
                    Some(src) => annotate(&src, 0).map_err(|e| edit_err(patch, e.to_string()))?,
                    None => crate::consumers::patch_text(&c, &key, &value)
                        .ok_or_else(|| edit_err(patch, "not a namespace".into()))?,
                };
                contents.insert(patch.display().to_string(), out);
                let entry = patch
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let k = current(kustomization, contents)
                    .map_err(|e| edit_err(kustomization, e.to_string()))?
                    .ok_or_else(|| edit_err(kustomization, "the file is gone".into()))?;
                let k = crate::consumers::add_patch_entry(&k, &entry).ok_or_else(|| {
                    edit_err(
                        kustomization,
                        format!("cannot add `- path: {entry}` to its patches: (a flow list or an anchor); list it by hand, or set secret-manager/restartConsumers: \"false\"")
                    )
                })?;
                contents.insert(kustomization.display().to_string(), k);
            }
            Fate::Reloader | Fate::Manual(_) => {}
        }
    }
    Ok(())
}

/// Writes `contents` (manifests, into main's worktree) and the `records` (through the
/// journal store); on any failure puts back `originals` (the store puts back its own), so
/// the worktrees are as the previous credential left them.
pub(super) fn write_all(
    ctx: &Ctx<'_>,
    contents: &BTreeMap<String, String>,
    originals: &BTreeMap<String, String>,
    records: &[RotationRecord],
) -> EngineResult<()> {
    let dir = ctx.writer.dir();
    let mut written: Vec<&String> = Vec::new();
    let result = (|| {
        for (file, text) in contents {
            write_in_worktree(&dir.join(file), text.as_bytes()).map_err(|e| EngineError::Edit {
                file: file.clone(),
                message: e.to_string(),
            })?;
            written.push(file);
        }
        // All the records or none (the store puts back what it wrote).
        let changes: Vec<Change<'_>> = records.iter().map(Change::Put).collect();
        ctx.store().write(&changes)?;
        Ok(())
    })();
    if result.is_err() {
        for f in written {
            match originals.get(f) {
                Some(orig) => {
                    let _ = write_in_worktree(&dir.join(f), orig.as_bytes());
                }
                // A file this credential created (a consumer's restart patch).
                None => {
                    let _ = std::fs::remove_file(dir.join(f));
                }
            }
        }
    }
    result
}

/// The value the new key has for output `field` (a `keyMappings` entry names it); a
/// source that returned none is the credential's error, said with the annotation to check.
pub(crate) fn field<'m>(
    minted: &'m crate::provider::Minted,
    source: &str,
    field: &str,
) -> Result<&'m crate::provider::SecretValue, EngineError> {
    minted
        .fields
        .get(field)
        .ok_or_else(|| EngineError::MissingField {
            source_name: source.to_owned(),
            field: field.to_owned(),
        })
}
