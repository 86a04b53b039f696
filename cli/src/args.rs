//! Flags shared by several commands. A leaf: it imports no command.

use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// Flags every subcommand accepts.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Root of the GitOps config repo.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = ".",
        env = "SECRET_MANAGER_REPO"
    )]
    pub repo: PathBuf,
    /// Output format for results (logs go to stderr).
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// The kubeconfig every kubectl call uses (the gates, controller:// certificates,
    /// seal --validate); default: kubectl's own ($KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE", hide_short_help = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Tables without their header line (kubectl's --no-headers).
    #[arg(long, global = true, hide_short_help = true)]
    pub no_headers: bool,
    /// Log format on stderr: human text or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, hide_short_help = true)]
    pub log_format: LogFormat,
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Colour: auto (on a terminal, unless NO_COLOR is set), always, or never.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorArg::Auto)]
    pub color: ColorArg,
    /// Answer yes to confirmation prompts.
    #[arg(long, global = true)]
    pub yes: bool,
    /// Never prompt; fail where a prompt would be needed and --yes is absent.
    #[arg(long, global = true, hide_short_help = true)]
    pub non_interactive: bool,
    /// Clone the config repo from URL first (e.g. in a CronJob pod).
    ///
    /// Clones into --repo if given, else into a temporary directory. Credentials come from
    /// git's own configuration (SSH key via GIT_SSH_COMMAND, or an HTTPS credential
    /// helper), never from the URL.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "SECRET_MANAGER_CLONE",
        hide_short_help = true
    )]
    pub clone: Option<String>,
    /// Branch to clone (with --clone).
    #[arg(
        long,
        global = true,
        value_name = "BRANCH",
        default_value = "main",
        hide_short_help = true
    )]
    pub clone_branch: String,
    /// Add a remote to the clone, as NAME=URL (e.g. prod=git@git.example.com:ops/config-prod.git);
    /// repeatable. The dev remote is the clone's origin.
    #[arg(
        long = "clone-remote",
        global = true,
        value_name = "NAME=URL",
        hide_short_help = true
    )]
    pub clone_remotes: Vec<String>,
}

/// Result formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people, fitted to the terminal ($COLUMNS, else its width); on a
    /// pipe or in a file every column in full.
    Table,
    /// Like table, with every column in full (file:line, whole key ids); may be wider.
    Wide,
    /// A JSON array.
    Json,
    /// A YAML sequence.
    Yaml,
    /// Prometheus text exposition format (`list` only).
    Prometheus,
    /// One name per line, for scripts: `list` cluster/namespace/name, `keys` key ids,
    /// `cluster status` cluster ids.
    Name,
}

/// `--color` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorArg {
    /// On a terminal, unless NO_COLOR is set (to anything but empty) or TERM is dumb.
    Auto,
    /// Always, even on a pipe and with NO_COLOR.
    Always,
    /// No colour, even on a terminal.
    Never,
}

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `--shared` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum SharedArg {
    /// Shared manifests are selected with any cluster selection.
    #[default]
    Include,
    /// Shared manifests are never selected.
    Exclude,
    /// Only shared manifests are selected.
    Only,
}

/// Selection shared by list, keys, rotate and delete.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Selection")]
pub struct FilterArgs {
    /// Only credentials older than DUR (e.g. 90d, 12h, 2w).
    ///
    /// A credential of unknown age counts as old.
    #[arg(long, value_name = "DUR")]
    pub older_than: Option<String>,
    /// Only this source (aws, azure, gcp, or a plugin name); repeatable.
    #[arg(long = "source", value_name = "S")]
    pub sources: Vec<String>,
    /// Only this cluster id, or the ids matching a glob such as 'aws.eu-*'; repeatable.
    ///
    /// Cluster ids are cloud.region.name. Shared manifests (no cluster id in their path)
    /// match every cluster (see --shared).
    #[arg(long = "cluster", value_name = "C")]
    pub clusters: Vec<String>,
    /// Shared manifests (no cluster id in their path): include, exclude, or only.
    ///
    /// When CronJobs split a fleet into shards, exactly one shard includes them.
    #[arg(long, value_enum, value_name = "WHICH", default_value_t = SharedArg::Include)]
    pub shared: SharedArg,
    /// Only this namespace.
    #[arg(short = 'n', long, value_name = "N")]
    pub namespace: Option<String>,
    /// Only names matching this glob (e.g. 'cloudprovider-*'); repeatable.
    #[arg(long = "name", value_name = "GLOB")]
    pub names: Vec<String>,
}
