//! The command line: [`Cli`], the subcommand list, and dispatch. One file per subcommand;
//! each holds its `<Verb>Args` (whose doc comment is the command's help) and
//! `cmd_<verb>`, which turns the args into library types and calls the library.

pub mod audit;
pub mod cluster;
pub mod completions;
pub mod create;
pub mod demo;
pub mod eks_token;
pub mod keys;
pub mod lint;
pub mod list;
pub mod man;
pub mod rotate;
pub mod seal;

use crate::args::{FilterArgs, GlobalArgs};
use crate::error::Context as _;
use crate::error::{CommandError, UsageError};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use secret_manager::list::Filter;

/// Keeps the credentials inside Bitnami SealedSecrets fresh across a GitOps fleet.
///
/// secret-manager reads a GitOps config repo, finds the SealedSecrets annotated with
/// `secret-manager/source` (and friends), reports which credentials are old, and rotates
/// them with zero downtime: mint a new key, seal it, publish it to each cluster's branch or
/// tag, then revoke the old key. See docs/guide.md.
#[derive(Debug, Parser)]
#[command(name = "secret-manager", version, propagate_version = true)]
#[command(
    after_help = "Examples:\n  secret-manager --repo ./config list --older-than 90d\n  secret-manager rotate --older-than 90d --dry-run\n  secret-manager rotate --source aws --cluster aws.eu-central-1.dev1 --yes\n  secret-manager audit export --since 2026-01-01"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands; each one's help is the doc comment of its `<Verb>Args`.
#[derive(Debug, Subcommand)]
pub enum Command {
    List(list::ListArgs),
    Lint(lint::LintArgs),
    Seal(seal::SealArgs),
    Cluster(cluster::ClusterArgs),
    Keys(keys::KeysArgs),
    Create(create::CreateArgs),
    #[command(visible_alias = "update")]
    Rotate(rotate::RotateArgs),
    Delete(rotate::DeleteArgs),
    Audit(audit::AuditArgs),
    Demo(demo::DemoArgs),
    EksToken(eks_token::EksTokenArgs),
    Completions(completions::CompletionsArgs),
    Man(man::ManArgs),
}

/// What every command gets: global flags, the time, and where to write results.
pub struct Ctx {
    pub global: GlobalArgs,
    pub now: DateTime<Utc>,
    pub out: Box<dyn std::io::Write>,
    /// Keeps a `--clone` into a temporary directory alive for the run.
    _clone_dir: Option<tempfile::TempDir>,
}

/// `--clone`: clone the config repo (and add remotes) before the command runs; into a
/// temporary directory (kept alive for the run) when `--repo` is not given.
fn clone_repo(global: &mut GlobalArgs) -> crate::error::Result<Option<tempfile::TempDir>> {
    let Some(url) = global.clone.clone() else {
        return Ok(None);
    };
    secret_manager::gitops::checkout::check_clone_url(&url)?;
    let (dir, keep) = if global.repo == std::path::Path::new(".") {
        let t = tempfile::Builder::new()
            .prefix("secret-manager-clone-")
            .tempdir()?;
        (t.path().join("repo"), Some(t))
    } else {
        (global.repo.clone(), None)
    };
    secret_manager::gitops::checkout::clone_into(
        &url,
        &global.clone_branch,
        &dir,
        &global.clone_remotes,
    )?;
    global.repo = dir;
    Ok(keep)
}

/// The reference time: `SECRET_MANAGER_NOW` (RFC 3339, for reproducible runs) or the clock.
fn now() -> crate::error::Result<DateTime<Utc>> {
    match std::env::var("SECRET_MANAGER_NOW") {
        Ok(s) => secret_manager::annotations::parse_create_date(&s)
            .map_err(|e| UsageError(format!("SECRET_MANAGER_NOW: {e}")).into()),
        Err(_) => Ok(Utc::now()),
    }
}

/// Runs the parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> crate::error::Result<u8> {
    let mut global = cli.global;
    check_output_format(global.output, &cli.command)?;
    ensure_temp_dir()?;
    let clone_dir = clone_repo(&mut global)?;
    // Reports go out in 64 KiB writes: stdout is line-buffered, which costs one write(2)
    // per line (160,000 for a 10,000-row `list -o json`). Commands that run for minutes
    // (rotate, delete, create) keep writing line by line, so a log shows their progress
    // and a killed pod loses nothing it printed.
    let buffered = !matches!(
        cli.command,
        Command::Rotate(_) | Command::Delete(_) | Command::Create(_)
    );
    let out: Box<dyn std::io::Write> = if buffered {
        Box::new(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout().lock(),
        ))
    } else {
        Box::new(std::io::stdout().lock())
    };
    // `--log-format json`: stdout is JSON lines too, except where a format that is not
    // JSON was asked for by name (`-o yaml`, `-o prometheus`).
    let out: Box<dyn std::io::Write> = if global.log_format == crate::args::LogFormat::Json
        && !matches!(
            global.output,
            crate::args::Format::Yaml | crate::args::Format::Prometheus | crate::args::Format::Name
        ) {
        Box::new(crate::output::JsonLines::new(out))
    } else {
        out
    };
    let mut ctx = Ctx {
        global,
        now: now()?,
        out,
        _clone_dir: clone_dir,
    };
    let code = run_command(&mut ctx, &cli.command).await;
    // What is still buffered is part of the answer: a failed write (a closed pipe, a full
    // disk) is an error, not a silent truncation.
    let flushed = ctx.out.flush();
    let code = code?;
    flushed?;
    Ok(code)
}

