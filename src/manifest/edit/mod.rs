//! Format-preserving edits of one SealedSecret document; the rules are in docs/guide.md, "How files are edited".
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

use super::yaml::{Node, NodeKind, parse_documents};
use granit_parser::ScalarStyle;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

/// What to change in one document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edit {
    /// Zero-based document index in the file.
    pub doc_index: usize,
    /// Index in the `items` of a `kind: List` document, when the SealedSecret is one.
    pub item: Option<usize>,
    /// `spec.encryptedData` keys to set (replaced, or added when absent). Values are
    /// ciphertexts (base64), never plaintext.
    pub encrypted: BTreeMap<String, String>,
    /// `spec.template.metadata.annotations` to set (for a CronJob, with `job_template`,
    /// `spec.jobTemplate.spec.template.metadata.annotations`).
    pub template_annotations: BTreeMap<String, String>,
    /// The template is a CronJob's pod template (`spec.jobTemplate.spec.template`).
    pub job_template: bool,
    /// `metadata.annotations` (outer) to set.
    pub outer_annotations: BTreeMap<String, String>,
    /// `metadata.annotations` (outer) to remove where present (their whole lines; the
    /// `annotations:` key too when nothing else is left in it).
    pub remove_outer_annotations: Vec<String>,
}

impl Edit {
    /// Where the template's metadata is: `spec.template.metadata`, or a CronJob's
    /// `spec.jobTemplate.spec.template.metadata`.
    pub fn template_path(&self) -> &'static [&'static str] {
        if self.job_template {
            &["spec", "jobTemplate", "spec", "template", "metadata"]
        } else {
            &["spec", "template", "metadata"]
        }
    }
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
        /// 1-based line in the file.
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
    if node.anchored || raw.starts_with('!') || raw.starts_with('&') {
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

/// Refuses to edit `node` when it is shared: an anchored node (`&name`) is the same node
/// as every alias of it (`*name`), so an edit would change those places too; a mapping
/// with a merge key (`<<: *base`) takes entries from elsewhere.
fn not_shared(node: &Node<'_>, path: &str) -> EditResult<()> {
    let what = if node.anchored {
        "an anchored node (`&name`) whose aliases would change with it"
    } else if node
        .entries()
        .is_some_and(|e| e.iter().any(|(k, _)| k.as_str() == Some("<<")))
    {
        "a mapping with a merge key (`<<`)"
    } else {
        return Ok(());
    };
    Err(EditError::Unsupported {
        path: path.into(),
        line: node.line,
        what,
    })
}

/// [`not_shared`] for every mapping on `keys` below `root` that exists.
fn not_shared_along(root: &Node<'_>, keys: &[&str]) -> EditResult<()> {
    let mut node = root;
    for (i, k) in keys.iter().enumerate() {
        let Some(next) = node.get(k) else {
            return Ok(());
        };
        if matches!(next.kind, NodeKind::Alias) {
            return Err(EditError::Unsupported {
                path: keys[..=i].join("."),
                line: next.line,
                what: "an alias (`*name`) of a node elsewhere",
            });
        }
        not_shared(next, &keys[..=i].join("."))?;
        node = next;
    }
    Ok(())
}

/// The mapping an edit applies to: the document's root, or item `edit.item` of a
/// `kind: List`.
fn target<'n, 'a>(root: &'n Node<'a>, edit: &Edit) -> EditResult<&'n Node<'a>> {
    let Some(i) = edit.item else {
        return Ok(root);
    };
    let list = root
        .get("items")
        .ok_or(EditError::NoDocument(edit.doc_index))?;
    not_shared(list, "items")?;
    let item = super::list_items(root)
        .and_then(|items| items.get(i))
        .filter(|n| n.entries().is_some())
        .ok_or(EditError::NoDocument(edit.doc_index))?;
    Ok(item)
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
    let root = target(doc.root.as_ref().expect("checked above"), edit)?;
    not_shared(root, "the document")?;
    if !edit.encrypted.is_empty() {
        not_shared_along(root, &["spec", "encryptedData"])?;
    }
    if !edit.template_annotations.is_empty() {
        let mut keys = edit.template_path().to_vec();
        keys.push("annotations");
        not_shared_along(root, &keys)?;
    }
    if !edit.outer_annotations.is_empty() || !edit.remove_outer_annotations.is_empty() {
        not_shared_along(root, &["metadata", "annotations"])?;
    }
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
        root.path(edit.template_path()),
        &edit.template_annotations,
        &edit.template_path().join("."),
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
    remove::plan_removals(
        src,
        root.get("metadata"),
        &edit.remove_outer_annotations,
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

/// Writes `contents` to `path` atomically: a temp file in the same directory, fsync,
/// rename over the original. Keeps the original file's permissions.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_replacing(path, contents, true)
}

/// Writes `contents` to `path` in a private worktree the tool made (what lasts is the
/// commit it pushes, not the file), without fsync: a regular file with one link is
/// overwritten in place (opened with `O_NOFOLLOW`, so a symlink swapped in meanwhile is
/// refused, not followed); anything else — a new file, a symlink, a hard link — is
/// replaced by rename like [`write_atomic`]. A rotation of thousands of credentials
/// spent most of its own disk time creating temp files and fsyncing them.
pub fn write_in_worktree(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_file()
        && meta.nlink() == 1
    {
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path);
        if let Ok(mut f) = opened {
            return f.write_all(contents);
        }
    }
    write_replacing(path, contents, false)
}

fn write_replacing(path: &Path, contents: &[u8], sync: bool) -> std::io::Result<()> {
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
    if sync {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

mod remove;
mod scalar;
mod verify;
pub use remove::{remove_document, remove_item};
use scalar::{double_quote, line_ending, render_key, render_scalar};
use verify::verify;

#[cfg(test)]
mod tests;
