//! Rendering results (tables, JSON, YAML) and setting up logs.

use crate::args::{ColorArg, Format, GlobalArgs, LogFormat};
use serde::Serialize;
use std::io::Write;

/// Whether results (stdout) and messages (stderr) are coloured; set once at start.
static COLOR_OUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static COLOR_ERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--color` for a stream: `auto` colours a terminal unless `NO_COLOR` is set to a
/// non-empty value (no-color.org), `CLICOLOR=0` or `TERM=dumb`; `CLICOLOR_FORCE` (not
/// `0`) colours a pipe too. `NO_COLOR` wins over `CLICOLOR_FORCE`.
fn color_for(when: ColorArg, is_terminal: bool) -> bool {
    match when {
        ColorArg::Always => true,
        ColorArg::Never => false,
        ColorArg::Auto => {
            let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
            if set("NO_COLOR").is_some() {
                false
            } else if set("CLICOLOR_FORCE").is_some_and(|v| v != "0") {
                // CLICOLOR_FORCE: colour even on a pipe (`| less -R`), as ls, git and
                // cargo do.
                true
            } else {
                is_terminal
                    && set("CLICOLOR").is_none_or(|v| v != "0")
                    && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
            }
        }
    }
}

/// What a cell or message means, for colour.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Paint {
    /// No colour.
    Plain,
    /// Healthy, done (green).
    Good,
    /// Needs attention soon (yellow).
    Warn,
    /// Failed, must act (red, bold).
    Bad,
    /// Not managed, not relevant (dim).
    Dim,
}

fn paint(s: &str, p: Paint, enabled: bool) -> String {
    if !enabled || p == Paint::Plain || s.is_empty() {
        return s.to_owned();
    }
    let style = match p {
        Paint::Good => console::Style::new().green(),
        Paint::Warn => console::Style::new().yellow(),
        Paint::Bad => console::Style::new().red().bold(),
        Paint::Dim => console::Style::new().dim(),
        Paint::Plain => unreachable!(),
    };
    style.force_styling(true).apply_to(s).to_string()
}

/// `s` coloured for stdout as `p` says, when stdout is coloured.
pub fn painted(s: &str, p: Paint) -> String {
    paint(s, p, color_out())
}

/// Whether stdout is coloured (for commands that colour their own lines).
pub fn color_out() -> bool {
    COLOR_OUT.load(std::sync::atomic::Ordering::Relaxed)
}

/// The crates (and the `git` target) whose events `-v` raises. Every other crate stays at
/// `error` (`warn` from `-vv`) whatever `-v` says: the cloud SDKs and HTTP stacks log
/// request bodies at debug and trace (an STS web-identity token, a client secret in a
/// form), which must never reach a log, and their warnings are Rust debug structs (the AWS
/// credential chain prints one per attempt when the metadata service refuses) that the
/// provider crates already turn into one line. `SECRET_MANAGER_LOG` (an operator's
/// explicit filter) still overrides it.
const OWN_TARGETS: &[&str] = &[
    "secret_manager",
    "secret_manager_cli",
    "secret_manager_provider",
    "secret_manager_aws",
    "secret_manager_azure",
    "secret_manager_gcp",
    "secret_manager_exec",
    "git",
];

/// `error` for everything (`warn` at debug and trace), `level` for our own crates.
pub fn log_directives(level: &str) -> String {
    let mut d = String::from(if matches!(level, "debug" | "trace") {
        "warn"
    } else {
        "error"
    });
    for t in OWN_TARGETS {
        d.push_str(&format!(",{t}={level}"));
    }
    d
}

/// Sets up colour and `tracing` on stderr according to `--color`, `-v`, `-q` and
/// `--log-format`.
pub fn init_logging(g: &GlobalArgs) {
    use std::io::IsTerminal;
    COLOR_OUT.store(
        color_for(g.color, std::io::stdout().is_terminal()),
        std::sync::atomic::Ordering::Relaxed,
    );
    let color_err =
        g.log_format == LogFormat::Text && color_for(g.color, std::io::stderr().is_terminal());
    COLOR_ERR.store(color_err, std::sync::atomic::Ordering::Relaxed);
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
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_directives(level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color_err);
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

/// Whether `--log-format json` is on: every line on stdout and stderr is a JSON object.
pub fn json_logs() -> bool {
    JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed)
}

/// `s` safe for a terminal: manifest text (names, namespaces, annotations) can carry
/// escape sequences, which are shown escaped (`\u{1b}`), never acted on.
pub fn terminal_safe(s: &str) -> std::borrow::Cow<'_, str> {
    secret_manager::text::escape_keeping_lines(s)
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
        let c = COLOR_ERR.load(std::sync::atomic::Ordering::Relaxed);
        match level {
            Level::Info => eprintln!("{msg}"),
            Level::Warn => eprintln!("{} {msg}", paint("warning:", Paint::Warn, c)),
            Level::Error => eprintln!("{} {msg}", paint("error:", Paint::Bad, c)),
        }
    }
}

/// Writes `rows` as JSON or YAML; returns false for table format (caller renders).
pub fn write_structured<T: Serialize>(
    out: &mut dyn Write,
    format: Format,
    rows: &T,
) -> crate::error::Result<bool> {
    match format {
        // With JSON logs every stdout line is one JSON object too: the report as one
        // compact line, whatever table format was asked for.
        Format::Json | Format::Table | Format::Wide if json_logs() => {
            serde_json::to_writer(&mut *out, rows)?;
            writeln!(out)?;
            Ok(true)
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, rows)?;
            writeln!(out)?;
            Ok(true)
        }
        Format::Yaml => {
            // kubectl's habit: a long value (a file path) stays one plain line, never a
            // folded `>-` block that a `grep` or `yq` user has to unfold.
            let mut o = serde_saphyr::SerializerOptions::default();
            o.prefer_block_scalars = false;
            let s = serde_saphyr::to_string_with_options(rows, o)?;
            out.write_all(s.as_bytes())?;
            Ok(true)
        }
        Format::Table | Format::Wide => Ok(false),
        Format::Prometheus => Err(crate::error::UsageError(
            "-o prometheus is for `list` (and `rotate --metrics-file`); use table, wide, json or yaml here".into(),
        )
        .into()),
        Format::Name => Err(crate::error::UsageError(
            "-o name is for `list`, `keys` and `cluster status`; use table, wide, json or yaml here".into(),
        )
        .into()),
    }
}

/// What a column does when the table is wider than the terminal. Ids and times are
/// [`Fit::Fixed`]: a cut key id looks like its neighbour (`AKIARZPUZDIKH…` for the old
/// and the new key), so they are never shortened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fit {
    /// Never shrinks.
    Fixed,
    /// Free text that wraps onto continuation lines, down to this many characters wide.
    Wrap(usize),
    /// Of lower value: the whole column is left out to make room, lowest rank first, before
    /// anything wraps. `-o wide` shows it.
    Drop(u8),
}

/// What a cell's text means, for colour.
type PaintFn = fn(&str) -> Paint;

/// A kubectl-style table: no borders, two spaces between columns.
pub struct Table {
    headers: Vec<&'static str>,
    fits: Vec<Fit>,
    rows: Vec<Vec<String>>,
    paints: Vec<Option<PaintFn>>,
    color: bool,
    headers_shown: bool,
}

/// Display width in terminal columns: a CJK character or an emoji takes two, a combining
/// mark none (Unicode's East Asian Width, as terminals lay text out).
fn width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

fn char_width(c: char) -> usize {
    unicode_width::UnicodeWidthChar::width(c).unwrap_or(0)
}

/// `s` in lines of at most `w` columns, broken after a space, `,`, `/`, `-` or `.`
/// when one is in the second half of the line, else hard.
fn wrap(s: &str, w: usize) -> Vec<String> {
    if width(s) <= w || w == 0 {
        return vec![s.to_owned()];
    }
    let chars: Vec<char> = s.chars().collect();
    let mut lines = Vec::new();
    let mut start = 0;
    loop {
        // The longest window from `start` that fits in `w` columns (at least one char).
        let mut end = start;
        let mut cols = 0;
        while end < chars.len() && (end == start || cols + char_width(chars[end]) <= w) {
            cols += char_width(chars[end]);
            end += 1;
        }
        if end == chars.len() {
            lines.push(chars[start..].iter().collect());
            break;
        }
        let window = &chars[start..end];
        let cut = window
            .iter()
            .rposition(|c| matches!(c, ' ' | ',' | '/' | '-' | '.'))
            .filter(|&i| 2 * (i + 1) >= window.len())
            .map_or(window.len(), |i| i + 1);
        lines.push(
            chars[start..start + cut]
                .iter()
                .collect::<String>()
                .trim_end()
                .to_owned(),
        );
        start += cut;
        while chars.get(start) == Some(&' ') {
            start += 1;
        }
        if start == chars.len() {
            break;
        }
    }
    lines
}

impl Table {
    /// A table with these headers and fit rules.
    pub fn new(cols: &[(&'static str, Fit)]) -> Self {
        Table {
            headers: cols.iter().map(|c| c.0).collect(),
            fits: cols.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
            paints: vec![None; cols.len()],
            color: color_out(),
            headers_shown: true,
        }
    }

    /// Colours the cells of column `header` by what `f` says they mean (when stdout is
    /// coloured; widths are computed on the plain text).
    pub fn paint(mut self, header: &str, f: fn(&str) -> Paint) -> Self {
        if let Some(i) = self.headers.iter().position(|h| *h == header) {
            self.paints[i] = Some(f);
        }
        self
    }

    /// `--no-headers`: rows only (column widths still count the headers, so the layout
    /// is the same with and without them).
    pub fn headers(mut self, shown: bool) -> Self {
        self.headers_shown = shown;
        self
    }

    /// Adds a row; cells are made terminal-safe, and an empty cell shows as `-`.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| cell(c)).collect());
    }

    fn natural(&self) -> Vec<usize> {
        (0..self.headers.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| width(&r[i]))
                    .chain([width(self.headers[i])])
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Width of the table with every column in full.
    pub fn width(&self) -> usize {
        let n = self.headers.len();
        self.natural().iter().sum::<usize>() + 2 * n.saturating_sub(1)
    }

    /// Renders within `max_width` columns: first the [`Fit::Drop`] columns are left out
    /// (lowest rank first), then [`Fit::Wrap`] columns wrap (widest first); [`Fit::Fixed`]
    /// columns never change, so a table of only those may be wider. Returns the headers
    /// of the columns left out.
    pub fn render(
        &self,
        out: &mut dyn Write,
        max_width: usize,
    ) -> std::io::Result<Vec<&'static str>> {
        let n = self.headers.len();
        let mut w = self.natural();
        let mut shown = vec![true; n];
        let total = |w: &[usize], shown: &[bool]| {
            let k = shown.iter().filter(|s| **s).count();
            (0..n).filter(|&i| shown[i]).map(|i| w[i]).sum::<usize>() + 2 * k.saturating_sub(1)
        };
        while total(&w, &shown) > max_width {
            let drop = (0..n)
                .filter(|&i| shown[i])
                .filter_map(|i| match self.fits[i] {
                    Fit::Drop(rank) => Some((rank, i)),
                    _ => None,
                })
                .min();
            if let Some((_, i)) = drop {
                shown[i] = false;
                continue;
            }
            let pick = (0..n)
                .filter_map(|i| match self.fits[i] {
                    Fit::Wrap(min) if w[i] > min => Some((w[i] - min, i)),
                    _ => None,
                })
                .max();
            let Some((_, i)) = pick else { break };
            w[i] -= 1;
        }
        let cols: Vec<usize> = (0..n).filter(|&i| shown[i]).collect();
        let write_row =
            |out: &mut dyn Write, cells: &[String], body: bool| -> std::io::Result<()> {
                let parts: Vec<Vec<String>> = cols
                    .iter()
                    .map(|&i| match self.fits[i] {
                        Fit::Wrap(_) => wrap(&cells[i], w[i]),
                        _ => vec![cells[i].clone()],
                    })
                    .collect();
                let height = parts.iter().map(Vec::len).max().unwrap_or(1);
                for l in 0..height {
                    let mut s = String::new();
                    for (j, &i) in cols.iter().enumerate() {
                        let c = parts[j].get(l).map_or("", String::as_str);
                        match self.paints[i].filter(|_| body && self.color) {
                            Some(f) => s.push_str(&paint(c, f(&cells[i]), true)),
                            None => s.push_str(c),
                        }
                        if j + 1 < cols.len() {
                            s.push_str(&" ".repeat(w[i].saturating_sub(width(c)) + 2));
                        }
                    }
                    writeln!(out, "{}", s.trim_end())?;
                }
                Ok(())
            };
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        if self.headers_shown {
            write_row(out, &headers, false)?;
        }
        for r in &self.rows {
            write_row(out, r, true)?;
        }
        Ok((0..n)
            .filter(|&i| !shown[i])
            .map(|i| self.headers[i])
            .collect())
    }

    /// Renders for `format`: every column in full for `-o wide` and whenever stdout is
    /// not a terminal (a pipe or a file gets every column, as from kubectl), else fitted
    /// to the terminal, with a note on stderr naming the columns left out (unless `quiet`).
    pub fn print(&self, out: &mut dyn Write, format: Format, quiet: bool) -> std::io::Result<()> {
        let max = match (format, table_width()) {
            (Format::Wide, _) | (_, None) => usize::MAX,
            (_, Some(w)) => w,
        };
        let dropped = self.render(out, max)?;
        if !dropped.is_empty() && !quiet {
            say(
                Level::Info,
                &format!(
                    "not shown to fit {max} columns: {} (-o wide shows every column)",
                    dropped.join(", ")
                ),
            );
        }
        Ok(())
    }
}

/// `-o name`: one name per line (terminal-safe), for `xargs` and shell loops.
pub fn write_names<I: IntoIterator<Item = String>>(
    out: &mut dyn Write,
    names: I,
) -> std::io::Result<()> {
    for n in names {
        writeln!(out, "{}", terminal_safe(&n))?;
    }
    Ok(())
}

/// The width tables are fitted to, when stdout is a terminal: `$COLUMNS` when set (40 or
/// more), else the terminal's width, else 120. `None` on a pipe or a file: a table read
/// by a program is never fitted and never loses a column, whatever `$COLUMNS` says.
pub fn table_width() -> Option<usize> {
    let term = console::Term::stdout();
    if !term.is_term() {
        return None;
    }
    Some(
        std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .or_else(|| term.size_checked().map(|(_, w)| usize::from(w)))
            .filter(|&c: &usize| c >= 40)
            .unwrap_or(120),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn verbosity_raises_only_our_crates() {
        assert!(super::log_directives("warn").starts_with("error,"));
        assert!(super::log_directives("info").starts_with("error,"));
        let d = super::log_directives("trace");
        assert!(d.starts_with("warn,"), "{d}");
        assert!(d.contains("secret_manager_aws=trace"), "{d}");
        let f = tracing_subscriber::EnvFilter::new(&d);
        assert!(f.to_string().contains("warn"), "{f}");
        assert!(!d.contains("aws_sdk") && !d.contains("hyper") && !d.contains("reqwest"));
    }

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
    fn columns_line_up_by_display_width_not_characters() {
        let mut t = Table::new(&[("NAME", Fit::Fixed), ("STATE", Fit::Fixed)]);
        t.row(vec!["数据库".into(), "ok".into()]);
        t.row(vec!["db".into(), "due".into()]);
        let mut out = Vec::new();
        t.render(&mut out, usize::MAX).unwrap();
        let s = String::from_utf8(out).unwrap();
        // Each CJK character takes two terminal columns: STATE starts at column 8 on
        // every line (6 columns of name, two spaces).
        let starts: Vec<usize> = s
            .lines()
            .map(|l| width(&l[..l.rfind("  ").unwrap() + 2]))
            .collect();
        assert_eq!(starts, vec![8, 8, 8], "{s}");
        // Wrapping counts columns too: six CJK characters in 7 columns is two lines.
        assert_eq!(wrap("数据库数据库", 7), vec!["数据库", "数据库"]);
        assert_eq!(wrap("abc", 7), vec!["abc"]);
    }

    #[test]
    fn ids_and_times_are_never_cut_low_value_columns_go_first_then_text_wraps() {
        let mut t = Table::new(&[
            ("KEY ID", Fit::Fixed),
            ("CREATED", Fit::Fixed),
            ("NAME", Fit::Wrap(8)),
            ("EXPIRES", Fit::Drop(1)),
        ]);
        t.row(vec![
            "KEY-OLD-OLD-OLD-0001".into(),
            "2026-12-01T20:00:00Z".into(),
            "cloudprovider-dns-access".into(),
            "2027-01-01T00:00:00Z".into(),
        ]);
        t.row(vec![
            "KEY-NEW-NEW-NEW-0002".into(),
            "2026-12-01T20:05:00Z".into(),
            "short".into(),
            String::new(),
        ]);
        let mut out = Vec::new();
        let dropped = t.render(&mut out, 60).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(dropped, vec!["EXPIRES"]);
        for full in [
            "KEY-OLD-OLD-OLD-0001",
            "KEY-NEW-NEW-NEW-0002",
            "2026-12-01T20:00:00Z",
            "2026-12-01T20:05:00Z",
        ] {
            assert!(s.contains(full), "{full}:\n{s}");
        }
        assert!(!s.contains('…'), "{s}");
        for l in s.lines() {
            assert!(l.chars().count() <= 60, "{l}");
        }
        // The long name wraps onto a continuation line, all of it still there.
        assert!(s.contains("cloudprovider-"), "{s}");
        assert!(s.contains("dns-access"), "{s}");
        assert_eq!(s.lines().count(), 4, "{s}");
        // Wide enough: nothing dropped, nothing wrapped.
        let mut out = Vec::new();
        assert!(t.render(&mut out, 200).unwrap().is_empty());
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 3);
    }

    #[test]
    fn wrap_breaks_after_separators_and_keeps_every_character() {
        assert_eq!(wrap("a, b, c, d", 6), vec!["a, b,", "c, d"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(
            wrap("cloudprovider-dns-access", 16),
            vec!["cloudprovider-", "dns-access"]
        );
        let text = "apps/x/overlays/aws.eu-central-1.dev1/db.yaml:12, apps/y.yaml:3";
        assert_eq!(
            wrap(text, 17).concat().replace(' ', ""),
            text.replace(' ', "")
        );
    }
}

/// Stdout with `--log-format json`: a line that is not already a JSON object (a note, a
/// table a command writes without [`write_structured`]) becomes one, shaped like the log
/// events on stderr, so a pod's log is one JSON object per line on both streams.
pub struct JsonLines<W: Write> {
    inner: W,
    line: Vec<u8>,
}

impl<W: Write> JsonLines<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        JsonLines {
            inner,
            line: Vec::new(),
        }
    }

    fn emit(&mut self) -> std::io::Result<()> {
        let line = std::mem::take(&mut self.line);
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            return Ok(());
        }
        if text.starts_with('{')
            && serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v.is_object())
        {
            return writeln!(self.inner, "{text}");
        }
        let event = serde_json::json!({
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "level": "INFO",
            "message": text,
            "target": "stdout",
        });
        writeln!(self.inner, "{event}")
    }
}

impl<W: Write> Write for JsonLines<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for chunk in buf.split_inclusive(|&b| b == b'\n') {
            self.line.extend_from_slice(chunk);
            if chunk.ends_with(b"\n") {
                self.emit()?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.line.is_empty() {
            self.emit()?;
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod json_lines_tests {
    use super::JsonLines;
    use std::io::Write;

    #[test]
    fn every_line_out_is_one_json_object() {
        let mut out = Vec::new();
        {
            let mut w = JsonLines::new(&mut out);
            w.write_all(b"{\"a\":1}\nnothing to do: no sel").unwrap();
            w.write_all(b"ected credential\n\nNAME  AGE\nx  \"q\"")
                .unwrap();
            w.flush().unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[0], serde_json::json!({"a": 1}));
        assert_eq!(lines[1]["message"], "nothing to do: no selected credential");
        assert_eq!(lines[2]["message"], "NAME  AGE");
        assert_eq!(lines[3]["message"], "x  \"q\"");
        assert_eq!(lines[3]["level"], "INFO");
    }
}
