//! `secret-manager rotate` (alias `update`) and `secret-manager delete`.

use super::{Ctx, build_filter, confirm, open_git_repo};
use crate::args::FilterArgs;
use crate::error::UsageError;
use crate::exit;
use crate::output::{Fit, Paint, Table, table_width, write_structured};
use clap::Args;
use secret_manager::config::RevokeMode;
use secret_manager::engine::{Action, RotateOptions, RotateReport, Step, rotate};
use secret_manager::journal::RunId;

/// Rotate credentials with zero downtime: stage, publish, revoke.
///
/// Each run is a closed loop, safe to run every hour and from several pods at once: it
/// first cleans up after runs that died (deleting only keys they minted and never
/// committed), finishes rotations recorded in .secret-manager/rotations/ (publishes staged
/// ones, revokes old keys whose gates passed), then stages new rotations for the selected
/// secrets. Without --older-than every selected secret is rotated now; with it, only the
/// older ones. A credential shared by several manifests is always rotated everywhere at
/// once. A credential another run is working on is reported `busy` and skipped.
///
/// Stage: preflight (permissions, account, certificates, key slots), claim the
/// credential on the main remote, mint, verify the new key, seal it for each cluster,
/// rewrite only the mapped values and our annotations, record the rotation, commit to
/// main. Publish: move each cluster's pointer (fast-forward, or a hot-fix when main holds
/// unrelated changes). Revoke: once every pointer has the change and --revoke-after has
/// passed (and the optional gates agree), delete (or disable) the old key.
///
/// Settings: policies, providers, webhooks, clusters and remotes are read from the fetched
/// main (.secret-manager.yaml, cluster-values/), never from this checkout's branch or
/// uncommitted edits; remote *names* map to URLs in this checkout's git config. Where
/// secrets may go is the operator's: the forge API URL (SECRET_MANAGER_FORGE_API_URL),
/// pinned sealing certificates (SECRET_MANAGER_TRUSTED_CERTS=CLUSTER=SHA256,...) and
/// webhook URLs (environment variables). See docs/security.md.
///
/// Without --yes it prints the plan and asks; without a terminal it needs --yes.
/// SIGINT/SIGTERM finish or undo the step in flight and exit 130/143.
/// Exit codes: 0 ok, nothing due or busy; 10 preflight, 11 mint, 12 publish, 13 revoke,
/// 14 a gate cannot be evaluated (docs/exit-codes.md).
#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub run: RunArgs,
}

/// Remove SealedSecrets from the repo, publish, then revoke their keys.
///
/// Removes only the selected documents (other documents of a multi-document file stay
/// byte for byte), commits, publishes to each cluster like a rotation, and after the
/// grace period revokes the key at the source — unless another manifest still uses it,
/// in which case the key is kept. Needs at least one selection flag.
#[derive(Debug, Args)]
// The flags are rotate's; their words are about a removal (no new key is minted).
#[command(
    mut_arg("dry_run", |a| a
        .help("Print the plan and change nothing anywhere")
        .long_help("Print the plan and change nothing anywhere.\n\nThe plan says which documents are removed from which files, which pointers move, and which keys are revoked (or kept, because another manifest still uses them) and when.")),
    mut_arg("revoke_after", |a| a
        .help("Grace period between publishing the removal and revoking the key")
        .long_help("Grace period between publishing the removal and revoking the key.\n\nDefault: policy.revokeAfter in .secret-manager.yaml, else 1h.")),
    mut_arg("revoke_mode", |a| a
        .help("`delete` the key, or `disable` it and delete it on a later run")
        .long_help("`delete` the key, or `disable` it and delete it on a later run.\n\nDefault: policy.revokeMode in .secret-manager.yaml, else delete.")),
    mut_arg("require_synced", |a| a.hide(true)),
    mut_arg("require_argocd_synced", |a| a.hide(true)),
    mut_arg("require_consumers_restarted", |a| a.hide(true)),
    mut_arg("kubelet_sync_period", |a| a.hide(true)),
    mut_arg("allow_login_gap", |a| a.hide(true)),
    mut_arg("gate_command", |a| a.hide(true)),
    mut_arg("require_old_key_unused", |a| a
        .help("Before revoking, wait until the source reports no use of the key since publish")
        .long_help("Before revoking, wait until the source reports no use of the key since publish.\n\nAWS: GetAccessKeyLastUsed; Azure: the sign-in logs; GCP: the Policy Analyzer's key activity.")),
    mut_arg("concurrency", |a| a
        .long_help("Credentials whose provider calls run at once; lower it when a source throttles.\n\nProvider calls are preflight and revoke. Git work is batched regardless: one commit and push per phase, one pointer move per cluster.")),
    mut_arg("reseal", |a| a.hide(true)),
    mut_arg("rollback", |a| a.hide(true)),
)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub run: RunArgs,
}

