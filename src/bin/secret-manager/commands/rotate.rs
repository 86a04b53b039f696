//! `secret-manager rotate` (alias `update`).

use super::{Ctx, build_filter, confirm, open_repo};
use crate::args::FilterArgs;
use crate::exit::{self, UsageError};
use crate::output::{Fit, Table, table_width, write_structured};
use clap::Args;
use secret_manager::config::RevokeMode;
use secret_manager::engine::{Phase, RotateOptions, RotateReport, rotate};

/// Arguments of `rotate` (help text lives on `Command::Rotate`).
#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print the plan (what is minted, which files change, which pointers move, which keys
    /// are revoked and when) and change nothing anywhere.
    #[arg(long)]
    pub dry_run: bool,
    /// Grace period between publishing the new key and revoking the old one
    /// (default: policy.revokeAfter, 1h).
    #[arg(long, value_name = "DUR")]
    pub revoke_after: Option<String>,
    /// `delete` the old key, or `disable` it (default: policy.revokeMode).
    #[arg(long, value_enum)]
    pub revoke_mode: Option<RevokeModeArg>,
    /// Also wait until each cluster's SealedSecret shows the new key id with Synced=True at
    /// its current generation (kubectl, using the cluster's kubeContext).
    #[arg(long)]
    pub require_synced: bool,
    /// Also wait until the source reports no use of the old key since publish (AWS:
    /// GetAccessKeyLastUsed).
    #[arg(long)]
    pub require_old_key_unused: bool,
    /// Credentials whose provider calls (preflight, mint, verify, revoke) run at once.
    /// Git work is batched regardless: one commit and push per phase, one pointer move
    /// per cluster. Lower it when a source throttles.
    #[arg(long, default_value_t = secret_manager::engine::DEFAULT_CONCURRENCY as u16,
          value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
}

/// `--revoke-mode` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RevokeModeArg {
    /// Delete the old key.
    Delete,
    /// Disable it.
    Disable,
}

fn render(ctx: &mut Ctx, report: &RotateReport) -> anyhow::Result<()> {
    if write_structured(&mut *ctx.out, ctx.global.output, report)? {
        return Ok(());
    }
    if report.steps.is_empty() {
        writeln!(
            ctx.out,
            "nothing to do: no selected credential is due and no rotation is in flight"
        )?;
        return Ok(());
    }
    let mut t = Table::new(&[
        ("ACTION", Fit::Fixed),
        ("SOURCE", Fit::Fixed),
        ("IDENTITY", Fit::Right(16)),
        ("OLD KEY", Fit::Right(10)),
        ("NEW KEY", Fit::Right(10)),
        ("CLUSTERS", Fit::Right(14)),
        ("DONE", Fit::Fixed),
        ("DETAIL", Fit::Right(20)),
    ]);
    for s in &report.steps {
        t.row(vec![
            s.action.clone(),
            s.source.clone(),
            s.identity.clone(),
            s.old_key_id.clone().unwrap_or_else(|| "-".into()),
            s.new_key_id.clone().unwrap_or_else(|| "-".into()),
            s.clusters.join(","),
            if s.done { "yes" } else { "no" }.into(),
            s.detail.clone(),
        ]);
    }
    let wide = ctx.global.output == crate::args::Format::Wide;
    t.render(&mut *ctx.out, if wide { usize::MAX } else { table_width() })?;
    Ok(())
}

