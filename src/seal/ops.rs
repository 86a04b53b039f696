//! The `seal` operations: a new SealedSecret, or new values merged into an existing one.

use super::{Plaintext, SealError, SealingCert, label, seal_value};
use crate::annotations::SEALED_WITH;
use crate::manifest::edit::{Edit, EditError, apply};
use crate::manifest::render::NewSealedSecret;
use crate::manifest::yaml::parse_documents;
use crate::manifest::{Scope, SealedSecretDoc};
use rand::{CryptoRng, RngCore};
use std::collections::BTreeMap;

/// Errors of [`merge_into`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// The target file has no matching SealedSecret.
    #[error("{0}")]
    Select(String),
    /// Sealing failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The edit was refused (nothing written).
    #[error(transparent)]
    Edit(#[from] EditError),
}

/// Seals every value for `scope`/`namespace`/`name`. Values are never re-used or logged.
pub fn seal_all<R: RngCore + CryptoRng>(
    rng: &mut R,
    cert: &SealingCert,
    scope: Scope,
    namespace: Option<&str>,
    name: Option<&str>,
    values: &BTreeMap<String, Plaintext>,
) -> Result<BTreeMap<String, String>, SealError> {
    let l = label(scope, namespace, name)?;
    // One RSA operation per value: more than a few are sealed on every core (each thread
    // with the OS generator; `rng` seals the rest).
    const PER_THREAD: usize = 8;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if values.len() < 2 * PER_THREAD || threads < 2 {
        return values
            .iter()
            .map(|(k, v)| Ok((k.clone(), seal_value(rng, cert, &l, &v.0)?)))
            .collect();
    }
    let items: Vec<(&String, &Plaintext)> = values.iter().collect();
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                let l = &l;
                s.spawn(move || {
                    let mut rng = rand::rngs::OsRng;
                    part.iter()
                        .map(|(k, v)| Ok(((*k).clone(), seal_value(&mut rng, cert, l, &v.0)?)))
                        .collect::<Result<Vec<_>, SealError>>()
                })
            })
            .collect();
        let mut out = BTreeMap::new();
        for h in handles {
            out.extend(h.join().expect("a sealing thread panicked")?);
        }
        Ok(out)
    })
}

/// Builds a new SealedSecret; records the certificate fingerprint in `<prefix>sealedWith`.
#[allow(clippy::too_many_arguments)]
pub fn seal_new<R: RngCore + CryptoRng>(
    rng: &mut R,
    cert: &SealingCert,
    prefix: &str,
    name: &str,
    namespace: Option<&str>,
    scope: Scope,
    values: &BTreeMap<String, Plaintext>,
    mut doc: NewSealedSecret,
) -> Result<NewSealedSecret, SealError> {
    doc.encrypted = seal_all(rng, cert, scope, namespace, Some(name), values)?;
    doc.name = name.to_owned();
    doc.namespace = namespace.map(str::to_owned);
    doc.scope = Some(scope);
    doc.outer_annotations
        .insert(format!("{prefix}{SEALED_WITH}"), cert.fingerprint.clone());
    Ok(doc)
}

/// Picks the SealedSecret document in `src`: by `name` when given, else the only one.
pub fn select_document(src: &str, name: Option<&str>) -> Result<SealedSecretDoc, MergeError> {
    if let Some(line) = crate::scan::templated_line(src) {
        return Err(MergeError::Select(format!(
            "line {line}: Helm/Go template (`{{{{`): not plain YAML, never edited; manage the rendered value instead"
        )));
    }
    let docs = parse_documents(src).map_err(|e| {
        MergeError::Select(format!("line {}: YAML syntax error: {}", e.line, e.message))
    })?;
    let found: Vec<SealedSecretDoc> = docs
        .iter()
        .flat_map(SealedSecretDoc::all_from_document)
        .filter(|d| name.is_none() || d.name.as_deref() == name)
        .collect();
    match found.len() {
        1 => Ok(found.into_iter().next().expect("one")),
        0 => Err(MergeError::Select(match name {
            Some(n) => format!("no SealedSecret named `{n}` in the file"),
            None => "no SealedSecret in the file".into(),
        })),
        n => Err(MergeError::Select(format!(
            "{n} SealedSecrets in the file; pick one with --name ({})",
            found
                .iter()
                .filter_map(|d| d.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Seals `values` for the existing document `doc` of `src` (keeping its scope and label)
/// and returns the edited file. Only the given keys and `sealedWith` change; other values
/// are never re-sealed.
#[allow(clippy::too_many_arguments)]
pub fn merge_into<R: RngCore + CryptoRng>(
    rng: &mut R,
    cert: &SealingCert,
    prefix: &str,
    src: &str,
    doc: &SealedSecretDoc,
    namespace: Option<&str>,
    values: &BTreeMap<String, Plaintext>,
    template_annotations: &BTreeMap<String, String>,
) -> Result<String, MergeError> {
    let encrypted = seal_all(rng, cert, doc.scope, namespace, doc.name.as_deref(), values)?;
    let mut edit = Edit {
        doc_index: doc.doc_index,
        item: doc.item,
        encrypted,
        template_annotations: template_annotations.clone(),
        ..Edit::default()
    };
    edit.outer_annotations
        .insert(format!("{prefix}{SEALED_WITH}"), cert.fingerprint.clone());
    Ok(apply(src, &edit)?)
}
