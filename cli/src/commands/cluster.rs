//! `secret-manager cluster status|promote|reconcile`.

use super::{Ctx, confirm, open_git_repo};
use crate::error::UsageError;
use crate::exit;
use crate::output::{Fit, Paint, Table, write_structured};
use clap::{Args, Subcommand};
use secret_manager::gitops::{Fleet, PublishError, PublishMode, ReconcilePlan};

/// Cluster pointers: status, promote (fast-forward), reconcile (after a hot-fix).
///
/// Each cluster follows main through a branch `cluster/<id>` (moved fast-forward only)
/// or a tag `tag/<name>` (moved with a lease), on the remote its cluster-values entry
/// names. Nothing is ever force-pushed.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// Cluster pointer commands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show every cluster's pointer and how far it is from main.
    ///
    /// Per cluster: ref, remote, commit, commits behind/ahead of main, whether it diverged
    /// (a hot-fix not merged back), and whether main holds changes for it that a promote
    /// would ship (pendingUnrelated). Fetches the remotes first; a
    /// cluster whose remote cannot be reached gets a row marked unavailable (exit 12),
    /// the others are shown in full.
    Status,
    /// Fast-forward a cluster's pointer to main, or to --to REV (a commit on main).
    ///
    /// Refuses when the pointer has diverged; run `cluster reconcile` first.
    Promote(PromoteArgs),
    /// Merge a diverged cluster pointer back into main, then fast-forward the pointer.
    ///
    /// The merge is a non-fast-forward commit on main, pushed; the pointer then moves to
    /// it, so the cluster is back on main's line.
    Reconcile(ReconcileArgs),
}

/// `cluster promote` arguments.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// Cluster id (cloud.region.name).
    pub cluster: String,
    /// Target revision on main (default: main's head on its remote).
    #[arg(long, value_name = "REV")]
    pub to: Option<String>,
    /// Print what would happen; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `cluster reconcile` arguments.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Cluster id (cloud.region.name).
    pub cluster: String,
    /// Print what would happen; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn short(oid: &str) -> &str {
    &oid[..oid.len().min(12)]
}

/// The cluster `id`, or a usage error listing the known ones.
fn cluster<'r>(
    repo: &'r secret_manager::Repo,
    id: &str,
) -> crate::error::Result<&'r secret_manager::inventory::Cluster> {
    repo.inventory.get(id).ok_or_else(|| {
        let known: Vec<&str> = repo.inventory.ids().collect();
        UsageError(format!(
            "no cluster `{id}` in cluster-values/ (known: {})",
            known.join(", ")
        ))
        .into()
    })
}

/// Runs `cluster ...`.
pub async fn cmd_cluster(ctx: &mut Ctx, args: &ClusterArgs) -> crate::error::Result<u8> {
    let repo = open_git_repo(ctx)?;
    let fleet = Fleet::new(&repo);
    match &args.command {
        ClusterCommand::Status => cmd_status(ctx, &fleet),
        ClusterCommand::Promote(a) => cmd_promote(ctx, &repo, &fleet, a),
        ClusterCommand::Reconcile(a) => cmd_reconcile(ctx, &repo, &fleet, a),
    }
}

/// `cluster status`.
fn cmd_status(ctx: &mut Ctx, fleet: &Fleet) -> crate::error::Result<u8> {
    let rows = fleet.status()?;
    let code = if rows.iter().any(|r| r.error.is_some()) {
        exit::PUBLISH
    } else {
        exit::OK
    };
    for r in rows.iter().filter(|r| r.error.is_some()) {
        crate::output::say(
            crate::output::Level::Error,
            &format!("{}: {}", r.cluster, r.error.as_deref().unwrap_or_default()),
        );
    }
    if ctx.global.output == crate::args::Format::Name {
        crate::output::write_names(&mut *ctx.out, rows.iter().map(|r| r.cluster.clone()))?;
        return Ok(code);
    }
    if write_structured(&mut *ctx.out, ctx.global.output, &rows)? {
        return Ok(code);
    }
    let mut t = Table::new(&[
        ("CLUSTER", Fit::Fixed),
        ("POINTER", Fit::Drop(1)),
        ("REF", Fit::Wrap(14)),
        ("REMOTE", Fit::Fixed),
        ("COMMIT", Fit::Fixed),
        ("BEHIND", Fit::Fixed),
        ("AHEAD", Fit::Fixed),
        ("DIVERGED", Fit::Fixed),
        ("PENDING", Fit::Fixed),
    ])
    .headers(!ctx.global.no_headers)
    .paint("COMMIT", |c| {
        if c.starts_with('(') {
            Paint::Bad
        } else {
            Paint::Plain
        }
    })
    .paint("DIVERGED", |d| {
        if d == "yes" { Paint::Bad } else { Paint::Plain }
    })
    .paint("BEHIND", |b| match b {
        "0" => Paint::Good,
        "-" => Paint::Plain,
        _ => Paint::Warn,
    });
    for r in &rows {
        let n = |v: Option<usize>| v.map_or("-".to_string(), |v| v.to_string());
        t.row(vec![
            r.cluster.clone(),
            format!("{:?}", r.pointer).to_lowercase(),
            r.refname.clone(),
            r.remote.clone(),
            match (&r.error, r.commit.as_deref()) {
                (Some(_), _) => "(unavailable)".into(),
                (None, None) => "(missing)".into(),
                (None, Some(c)) => short(c).to_owned(),
            },
            n(r.behind_main),
            n(r.ahead_of_main),
            if r.diverged { "yes" } else { "no" }.into(),
            if r.pending_unrelated { "yes" } else { "no" }.into(),
        ]);
    }
    t.print(&mut *ctx.out, ctx.global.output, ctx.global.quiet)?;
    Ok(code)
}

