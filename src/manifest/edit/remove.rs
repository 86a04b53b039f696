//! Removing a SealedSecret from a file (`delete`): a whole document, or one item of a
//! `kind: List`; and removing annotations within one (a rollback). Verified like every
//! edit: the rest of the file reads back unchanged.

use super::verify::doc_leaves;
use super::{EditError, EditResult, Splice, after_line, line_start, not_shared, value_end};
use crate::manifest::yaml::{Node, NodeKind, parse_documents};
use std::ops::Range;

/// Removes document `doc_index` from `src` (its `---` marker and body, up to the next
/// document). Returns `None` when it was the only document (delete the file instead).
/// Verified: every other document keeps every value; bytes outside the removed range
/// are unchanged.
pub fn remove_document(src: &str, doc_index: usize) -> EditResult<Option<String>> {
    let docs = parse_documents(src).map_err(|e| EditError::Parse {
        line: e.line,
        message: e.message,
    })?;
    if doc_index >= docs.len() {
        return Err(EditError::NoDocument(doc_index));
    }
    let non_empty = docs.iter().filter(|d| d.root.is_some()).count();
    if non_empty <= 1 && docs[doc_index].root.is_some() {
        return Ok(None);
    }
    // A document runs from its start (its `---`, or its first node) to the next document's
    // start. For the first document the start is where its content begins, so leading
    // comments and a BOM stay with the file.
    let start = if doc_index == 0 {
        line_start(src, docs[0].start)
    } else {
        line_start(src, docs[doc_index].start)
    };
    let end = docs
        .get(doc_index + 1)
        .map_or(src.len(), |d| line_start(src, d.start));
    let mut start = start;
    if doc_index == 0 {
        // Keep a BOM.
        if src[start..].starts_with('\u{feff}') {
            start += '\u{feff}'.len_utf8();
        }
    }
    let mut out = String::with_capacity(src.len());
    out.push_str(&src[..start]);
    let rest = &src[end..];
    // Removing the first document: the next one's `---` may stay as is (valid YAML).
    out.push_str(rest);
    // Verify: the remaining documents are exactly the others.
    let nd = parse_documents(&out)
        .map_err(|e| EditError::Verification(format!("result does not parse: {e}")))?;
    let expect: Vec<_> = docs
        .iter()
        .enumerate()
        .filter(|(i, d)| *i != doc_index && d.root.is_some())
        .map(|(_, d)| doc_leaves(d))
        .collect();
    let got: Vec<_> = nd
        .iter()
        .filter(|d| d.root.is_some())
        .map(doc_leaves)
        .collect();
    if expect != got {
        return Err(EditError::Verification(
            "removing the document changed another one".into(),
        ));
    }
    Ok(Some(out))
}

/// Removes item `item` from the `items` of the `kind: List` document `doc_index`: the
/// lines from its `- ` to the next item (or the end of its last value). The List keeps its
/// other items byte for byte; removing its last item removes the document (`None` when it
/// was the file's only one). Verified like [`remove_document`].
pub fn remove_item(src: &str, doc_index: usize, item: usize) -> EditResult<Option<String>> {
    let docs = parse_documents(src).map_err(|e| EditError::Parse {
        line: e.line,
        message: e.message,
    })?;
    let root = docs
        .get(doc_index)
        .and_then(|d| d.root.as_ref())
        .ok_or(EditError::NoDocument(doc_index))?;
    let seq = root.get("items").ok_or(EditError::NoDocument(doc_index))?;
    let items = crate::manifest::list_items(root).ok_or(EditError::NoDocument(doc_index))?;
    let node = items.get(item).ok_or(EditError::NoDocument(doc_index))?;
    if items.len() == 1 {
        return remove_document(src, doc_index);
    }
    not_shared(seq, "items")?;
    if matches!(seq.kind, NodeKind::Sequence { flow: true, .. }) {
        return Err(EditError::Unsupported {
            path: "items".into(),
            line: seq.line,
            what: "a flow sequence (JSON); remove the item by hand",
        });
    }
    let start = line_start(src, node.span.start);
    if !src[start..node.span.start].trim_start().starts_with('-') {
        return Err(EditError::Unsupported {
            path: format!("items.{item}"),
            line: node.line,
            what: "an item whose `- ` is not on its first line",
        });
    }
    let end = match items.get(item + 1) {
        Some(next) => line_start(src, next.span.start),
        None => {
            let e = value_end(src, node);
            if e > 0 && src.as_bytes()[e - 1] == b'\n' {
                e
            } else {
                after_line(src, e).unwrap_or(src.len())
            }
        }
    };
    let out = format!("{}{}", &src[..start], &src[end..]);
    // Verify: the document lost exactly that item; every other leaf is unchanged.
    let nd = parse_documents(&out)
        .map_err(|e| EditError::Verification(format!("result does not parse: {e}")))?;
    let renumber = |leaves: Vec<(Vec<String>, String)>| -> Vec<(Vec<String>, String)> {
        leaves
            .into_iter()
            .filter_map(|(mut p, v)| {
                if p.first().map(String::as_str) == Some("k:items") {
                    let i: usize = p.get(1)?.strip_prefix("i:")?.parse().ok()?;
                    if i == item {
                        return None;
                    }
                    if i > item {
                        p[1] = format!("i:{}", i - 1);
                    }
                }
                Some((p, v))
            })
            .collect()
    };
    for (i, (a, b)) in docs.iter().zip(&nd).enumerate() {
        let expect = if i == doc_index {
            renumber(doc_leaves(a))
        } else {
            doc_leaves(a)
        };
        if expect != doc_leaves(b) {
            return Err(EditError::Verification(format!(
                "removing the List item changed document {i} otherwise"
            )));
        }
    }
    if docs.len() != nd.len() {
        return Err(EditError::Verification("the document count changed".into()));
    }
    Ok(Some(out))
}

