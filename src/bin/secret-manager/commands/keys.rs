//! `secret-manager keys`.

use super::{Ctx, build_filter, open_repo, report_diagnostics};
use crate::args::FilterArgs;
use crate::exit;
use crate::output::{Fit, Table, table_width, write_structured};
use clap::Args;

/// Arguments of `keys` (help text lives on `Command::Keys`).
#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Provider calls in flight at once.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub concurrency: usize,
}

/// Runs `keys`.
pub async fn cmd_keys(ctx: &mut Ctx, args: &KeysArgs) -> anyhow::Result<u8> {
    let repo = open_repo(ctx)?;
    let filter = build_filter(&args.filter, &repo)?;
    let report = repo.scan();
    report_diagnostics(ctx, &report);
    let ids = secret_manager::keys::identities(&report.secrets, &filter, ctx.now);
    let providers = secret_manager::providers::Providers::default();
    let records = secret_manager::engine::record::load_records(&repo.root)?;
    let (rows, failures) =
        secret_manager::keys::key_rows(&providers, &ids, &records, args.concurrency).await;
    for f in &failures {
        crate::output::say(
            crate::output::Level::Error,
            &format!("{} {}: {}", f.source, f.identity, f.error),
        );
    }
    if !write_structured(&mut *ctx.out, ctx.global.output, &rows)? {
        let mut t = Table::new(&[
            ("SOURCE", Fit::Fixed),
            ("IDENTITY", Fit::Right(16)),
            ("KEY ID", Fit::Right(12)),
            ("STATUS", Fit::Fixed),
            ("CREATED", Fit::Right(10)),
            ("LAST USED", Fit::Right(10)),
            ("ROLE", Fit::Fixed),
            ("REFERENCED BY", Fit::Right(12)),
        ]);
        for r in &rows {
            t.row(vec![
                r.source.clone(),
                r.identity.clone(),
                r.key_id.clone(),
                r.status.clone(),
                r.created.clone().unwrap_or_else(|| "-".into()),
                r.last_used.clone().unwrap_or_else(|| "never".into()),
                r.role.clone(),
                if r.referenced_by.is_empty() {
                    "-".into()
                } else {
                    r.referenced_by.join(", ")
                },
            ]);
        }
        t.render(
            &mut *ctx.out,
            if ctx.global.output == crate::args::Format::Wide {
                usize::MAX
            } else {
                table_width()
            },
        )?;
    }
    Ok(if failures.is_empty() {
        exit::OK
    } else {
        exit::PREFLIGHT
    })
}