/// Flags of `rotate` and `delete`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Print the plan and change nothing anywhere.
    ///
    /// The plan says what is minted, which files change, which pointers move, and which
    /// keys are revoked and when.
    #[arg(long)]
    pub dry_run: bool,
    /// Grace period between publishing the new key and revoking the old one.
    ///
    /// Default: policy.revokeAfter in .secret-manager.yaml, else 1h.
    #[arg(long, value_name = "DUR")]
    pub revoke_after: Option<String>,
    /// `delete` the old key, or `disable` it and delete it on a later run.
    ///
    /// Default: policy.revokeMode in .secret-manager.yaml, else delete.
    #[arg(long, value_enum)]
    pub revoke_mode: Option<RevokeModeArg>,
    /// Before revoking, wait until each cluster's SealedSecret has synced the new key.
    ///
    /// Checks with kubectl, in the cluster's kubeContext, that the SealedSecret shows the
    /// new key id with Synced=True at its current generation. kubectl that cannot run or
    /// reach the cluster is an error (exit 14), not a wait.
    #[arg(long)]
    pub require_synced: bool,
    /// Before revoking, wait until each cluster's Argo CD application has synced it.
    ///
    /// Checks with kubectl, in the cluster's kubeContext, that the application named by
    /// argocdApp in its cluster-values file (`name` in namespace argocd, or
    /// `namespace/name`) is Synced and Healthy at a revision whose files hold the new key.
    /// Degraded is an error (exit 14): the old key stays, and the rotation rolls back
    /// (policy.rollbackOnFailure).
    #[arg(long)]
    pub require_argocd_synced: bool,
    /// Before revoking, wait until the pods reading the Secret have it.
    ///
    /// Checks with kubectl, in the cluster's kubeContext, the pods of the Secret's
    /// namespace that name it (env, envFrom, a secret or projected volume): each must carry
    /// the stage's `secret-manager/rotated` hash in its template (consumers.restart), or
    /// have started after the cluster got the change, or mount the Secret as a whole
    /// volume (no subPath, no env) with --kubelet-sync-period passed since; then be Ready.
    /// A pod with the new value in CrashLoopBackOff is an error (exit 14): the old key
    /// stays, and the rotation rolls back (policy.rollbackOnFailure).
    #[arg(long)]
    pub require_consumers_restarted: bool,
    /// Rotate `strategy: single-user` database logins without --require-consumers-restarted.
    ///
    /// A single-user rotation replaces the password in use when it mints, before any
    /// cluster has the new value: consumers fail to log in until they restart with it.
    /// Without this flag (or the consumers gate) such a secret is refused before anything
    /// is minted (exit 10). The default strategy, alternating-users, has no gap.
    #[arg(long, hide_short_help = true)]
    pub allow_login_gap: bool,
    /// How long after publish a whole-volume Secret mount has the new value
    /// (--require-consumers-restarted).
    ///
    /// The kubelet refreshes mounted Secrets on its sync (1 min by default) from a cache
    /// (1 min TTL by default): 2m unless the kubelets are configured otherwise.
    #[arg(long, value_name = "DUR", default_value = "2m", hide_short_help = true)]
    pub kubelet_sync_period: String,
    /// Before revoking, run this program for each cluster and wait until it passes.
    ///
    /// `PROGRAM gate` reads JSON on stdin: version, cluster, source, identity, oldKeyId,
    /// newKeyId, publishedAt and the cluster's secrets (namespace, name, file) — never a
    /// value. Exit 0 passes, 75 waits, anything else is an error (exit 14) that keeps the
    /// old key; stderr is quoted in the step. It runs isolated like an exec plugin: a
    /// cleared environment (PATH, HOME, locale, proxies, TMPDIR, KUBECONFIG), its own
    /// process group, 5 minutes at most. A smoke test, or an Argo Workflow submit --wait.
    #[arg(long, value_name = "PROGRAM")]
    pub gate_command: Option<std::path::PathBuf>,
    /// Before revoking, wait until the source reports no use of the old key since publish.
    ///
    /// AWS: GetAccessKeyLastUsed; Azure: the sign-in logs (AuditLog.Read.All, from 10 min
    /// after publish); GCP: the Policy Analyzer's key activity (by day: 1-2 days);
    /// github-deploy-key: the deploy key's `last_used`; plugins that declare
    /// reportsLastUse. Sources that cannot tell (random, postgres, mysql, an Azure tenant
    /// without P1/P2) keep the grace period only, and the revoke step says so.
    #[arg(long)]
    pub require_old_key_unused: bool,
    /// Credentials whose provider calls run at once; lower it when a source throttles.
    ///
    /// Provider calls are preflight, mint, verify and revoke. Git work is batched
    /// regardless: one commit and push per phase, one pointer move per cluster.
    #[arg(long, default_value_t = secret_manager::engine::DEFAULT_CONCURRENCY as u16,
          value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Also select managed credentials sealed with an outdated certificate.
    ///
    /// With --older-than: credentials that are due or outdated; alone: only the outdated
    /// ones. A rotation re-seals with the cluster's current certificate. Unmanaged
    /// SealedSecrets sealed with an old certificate are listed on stderr (their values
    /// cannot be read, so they cannot be re-sealed here).
    #[arg(long)]
    pub reseal: bool,
    /// Roll back the selected rotations in flight instead of rotating.
    ///
    /// For each selected rotation that is staged or published — its old key neither
    /// revoked nor disabled — one commit on main gives every manifest back the ciphertexts
    /// and key annotations it had before the rotation (other changes to the file stay) and
    /// restarts the workloads the rotation restarted; the pointers get it like a rotation,
    /// and the rotation's new key is revoked after the grace period and the gates the
    /// rotation was staged with. A rotation whose old key is gone cannot be rolled back:
    /// only forward. Not in pull-request mode yet. Needs a selection (--cluster,
    /// --namespace, --name or --source); `--dry-run` shows what it would do.
    #[arg(long, conflicts_with = "reseal")]
    pub rollback: bool,
    /// After the run, write Prometheus metrics to PATH (atomically).
    ///
    /// E.g. into node_exporter's textfile collector directory.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<std::path::PathBuf>,
    /// After the run, push the metrics to this Prometheus Pushgateway (job secret-manager).
    ///
    /// The grouping label is shard=<--metrics-shard> (instance stays Prometheus' own: the
    /// Pushgateway's address). Pushed with POST, so a failed run replaces every series it
    /// writes but keeps secret_manager_last_success_timestamp_seconds of the last good one.
    /// A failed push (or metrics file) is exit 16 when the run itself succeeded; a failed
    /// run keeps its own code.
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,
    /// The shard label of pushed metrics (default: from the selection).
    ///
    /// E.g. source-aws_cluster-aws.eu-*: stable across runs, distinct per CronJob.
    #[arg(
        long,
        value_name = "NAME",
        env = "SECRET_MANAGER_METRICS_SHARD",
        alias = "metrics-instance",
        hide_short_help = true
    )]
    pub metrics_shard: Option<String>,
    /// POST a JSON summary to a Slack/Mattermost-compatible webhook; repeatable.
    ///
    /// Give `env:NAME` to read the URL from an environment variable (webhook URLs carry a
    /// token; keep them out of argv). A failing webhook is reported and never changes the
    /// exit code.
    #[arg(long, value_name = "URL|env:NAME")]
    pub notify: Vec<String>,
    /// When --notify posts: failure, change (something changed or failed), or always.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = NotifyOnArg::Failure)]
    pub notify_on: NotifyOnArg,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `--notify-on` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum NotifyOnArg {
    /// Only when something failed.
    Failure,
    /// When something changed or failed.
    Change,
    /// After every run.
    Always,
}