/// Where the entry whose value is `v` ends: after the line break of its last line.
fn entry_end(src: &str, v: &Node<'_>) -> usize {
    let e = value_end(src, v);
    if e > 0 && src.as_bytes()[e - 1] == b'\n' {
        e
    } else {
        after_line(src, e).unwrap_or(src.len())
    }
}

/// The whole lines of the entry `(k, v)` of a block mapping, or why they cannot go.
fn entry_lines(src: &str, k: &Node<'_>, v: &Node<'_>, path: &str) -> EditResult<Range<usize>> {
    let start = line_start(src, k.span.start);
    if !src[start..k.span.start].trim().is_empty() {
        return Err(EditError::Unsupported {
            path: path.into(),
            line: k.line,
            what: "an entry that shares its line; remove it by hand",
        });
    }
    Ok(start..entry_end(src, v))
}

/// Plans removing `keys` from `metadata.annotations` where present; when nothing else is
/// left in it, the `annotations:` entry goes too. A flow mapping is refused.
pub(super) fn plan_removals(
    src: &str,
    meta: Option<&Node<'_>>,
    keys: &[String],
    out: &mut Vec<Splice>,
) -> EditResult<()> {
    let Some(meta) = meta else { return Ok(()) };
    let Some(NodeKind::Mapping { entries, flow }) = meta.get("annotations").map(|a| &a.kind) else {
        return Ok(());
    };
    let gone: Vec<&(Node<'_>, Node<'_>)> = entries
        .iter()
        .filter(|(k, _)| k.as_str().is_some_and(|k| keys.iter().any(|x| x == k)))
        .collect();
    if gone.is_empty() {
        return Ok(());
    }
    let path = "metadata.annotations";
    if *flow {
        return Err(EditError::Unsupported {
            path: path.into(),
            line: gone[0].0.line,
            what: "a flow mapping (JSON); remove the annotation by hand",
        });
    }
    if gone.len() < entries.len() {
        for (k, v) in gone {
            out.push(Splice {
                range: entry_lines(src, k, v, path)?,
                text: String::new(),
            });
        }
        return Ok(());
    }
    // Nothing left: the `annotations:` entry goes, unless it is all `metadata` holds.
    let NodeKind::Mapping {
        entries: meta_entries,
        flow: false,
    } = &meta.kind
    else {
        return Err(EditError::Unsupported {
            path: "metadata".into(),
            line: meta.line,
            what: "a flow mapping (JSON); remove the annotation by hand",
        });
    };
    let Some((ak, av)) = meta_entries
        .iter()
        .find(|(k, _)| k.as_str() == Some("annotations"))
        .filter(|_| meta_entries.len() > 1)
    else {
        return Err(EditError::Unsupported {
            path: path.into(),
            line: meta.line,
            what: "the only entry of metadata; remove the annotation by hand",
        });
    };
    out.push(Splice {
        range: entry_lines(src, ak, av, path)?,
        text: String::new(),
    });
    Ok(())
}
