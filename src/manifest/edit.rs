//! Format-preserving edits of one SealedSecret document (DESIGN §5).
//!
//! A rotation may change only the rotated `encryptedData` values and our annotations. Every
//! other byte — comments, key order, quoting, other documents, CRLF, BOM, the final
//! newline — must stay identical, or Argo CD shows noisy diffs and reviewers cannot trust
//! the commit. No YAML library round-trips a file byte for byte (serde-based ones re-emit,
//! `yaml-edit` keeps a lossless tree but not for JSON input), so edits here are byte
//! splices computed from the spans of [`super::yaml`], and every edit is verified before
//! anything is written:
//!
//! 1. the bytes outside the splices are compared with the original;
//! 2. the result is re-parsed, and every scalar of every document is compared with the
//!    original except at the edited paths, which must hold exactly the requested values.
//!
//! Writing is atomic (temp file in the same directory, fsync, rename) and keeps the mode.

use super::yaml::{Document, Node, NodeKind, parse_documents};
use granit_parser::ScalarStyle;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

/// What to change in one document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edit {
    /// Zero-based document index in the file.
    pub doc_index: usize,
    /// `spec.encryptedData` keys to set (replaced, or added when absent). Values are
    /// ciphertexts (base64), never plaintext.
    pub encrypted: BTreeMap<String, String>,
    /// `spec.template.metadata.annotations` to set.
    pub template_annotations: BTreeMap<String, String>,
    /// `metadata.annotations` (outer) to set.
    pub outer_annotations: BTreeMap<String, String>,
}

/// Why an edit was refused. Nothing is written when this is returned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EditError {
    /// The file does not parse.
    #[error("line {line}: YAML syntax error: {message}")]
    Parse {
        /// 1-based line.
        line: usize,
        /// Parser message.
        message: String,
    },
    /// No document with that index, or it is not a mapping.
    #[error("document {0} does not exist or is not a mapping")]
    NoDocument(usize),
    /// A mapping the edit needs is missing and cannot be added safely.
    #[error("line {line}: {path} is missing or not a mapping; add it by hand first")]
    MissingParent {
        /// Dotted path.
        path: String,
        /// Line of the closest existing ancestor.
        line: usize,
    },
    /// The value to replace uses a construct we do not edit (alias, tag, multi-line flow).
    #[error(
        "line {line}: {path} is written as {what}; edit it by hand or rewrite it as a plain value"
    )]
    Unsupported {
        /// Dotted path.
        path: String,
        /// Line.
        line: usize,
        /// What the construct is.
        what: &'static str,
    },
    /// The post-edit verification failed: a bug, and the reason nothing was written.
    #[error("refusing to write: verification after the edit failed ({0}); nothing was changed")]
    Verification(String),
}

/// Result alias.
pub type EditResult<T> = Result<T, EditError>;

struct Splice {
    range: Range<usize>,
    text: String,
}

/// Line ending used by the document (CRLF if its first line break is CRLF).
fn line_ending(src: &str, from: usize) -> &'static str {
    match src[from..].find('\n') {
        Some(i) if i > 0 && src.as_bytes()[from + i - 1] == b'\r' => "\r\n",
        Some(_) => "\n",
        None => {
            if src.contains("\r\n") {
                "\r\n"
            } else {
                "\n"
            }
        }
    }
}

/// Whether `s` can be written as a plain scalar and read back as the same string.
fn plain_safe(s: &str) -> bool {
    if s.is_empty() || s.trim() != s {
        return false;
    }
    let first = s.as_bytes()[0];
    if b"-?:,[]{}#&*!|>'\"%@`".contains(&first) {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') || s.chars().any(|c| c.is_control())
    {
        return false;
    }
    if s.contains(['[', ']', '{', '}', ',']) {
        // Fine in block context, but we may be inside a flow collection.
        return false;
    }
    resolves_as_string(s)
}

/// Whether a plain scalar `s` would be read as a string (not null/bool/number) by YAML 1.1
/// or 1.2 readers (kubectl uses a 1.1-flavoured reader).
fn resolves_as_string(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "~" | "null"
            | "true"
            | "false"
            | "yes"
            | "no"
            | "on"
            | "off"
            | "y"
            | "n"
            | ".nan"
            | ".inf"
            | "-.inf"
            | "+.inf"
    ) {
        return false;
    }
    let t = s.trim_start_matches(['+', '-']).replace('_', "");
    let numeric = !t.is_empty()
        && (t.bytes().all(|b| {
            b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'E' || b == b'+' || b == b'-'
        }) && t
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit() || b == b'.'))
        || t.starts_with("0x")
        || t.starts_with("0o");
    !numeric
}

