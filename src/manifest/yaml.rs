//! A YAML node tree that remembers where every node came from (byte ranges, lines).
//!
//! Why not `serde_yaml` or `serde-saphyr`'s typed deserialization: the scanner needs the
//! line a document starts on and the editor (src/manifest/edit) needs the exact byte range of every
//! scalar and mapping so it can replace a value without touching any other byte. We build
//! this tree from the events of `granit-parser`, the YAML 1.2 parser serde-saphyr itself
//! uses, whose spans carry byte offsets that already account for a UTF-8 BOM and CRLF.
//! Typed configuration files (inventory, `.secret-manager.yaml`) go through serde-saphyr.

use granit_parser::{Event, Parser, ScalarStyle, Span, StructureStyle};
use std::borrow::Cow;
use std::ops::Range;

/// One parsed YAML node with its source position.
#[derive(Debug, Clone)]
pub struct Node<'a> {
    /// What the node is.
    pub kind: NodeKind<'a>,
    /// Byte range in the source. For block collections this runs from the first key or
    /// item to the end of the last value; quoted scalars include their quotes.
    pub span: Range<usize>,
    /// 1-based line of the first byte.
    pub line: usize,
    /// 0-based column (in characters) of the first byte.
    pub col: usize,
    /// Whether the node carries an anchor (`&name`): aliases elsewhere in the document
    /// are the same node, so editing it would edit them too.
    pub anchored: bool,
}

/// The shape of a [`Node`].
#[derive(Debug, Clone)]
pub enum NodeKind<'a> {
    /// A scalar after escape processing, with the notation it was written in.
    Scalar(Cow<'a, str>, ScalarStyle),
    /// A mapping: entries in source order; `flow` for `{...}` notation.
    Mapping {
        /// Key/value pairs in source order.
        entries: Vec<(Node<'a>, Node<'a>)>,
        /// Whether written as `{...}`.
        flow: bool,
    },
    /// A sequence; `flow` for `[...]` notation.
    Sequence {
        /// Items in source order.
        items: Vec<Node<'a>>,
        /// Whether written as `[...]`.
        flow: bool,
    },
    /// An alias (`*name`); we never follow aliases into SealedSecret fields.
    Alias,
}

/// One document of a YAML stream.
#[derive(Debug, Clone)]
pub struct Document<'a> {
    /// The root node, `None` for an empty document.
    pub root: Option<Node<'a>>,
    /// 1-based line where the document starts (its `---` or its first node).
    pub line: usize,
    /// Zero-based index of the document within the file.
    pub index: usize,
    /// Byte offset where the document starts.
    pub start: usize,
}

/// A parse failure with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What the parser reported.
    pub message: String,
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {} column {}: {}",
            self.line, self.col, self.message
        )
    }
}

impl<'a> Node<'a> {
    /// The scalar value, if this node is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    /// The scalar style, if this node is a scalar.
    pub fn style(&self) -> Option<ScalarStyle> {
        match &self.kind {
            NodeKind::Scalar(_, st) => Some(*st),
            _ => None,
        }
    }

    /// Mapping entries, if this node is a mapping.
    pub fn entries(&self) -> Option<&[(Node<'a>, Node<'a>)]> {
        match &self.kind {
            NodeKind::Mapping { entries, .. } => Some(entries),
            _ => None,
        }
    }

    /// Whether this node is a null scalar (`~`, `null`, empty plain).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar(s, ScalarStyle::Plain) if s.is_empty() || s == "~" || s == "null" || s == "Null" || s == "NULL")
    }

    /// The entry whose key is the scalar `key`, if this node is a mapping.
    pub fn get_entry(&self, key: &str) -> Option<&(Node<'a>, Node<'a>)> {
        self.entries()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
    }

    /// The value under scalar key `key`, if this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.get_entry(key).map(|(_, v)| v)
    }

    /// Follows a path of mapping keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Node<'a>> {
        keys.iter().try_fold(self, |n, k| n.get(k))
    }

    /// The value under `key` as a string, ignoring nulls and non-scalars.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)
            .filter(|n| !n.is_null())
            .and_then(Node::as_str)
    }
}

fn err_from(e: &granit_parser::ScanError) -> YamlError {
    let m = e.marker();
    YamlError {
        line: m.line(),
        col: m.col() + 1,
        message: e.info().to_string(),
    }
}

fn byte_range(sp: &Span) -> Range<usize> {
    // Parsing from a &str always yields byte offsets; fall back to char index otherwise.
    sp.byte_range().unwrap_or(sp.start.index()..sp.end.index())
}