impl From<NotifyOnArg> for secret_manager::config::NotifyOn {
    fn from(a: NotifyOnArg) -> Self {
        match a {
            NotifyOnArg::Failure => Self::Failure,
            NotifyOnArg::Change => Self::Change,
            NotifyOnArg::Always => Self::Always,
        }
    }
}

/// `--revoke-mode` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RevokeModeArg {
    /// Delete the old key.
    Delete,
    /// Disable it.
    Disable,
}

fn cells(s: &Step) -> Vec<String> {
    vec![
        s.action.as_str().to_owned(),
        s.source.clone(),
        s.identity.clone(),
        s.old_key_id.clone().unwrap_or_else(|| "-".into()),
        s.new_key_id.clone().unwrap_or_else(|| "-".into()),
        if s.clusters.is_empty() {
            "-".into()
        } else {
            s.clusters.join(",")
        },
        if s.done { "yes" } else { "no" }.into(),
        s.detail.clone(),
    ]
}

/// What an action means, for colour.
fn action_paint(a: &str) -> Paint {
    match a {
        "revoke" | "publish" | "stage" => Paint::Good,
        "wait" | "busy" | "propose" | "skip" => Paint::Warn,
        "undo" | "abandon" | "interrupted" => Paint::Bad,
        _ => Paint::Plain,
    }
}