fn double_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Renders `value` as a scalar, keeping `style` where it can represent the value.
fn render_scalar(value: &str, style: ScalarStyle, old_value: &str) -> String {
    match style {
        ScalarStyle::SingleQuoted
            if !value.contains(['\n', '\r']) && !value.chars().any(|c| c.is_control()) =>
        {
            format!("'{}'", value.replace('\'', "''"))
        }
        ScalarStyle::Plain
            if plain_safe(value) && resolves_as_string(old_value) == resolves_as_string(value) =>
        {
            value.to_owned()
        }
        _ => double_quote(value),
    }
}

/// A key rendered in the style of its sibling keys.
fn render_key(key: &str, sibling: Option<&Node<'_>>) -> String {
    match sibling.and_then(Node::style) {
        Some(ScalarStyle::DoubleQuoted) => double_quote(key),
        Some(ScalarStyle::SingleQuoted) => format!("'{}'", key.replace('\'', "''")),
        _ if plain_safe(key)
            || key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b)) =>
        {
            key.to_owned()
        }
        _ => double_quote(key),
    }
}

/// Start of the line containing byte `pos`.
fn line_start(src: &str, pos: usize) -> usize {
    src[..pos].rfind('\n').map_or(0, |i| i + 1)
}

/// Byte just after the line break that ends the line containing `pos` (or EOF).
fn after_line(src: &str, pos: usize) -> Option<usize> {
    src[pos..].find('\n').map(|i| pos + i + 1)
}

/// End of a node's own bytes. Block scalar spans run on into the next line's
/// indentation; cut them back to just after their last line break.
fn value_end(src: &str, node: &Node<'_>) -> usize {
    let raw = &src[node.span.clone()];
    match raw.rfind('\n') {
        Some(i) if raw[i + 1..].bytes().all(|b| b == b' ' || b == b'\t') => node.span.start + i + 1,
        _ => node.span.end,
    }
}

fn indent_of(src: &str, node: &Node<'_>) -> usize {
    // Columns are characters; indentation is ASCII spaces, so bytes == chars here.
    node.span.start - line_start(src, node.span.start)
}

/// Plans replacing the value of `key` in `map` (or inserting the entry).
fn plan_set(
    src: &str,
    map: &Node<'_>,
    key: &str,
    value: &str,
    path: &str,
    out: &mut Vec<Splice>,
) -> EditResult<()> {
    let NodeKind::Mapping { entries, flow } = &map.kind else {
        return Err(EditError::MissingParent {
            path: path.into(),
            line: map.line,
        });
    };
    if let Some((_, v)) = entries.iter().find(|(k, _)| k.as_str() == Some(key)) {
        return plan_replace(src, v, value, &format!("{path}.{key}"), out);
    }
    let eol = line_ending(src, map.span.start);
    let first_key = entries.first().map(|(k, _)| k);
    let rkey = render_key(key, first_key);
    let rval = render_scalar(
        value,
        first_key
            .and_then(|_| entries[0].1.style())
            .unwrap_or(ScalarStyle::DoubleQuoted),
        "",
    );
    if *flow {
        let close = map.span.end.saturating_sub(1);
        if src.as_bytes().get(close) != Some(&b'}') {
            return Err(EditError::Unsupported {
                path: path.into(),
                line: map.line,
                what: "an unterminated flow mapping",
            });
        }
        match entries.last() {
            None => out.push(Splice {
                range: close..close,
                text: format!("{rkey}: {rval}"),
            }),
            Some((last_k, last_v)) => {
                let multi_line = last_k.line != map.line;
                let text = if multi_line {
                    format!(",{eol}{}{rkey}: {rval}", " ".repeat(indent_of(src, last_k)))
                } else {
                    format!(", {rkey}: {rval}")
                };
                let end = value_end(src, last_v);
                out.push(Splice {
                    range: end..end,
                    text,
                });
            }
        }
        return Ok(());
    }
    let Some((last_k, last_v)) = entries.last() else {
        return Err(EditError::MissingParent {
            path: path.into(),
            line: map.line,
        });
    };
    let indent = " ".repeat(indent_of(src, last_k));
    let line = format!("{indent}{rkey}: {rval}");
    // Insert after the line holding the end of the last value (after any trailing comment).
    let end = value_end(src, last_v);
    let at_line_start = end > 0 && src.as_bytes()[end - 1] == b'\n';
    let (pos, text) = if at_line_start {
        (end, format!("{line}{eol}"))
    } else {
        match after_line(src, end) {
            Some(p) => (p, format!("{line}{eol}")),
            None => (src.len(), format!("{eol}{line}")),
        }
    };
    out.push(Splice {
        range: pos..pos,
        text,
    });
    Ok(())
}

