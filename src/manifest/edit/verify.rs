//! The check after every edit: re-parse the result and compare every leaf outside the
//! edited spans with the original, so an edit that would change anything else is refused.

use super::{Edit, EditError, EditResult, Splice};
use crate::manifest::yaml::{Document, Node, NodeKind, parse_documents};

/// Flattens a node into (path, scalar) leaves.
fn leaves(node: &Node<'_>, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    match &node.kind {
        NodeKind::Scalar(s, _) => out.push((prefix.clone(), s.to_string())),
        NodeKind::Alias => out.push((prefix.clone(), "*alias".into())),
        NodeKind::Mapping { entries, .. } => {
            for (k, v) in entries {
                prefix.push(format!("k:{}", k.as_str().unwrap_or("?")));
                leaves(v, prefix, out);
                prefix.pop();
            }
            if entries.is_empty() {
                out.push((prefix.clone(), "{}".into()));
            }
        }
        NodeKind::Sequence { items, .. } => {
            for (i, v) in items.iter().enumerate() {
                prefix.push(format!("i:{i}"));
                leaves(v, prefix, out);
                prefix.pop();
            }
            if items.is_empty() {
                out.push((prefix.clone(), "[]".into()));
            }
        }
    }
}

pub(super) fn doc_leaves(d: &Document<'_>) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    if let Some(r) = &d.root {
        leaves(r, &mut Vec::new(), &mut out);
    }
    out
}

fn expected_paths(edit: &Edit) -> Vec<(Vec<String>, String)> {
    let base: Vec<String> = match edit.item {
        Some(i) => vec!["k:items".into(), format!("i:{i}")],
        None => Vec::new(),
    };
    let p = |parts: &[&str], k: &str| -> Vec<String> {
        base.iter()
            .cloned()
            .chain(parts.iter().map(|s| format!("k:{s}")))
            .chain([format!("k:{k}")])
            .collect()
    };
    let mut out = Vec::new();
    for (k, v) in &edit.encrypted {
        out.push((p(&["spec", "encryptedData"], k), v.clone()));
    }
    let mut template = edit.template_path().to_vec();
    template.push("annotations");
    for (k, v) in &edit.template_annotations {
        out.push((p(&template, k), v.clone()));
    }
    for (k, v) in &edit.outer_annotations {
        out.push((p(&["metadata", "annotations"], k), v.clone()));
    }
    out
}

/// Checks that `new` differs from `old` only by `splices` and only at the edited paths.
pub(super) fn verify(old: &str, new: &str, splices: &[Splice], edit: &Edit) -> EditResult<()> {
    let fail = |m: String| Err(EditError::Verification(m));
    // 1. Bytes outside the splices are identical.
    let (mut o, mut n) = (0usize, 0usize);
    for s in splices {
        let len = s.range.start - o;
        if old.get(o..s.range.start) != new.get(n..n + len) {
            return fail(format!("bytes before offset {} changed", s.range.start));
        }
        n += len + s.text.len();
        o = s.range.end;
    }
    if old.get(o..) != new.get(n..) {
        return fail("bytes after the last edit changed".into());
    }
    // 2. Re-parse: same documents, same scalars except the edited ones, which hold the
    //    requested values.
    let od = parse_documents(old).map_err(|e| EditError::Verification(format!("original: {e}")))?;
    let nd = parse_documents(new)
        .map_err(|e| EditError::Verification(format!("edited file does not parse: {e}")))?;
    if od.len() != nd.len() {
        return fail(format!(
            "document count changed from {} to {}",
            od.len(),
            nd.len()
        ));
    }
    let expected = expected_paths(edit);
    let base: Vec<String> = match edit.item {
        Some(i) => vec!["k:items".into(), format!("i:{i}")],
        None => Vec::new(),
    };
    let removed: Vec<Vec<String>> = edit
        .remove_outer_annotations
        .iter()
        .map(|k| {
            base.iter()
                .cloned()
                .chain([
                    "k:metadata".into(),
                    "k:annotations".into(),
                    format!("k:{k}"),
                ])
                .collect()
        })
        .collect();
    let is_removed = |p: &Vec<String>| removed.iter().any(|r| p.starts_with(r));
    for (i, (a, b)) in od.iter().zip(&nd).enumerate() {
        let (la, lb) = (doc_leaves(a), doc_leaves(b));
        if i != edit.doc_index {
            if la != lb {
                return fail(format!("document {i} changed"));
            }
            continue;
        }
        // Leaves that may differ: the edited paths themselves, and the `{}` marker of an
        // empty mapping that an edited key was inserted into.
        let may_differ = |p: &Vec<String>, v: &str| {
            expected
                .iter()
                .any(|(e, _)| e == p || (v == "{}" && e.starts_with(p)))
        };
        if let Some((p, _)) = lb.iter().find(|(p, _)| is_removed(p)) {
            return fail(format!("{} is still there after the edit", p.join(".")));
        }
        let strip = |l: Vec<(Vec<String>, String)>| -> Vec<(Vec<String>, String)> {
            l.into_iter()
                .filter(|(p, v)| !may_differ(p, v) && !is_removed(p))
                .collect()
        };
        if strip(la) != strip(lb.clone()) {
            return fail(format!("document {i} changed outside the edited keys"));
        }
        for (p, v) in &expected {
            match lb.iter().find(|(q, _)| q == p) {
                Some((_, got)) if got == v => {}
                Some(_) => {
                    return fail(format!(
                        "{} does not read back as the value written",
                        p.join(".")
                    ));
                }
                None => return fail(format!("{} is missing after the edit", p.join("."))),
            }
        }
    }
    Ok(())
}