/// The steps as a table when it fits the terminal (always on a pipe), else one block per
/// step: identities, key ids and clusters are never cut, whatever the terminal's width.
fn render_steps(
    out: &mut dyn std::io::Write,
    steps: &[Step],
    wide: bool,
) -> crate::error::Result<()> {
    let headers = [
        "ACTION", "SOURCE", "IDENTITY", "OLD KEY", "NEW KEY", "CLUSTERS", "DONE", "DETAIL",
    ];
    let mut t = Table::new(&headers.map(|h| (h, Fit::Fixed)))
        .paint("ACTION", action_paint)
        .paint("DONE", |d| {
            if d == "yes" {
                Paint::Good
            } else {
                Paint::Plain
            }
        });
    for s in steps {
        t.row(cells(s));
    }
    if wide || table_width().is_none_or(|w| t.width() <= w) {
        t.render(out, usize::MAX)?;
        return Ok(());
    }
    for (i, s) in steps.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        let safe = crate::output::terminal_safe;
        writeln!(
            out,
            "{}  {}  {}",
            crate::output::painted(s.action.as_str(), action_paint(s.action.as_str())),
            safe(&s.source),
            safe(&s.identity)
        )?;
        let mut line = |k: &str, v: &str| writeln!(out, "  {k:<9} {}", safe(v));
        if let Some(k) = &s.old_key_id {
            line("old key", k)?;
        }
        if let Some(k) = &s.new_key_id {
            line("new key", k)?;
        }
        if !s.clusters.is_empty() {
            line("clusters", &s.clusters.join(", "))?;
        }
        for f in &s.files {
            line("file", f)?;
        }
        line("done", if s.done { "yes" } else { "no" })?;
        line("detail", &s.detail)?;
    }
    Ok(())
}

fn render(ctx: &mut Ctx, report: &RotateReport) -> crate::error::Result<()> {
    if write_structured(&mut *ctx.out, ctx.global.output, report)? {
        return Ok(());
    }
    if report.steps.is_empty() && report.failures.is_empty() {
        writeln!(
            ctx.out,
            "nothing to do: no selected credential is due and no rotation is in flight"
        )?;
        // rotate reads the remote's main: a change only in this checkout is not seen.
        if let Ok(repo) = secret_manager::Repo::open(&ctx.global.repo)
            && let Some(s) =
                secret_manager::gitops::checkout::state(&secret_manager::gitops::Fleet::new(&repo))
            && (s.ahead > 0 || s.dirty)
            && let Some(note) = s.note()
        {
            crate::output::say(crate::output::Level::Info, &format!("note: {note}"));
        }
        return Ok(());
    }
    let wide = ctx.global.output == crate::args::Format::Wide;
    render_steps(&mut *ctx.out, &report.steps, wide)
}