enum Frame<'a> {
    Map {
        entries: Vec<(Node<'a>, Node<'a>)>,
        pending_key: Option<Node<'a>>,
        flow: bool,
        start: Range<usize>,
        line: usize,
        col: usize,
        anchored: bool,
    },
    Seq {
        items: Vec<Node<'a>>,
        flow: bool,
        start: Range<usize>,
        line: usize,
        col: usize,
        anchored: bool,
    },
}

/// Parses every document of `src` into spanned trees.
///
/// Fails on the first syntax error; callers report the file and skip it whole, so a
/// half-understood file is never edited.
pub fn parse_documents(src: &str) -> Result<Vec<Document<'_>>, YamlError> {
    let mut docs = Vec::new();
    let mut stack: Vec<Frame<'_>> = Vec::new();
    let mut current: Option<Document<'_>> = None;

    for ev in Parser::new_from_str(src) {
        let (ev, sp) = ev.map_err(|e| err_from(&e))?;
        let range = byte_range(&sp);
        let (line, col) = (sp.start.line(), sp.start.col());
        let node = match ev {
            Event::StreamStart | Event::StreamEnd | Event::Comment(..) | Event::Anchor(..) => {
                continue;
            }
            Event::DocumentStart(..) => {
                current = Some(Document {
                    root: None,
                    line,
                    index: docs.len(),
                    start: range.start,
                });
                continue;
            }
            Event::DocumentEnd => {
                if let Some(d) = current.take() {
                    docs.push(d);
                }
                continue;
            }
            Event::MappingStart(style, anchor, ..) => {
                stack.push(Frame::Map {
                    entries: Vec::new(),
                    pending_key: None,
                    flow: style == StructureStyle::Flow,
                    start: range,
                    line,
                    col,
                    anchored: anchor != 0,
                });
                continue;
            }
            Event::SequenceStart(style, anchor, ..) => {
                stack.push(Frame::Seq {
                    items: Vec::new(),
                    flow: style == StructureStyle::Flow,
                    start: range,
                    line,
                    col,
                    anchored: anchor != 0,
                });
                continue;
            }
            Event::MappingEnd | Event::SequenceEnd => match stack.pop() {
                Some(Frame::Map {
                    entries,
                    flow,
                    start,
                    line,
                    col,
                    anchored,
                    ..
                }) => {
                    if let Some(e) = duplicate_key(&entries) {
                        return Err(e);
                    }
                    let end = if flow {
                        range.end
                    } else {
                        entries.last().map_or(start.start, |(_, v)| v.span.end)
                    };
                    Node {
                        kind: NodeKind::Mapping { entries, flow },
                        span: start.start..end.max(start.start),
                        line,
                        col,
                        anchored,
                    }
                }
                Some(Frame::Seq {
                    items,
                    flow,
                    start,
                    line,
                    col,
                    anchored,
                }) => {
                    let end = if flow {
                        range.end
                    } else {
                        items.last().map_or(start.start, |v| v.span.end)
                    };
                    Node {
                        kind: NodeKind::Sequence { items, flow },
                        span: start.start..end.max(start.start),
                        line,
                        col,
                        anchored,
                    }
                }
                None => {
                    return Err(YamlError {
                        line,
                        col: col + 1,
                        message: "unbalanced collection end".into(),
                    });
                }
            },
            Event::Scalar(value, style, anchor, ..) => Node {
                kind: NodeKind::Scalar(value, style),
                span: range,
                line,
                col,
                anchored: anchor != 0,
            },
            Event::Alias(..) | Event::UnresolvedAlias(..) => Node {
                kind: NodeKind::Alias,
                span: range,
                line,
                col,
                anchored: false,
            },
            // Presentation-only events added by newer parser versions.
            _ => continue,
        };
        // Attach the finished node to its parent.
        match stack.last_mut() {
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                Some(k) => entries.push((k, node)),
                None => *pending_key = Some(node),
            },
            Some(Frame::Seq { items, .. }) => items.push(node),
            None => {
                if let Some(d) = current.as_mut() {
                    d.root = Some(node);
                }
            }
        }
    }
    if let Some(d) = current.take() {
        docs.push(d);
    }
    Ok(docs)
}