/// Records a promotion in the audit log (`refs/secret-manager/audit` on the main remote):
/// a promotion adds no commit to the pointer, so without this event `audit export` could
/// not say who moved it. The pointer has moved whatever happens here: a failure is a
/// warning.
fn record_promote(
    fleet: &Fleet,
    c: &secret_manager::inventory::Cluster,
    from: &str,
    to: &str,
    commits: usize,
) {
    if let Err(e) = secret_manager::audit::record_promote(fleet, c, from, to, commits) {
        crate::output::say(
            crate::output::Level::Warn,
            &format!(
                "{} was promoted, but the audit log {} could not record it: {e}",
                c.id,
                secret_manager::gitops::events::EVENTS_REF
            ),
        );
    }
}

/// The commits and files a move from `from` to `to` ships (repo text escaped; at most 50
/// lines of each).
fn what_ships(fleet: &Fleet, from: &str, to: &str) -> crate::error::Result<String> {
    const MAX: usize = 50;
    let log = fleet.git().run(&[
        "log",
        "--format=%h %s",
        "--end-of-options",
        &format!("{from}..{to}"),
        "--",
    ])?;
    let files = fleet.git().changed_files(from, to)?;
    let mut out = String::from("\n  commits:");
    let commits: Vec<&str> = log.lines().collect();
    for l in commits.iter().take(MAX) {
        out.push_str(&format!("\n    {}", secret_manager::text::escape(l)));
    }
    if commits.len() > MAX {
        out.push_str(&format!("\n    … and {} more", commits.len() - MAX));
    }
    out.push_str("\n  files:");
    for f in files.iter().take(MAX) {
        out.push_str(&format!("\n    {}", secret_manager::text::escape(f)));
    }
    if files.len() > MAX {
        out.push_str(&format!("\n    … and {} more", files.len() - MAX));
    }
    Ok(out)
}

/// `cluster promote`.
fn cmd_promote(
    ctx: &mut Ctx,
    repo: &secret_manager::Repo,
    fleet: &Fleet,
    a: &PromoteArgs,
) -> crate::error::Result<u8> {
    let c = cluster(repo, &a.cluster)?;
    let (from, to) = fleet.plan_promote(&a.cluster, a.to.as_deref())?;
    let n = fleet.git().count(&from, &to)?;
    let mut plan = format!(
        "promote {}: move {} on {} from {} to {} ({n} commit(s), fast-forward)",
        c.id,
        secret_manager::gitops::pointer_ref(c),
        c.remote,
        short(&from),
        short(&to)
    );
    if from != to {
        plan.push_str(&what_ships(fleet, &from, &to)?);
    }
    if from == to {
        crate::output::say(
            crate::output::Level::Info,
            &format!("{}: already at {}; nothing to do", c.id, short(&to)),
        );
        return Ok(exit::OK);
    }
    if a.dry_run {
        writeln!(ctx.out, "dry run: {plan}")?;
        return Ok(exit::OK);
    }
    if !confirm(ctx, &plan)? {
        return Ok(super::declined());
    }
    let out = fleet.promote(&a.cluster, a.to.as_deref())?;
    writeln!(
        ctx.out,
        "{}: {} -> {} ({})",
        out.cluster,
        short(&out.from),
        short(&out.to),
        out.mode
    )?;
    record_promote(fleet, c, &out.from, &out.to, n);
    Ok(exit::OK)
}

/// `cluster reconcile`.
fn cmd_reconcile(
    ctx: &mut Ctx,
    repo: &secret_manager::Repo,
    fleet: &Fleet,
    a: &ReconcileArgs,
) -> crate::error::Result<u8> {
    let c = cluster(repo, &a.cluster)?;
    let plan = match fleet.plan_reconcile(&a.cluster) {
        // A cluster without its pointer is the operator's to set up.
        Err(PublishError::MissingPointer { .. }) => {
            return Err(
                UsageError(format!("{}: pointer ref is missing on {}", c.id, c.remote)).into(),
            );
        }
        plan => plan?,
    };
    let (p, ahead) = match plan {
        ReconcilePlan::OnMain { pointer } => {
            crate::output::say(
                crate::output::Level::Info,
                &format!(
                    "{}: {} is on main; nothing to reconcile (use `cluster promote` to move it forward)",
                    c.id,
                    short(&pointer)
                ),
            );
            return Ok(exit::OK);
        }
        ReconcilePlan::Merge { pointer, ahead } => (pointer, ahead),
    };
    let plan = format!(
        "reconcile {}: merge {} ({}, {ahead} commit(s) not on main) into main, push main, then fast-forward the pointer to the merge",
        c.id,
        secret_manager::gitops::pointer_ref(c),
        short(&p),
    );
    if a.dry_run {
        writeln!(ctx.out, "dry run: {plan}")?;
        return Ok(exit::OK);
    }
    if !confirm(ctx, &plan)? {
        return Ok(super::declined());
    }
    match fleet.reconcile(&a.cluster)? {
        Some(out) => {
            debug_assert_eq!(out.mode, PublishMode::FastForward);
            writeln!(
                ctx.out,
                "{}: merged into main; pointer {} -> {}",
                out.cluster,
                short(&out.from),
                short(&out.to)
            )?;
        }
        None => crate::output::say(
            crate::output::Level::Info,
            &format!("{}: nothing to reconcile", c.id),
        ),
    }
    Ok(exit::OK)
}

use std::io::Write as _;