/// After a run: fast-forwards a clean checkout of main to the main the run pushed (so that
/// `list` shows the new keys), else says why the checkout differs.
fn follow_main(ctx: &Ctx) -> crate::error::Result<()> {
    let Ok(repo) = secret_manager::Repo::open(&ctx.global.repo) else {
        return Ok(());
    };
    let fleet = secret_manager::gitops::Fleet::new(&repo);
    match secret_manager::gitops::checkout::fast_forward(&fleet) {
        Ok(0) => {}
        Ok(n) => {
            if !ctx.global.quiet {
                crate::output::say(
                    crate::output::Level::Info,
                    &format!(
                        "fast-forwarded this checkout to {}/{} ({n} commit(s))",
                        fleet.main_remote(),
                        fleet.main_branch()
                    ),
                );
            }
            return Ok(());
        }
        Err(e) => tracing::warn!(error = %e, "could not fast-forward the checkout"),
    }
    if !ctx.global.quiet
        && let Some(s) = secret_manager::gitops::checkout::state(&fleet)
        && s.behind > 0
        && let Some(note) = s.note()
    {
        crate::output::say(crate::output::Level::Info, &format!("note: {note}"));
    }
    Ok(())
}

/// Whether a plan has anything to confirm (a change somewhere).
fn changes_something(plan: &RotateReport) -> bool {
    plan.steps
        .iter()
        .any(|s| !matches!(s.action, Action::Skip | Action::Wait | Action::Busy))
}

/// The run's options (a dry run until the plan is confirmed) and its providers.
fn options(
    ctx: &Ctx,
    repo: &secret_manager::Repo,
    args: &RunArgs,
    delete: bool,
) -> crate::error::Result<(RotateOptions, secret_manager::providers::Providers)> {
    let filter = build_filter(&args.filter, repo)?;
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
    let kubelet_sync_period = secret_manager::duration::parse_chrono(&args.kubelet_sync_period)
        .map_err(|e| UsageError(format!("--kubelet-sync-period: {e}")))?;
    let run = RunId::new(ctx.now);
    let providers =
        secret_manager::providers::Providers::builtin(repo.config.providers.clone(), &run.0);
    let opts = RotateOptions {
        filter,
        revoke_after,
        revoke_mode,
        dry_run: true,
        delete,
        rollback: args.rollback,
        now: ctx.now,
        fixed_clock: std::env::var_os("SECRET_MANAGER_NOW").is_some(),
        run,
        require_synced: args.require_synced,
        require_argocd_synced: args.require_argocd_synced,
        require_consumers_restarted: args.require_consumers_restarted,
        allow_login_gap: args.allow_login_gap,
        kubelet_sync_period,
        gate_command: args.gate_command.clone(),
        require_old_key_unused: args.require_old_key_unused,
        concurrency: usize::from(args.concurrency),
        observer: None,
        phases: None,
        cancel: None,
    };
    Ok((opts, providers))
}

