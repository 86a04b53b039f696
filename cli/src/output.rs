//! Rendering results (tables, JSON, YAML) and setting up logs.

use crate::args::{Format, GlobalArgs, LogFormat};
use serde::Serialize;
use std::io::Write;

/// Sets up `tracing` on stderr according to `-v`, `-q` and `--log-format`.
pub fn init_logging(g: &GlobalArgs) {
    let level = if g.quiet {
        "error"
    } else {
        match g.verbose {
            // Structured logs are for machines (a CronJob): one event per phase by default.
            0 if g.log_format == LogFormat::Json => "info",
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SECRET_MANAGER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::env::var_os("NO_COLOR").is_none()
                && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        );
    JSON_LOGS.store(
        g.log_format == LogFormat::Json,
        std::sync::atomic::Ordering::Relaxed,
    );
    let _ = match g.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.without_time().with_target(false).try_init(),
    };
}

/// Whether stderr carries JSON logs (then every message must be a JSON event).
static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether `c` could act on a terminal: C0/C1 controls (ESC, BEL, CR, ...) and the bidi
/// overrides that reorder what a reader sees.
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// `s` safe for a terminal: manifest text (names, namespaces, annotations) can carry
/// escape sequences, which are shown escaped (`\u{1b}`), never acted on.
pub fn terminal_safe(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .flat_map(|c| {
                if is_unsafe(c) {
                    c.escape_default().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect(),
    )
}

/// One table cell: terminal-safe, on one line, and `-` when empty.
fn cell(s: &str) -> String {
    if s.is_empty() {
        return "-".into();
    }
    terminal_safe(s).replace('\n', "\\n").replace('\t', " ")
}

/// Severity of a [`say`] message.
#[derive(Clone, Copy)]
pub enum Level {
    /// Progress and summaries.
    Info,
    /// Something was skipped or needs attention.
    Warn,
    /// A failure.
    Error,
}

/// A message for the operator on stderr: plain text, or a JSON log event with
/// `--log-format json` so that a CronJob's logs stay machine-readable.
pub fn say(level: Level, msg: &str) {
    let msg = &*terminal_safe(msg);
    if JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
        match level {
            Level::Info => tracing::info!("{msg}"),
            Level::Warn => tracing::warn!("{msg}"),
            Level::Error => tracing::error!("{msg}"),
        }
    } else {
        match level {
            Level::Info => eprintln!("{msg}"),
            Level::Warn => eprintln!("warning: {msg}"),
            Level::Error => eprintln!("error: {msg}"),
        }
    }
}

/// Writes `rows` as JSON or YAML; returns false for table format (caller renders).
pub fn write_structured<T: Serialize>(
    out: &mut dyn Write,
    format: Format,
    rows: &T,
) -> anyhow::Result<bool> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, rows)?;
            writeln!(out)?;
            Ok(true)
        }
        Format::Yaml => {
            let s = serde_saphyr::to_string(rows)?;
            out.write_all(s.as_bytes())?;
            Ok(true)
        }
        Format::Table | Format::Wide => Ok(false),
    }
}

/// How a column shrinks when the table is too wide.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Never shrinks.
    Fixed,
    /// Cut at the end with `…`, down to this many characters.
    Right(usize),
}