/// `-o name` and `-o prometheus` only where they mean something, checked before anything
/// runs: a rotation must not run and only then find its report format unknown.
fn check_output_format(format: crate::args::Format, command: &Command) -> crate::error::Result<()> {
    use crate::args::Format;
    let named = matches!(command, Command::List(_) | Command::Keys(_))
        || matches!(command, Command::Cluster(c) if matches!(c.command, cluster::ClusterCommand::Status));
    match format {
        Format::Name if !named => Err(UsageError(
            "-o name is for `list`, `keys` and `cluster status`; use table, wide, json or yaml here".into(),
        )
        .into()),
        Format::Prometheus if !matches!(command, Command::List(_)) => Err(UsageError(
            "-o prometheus is for `list` (and `rotate --metrics-file`); use table, wide, json or yaml here".into(),
        )
        .into()),
        _ => Ok(()),
    }
}

async fn run_command(ctx: &mut Ctx, command: &Command) -> crate::error::Result<u8> {
    match command {
        Command::List(a) => list::cmd_list(ctx, a).await,
        Command::Lint(a) => lint::cmd_lint(ctx, a).await,
        Command::Seal(a) => seal::cmd_seal(ctx, a).await,
        Command::Cluster(a) => cluster::cmd_cluster(ctx, a).await,
        Command::Keys(a) => keys::cmd_keys(ctx, a).await,
        Command::Create(a) => create::cmd_create(ctx, a).await,
        Command::Rotate(a) => rotate::cmd_rotate(ctx, &a.run, false).await,
        Command::Delete(a) => rotate::cmd_rotate(ctx, &a.run, true).await,
        Command::Audit(a) => audit::cmd_audit(ctx, a).await,
        Command::Demo(a) => demo::cmd_demo(ctx, a),
        Command::EksToken(a) => eks_token::cmd_eks_token(ctx, a).await,
        Command::Completions(a) => completions::cmd_completions(ctx, a),
        Command::Man(a) => man::cmd_man(ctx, a),
    }
}

/// Creates `TMPDIR` when it names a directory that does not exist yet: the CronJob points
/// it at a fresh work volume (`/work/tmp`), so temporary worktrees count against that
/// volume's size limit instead of a small `/tmp`.
fn ensure_temp_dir() -> crate::error::Result<()> {
    if let Some(dir) = std::env::var_os("TMPDIR").filter(|d| !d.is_empty()) {
        let dir = std::path::PathBuf::from(dir);
        if !dir.exists() {
            std::fs::create_dir_all(&dir).with_context(|| {
                format!(
                    "TMPDIR {} does not exist and cannot be created; point TMPDIR at a writable directory",
                    dir.display()
                )
            })?;
        }
    }
    Ok(())
}

/// Opens the repo named by `--repo`; warns when the directory does not look like a config
/// repo (no `cluster-values/`, not a git work tree): `--repo /tmp` would otherwise list
/// whatever SealedSecrets happen to lie there.
pub fn open_repo(ctx: &Ctx) -> crate::error::Result<secret_manager::Repo> {
    let root = &ctx.global.repo;
    if !ctx.global.quiet
        && root.is_dir()
        && !root.join("cluster-values").is_dir()
        && !root.join(".git").exists()
    {
        crate::output::say(
            crate::output::Level::Warn,
            &format!(
                "{} has no cluster-values/ and is not a git work tree: is it the config repo? (set --repo or SECRET_MANAGER_REPO)",
                root.display()
            ),
        );
    }
    secret_manager::Repo::open(root)
        .with_context(|| format!("cannot open config repo {}", root.display()))
}