/// Plans replacing scalar `node` by `value`, keeping its style.
fn plan_replace(
    src: &str,
    node: &Node<'_>,
    value: &str,
    path: &str,
    out: &mut Vec<Splice>,
) -> EditResult<()> {
    let (old, style) = match &node.kind {
        NodeKind::Scalar(s, st) => (s.as_ref(), *st),
        NodeKind::Alias => {
            return Err(EditError::Unsupported {
                path: path.into(),
                line: node.line,
                what: "an alias",
            });
        }
        _ => {
            return Err(EditError::Unsupported {
                path: path.into(),
                line: node.line,
                what: "a collection",
            });
        }
    };
    let raw = &src[node.span.clone()];
    if raw.starts_with('!') || raw.starts_with('&') {
        return Err(EditError::Unsupported {
            path: path.into(),
            line: node.line,
            what: "a tagged or anchored scalar",
        });
    }
    match style {
        ScalarStyle::Literal | ScalarStyle::Folded => {
            // A block scalar reads back with its chomping applied (`|` keeps a final line
            // break), so it cannot hold a ciphertext exactly. Replace header and content by
            // an ordinary scalar; the span starts at the content, the header (`|`, `>-`, ...)
            // ends the previous line.
            let content_line = line_start(src, node.span.start);
            let header_line = line_start(src, content_line.saturating_sub(1));
            let prev = &src[header_line..content_line];
            let Some(h) = prev.rfind(['|', '>']) else {
                return Err(EditError::Unsupported {
                    path: path.into(),
                    line: node.line,
                    what: "a block scalar whose header is not on the line before",
                });
            };
            let eol = line_ending(src, node.span.start);
            let end = value_end(src, node);
            let mut text = render_scalar(value, ScalarStyle::Plain, old);
            if src[..end].ends_with('\n') {
                text.push_str(eol);
            }
            out.push(Splice {
                range: header_line + h..end.max(content_line),
                text,
            });
        }
        _ => out.push(Splice {
            range: node.span.clone(),
            text: render_scalar(value, style, old),
        }),
    }
    Ok(())
}

/// Adds `annotations:` with the given entries under mapping `meta`.
fn plan_new_annotations(
    src: &str,
    meta: &Node<'_>,
    depth: usize,
    values: &BTreeMap<String, String>,
    path: &str,
    out: &mut Vec<Splice>,
) -> EditResult<()> {
    let NodeKind::Mapping { entries, flow } = &meta.kind else {
        return Err(EditError::MissingParent {
            path: path.into(),
            line: meta.line,
        });
    };
    let first_key = entries.first().map(|(k, _)| k);
    let rkey = render_key("annotations", first_key);
    if *flow {
        let inner: Vec<String> = values
            .iter()
            .map(|(k, v)| format!("{}: {}", render_key(k, first_key), double_quote(v)))
            .collect();
        let text = format!("{rkey}: {{{}}}", inner.join(", "));
        let close = meta.span.end.saturating_sub(1);
        match entries.last() {
            None => out.push(Splice {
                range: close..close,
                text,
            }),
            Some((last_k, last_v)) => {
                let eol = line_ending(src, meta.span.start);
                let t = if last_k.line != meta.line {
                    format!(",{eol}{}{text}", " ".repeat(indent_of(src, last_k)))
                } else {
                    format!(", {text}")
                };
                let end = value_end(src, last_v);
                out.push(Splice {
                    range: end..end,
                    text: t,
                });
            }
        }
        return Ok(());
    }
    let Some((last_k, last_v)) = entries.last() else {
        return Err(EditError::MissingParent {
            path: path.into(),
            line: meta.line,
        });
    };
    let eol = line_ending(src, meta.span.start);
    let base = indent_of(src, last_k);
    // Indentation step of the file: this mapping's indentation over its nesting depth.
    let step = if depth > 0 && base >= depth && base.is_multiple_of(depth) {
        base / depth
    } else {
        2
    };
    let mut block = format!("{}{rkey}:{eol}", " ".repeat(base));
    for (k, v) in values {
        block.push_str(&format!(
            "{}{}: {}{eol}",
            " ".repeat(base + step),
            render_key(k, None),
            double_quote(v)
        ));
    }
    let end = value_end(src, last_v);
    let at_line_start = end > 0 && src.as_bytes()[end - 1] == b'\n';
    let (pos, text) = if at_line_start {
        (end, block)
    } else {
        match after_line(src, end) {
            Some(p) => (p, block),
            None => (
                src.len(),
                format!("{eol}{}", block.trim_end_matches(['\r', '\n'])),
            ),
        }
    };
    out.push(Splice {
        range: pos..pos,
        text,
    });
    Ok(())
}