/// Runs `rotate`, or `delete` when `delete` is set.
pub async fn cmd_rotate(ctx: &mut Ctx, args: &RotateArgs, delete: bool) -> anyhow::Result<u8> {
    let repo = open_repo(ctx)?;
    let f = &args.filter;
    if delete
        && f.sources.is_empty()
        && f.clusters.is_empty()
        && f.namespace.is_none()
        && f.name.is_none()
    {
        return Err(UsageError("delete needs a selection (--name, --cluster, --namespace or --source); it never deletes everything".into()).into());
    }
    let filter = build_filter(&args.filter, &repo)?;
    let revoke_after = match &args.revoke_after {
        Some(d) => secret_manager::duration::parse_chrono(d)
            .map_err(|e| UsageError(format!("--revoke-after: {e}")))?,
        None => repo.config.revoke_after,
    };
    let revoke_mode = match args.revoke_mode {
        Some(RevokeModeArg::Delete) => RevokeMode::Delete,
        Some(RevokeModeArg::Disable) => RevokeMode::Disable,
        None => repo.config.revoke_mode,
    };
    let providers = secret_manager::providers::Providers::default();
    let mut opts = RotateOptions {
        filter,
        revoke_after,
        revoke_mode,
        dry_run: true,
        delete,
        now: ctx.now,
        require_synced: args.require_synced,
        require_old_key_unused: args.require_old_key_unused,
        concurrency: usize::from(args.concurrency),
        observer: None,
    };
    if !args.dry_run && !ctx.global.yes {
        // Show the plan and ask (seed §5.3: "confirm that the operator wants to continue").
        let plan = rotate(&ctx.global.repo, &providers, &opts).await?;
        if plan
            .steps
            .iter()
            .all(|s| s.action == "skip" || s.action == "wait")
            && plan.failures.is_empty()
        {
            render(ctx, &plan)?;
            return Ok(exit::OK);
        }
        render(ctx, &plan)?;
        if !confirm(
            ctx,
            if delete {
                "delete: carry out the plan above?"
            } else {
                "rotate: carry out the plan above?"
            },
        )? {
            return Ok(exit::USAGE);
        }
    }
    opts.dry_run = args.dry_run;
    // Progress on a terminal (text logs only): a spinner naming the step just done.
    let spinner = (std::io::IsTerminal::is_terminal(&std::io::stderr())
        && ctx.global.log_format == crate::args::LogFormat::Text
        && !ctx.global.quiet)
        .then(|| {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.enable_steady_tick(std::time::Duration::from_millis(120));
            pb.set_message(if delete { "deleting…" } else { "rotating…" });
            pb
        });
    if let Some(pb) = &spinner {
        let pb = pb.clone();
        let n = std::sync::atomic::AtomicUsize::new(0);
        opts.observer = Some(std::sync::Arc::new(
            move |s: &secret_manager::engine::Step| {
                let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                pb.set_message(format!(
                    "step {i}: {} {} {}",
                    s.action, s.source, s.identity
                ));
            },
        ));
    }
    let report = rotate(&ctx.global.repo, &providers, &opts).await?;
    if let Some(pb) = spinner {
        pb.finish_and_clear();
    }
    render(ctx, &report)?;
    for f in &report.failures {
        crate::output::say(
            crate::output::Level::Info,
            &format!(
                "error: {:?} failed for {} {}: {}",
                f.phase, f.source, f.identity, f.error
            ),
        );
    }
    let count = |a: &str| {
        report
            .steps
            .iter()
            .filter(|s| s.done && s.action == a)
            .count()
    };
    if !ctx.global.quiet {
        crate::output::say(
            crate::output::Level::Info,
            &format!(
                "{}{}: {} staged, {} deleted, {} published, {} revoked, {} orphan(s) cleaned, {} failed",
                if delete { "delete" } else { "rotate" },
                if args.dry_run { " (dry run)" } else { "" },
                count("stage"),
                count("delete"),
                count("publish"),
                count("revoke"),
                count("cleanup"),
                report.failures.len()
            ),
        );
    }
    tracing::info!(
        staged = count("stage"),
        published = count("publish"),
        revoked = count("revoke"),
        failed = report.failures.len(),
        "rotate run finished"
    );
    Ok(match report.failures.iter().map(|f| f.phase).max() {
        None => exit::OK,
        Some(Phase::Preflight) => exit::PREFLIGHT,
        Some(Phase::Mint) => exit::MINT,
        Some(Phase::Publish) => exit::PUBLISH,
        Some(Phase::Revoke) => exit::REVOKE,
    })
}

use std::io::Write as _;
