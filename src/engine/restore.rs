//! What a rollback gives a SealedSecret document back: the ciphertexts, and the key id,
//! creation date and `sealedWith` annotations it had before the rotation. Pure: text in,
//! an edit out; `rollback` reads the files and applies the edit.

use crate::annotations::{CREATE_DATE, SEALED_WITH};
use crate::manifest::edit::Edit;
use crate::manifest::yaml::{Node, parse_documents};
use crate::manifest::{SealedSecretDoc, list_items};
use std::collections::BTreeMap;

/// One SealedSecret document as it was: where it is, and the values to restore.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Doc {
    /// Its index among the file's documents.
    pub doc_index: usize,
    /// Its index in a `kind: List`'s items, when it is one.
    pub item: Option<usize>,
    /// `spec.encryptedData`.
    pub encrypted: BTreeMap<String, String>,
    /// The annotations of its `spec.template`.
    pub template_annotations: BTreeMap<String, String>,
    /// The annotations of the SealedSecret itself.
    pub outer_annotations: BTreeMap<String, String>,
}

/// The SealedSecret `namespace/name` in `src`, with its `spec.encryptedData`.
pub(super) fn find(src: &str, secret: &str) -> Option<Doc> {
    let (ns, name) = secret.split_once('/').unwrap_or(("-", secret));
    let docs = parse_documents(src).ok()?;
    for d in &docs {
        for s in SealedSecretDoc::all_from_document(d) {
            if s.name.as_deref() != Some(name) || s.namespace.as_deref().unwrap_or("-") != ns {
                continue;
            }
            let root = d.root.as_ref()?;
            let node: &Node<'_> = match s.item {
                Some(i) => list_items(root)?.get(i)?,
                None => root,
            };
            let encrypted = node
                .path(&["spec", "encryptedData"])
                .and_then(Node::entries)
                .map(|e| {
                    e.iter()
                        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                        .collect()
                })
                .unwrap_or_default();
            return Some(Doc {
                doc_index: s.doc_index,
                item: s.item,
                encrypted,
                template_annotations: s.template_annotations,
                outer_annotations: s.outer_annotations,
            });
        }
    }
    None
}

/// Each document's text in `src`, by index.
pub(super) fn doc_texts(src: &str) -> Option<Vec<&str>> {
    let docs = parse_documents(src).ok()?;
    let starts: Vec<usize> = docs.iter().map(|d| d.start).collect();
    Some(
        starts
            .iter()
            .enumerate()
            .map(|(i, &a)| &src[a..starts.get(i + 1).copied().unwrap_or(src.len())])
            .collect(),
    )
}

/// Whether the rotation changed nothing in the file but the documents `mine`: then, if
/// the file is still as the rotation left it, it goes back whole, byte for byte (the
/// annotations the rotation added go too).
pub(super) fn only_mine(before: &str, staged: &str, mine: &[usize]) -> bool {
    match (doc_texts(before), doc_texts(staged)) {
        (Some(a), Some(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(&b)
                    .enumerate()
                    .all(|(i, (x, y))| mine.contains(&i) || x == y)
        }
        _ => false,
    }
}

/// The edit that gives the document `now` in a file back what `before` had: its
/// ciphertexts, and our key id, creation date and `sealedWith` annotations (removed when
/// it had none).
pub(super) fn restore(before: &Doc, now: &Doc, prefix: &str, key_annotation: &str) -> Edit {
    let keep = |m: &BTreeMap<String, String>, k: &str| m.get(k).map(|v| (k.to_owned(), v.clone()));
    let date = format!("{prefix}{CREATE_DATE}");
    let sealed = format!("{prefix}{SEALED_WITH}");
    Edit {
        doc_index: now.doc_index,
        item: now.item,
        encrypted: before.encrypted.clone(),
        template_annotations: [key_annotation, date.as_str()]
            .iter()
            .filter_map(|k| keep(&before.template_annotations, k))
            .collect(),
        outer_annotations: keep(&before.outer_annotations, &sealed)
            .into_iter()
            .collect(),
        // A `sealedWith` the rotation added to a document that had none says nothing true
        // about the old ciphertext: it goes.
        remove_outer_annotations: (!before.outer_annotations.contains_key(&sealed)
            && now.outer_annotations.contains_key(&sealed))
        .then_some(sealed)
        .into_iter()
        .collect(),
        ..Edit::default()
    }
}