/// Reports failures, an interruption and the summary line on stderr: each once, as text
/// lines or (`--log-format json`) as one JSON event each.
fn summarize(ctx: &Ctx, report: &RotateReport, verb: &str, dry_run: bool) {
    let json = crate::output::json_logs();
    let mut said = std::collections::BTreeSet::new();
    for f in &report.failures {
        let cluster = f
            .cluster
            .as_deref()
            .map(|c| format!(" (cluster {c})"))
            .unwrap_or_default();
        // Where in the run, when the kind of step does not already say it: a git step
        // that fails while revoking reads "Publish failed ..., during revoke".
        let during = if f.during.name() == f.phase.to_string().to_lowercase() {
            String::new()
        } else {
            format!(", during {}", f.during)
        };
        // A source without credentials, an unreachable remote: the same error for many
        // credentials is said in full once, the others point at it.
        let error = match f.error.said_once_as() {
            Some(key) if !said.insert(key.clone()) => format!("{key} (see above)"),
            _ => f.error.to_string(),
        };
        if json {
            tracing::error!(
                phase = %f.phase,
                during = %f.during,
                source = %f.source,
                identity = %f.identity,
                cluster = f.cluster.as_deref(),
                error = %crate::output::terminal_safe(&error),
                "{verb} failed"
            );
        } else {
            crate::output::say(
                crate::output::Level::Error,
                &format!(
                    "{} failed for {} {}{cluster}{during}: {error}",
                    f.phase, f.source, f.identity
                ),
            );
        }
    }
    if let Some(signal) = &report.interrupted {
        crate::output::say(
            crate::output::Level::Warn,
            &format!(
                "{verb} interrupted by {signal}: the steps above say where each credential was left; the next run continues from there"
            ),
        );
    }
    // In a dry run nothing is done: the counts are what the run would do.
    let n = |a: Action| {
        if dry_run {
            report.steps.iter().filter(|s| s.action == a).count()
        } else {
            report.count(a)
        }
    };
    let busy = report
        .steps
        .iter()
        .filter(|s| s.action == Action::Busy)
        .count();
    if !ctx.global.quiet && !json {
        let [stage, delete, publish, revoke, clean, undo, propose] = [
            Action::Stage,
            Action::Delete,
            Action::Publish,
            Action::Revoke,
            Action::Cleanup,
            Action::Undo,
            Action::Propose,
        ]
        .map(n);
        let failed = report.failures.len();
        let rolled = n(Action::Rollback);
        let line = if dry_run {
            let rb = if rolled > 0 {
                format!(", roll back {rolled}")
            } else {
                String::new()
            };
            format!(
                "{verb} (dry run, nothing changed): would stage {stage}, delete {delete}, publish {publish}, revoke {revoke}, clean {clean} orphan(s), undo {undo}, propose {propose}{rb}; {busy} busy, {failed} failed"
            )
        } else {
            let rb = if rolled > 0 {
                format!(", {rolled} rolled back")
            } else {
                String::new()
            };
            format!(
                "{verb}: {stage} staged, {delete} deleted, {publish} published, {revoke} revoked, {clean} orphan(s) cleaned, {undo} undone, {propose} proposed{rb}, {busy} busy, {failed} failed"
            )
        };
        crate::output::say(crate::output::Level::Info, &line);
    }
    tracing::info!(
        run = %report.run,
        dry_run,
        staged = n(Action::Stage),
        deleted = n(Action::Delete),
        published = n(Action::Publish),
        revoked = n(Action::Revoke),
        cleaned = n(Action::Cleanup),
        undone = n(Action::Undo),
        proposed = n(Action::Propose),
        busy,
        failed = report.failures.len(),
        interrupted = report.interrupted.as_deref(),
        "{verb} run finished"
    );
}

/// Runs `rotate`, or `delete` when `delete` is set.
pub async fn cmd_rotate(ctx: &mut Ctx, args: &RunArgs, delete: bool) -> crate::error::Result<u8> {
    if delete
        && (args.reseal
            || args.rollback
            || args.require_synced
            || args.require_argocd_synced
            || args.require_consumers_restarted
            || args.gate_command.is_some())
    {
        return Err(UsageError(format!(
            "delete: {} is a rotation flag (a removed SealedSecret has no new key to re-seal or to sync); see `secret-manager delete --help`",
            if args.reseal {
                "--reseal"
            } else if args.rollback {
                "--rollback"
            } else if args.require_synced {
                "--require-synced"
            } else if args.require_argocd_synced {
                "--require-argocd-synced"
            } else if args.require_consumers_restarted {
                "--require-consumers-restarted"
            } else {
                "--gate-command"
            }
        ))
        .into());
    }
    let checkout = open_git_repo(ctx)?;
    // Every setting the run acts on — policies, provider settings, webhooks, clusters —
    // comes from the fetched main, never from this checkout's branch or uncommitted edits.
    let repo = secret_manager::Repo::main_of(&checkout.root)?;
    let f = &args.filter;
    let selects_nothing = f.sources.is_empty()
        && f.clusters.is_empty()
        && f.shared == crate::args::SharedArg::Include
        && f.namespace.is_none()
        && f.names.is_empty();
    if delete && selects_nothing {
        return Err(UsageError("delete needs a selection (--name, --cluster, --namespace or --source); it never deletes everything".into()).into());
    }
    if args.rollback && selects_nothing {
        return Err(UsageError("rotate --rollback needs a selection (--name, --cluster, --namespace or --source); it never rolls back every rotation in flight (`secret-manager list` shows them)".into()).into());
    }
    let (mut opts, providers) = options(ctx, &repo, args, delete)?;
    let verb = if delete { "delete" } else { "rotate" };
    // Checked before anything runs: a missing webhook variable is a usage error.
    let notify = crate::notify::targets(&args.notify, args.notify_on.into(), &repo.config.notify)?;
    if args.reseal {
        reseal_selection(ctx, &repo, &mut opts).await;
    }
    let started = (chrono::Utc::now(), std::time::Instant::now());
    if !args.dry_run && !ctx.global.yes {
        // Show the plan and ask.
        let plan = rotate(&ctx.global.repo, &providers, &opts).await?;
        render(ctx, &plan)?;
        if !changes_something(&plan) && plan.failures.is_empty() {
            return Ok(exit::OK);
        }
        if !confirm(ctx, &format!("{verb}: carry out the plan above?"))? {
            return Ok(super::declined());
        }
    }
    opts.dry_run = args.dry_run;
    opts.cancel = Some(crate::signals::install());
    // Progress on a terminal (text logs only): one bar per phase with its counts.
    let progress = (std::io::IsTerminal::is_terminal(&std::io::stderr())
        && ctx.global.log_format == crate::args::LogFormat::Text
        && !ctx.global.quiet)
        .then(Progress::new);
    if let Some(p) = &progress {
        p.attach(&mut opts);
    }
    let report = rotate(&ctx.global.repo, &providers, &opts).await?;
    if let Some(p) = progress {
        p.finish();
    }
    if !args.dry_run {
        follow_main(ctx)?;
    }
    render(ctx, &report)?;
    summarize(ctx, &report, verb, args.dry_run);
    let code = exit::for_report(&report);
    if args.dry_run {
        return Ok(code);
    }
    let delivered = write_metrics(ctx, args, &report, started, code).await;
    crate::notify::send(&notify, &report, code, verb).await;
    Ok(if code == exit::OK && !delivered {
        exit::METRICS
    } else {
        code
    })
}