fn plan_annotations(
    src: &str,
    meta: Option<&Node<'_>>,
    values: &BTreeMap<String, String>,
    path: &str,
    root_line: usize,
    out: &mut Vec<Splice>,
) -> EditResult<()> {
    if values.is_empty() {
        return Ok(());
    }
    let Some(meta) = meta.filter(|m| m.entries().is_some()) else {
        return Err(EditError::MissingParent {
            path: path.into(),
            line: root_line,
        });
    };
    match meta.get("annotations") {
        Some(a) if a.entries().is_some() => {
            for (k, v) in values {
                plan_set(src, a, k, v, &format!("{path}.annotations"), out)?;
            }
            Ok(())
        }
        Some(a) if !a.is_null() => Err(EditError::Unsupported {
            path: format!("{path}.annotations"),
            line: a.line,
            what: "something other than a mapping",
        }),
        Some(a) => Err(EditError::Unsupported {
            path: format!("{path}.annotations"),
            line: a.line,
            what: "an empty value",
        }),
        None => plan_new_annotations(src, meta, path.split('.').count(), values, path, out),
    }
}

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

fn doc_leaves(d: &Document<'_>) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    if let Some(r) = &d.root {
        leaves(r, &mut Vec::new(), &mut out);
    }
    out
}

fn expected_paths(edit: &Edit) -> Vec<(Vec<String>, String)> {
    let p = |parts: &[&str], k: &str| -> Vec<String> {
        parts
            .iter()
            .map(|s| format!("k:{s}"))
            .chain([format!("k:{k}")])
            .collect()
    };
    let mut out = Vec::new();
    for (k, v) in &edit.encrypted {
        out.push((p(&["spec", "encryptedData"], k), v.clone()));
    }
    for (k, v) in &edit.template_annotations {
        out.push((
            p(&["spec", "template", "metadata", "annotations"], k),
            v.clone(),
        ));
    }
    for (k, v) in &edit.outer_annotations {
        out.push((p(&["metadata", "annotations"], k), v.clone()));
    }
    out
}

