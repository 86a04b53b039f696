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
/// cannot drive a rotation (run `lint`), `unmanaged` without a source, `rotating` while a
/// rotation of it is in flight on the main remote (JSON rows say where it stands).
///
/// list reads the files of the checkout, while rotate works from the main remote: a note
/// says when the checkout is behind or ahead of main as last fetched (or has uncommitted
/// changes).
/// A `+reseal` marker (e.g. `ok+reseal`) means sealed with a certificate that is not the
/// cluster's current one. `-o prometheus` prints the credentials as Prometheus metrics.
/// `-o wide` adds FILE:LINE; `-o json` rows also carry scope, createDate, file, line and document.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Also show SealedSecrets without a source annotation.
    #[arg(long)]
    pub all: bool,
    /// Only SealedSecrets sealed with a certificate that is not their cluster's current one.
    ///
    /// Compares each manifest's secret-manager/sealedWith fingerprint with the cluster's
    /// sealingCert (fetched once per cluster). `rotate --reseal` re-seals them.
    #[arg(long)]
    pub cert_outdated: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Marks rows with a rotation in flight on the remote's main (as last fetched, else the
/// checkout) and says when the checkout is not main as last fetched.
fn in_flight_and_checkout(
    ctx: &Ctx,
    repo: &secret_manager::Repo,
    rows: &mut [secret_manager::list::ListRow],
) {
    let fleet = secret_manager::gitops::Fleet::new(repo);
    // As last fetched: `list` does not touch the network for this.
    match secret_manager::journal::store::in_flight(&fleet, &repo.root, false) {
        Ok(f) => secret_manager::list::mark_in_flight(rows, &f.records),
        Err(e) => tracing::debug!(error = %e, "rotation records not read"),
    }
    if !ctx.global.quiet
        && let Some(note) = secret_manager::gitops::checkout::state(&fleet).and_then(|s| s.note())
    {
        crate::output::say(crate::output::Level::Info, &format!("note: {note}"));
    }
}

/// Runs `list`.
pub async fn cmd_list(ctx: &mut Ctx, args: &ListArgs) -> crate::error::Result<u8> {
    let repo = open_repo(ctx)?;
    let mut filter = build_filter(&args.filter, &repo)?;
    filter.include_unmanaged = args.all;
    let report = repo.scan();
    report_diagnostics(ctx, &report);
    // Each cluster's current certificate, once: for certCurrent and --cert-outdated.
    let certs = secret_manager::reseal::CurrentCerts::load(&repo, &report.secrets, ctx.now).await;
    let prefix = repo.config.annotation_prefix.clone();
    if args.cert_outdated {
        filter.outdated = Some(std::sync::Arc::new(
            certs.outdated(&report.secrets, &prefix),
        ));
        filter.reseal = secret_manager::list::Reseal::OnlyOutdated;
    }
    let mut rows = secret_manager::list::rows_with_certs(
        &report.secrets,
        &filter,
        ctx.now,
        repo.config.max_age,
        Some((&certs, &prefix)),
    );
    in_flight_and_checkout(ctx, &repo, &mut rows);
    secret_manager::list::mark_consumers(&mut rows, &report.secrets, &repo);
    if ctx.global.output == crate::args::Format::Prometheus {
        let m = crate::metrics::Metrics::new();
        m.credentials(&rows, ctx.now);
        m.scan(&report);
        ctx.out.write_all(m.encode().as_bytes())?;
        return Ok(exit::OK);
    }
    if ctx.global.output == crate::args::Format::Name {
        crate::output::write_names(
            &mut *ctx.out,
            rows.iter()
                .map(|r| format!("{}/{}/{}", r.cluster, r.namespace, r.name)),
        )?;
        return Ok(exit::OK);
    }
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
        cols.push(("TEMPLATES", Fit::Fixed));
        cols.push(("CONSUMERS", Fit::Fixed));
        cols.push(("FILE", Fit::Fixed));
    }
    let mut t = Table::new(&cols)
        .headers(!ctx.global.no_headers)
        .paint("STATE", |s| match s {
            s if s.ends_with("+reseal") => Paint::Warn,
            "ok" => Paint::Good,
            "due" => Paint::Warn,
            "invalid" => Paint::Bad,
            "unmanaged" => Paint::Dim,
            "rotating" => Paint::Good,
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
            // A manifest sealed with an outdated certificate: `rotate --reseal`.
            if r.cert_current == Some(false) {
                format!("{}+reseal", r.state.as_str())
            } else {
                r.state.as_str().to_owned()
            },
        ];
        if wide {
            // Keys rendered from a value template (`key=template`), `-` for none.
            cells.push(r.templated.join(","));
            // With consumers.restart: how many workloads a rotation restarts, and how many
            // it cannot (`-o json` names them).
            let manual = r
                .consumers
                .iter()
                .filter(|c| c.contains(": not restarted by the tool"))
                .count();
            cells.push(match (r.consumers.len() - manual, manual) {
                (0, 0) => String::new(),
                (n, 0) => format!("{n} restarted"),
                (n, m) => format!("{n} restarted, {m} not"),
            });
            cells.push(format!("{}:{}", r.file, r.line));
        }
        t.row(cells);
    }
    t.print(&mut *ctx.out, ctx.global.output, ctx.global.quiet)?;
    Ok(exit::OK)
}