/// `--reseal`: adds the manifests sealed with an outdated certificate to the selection
/// (only them without --older-than), and names the unmanaged ones it cannot re-seal.
async fn reseal_selection(ctx: &Ctx, repo: &secret_manager::Repo, opts: &mut RotateOptions) {
    let report = repo.scan();
    let certs = secret_manager::reseal::CurrentCerts::load(repo, &report.secrets, ctx.now).await;
    let prefix = &repo.config.annotation_prefix;
    let outdated = certs.outdated(&report.secrets, prefix);
    for f in report
        .secrets
        .iter()
        .filter(|f| f.managed.is_none() && outdated.contains(&secret_manager::reseal::at(f)))
    {
        crate::output::say(
            crate::output::Level::Warn,
            &format!(
                "{}:{}: unmanaged SealedSecret {} is sealed with an outdated certificate; re-seal its values by hand (secret-manager seal --merge-into)",
                f.file.display(),
                f.doc.line,
                f.doc.name.as_deref().unwrap_or("-")
            ),
        );
    }
    opts.filter.outdated = Some(std::sync::Arc::new(outdated));
    opts.filter.reseal = if opts.filter.older_than.is_some() {
        secret_manager::list::Reseal::AlsoOutdated
    } else {
        secret_manager::list::Reseal::OnlyOutdated
    };
}

/// The default `shard` of pushed metrics: the run's selection (`source-aws_cluster-
/// aws.eu-_shared-exclude`), the same on every run of one CronJob and different between
/// shards, so that each job replaces its own group. A pod name would differ every run.
fn selection_shard(f: &FilterArgs) -> String {
    let mut parts = Vec::new();
    for (k, vs) in [("source", &f.sources), ("cluster", &f.clusters)] {
        if !vs.is_empty() {
            parts.push(format!("{k}-{}", vs.join("+")));
        }
    }
    if let Some(v) = &f.namespace {
        parts.push(format!("namespace-{v}"));
    }
    if !f.names.is_empty() {
        parts.push(format!("name-{}", f.names.join("+")));
    }
    if f.shared != crate::args::SharedArg::Include {
        parts.push(format!("shared-{:?}", f.shared).to_lowercase());
    }
    if parts.is_empty() {
        return "all".into();
    }
    parts.join("_")
}

