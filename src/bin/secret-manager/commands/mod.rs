//! One file per subcommand; each turns its args into library types and calls the library.

pub mod audit;
pub mod cluster;
pub mod create;
pub mod keys;
pub mod lint;
pub mod list;
pub mod rotate;
pub mod seal;

use crate::args::{Cli, Command, FilterArgs, GlobalArgs};
use crate::exit::UsageError;
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use secret_manager::list::Filter;

/// What every command gets: global flags, the time, and where to write results.
pub struct Ctx {
    pub global: GlobalArgs,
    pub now: DateTime<Utc>,
    pub out: Box<dyn std::io::Write>,
}

/// The reference time: `SECRET_MANAGER_NOW` (RFC 3339, for reproducible runs) or the clock.
fn now() -> anyhow::Result<DateTime<Utc>> {
    match std::env::var("SECRET_MANAGER_NOW") {
        Ok(s) => secret_manager::annotations::parse_create_date(&s)
            .map_err(|e| UsageError(format!("SECRET_MANAGER_NOW: {e}")).into()),
        Err(_) => Ok(Utc::now()),
    }
}

/// Runs the parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let mut ctx = Ctx {
        global: cli.global,
        now: now()?,
        out: Box::new(std::io::stdout().lock()),
    };
    match &cli.command {
        Command::List(a) => list::cmd_list(&mut ctx, a),
        Command::Lint(a) => lint::cmd_lint(&mut ctx, a),
        Command::Seal(a) => seal::cmd_seal(&mut ctx, a).await,
        Command::Cluster(a) => cluster::cmd_cluster(&mut ctx, a).await,
        Command::Keys(a) => keys::cmd_keys(&mut ctx, a).await,
        Command::Rotate(a) => rotate::cmd_rotate(&mut ctx, a, false).await,
        Command::Delete(a) => rotate::cmd_rotate(&mut ctx, a, true).await,
        Command::Audit(a) => audit::cmd_audit(&mut ctx, a).await,
        Command::Create(a) => create::cmd_create(&mut ctx, a).await,
    }
}

/// Opens the repo named by `--repo`.
pub fn open_repo(ctx: &Ctx) -> anyhow::Result<secret_manager::Repo> {
    secret_manager::Repo::open(&ctx.global.repo)
        .with_context(|| format!("cannot open config repo {}", ctx.global.repo.display()))
}

/// Turns filter flags into a validated [`Filter`].
pub fn build_filter(f: &FilterArgs, repo: &secret_manager::Repo) -> anyhow::Result<Filter> {
    let older_than = f
        .older_than
        .as_deref()
        .map(secret_manager::duration::parse_chrono)
        .transpose()
        .map_err(|e| UsageError(format!("--older-than: {e}")))?;
    for c in &f.clusters {
        if repo.inventory.get(c).is_none() {
            let known: Vec<&str> = repo.inventory.ids().collect();
            return Err(UsageError(format!(
                "--cluster {c}: no such cluster in cluster-values/ (known: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
            .into());
        }
    }
    let name = f
        .name
        .as_deref()
        .map(|g| {
            globset::Glob::new(g)
                .map(|g| g.compile_matcher())
                .map_err(|e| UsageError(format!("--name: `{g}` is not a glob: {e}")))
        })
        .transpose()?;
    Ok(Filter {
        older_than,
        sources: f.sources.clone(),
        clusters: f.clusters.clone(),
        namespace: f.namespace.clone(),
        name,
        include_unmanaged: false,
    })
}

/// Prints scan diagnostics on stderr (unless -q).
pub fn report_diagnostics(ctx: &Ctx, report: &secret_manager::scan::ScanReport) {
    if ctx.global.quiet {
        return;
    }
    for d in &report.diagnostics {
        match d.kind {
            secret_manager::scan::DiagnosticKind::Error => eprintln!("warning: {d}"),
            secret_manager::scan::DiagnosticKind::Skipped => eprintln!("note: skipped {d}"),
        }
    }
}

/// Asks before a change: `--yes` answers yes; without a TTY (or with --non-interactive)
/// there is nobody to ask, so the command fails and says to pass `--yes`.
pub fn confirm(ctx: &Ctx, plan: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if ctx.global.yes {
        return Ok(true);
    }
    if ctx.global.non_interactive || !std::io::stdin().is_terminal() {
        return Err(UsageError(format!(
            "{plan}\nconfirmation needed: pass --yes to proceed without a prompt"
        ))
        .into());
    }
    eprint!("{plan}\nProceed? [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES"))
}
