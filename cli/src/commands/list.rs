//! `secret-manager list`.

use super::{Ctx, build_filter, open_repo, report_diagnostics};
use crate::args::FilterArgs;
use crate::exit;
use crate::output::{Fit, Paint, Table, write_structured};
use clap::Args;

/// List annotated SealedSecrets, oldest first.
///
/// By default only managed secrets (those with a `secret-manager/source` annotation) are
/// shown; `--all` adds unmanaged SealedSecrets. Files that cannot be parsed are reported on
/// stderr and skipped. STATE is `due` when older than the policy's maxAge
/// (.secret-manager.yaml, default 90d), `ok` when younger, `invalid` when the annotations
/// cannot drive a rotation (run `lint`), `unmanaged` without a source.
/// `-o wide` adds FILE:LINE; `-o json` rows also carry scope, createDate, file, line and document.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Also show SealedSecrets without a source annotation.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Runs `list`.
pub fn cmd_list(ctx: &mut Ctx, args: &ListArgs) -> anyhow::Result<u8> {
    let repo = open_repo(ctx)?;
    let mut filter = build_filter(&args.filter, &repo)?;
    filter.include_unmanaged = args.all;
    let report = repo.scan();
    report_diagnostics(ctx, &report);
    let rows = secret_manager::list::rows(&report.secrets, &filter, ctx.now, repo.config.max_age);
    if write_structured(&mut *ctx.out, ctx.global.output, &rows)? {
        return Ok(exit::OK);
    }
    if rows.is_empty() {
        if !ctx.global.quiet {
            crate::output::say(
                crate::output::Level::Info,
                &format!(
                    "no matching SealedSecrets ({} files scanned)",
                    report.files_seen
                ),
            );
        }
        return Ok(exit::OK);
    }
    let wide = ctx.global.output == crate::args::Format::Wide;
    let mut cols = vec![
        ("CLUSTER", Fit::Fixed),
        ("NAMESPACE", Fit::Wrap(8)),
        ("NAME", Fit::Wrap(10)),
        ("SOURCE", Fit::Drop(1)),
        ("KEY ID", Fit::Fixed),
        ("AGE", Fit::Fixed),
        ("STATE", Fit::Fixed),
    ];
    if wide {
        cols.push(("FILE", Fit::Fixed));
    }
    let mut t = Table::new(&cols).paint("STATE", |s| match s {
        "ok" => Paint::Good,
        "due" => Paint::Warn,
        "invalid" => Paint::Bad,
        "unmanaged" => Paint::Dim,
        _ => Paint::Plain,
    });
    for r in &rows {
        let mut cells = vec![
            r.cluster.clone(),
            r.namespace.clone(),
            r.name.clone(),
            if r.source.is_empty() {
                "-".into()
            } else {
                r.source.clone()
            },
            if r.key_id.is_empty() {
                "-".into()
            } else {
                r.key_id.clone()
            },
            r.age_days.map_or("?".into(), |d| format!("{d}d")),
            r.state.as_str().to_owned(),
        ];
        if wide {
            cells.push(format!("{}:{}", r.file, r.line));
        }
        t.row(cells);
    }
    t.print(&mut *ctx.out, ctx.global.output, ctx.global.quiet)?;
    Ok(exit::OK)
}