/// Checks that `new` differs from `old` only by `splices` and only at the edited paths.
fn verify(old: &str, new: &str, splices: &[Splice], edit: &Edit) -> EditResult<()> {
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
        let strip = |l: Vec<(Vec<String>, String)>| -> Vec<(Vec<String>, String)> {
            l.into_iter().filter(|(p, v)| !may_differ(p, v)).collect()
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

/// Applies `edit` to `src` and returns the new text, verified (see the module docs).
pub fn apply(src: &str, edit: &Edit) -> EditResult<String> {
    let docs = parse_documents(src).map_err(|e| EditError::Parse {
        line: e.line,
        message: e.message,
    })?;
    let doc = docs
        .get(edit.doc_index)
        .filter(|d| d.root.as_ref().is_some_and(|r| r.entries().is_some()))
        .ok_or(EditError::NoDocument(edit.doc_index))?;
    let root = doc.root.as_ref().expect("checked above");
    let mut splices = Vec::new();
    if !edit.encrypted.is_empty() {
        let data = root
            .path(&["spec", "encryptedData"])
            .filter(|d| d.entries().is_some())
            .ok_or(EditError::MissingParent {
                path: "spec.encryptedData".into(),
                line: root.line,
            })?;
        for (k, v) in &edit.encrypted {
            plan_set(src, data, k, v, "spec.encryptedData", &mut splices)?;
        }
    }
    plan_annotations(
        src,
        root.path(&["spec", "template", "metadata"]),
        &edit.template_annotations,
        "spec.template.metadata",
        root.line,
        &mut splices,
    )?;
    plan_annotations(
        src,
        root.get("metadata"),
        &edit.outer_annotations,
        "metadata",
        root.line,
        &mut splices,
    )?;
    // Several insertions may share a position (two new keys after the same entry): keep
    // their planned order by sorting stably on the start only.
    splices.sort_by_key(|s| s.range.start);
    for w in splices.windows(2) {
        if w[0].range.end > w[1].range.start {
            return Err(EditError::Verification("overlapping edits".into()));
        }
    }
    let mut out = String::with_capacity(src.len() + 256);
    let mut pos = 0;
    for s in &splices {
        out.push_str(&src[pos..s.range.start]);
        out.push_str(&s.text);
        pos = s.range.end;
    }
    out.push_str(&src[pos..]);
    verify(src, &out, &splices, edit)?;
    Ok(out)
}

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

/// Writes `contents` to `path` atomically: a temp file in the same directory, fsync,
/// rename over the original. Keeps the original file's permissions.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".secret-manager-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    let perms = match std::fs::metadata(path) {
        Ok(meta) => meta.permissions(),
        // A new file: the usual 0644 rather than the temp file's private 0600.
        #[cfg(unix)]
        Err(_) => std::os::unix::fs::PermissionsExt::from_mode(0o644),
        #[cfg(not(unix))]
        Err(_) => tmp.as_file().metadata()?.permissions(),
    };
    tmp.as_file().set_permissions(perms)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(k: &str, v: &str) -> Edit {
        let mut e = Edit::default();
        e.encrypted.insert(k.into(), v.into());
        e
    }

    const DOC: &str = "# head\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: a # c\n  namespace: b\nspec:\n  template:\n    metadata:\n      annotations:\n        secret-manager/source: \"aws\"\n        secret-manager/createDate: '2026-01-01T00:00:00Z'\n  encryptedData:\n    k1: AgOld1\n    k2: \"AgOld2\"   # keep\n";

    #[test]
    fn replaces_only_the_value_keeping_quotes_and_comments() {
        let mut e = enc("k2", "AgNew2");
        e.template_annotations.insert(
            "secret-manager/createDate".into(),
            "2026-11-21T00:00:00Z".into(),
        );
        let out = apply(DOC, &e).unwrap();
        assert_eq!(
            out,
            DOC.replace("\"AgOld2\"", "\"AgNew2\"")
                .replace("'2026-01-01T00:00:00Z'", "'2026-11-21T00:00:00Z'")
        );
    }

    #[test]
    fn adds_missing_keys_in_the_existing_indentation() {
        let mut e = enc("k3", "AgNew3");
        e.template_annotations
            .insert("secret-manager/keyId".into(), "id-1".into());
        let out = apply(DOC, &e).unwrap();
        assert!(out.contains("        secret-manager/createDate: '2026-01-01T00:00:00Z'\n        secret-manager/keyId: \"id-1\"\n  encryptedData:"), "{out}");
        assert!(
            out.ends_with("    k2: \"AgOld2\"   # keep\n    k3: AgNew3\n"),
            "{out}"
        );
    }

    #[test]
    fn adds_an_annotations_block_to_outer_metadata() {
        let mut e = Edit::default();
        e.outer_annotations
            .insert("secret-manager/sealedWith".into(), "ab12".into());
        let out = apply(DOC, &e).unwrap();
        assert!(
            out.contains(
                "  namespace: b\n  annotations:\n    secret-manager/sealedWith: \"ab12\"\nspec:"
            ),
            "{out}"
        );
    }

    #[test]
    fn crlf_bom_and_no_final_newline() {
        let src = format!("\u{feff}{}", DOC.replace('\n', "\r\n"));
        let src = src.trim_end_matches("\r\n");
        let e = enc("k1", "AgNew1");
        let out = apply(src, &e).unwrap();
        assert_eq!(out, src.replace("AgOld1", "AgNew1"));
        let e = enc("k9", "AgNew9");
        let out = apply(src, &e).unwrap();
        assert!(out.ends_with("# keep\r\n    k9: AgNew9"), "{out:?}");
        assert!(out.starts_with('\u{feff}'));
    }

    #[test]
    fn json_input_stays_json() {
        let src = "{\n  \"kind\": \"SealedSecret\",\n  \"apiVersion\": \"bitnami.com/v1alpha1\",\n  \"metadata\": {\"name\": \"a\", \"namespace\": \"b\"},\n  \"spec\": {\n    \"encryptedData\": {\n      \"k1\": \"AgOld\"\n    }\n  }\n}\n";
        let mut e = enc("k1", "AgNew");
        e.encrypted.insert("k2".into(), "AgTwo".into());
        e.outer_annotations.insert("x/y".into(), "z".into());
        let out = apply(src, &e).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["spec"]["encryptedData"]["k1"], "AgNew");
        assert_eq!(v["spec"]["encryptedData"]["k2"], "AgTwo");
        assert_eq!(v["metadata"]["annotations"]["x/y"], "z");
        assert!(
            out.contains("      \"k1\": \"AgNew\",\n      \"k2\": \"AgTwo\"\n    }"),
            "{out}"
        );
    }

    #[test]
    fn other_documents_are_untouched() {
        let src = format!("a: 1 # x\n---\n{DOC}---\nb: [1, 2]\n");
        let out = apply(
            &src,
            &Edit {
                doc_index: 1,
                ..enc("k1", "AgNew")
            },
        )
        .unwrap();
        assert_eq!(out, src.replace("AgOld1", "AgNew"));
        assert_eq!(
            apply(
                &src,
                &Edit {
                    doc_index: 7,
                    ..enc("k1", "x")
                }
            ),
            Err(EditError::NoDocument(7))
        );
    }

    #[test]
    fn literal_block_values_keep_their_header() {
        let src = "spec:\n  encryptedData:\n    k: |\n      AgOld\n    j: x\n";
        let out = apply(src, &enc("k", "AgNew")).unwrap();
        assert_eq!(out, "spec:\n  encryptedData:\n    k: AgNew\n    j: x\n");
        let src = "spec:\n  encryptedData:\n    k: >-\n      AgOld\n      more\n";
        assert_eq!(
            apply(src, &enc("k", "AgNew")).unwrap(),
            "spec:\n  encryptedData:\n    k: AgNew\n"
        );
    }

    #[test]
    fn ambiguous_plain_values_get_quoted() {
        let src = "metadata:\n  annotations:\n    a/b: x\nspec:\n  encryptedData:\n    k: v\n";
        let mut e = Edit::default();
        e.outer_annotations
            .insert("a/b".into(), "123456789012".into());
        let out = apply(src, &e).unwrap();
        assert!(out.contains("a/b: \"123456789012\""), "{out}");
        e.outer_annotations.insert("a/b".into(), "true".into());
        assert!(apply(src, &e).unwrap().contains("a/b: \"true\""));
        e.outer_annotations
            .insert("a/b".into(), "has: colon".into());
        assert!(apply(src, &e).unwrap().contains("a/b: \"has: colon\""));
    }

    #[test]
    fn refuses_aliases_and_missing_parents() {
        let src = "x: &a AgOld\nspec:\n  encryptedData:\n    k: *a\n";
        assert!(matches!(
            apply(src, &enc("k", "n")),
            Err(EditError::Unsupported { .. })
        ));
        let src = "spec:\n  template: {}\n";
        assert!(matches!(
            apply(src, &enc("k", "n")),
            Err(EditError::MissingParent { .. })
        ));
    }

    #[test]
    fn removes_one_document_and_keeps_the_rest_byte_for_byte() {
        let src = "# head\na: 1\n---\n# mid\nb: 2\n---\nc: 3\n";
        assert_eq!(
            remove_document(src, 1).unwrap().unwrap(),
            "# head\na: 1\n---\nc: 3\n"
        );
        assert_eq!(
            remove_document(src, 2).unwrap().unwrap(),
            "# head\na: 1\n---\n# mid\nb: 2\n"
        );
        assert_eq!(
            remove_document(src, 0).unwrap().unwrap(),
            "# head\n---\n# mid\nb: 2\n---\nc: 3\n"
        );
        assert_eq!(remove_document("a: 1\n", 0).unwrap(), None);
        let crlf = src.replace('\n', "\r\n");
        assert_eq!(
            remove_document(&crlf, 1).unwrap().unwrap(),
            "# head\r\na: 1\r\n---\r\nc: 3\r\n"
        );
    }

    #[test]
    fn atomic_write_keeps_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.yaml");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