/// A kubectl-style table: no borders, two spaces between columns.
pub struct Table {
    headers: Vec<&'static str>,
    fits: Vec<Fit>,
    rows: Vec<Vec<String>>,
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn elide(s: &str, max: usize) -> String {
    if width(s) <= max || max < 2 {
        return s.to_owned();
    }
    format!("{}…", s.chars().take(max - 1).collect::<String>())
}

impl Table {
    /// A table with these headers and shrink rules.
    pub fn new(cols: &[(&'static str, Fit)]) -> Self {
        Table {
            headers: cols.iter().map(|c| c.0).collect(),
            fits: cols.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; cells are made terminal-safe, and an empty cell shows as `-`.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| cell(c)).collect());
    }

    /// Width of the table with no column shrunk.
    pub fn width(&self) -> usize {
        let n = self.headers.len();
        (0..n)
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| width(&r[i]))
                    .chain([width(self.headers[i])])
                    .max()
                    .unwrap_or(0)
            })
            .sum::<usize>()
            + 2 * n.saturating_sub(1)
    }

    /// Renders within `max_width` columns: shrinkable columns give up space, widest first.
    pub fn render(&self, out: &mut dyn Write, max_width: usize) -> std::io::Result<()> {
        let n = self.headers.len();
        let mut w: Vec<usize> = (0..n)
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| width(&r[i]))
                    .chain([width(self.headers[i])])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let total = |w: &[usize]| w.iter().sum::<usize>() + 2 * (n.saturating_sub(1));
        while total(&w) > max_width {
            // Shrink the shrinkable column with the most room above its minimum.
            let pick = (0..n)
                .filter_map(|i| match self.fits[i] {
                    Fit::Right(min) if w[i] > min => Some((w[i] - min, i)),
                    _ => None,
                })
                .max();
            let Some((_, i)) = pick else { break };
            w[i] -= 1;
        }
        let line = |cells: Vec<String>| -> String {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                let c = match self.fits[i] {
                    Fit::Right(_) => elide(c, w[i]),
                    Fit::Fixed => c.clone(),
                };
                if i + 1 == n {
                    s.push_str(&c);
                } else {
                    s.push_str(&c);
                    s.push_str(&" ".repeat(w[i] - width(&c) + 2));
                }
            }
            s.trim_end().to_owned()
        };
        writeln!(
            out,
            "{}",
            line(self.headers.iter().map(|h| h.to_string()).collect())
        )?;
        for r in &self.rows {
            writeln!(out, "{}", line(r.clone()))?;
        }
        Ok(())
    }
}

/// Width for tables: `$COLUMNS` when set, else the terminal's width when stdout is one,
/// else 120.
pub fn table_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .or_else(|| {
            console::Term::stdout()
                .size_checked()
                .map(|(_, w)| usize::from(w))
        })
        .filter(|&c: &usize| c >= 40)
        .unwrap_or(120)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_and_messages_never_carry_terminal_escapes() {
        let mut t = Table::new(&[("NAME", Fit::Fixed), ("NS", Fit::Fixed)]);
        t.row(vec!["evil\u{1b}]0;pwned\u{7}".into(), String::new()]);
        t.row(vec!["rtl\u{202e}gnp.exe".into(), "two\nlines".into()]);
        let mut out = Vec::new();
        t.render(&mut out, 200).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(
            !s.contains('\u{1b}') && !s.contains('\u{7}') && !s.contains('\u{202e}'),
            "{s:?}"
        );
        assert!(s.contains("evil\\u{1b}]0;pwned\\u{7}"), "{s}");
        assert!(s.contains("two\\nlines"), "{s}");
        assert_eq!(s.lines().count(), 3, "one line per row: {s}");
        assert!(
            s.lines().nth(1).unwrap().trim_end().ends_with('-'),
            "empty cell: {s}"
        );
        assert_eq!(terminal_safe("plain text\nkept"), "plain text\nkept");
        assert_eq!(terminal_safe("a\u{9b}b"), "a\\u{9b}b");
    }

    #[test]
    fn table_shrinks_to_fit() {
        let mut t = Table::new(&[("NAME", Fit::Fixed), ("KEY ID", Fit::Right(8))]);
        t.row(vec!["a".into(), "0123456789abcdef0123456789".into()]);
        let mut out = Vec::new();
        t.render(&mut out, 20).unwrap();
        let s = String::from_utf8(out).unwrap();
        for l in s.lines() {
            assert!(l.chars().count() <= 20, "{l}");
        }
        assert!(s.contains("a     0123456789abc…"), "{s}");
    }
}