/// The second occurrence of a scalar key in one mapping, as an error. YAML 1.2 forbids
/// duplicate keys and parsers disagree on which one wins (first here, last in PyYAML and
/// go-yaml v2), so a file with one is never read or edited.
fn duplicate_key(entries: &[(Node<'_>, Node<'_>)]) -> Option<YamlError> {
    let dup = |i: usize, j: usize| {
        let (first, again) = (&entries[i].0, &entries[j].0);
        YamlError {
            line: again.line,
            col: again.col + 1,
            message: format!(
                "duplicate key `{}` (first at line {}); YAML forbids duplicate keys and tools disagree on which one counts — remove one",
                again.as_str().unwrap_or_default(),
                first.line
            ),
        }
    };
    if entries.len() <= 16 {
        for j in 1..entries.len() {
            let Some(kj) = entries[j].0.as_str() else {
                continue;
            };
            if let Some(i) = (0..j).find(|&i| entries[i].0.as_str() == Some(kj)) {
                return Some(dup(i, j));
            }
        }
        return None;
    }
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (j, (k, _)) in entries.iter().enumerate() {
        let Some(k) = k.as_str() else { continue };
        if let Some(&i) = seen.get(k) {
            return Some(dup(i, j));
        }
        seen.insert(k, j);
    }
    None
}

/// Strips a UTF-8 byte order mark, if present.
pub fn strip_bom(s: &str) -> &str {
    s.strip_prefix('\u{feff}').unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_quotes_and_crlf_with_bom() {
        let src = "\u{feff}# c\r\nkind: SealedSecret\r\nmetadata:\r\n  name: \"x\" # hi\r\n---\r\nfoo: [1, '2']\r\n";
        let docs = parse_documents(src).unwrap();
        assert_eq!(docs.len(), 2);
        let root = docs[0].root.as_ref().unwrap();
        assert_eq!(root.get_str("kind"), Some("SealedSecret"));
        let name = root.path(&["metadata", "name"]).unwrap();
        assert_eq!(&src[name.span.clone()], "\"x\"");
        assert_eq!(name.line, 4);
        assert_eq!(docs[1].line, 5);
        assert_eq!(docs[1].index, 1);
        let foo = docs[1].root.as_ref().unwrap().get("foo").unwrap();
        assert_eq!(&src[foo.span.clone()], "[1, '2']");
    }

    #[test]
    fn json_is_yaml() {
        let src = r#"{"kind": "SealedSecret", "metadata": {"name": "a", "namespace": "b"}}"#;
        let docs = parse_documents(src).unwrap();
        let root = docs[0].root.as_ref().unwrap();
        assert_eq!(
            root.path(&["metadata", "namespace"]).unwrap().as_str(),
            Some("b")
        );
    }

    #[test]
    fn syntax_errors_carry_a_line() {
        let err = parse_documents("a: b\nc: [unclosed\nd: e\n").unwrap_err();
        assert!(err.line >= 2, "{err}");
    }

    #[test]
    fn duplicate_keys_are_a_syntax_error_naming_both_lines() {
        let err = parse_documents("a: 1\nb:\n  x: 1\n  y: 2\n  x: 3\n").unwrap_err();
        assert_eq!(err.line, 5, "{err}");
        assert!(
            err.message.contains("duplicate key `x` (first at line 3)"),
            "{err}"
        );
        let many: String = (0..40).map(|i| format!("k{i}: v\n")).collect();
        let err = parse_documents(&format!("{many}k7: again\n")).unwrap_err();
        assert_eq!(err.line, 41, "{err}");
        assert!(parse_documents(&many).is_ok());
        // The same key in different mappings, or in different documents, is fine.
        assert!(parse_documents("a: {x: 1}\nb: {x: 1}\n---\na: 2\n").is_ok());
    }

    #[test]
    fn anchors_are_remembered_on_the_node() {
        let src = "a: &m {x: 1}\nb: *m\nc: &s v\nd: w\n";
        let docs = parse_documents(src).unwrap();
        let root = docs[0].root.as_ref().unwrap();
        assert!(root.get("a").unwrap().anchored);
        assert!(root.get("c").unwrap().anchored);
        assert!(!root.get("d").unwrap().anchored);
        assert!(matches!(root.get("b").unwrap().kind, NodeKind::Alias));
    }

    #[test]
    fn block_mapping_span_ends_at_last_value() {
        let src = "a:\n  b: 1\n  c: two\nd: 3\n";
        let docs = parse_documents(src).unwrap();
        let a = docs[0].root.as_ref().unwrap().get("a").unwrap();
        assert_eq!(&src[a.span.clone()], "b: 1\n  c: two");
    }
}