/// Opens the repo for a command that works with its remotes (rotate, delete, cluster,
/// audit): it must be a git work tree, else a usage error says how to get one.
pub fn open_git_repo(ctx: &Ctx) -> crate::error::Result<secret_manager::Repo> {
    let repo = open_repo(ctx)?;
    let inside = std::process::Command::new("git")
        .arg("-C")
        .arg(&repo.root)
        .args(["rev-parse", "--is-inside-work-tree"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if !inside {
        return Err(CommandError::usage(format!(
            "{} is not a git work tree: this command reads and pushes the config repo's remotes",
            repo.root.display()
        ))
        .hint("run it in a clone (git clone <url>), or pass --clone URL"));
    }
    Ok(repo)
}

/// Turns filter flags into a validated [`Filter`].
use secret_manager::annotations::BUILTIN_SOURCES;

/// `--source s` must name a built-in source or a plugin on PATH: a typo (`AWS`) would
/// otherwise select nothing and look like a fleet with nothing to do.
fn check_source(s: &str) -> crate::error::Result<()> {
    if BUILTIN_SOURCES.contains(&s) || secret_manager::plugin_exists(s) {
        return Ok(());
    }
    let lower = s.to_ascii_lowercase();
    let e = CommandError::usage(format!(
        "--source {}: unknown source (built in: {}; any other is a plugin `secret-manager-provider-<name>` on PATH, and none is called that)",
        secret_manager::text::escape(s),
        BUILTIN_SOURCES.join(", ")
    ));
    if lower != s
        && (BUILTIN_SOURCES.contains(&lower.as_str()) || secret_manager::plugin_exists(&lower))
    {
        return Err(e.hint(format!("did you mean `{lower}`?")));
    }
    Err(e)
}

pub fn build_filter(f: &FilterArgs, repo: &secret_manager::Repo) -> crate::error::Result<Filter> {
    let older_than = f
        .older_than
        .as_deref()
        .map(secret_manager::duration::parse_chrono)
        .transpose()
        .map_err(|e| UsageError(format!("--older-than: {e}")))?;
    let (mut clusters, mut cluster_globs) = (Vec::new(), Vec::new());
    for c in &f.clusters {
        let known = || {
            let ids: Vec<&str> = repo.inventory.ids().collect();
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            }
        };
        if c.contains(['*', '?', '[', '{']) {
            let g = globset::Glob::new(c)
                .map_err(|e| UsageError(format!("--cluster: `{c}` is not a glob: {e}")))?
                .compile_matcher();
            if !repo.inventory.ids().any(|id| g.is_match(id)) {
                return Err(UsageError(format!(
                    "--cluster {c}: matches no cluster in cluster-values/ (known: {})",
                    known()
                ))
                .into());
            }
            cluster_globs.push(g);
        } else if repo.inventory.get(c).is_none() {
            return Err(UsageError(format!(
                "--cluster {c}: no such cluster in cluster-values/ (known: {})",
                known()
            ))
            .into());
        } else {
            clusters.push(c.clone());
        }
    }
    let name = if f.names.is_empty() {
        None
    } else {
        let mut set = globset::GlobSetBuilder::new();
        for g in &f.names {
            set.add(
                globset::Glob::new(g)
                    .map_err(|e| UsageError(format!("--name: `{g}` is not a glob: {e}")))?,
            );
        }
        Some(
            set.build()
                .map_err(|e| UsageError(format!("--name: {e}")))?,
        )
    };
    for s in &f.sources {
        check_source(s)?;
    }
    Ok(Filter {
        older_than,
        sources: f.sources.clone(),
        clusters,
        cluster_globs,
        shared: match f.shared {
            crate::args::SharedArg::Include => secret_manager::list::Shared::Include,
            crate::args::SharedArg::Exclude => secret_manager::list::Shared::Exclude,
            crate::args::SharedArg::Only => secret_manager::list::Shared::Only,
        },
        namespace: f.namespace.clone(),
        name,
        include_unmanaged: false,
        ..Filter::default()
    })
}

/// Prints scan diagnostics on stderr (unless -q).
pub fn report_diagnostics(ctx: &Ctx, report: &secret_manager::scan::ScanReport) {
    if ctx.global.quiet {
        return;
    }
    let mut skipped = 0;
    for d in &report.diagnostics {
        match d.kind {
            secret_manager::scan::DiagnosticKind::Error => {
                crate::output::say(crate::output::Level::Warn, &format!("{d}"))
            }
            // Chart templates are expected in a GitOps repo: one line per run, the
            // files under -v.
            secret_manager::scan::DiagnosticKind::Skipped if ctx.global.verbose > 0 => {
                crate::output::say(crate::output::Level::Info, &format!("note: skipped {d}"))
            }
            secret_manager::scan::DiagnosticKind::Skipped => skipped += 1,
        }
    }
    if skipped > 0 {
        crate::output::say(
            crate::output::Level::Info,
            &format!(
                "note: skipped {skipped} Helm/Go template file{} (not plain YAML, never edited; -v lists them)",
                if skipped == 1 { "" } else { "s" }
            ),
        );
    }
}

/// The operator answered no at the prompt: said so, and it is not a failure (exit 0).
pub fn declined() -> u8 {
    crate::output::say(crate::output::Level::Info, "answered no: nothing changed");
    crate::exit::OK
}

/// Asks before a change: `--yes` answers yes; without a TTY (or with --non-interactive)
/// there is nobody to ask, so the command fails and says to pass `--yes`.
pub fn confirm(ctx: &Ctx, plan: &str) -> crate::error::Result<bool> {
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
