//! `secret-manager audit export`.

use super::{Ctx, open_git_repo};
use crate::error::UsageError;
use crate::exit;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use secret_manager::audit::{AuditOptions, export, write_csv};
use secret_manager::gitops::Fleet;

/// The audit trail: who rotated what and when, rebuilt from git.
///
/// `audit export [--since T] [--until T] [--cluster C] [--source S] [--format jsonl|csv]`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// Audit commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Rebuild who rotated what and when from git.
    ///
    /// One record per action and secret, from main, every cluster pointer and the audit log ref (cleanups, undos, abandoned
    /// claims), plus `manual` records for hand edits of key ids. Schema: docs/audit.md.
    /// No secret value ever appears in it.
    Export(ExportArgs),
}

/// `audit export` arguments.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Only records from this time on: an RFC 3339 time (2026-12-01T08:00:00Z), a date
    /// (2026-12-01, meaning 00:00 UTC), or an age (30d: thirty days before now).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Only records up to this time (same forms as --since).
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// Only this cluster.
    #[arg(long, value_name = "C")]
    pub cluster: Option<String>,
    /// Only this source.
    #[arg(long, value_name = "S")]
    pub source: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = AuditFormat::Jsonl)]
    pub format: AuditFormat,
}

/// `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
}

/// Runs `audit ...`.
/// `--since`/`--until` as an RFC 3339 time: a time as given, a bare date at 00:00 UTC, or
/// an age before `now`. (git's own date parser takes a bare date at the current time of
/// day, and anything it cannot parse silently as "now".)
pub fn audit_time(flag: &str, v: &str, now: DateTime<Utc>) -> Result<String, UsageError> {
    let v = v.trim();
    let t = if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        t.with_timezone(&Utc)
    } else if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
    } else if let Ok(age) = secret_manager::duration::parse_chrono(v) {
        now - age
    } else {
        return Err(UsageError(format!(
            "{flag}: `{v}` is not a time; give an RFC 3339 time (2026-12-01T08:00:00Z), a date (2026-12-01, 00:00 UTC) or an age (30d)"
        )));
    };
    Ok(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

pub async fn cmd_audit(ctx: &mut Ctx, args: &AuditArgs) -> crate::error::Result<u8> {
    let AuditCommand::Export(a) = &args.command;
    let since = a
        .since
        .as_deref()
        .map(|v| audit_time("--since", v, ctx.now))
        .transpose()?;
    let until = a
        .until
        .as_deref()
        .map(|v| audit_time("--until", v, ctx.now))
        .transpose()?;
    let repo = open_git_repo(ctx)?;
    let fleet = Fleet::new(&repo);
    let (refs, warnings) = secret_manager::audit::history_refs(&fleet, &repo)?;
    for w in &warnings {
        crate::output::say(crate::output::Level::Warn, w);
    }
    let opts = AuditOptions {
        since,
        until,
        cluster: a.cluster.clone(),
        source: a.source.clone(),
        prefix: repo.config.annotation_prefix.clone(),
        cluster_ids: repo.inventory.ids().map(str::to_owned).collect(),
    };
    let records = export(fleet.git(), &refs, &opts)?;
    match a.format {
        AuditFormat::Jsonl => {
            for r in &records {
                serde_json::to_writer(&mut *ctx.out, r)?;
                writeln!(ctx.out)?;
            }
        }
        AuditFormat::Csv => write_csv(&mut *ctx.out, &records)?,
    }
    if !ctx.global.quiet {
        crate::output::say(
            crate::output::Level::Info,
            &format!(
                "{} audit record(s) from {} ref(s)",
                records.len(),
                refs.len()
            ),
        );
    }
    Ok(exit::OK)
}

use std::io::Write as _;