/// `--metrics-file` and `--pushgateway` after a run; false when either failed (each
/// failure is said on stderr).
async fn write_metrics(
    ctx: &Ctx,
    args: &RunArgs,
    report: &RotateReport,
    started: (chrono::DateTime<chrono::Utc>, std::time::Instant),
    code: u8,
) -> bool {
    if args.metrics_file.is_none() && args.pushgateway.is_none() {
        return true;
    }
    let mut m = crate::metrics::Metrics::new();
    // The credentials as the checkout now shows them (fast-forwarded to main after the
    // run when it was clean, as in a CronJob's clone).
    if let Ok(repo) = secret_manager::Repo::open(&ctx.global.repo) {
        let scan = repo.scan();
        let certs = secret_manager::reseal::CurrentCerts::load(&repo, &scan.secrets, ctx.now).await;
        let rows = secret_manager::list::rows_with_certs(
            &scan.secrets,
            &secret_manager::list::Filter::default(),
            ctx.now,
            repo.config.max_age,
            Some((&certs, &repo.config.annotation_prefix)),
        );
        m.credentials(&rows, ctx.now);
        m.scan(&scan);
    }
    // A failed run keeps the last good run's time (the textfile is rewritten whole).
    let last_success = args
        .metrics_file
        .as_deref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| crate::metrics::last_success_in(&t));
    m.run(
        report,
        started.0,
        started.1.elapsed(),
        code == exit::OK,
        last_success,
    );
    let text = m.encode();
    let mut ok = true;
    if let Some(path) = &args.metrics_file
        && let Err(e) = crate::metrics::write_textfile(path, &text)
    {
        crate::output::say(crate::output::Level::Error, &format!("{e:#}"));
        ok = false;
    }
    if let Some(url) = &args.pushgateway {
        let shard = args
            .metrics_shard
            .clone()
            .unwrap_or_else(|| selection_shard(&args.filter));
        if let Err(e) = crate::metrics::push(url, &shard, &text).await {
            crate::output::say(crate::output::Level::Error, &format!("{e:#}"));
            ok = false;
        }
    }
    ok
}

use std::io::Write as _;

/// Per-phase progress bars on stderr (indicatif's `MultiProgress`): `preflight 3/5`,
/// `mint 2/2`, `publish 1/2`, `revoke 0/2`; each phase's bar is finished when the next
/// one starts, so the terminal keeps a line per phase.
struct Progress {
    multi: indicatif::MultiProgress,
    current: std::sync::Arc<
        std::sync::Mutex<Option<(secret_manager::engine::Phase, indicatif::ProgressBar)>>,
    >,
}

impl Progress {
    fn new() -> Self {
        Progress {
            multi: indicatif::MultiProgress::new(),
            current: Default::default(),
        }
    }

    fn style() -> indicatif::ProgressStyle {
        indicatif::ProgressStyle::with_template("{prefix:>9} {bar:24} {pos}/{len}  {wide_msg}")
            .expect("a valid template")
            .progress_chars("=> ")
    }

    /// Which phase's bar a step counts for.
    fn phase_of(a: Action) -> Option<secret_manager::engine::Phase> {
        use secret_manager::engine::Phase;
        match a {
            Action::Minted | Action::Propose | Action::Undo => Some(Phase::Mint),
            Action::Publish => Some(Phase::Publish),
            Action::Revoke | Action::Wait => Some(Phase::Revoke),
            _ => None,
        }
    }

    fn attach(&self, opts: &mut RotateOptions) {
        let (multi, current) = (self.multi.clone(), self.current.clone());
        opts.phases = Some(std::sync::Arc::new(move |phase, n| {
            let mut cur = current.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((prev, pb)) = cur.take() {
                // What passed preflight is what the next phase starts with.
                if prev == secret_manager::engine::Phase::Preflight {
                    pb.set_position(n as u64);
                }
                pb.finish();
            }
            let pb = multi.add(indicatif::ProgressBar::new(n as u64));
            pb.set_style(Self::style());
            pb.set_prefix(format!("{phase:?}").to_lowercase());
            pb.enable_steady_tick(std::time::Duration::from_millis(200));
            *cur = Some((phase, pb));
        }));
        let current = self.current.clone();
        opts.observer = Some(std::sync::Arc::new(move |s: &Step| {
            let cur = current.lock().unwrap_or_else(|e| e.into_inner());
            let Some((phase, pb)) = cur.as_ref() else {
                return;
            };
            pb.set_message(format!("{} {} {}", s.action, s.source, s.identity));
            if Self::phase_of(s.action) == Some(*phase) && pb.position() < pb.length().unwrap_or(0)
            {
                pb.inc(1);
            }
        }));
    }

    fn finish(self) {
        if let Some((_, pb)) = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            pb.finish_with_message("done");
        }
    }
}
