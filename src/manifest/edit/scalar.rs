//! How a new value or key is written so that it reads back as the same string, in the
//! style of the value it replaces.

use crate::manifest::yaml::Node;
use granit_parser::ScalarStyle;

/// Line ending used by the document (CRLF if its first line break is CRLF).
pub(super) fn line_ending(src: &str, from: usize) -> &'static str {
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
pub(super) fn plain_safe(s: &str) -> bool {
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
pub(super) fn resolves_as_string(s: &str) -> bool {
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

pub(super) fn double_quote(s: &str) -> String {
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
pub(super) fn render_scalar(value: &str, style: ScalarStyle, old_value: &str) -> String {
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
pub(super) fn render_key(key: &str, sibling: Option<&Node<'_>>) -> String {
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
