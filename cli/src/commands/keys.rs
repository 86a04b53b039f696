//! `secret-manager keys`.

use super::{Ctx, build_filter, open_repo, report_diagnostics};
use crate::args::FilterArgs;
use crate::exit;
use crate::output::{Fit, Paint, Table, write_structured};
use clap::Args;

/// Keys that exist at the source for every managed identity, and who references them.
///
/// For each identity (e.g. an AWS IAM user) the selected manifests point at, lists the
/// keys the source has: created, status, last used, expiry (where the source sets one), and
/// ROLE — `current` (a manifest
/// references it), `pending` (the old or new key of a rotation in flight), `claimed`
/// (minted by a run that is staging it right now), `orphan` (minted by a run that died
/// and never committed: the next `rotate` deletes it), `foreign` (referenced by nothing
/// and not minted by secret-manager: the tool never deletes it; if it blocks a key slot,
/// delete it yourself once you know it is unused) — plus `missing` rows for keys a
/// manifest references that no longer exist. Exit 10 when a source could not be queried.
#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Provider calls in flight at once.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub concurrency: usize,
}

/// Runs `keys`.
pub async fn cmd_keys(ctx: &mut Ctx, args: &KeysArgs) -> crate::error::Result<u8> {
    let repo = open_repo(ctx)?;
    let filter = build_filter(&args.filter, &repo)?;
    let report = repo.scan();
    report_diagnostics(ctx, &report);
    let ids = secret_manager::keys::identities(&report.secrets, &filter, ctx.now);
    let providers = secret_manager::providers::Providers::builtin(
        repo.config.providers.clone(),
        &secret_manager::journal::RunId::new(ctx.now).0,
    );
    let secret_manager::keys::KeysReport {
        rows,
        failures,
        warnings,
    } = secret_manager::keys::report(&repo, &ids, &providers, ctx.now, args.concurrency).await?;
    for w in &warnings {
        crate::output::say(crate::output::Level::Warn, w);
    }
    // Missing credentials are said once per source (the same line for each identity).
    let mut said = std::collections::BTreeSet::new();
    for f in &failures {
        if f.no_credentials {
            if said.insert(f.source.as_str()) {
                let n = failures
                    .iter()
                    .filter(|g| g.no_credentials && g.source == f.source)
                    .count();
                crate::output::say(
                    crate::output::Level::Error,
                    &format!("{} ({n} identities not listed)", f.error),
                );
            }
            continue;
        }
        crate::output::say(
            crate::output::Level::Error,
            &format!("{} {}: {}", f.source, f.identity, f.error),
        );
    }
    if ctx.global.output == crate::args::Format::Name {
        crate::output::write_names(&mut *ctx.out, rows.iter().map(|r| r.key_id.clone()))?;
    } else if !write_structured(&mut *ctx.out, ctx.global.output, &rows)? {
        let mut t = Table::new(&[
            ("SOURCE", Fit::Drop(3)),
            ("IDENTITY", Fit::Wrap(16)),
            ("KEY ID", Fit::Fixed),
            // The status is what `keys` is read for (`missing`): never dropped.
            ("STATUS", Fit::Fixed),
            ("CREATED", Fit::Fixed),
            ("LAST USED", Fit::Drop(2)),
            ("EXPIRES", Fit::Drop(1)),
            ("ROLE", Fit::Fixed),
            ("REFERENCED BY", Fit::Wrap(16)),
        ])
        .headers(!ctx.global.no_headers)
        .paint("ROLE", |r| match r {
            "current" => Paint::Good,
            "pending" | "claimed" | "foreign" => Paint::Warn,
            "orphan" | "missing" => Paint::Bad,
            _ => Paint::Plain,
        })
        .paint("STATUS", |s| match s {
            "Active" | "active" => Paint::Plain,
            _ => Paint::Dim,
        });
        for r in &rows {
            t.row(vec![
                r.source.clone(),
                r.identity.clone(),
                r.key_id.clone(),
                r.status.clone(),
                r.created.clone().unwrap_or_else(|| "-".into()),
                r.last_used.clone().unwrap_or_else(|| "never".into()),
                r.expires.clone().unwrap_or_else(|| "-".into()),
                r.role.clone(),
                if r.referenced_by.is_empty() {
                    "-".into()
                } else {
                    r.referenced_by.join(", ")
                },
            ]);
        }
        t.print(&mut *ctx.out, ctx.global.output, ctx.global.quiet)?;
    }
    Ok(if failures.is_empty() {
        exit::OK
    } else {
        exit::PREFLIGHT
    })
}
