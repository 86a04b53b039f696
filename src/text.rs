//! Repo text made safe to print.
//!
//! File names, names, annotations and manifest snippets come from the config repo; a
//! terminal escape in one could rewrite what an operator sees, and a newline in a file
//! name could forge an extra line of a report. Everything the library puts into a message
//! from the repo goes through [`escape`]: control characters (newline included) and the
//! bidi overrides are shown as `\u{..}` escapes, never acted on.

use std::borrow::Cow;

/// Whether `c` could act on a terminal or forge a line: C0/C1 controls and the bidi
/// overrides that reorder what a reader sees.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// `s` with every unsafe character escaped (`\n`, `\u{1b}`, ...).
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_where(s, is_unsafe)
}

/// [`escape`] that keeps newlines and tabs: for multi-line text whose lines are the
/// caller's (a table, a block of output).
pub fn escape_keeping_lines(s: &str) -> Cow<'_, str> {
    escape_where(s, |c| is_unsafe(c) && c != '\n' && c != '\t')
}

fn escape_where(s: &str, unsafe_char: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(&unsafe_char) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .flat_map(|c| {
                if unsafe_char(c) {
                    c.escape_default().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect(),
    )
}

/// [`escape`], cut to at most `max` characters (with `…` when cut).
pub fn escape_cut(s: &str, max: usize) -> String {
    let e = escape(s);
    if e.chars().count() <= max {
        return e.into_owned();
    }
    let mut out: String = e.chars().take(max).collect();
    out.push('…');
    out
}

/// A repo-relative path for a message: `/`-separated and escaped.
pub fn path(p: &std::path::Path) -> String {
    escape(&p.to_string_lossy()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_newlines_and_bidi() {
        assert_eq!(escape("plain-name"), "plain-name");
        assert_eq!(escape("a\nb"), "a\\nb");
        assert_eq!(escape("x\u{1b}[2Jy"), "x\\u{1b}[2Jy");
        assert_eq!(escape("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(escape_cut("abcdef", 3), "abc…");
    }
}
