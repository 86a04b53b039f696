//! Global flags and the subcommand list.

use crate::commands::audit::AuditArgs;
use crate::commands::rotate::RotateArgs;
use crate::commands::{
    cluster::ClusterArgs, create::CreateArgs, keys::KeysArgs, lint::LintArgs, list::ListArgs,
    seal::SealArgs,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Keeps the credentials inside Bitnami SealedSecrets fresh across a GitOps fleet.
///
/// secret-manager reads a GitOps config repo, finds the SealedSecrets annotated with
/// `secret-manager/source` (and friends), and reports which credentials are old.
/// See docs/guide.md for the annotation format and the rotation model.
#[derive(Debug, Parser)]
#[command(name = "secret-manager", version, propagate_version = true)]
#[command(
    after_help = "Examples:\n  secret-manager --repo ./config list --older-than 90d\n  secret-manager list --source aws --cluster aws.eu-central-1.dev1 -o json\n  secret-manager lint --max-age 180d"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand accepts.
#[derive(Debug, Args)]
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
    /// Log format on stderr: human text or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Answer yes to confirmation prompts.
    #[arg(long, global = true)]
    pub yes: bool,
    /// Never prompt; fail where a prompt would be needed and --yes is absent.
    #[arg(long, global = true)]
    pub non_interactive: bool,
    /// Clone the config repo from URL first (into --repo if given, else a temporary
    /// directory), e.g. in a CronJob pod. Credentials come from git's own configuration
    /// (SSH key via GIT_SSH_COMMAND, or an HTTPS credential helper), never from the URL.
    #[arg(long, global = true, value_name = "URL", env = "SECRET_MANAGER_CLONE")]
    pub clone: Option<String>,
    /// Branch to clone (with --clone).
    #[arg(long, global = true, value_name = "BRANCH", default_value = "main")]
    pub clone_branch: String,
    /// Add a remote to the clone, as NAME=URL (e.g. prod=git@git.example.com:ops/config-prod.git);
    /// repeatable. The dev remote is the clone's origin.
    #[arg(long = "clone-remote", global = true, value_name = "NAME=URL")]
    pub clone_remotes: Vec<String>,
}

/// Result formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people, fitted to the terminal ($COLUMNS, else 120).
    Table,
    /// Like table, with every column in full (file:line, whole key ids); may be wider.
    Wide,
    /// A JSON array.
    Json,
    /// A YAML sequence.
    Yaml,
}

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List annotated SealedSecrets, oldest first.
    ///
    /// By default only managed secrets (those with a `secret-manager/source` annotation) are
    /// shown; `--all` adds unmanaged SealedSecrets. Files that cannot be parsed are reported on
    /// stderr and skipped. STATE is `due` when older than the policy's maxAge
    /// (.secret-manager.yaml, default 90d), `ok` when younger, `invalid` when the annotations
    /// cannot drive a rotation (run `lint`), `unmanaged` without a source.
    /// `-o wide` adds FILE:LINE; `-o json` rows also carry scope, createDate, file, line and document.
    List(ListArgs),
    /// Check every managed SealedSecret: required annotations per source present and
    /// well-formed, createDate parseable, keyMappings keys present in encryptedData and naming
    /// known provider fields, a known source, a resolvable namespace for strict and
    /// namespace-wide scope, an unambiguous cluster, and optionally a maximum age.
    /// Unparseable files that mention SealedSecret are findings too.
    ///
    /// Exit status: 0 when clean, 3 when there are findings (so a PR pipeline can gate on it).
    Lint(LintArgs),
    /// Seal values into a new SealedSecret, or into an existing one (kubeseal-compatible).
    ///
    /// Values come from --from-literal / --from-file, or from a Kubernetes Secret manifest
    /// (YAML or JSON) on stdin, as with kubeseal; the manifest's labels and annotations are
    /// copied into the template, without kubectl's last-applied-configuration and without
    /// ownerReferences. The certificate comes from the cluster's sealingCert, or --cert.
    /// The certificate's SHA-256 fingerprint is recorded in the outer annotation
    /// secret-manager/sealedWith.
    ///
    /// --merge-into FILE changes only the given keys of the SealedSecret in FILE (picked by
    /// --name when the file holds several), keeps its scope, never re-seals the other values,
    /// and leaves every other byte of the file as it was.
    ///
    /// Examples:
    ///   kubectl create secret generic db -n app --from-literal=password=... --dry-run=client -o yaml \
    ///     | secret-manager seal --cluster aws.eu-central-1.dev1 -w db-sealed.yaml
    ///   secret-manager seal --from-file password=./pw.txt --merge-into overlays/aws.eu-central-1.dev1/db.yaml
    Seal(SealArgs),
    /// Cluster pointers: status, promote (fast-forward), reconcile (after a hot-fix).
    ///
    /// Each cluster follows main through a branch `cluster/<id>` (moved fast-forward only)
    /// or a tag `tag/<name>` (moved with a lease), on the remote its cluster-values entry
    /// names. Nothing is ever force-pushed.
    Cluster(ClusterArgs),
    /// Keys that exist at the source for every managed identity, and who references them.
    ///
    /// For each identity (e.g. an AWS IAM user) the selected manifests point at, lists the
    /// keys the source has: created, status, last used, and ROLE — `current` (a manifest
    /// references it), `pending` (the old or new key of a rotation in flight), `orphan`
    /// (nothing references it) — plus `missing` rows for keys a manifest
    /// references that no longer exist. This is where you see orphans and the two-key squeeze
    /// before a rotation. Exit 10 when a source could not be queried.
    Keys(KeysArgs),
    /// Mint a new credential, seal it for a cluster and write a new annotated SealedSecret
    /// (the seed's bootstrap step "create secrets").
    ///
    /// Checks certificate, provider and permissions first; if anything fails after the key
    /// was minted, the new key is deleted again so nothing is left orphaned.
    ///
    /// Example:
    ///   secret-manager create --source aws --cluster aws.eu-central-1.dev1 \
    ///     --namespace external-dns --name cloudprovider-dns-access \
    ///     --key-mappings "[accessKeyId:AccessKeyId,secretAccessKey:SecretAccessKey]" \
    ///     --param username=external-dns-dev1 --param account=111111111111 \
    ///     -w applications/root/external-dns/state/overlays/aws.eu-central-1.dev1/sealedSeacret-cloud-dns.yaml
    ///
    /// --param per source: aws username, account; azure tenantId, applicationObjectId
    /// (the object id, not the appId), clientId; gcp project, serviceAccount (email).
    /// Output fields for --key-mappings: aws AccessKeyId, SecretAccessKey; azure ClientId,
    /// ClientSecret, TenantId, KeyId; gcp KeyFileJson, KeyId, ClientEmail.
    Create(CreateArgs),
    /// Rotate credentials with zero downtime: stage, publish, revoke (seed §6).
    ///
    /// Each run is a closed loop, safe to run every hour: it first finishes rotations
    /// recorded in .secret-manager/rotations/ (publishes staged ones, revokes old keys whose
    /// gates passed), deletes keys an interrupted run minted but never committed, then stages
    /// new rotations for the selected secrets. Without --older-than every selected secret is
    /// rotated now; with it, only the older ones. A credential shared by several manifests is
    /// always rotated everywhere at once.
    ///
    /// Stage: preflight, mint, verify the new key, seal it for each cluster, rewrite only
    /// the mapped values and our annotations, record the rotation, commit to main.
    /// Publish: move each cluster's pointer (fast-forward, or a hot-fix when main holds
    /// unrelated changes). Revoke: once every pointer has the change and --revoke-after has
    /// passed, delete (or disable) the old key.
    ///
    /// Without --yes it prints the plan and asks; without a terminal it needs --yes.
    /// Exit codes: 0 ok or nothing due, 10 preflight, 11 mint, 12 publish, 13 revoke failed.
    #[command(visible_alias = "update")]
    Rotate(RotateArgs),
    /// Remove SealedSecrets from the repo, publish, then revoke their keys (seed §6).
    ///
    /// Removes only the selected documents (other documents of a multi-document file stay
    /// byte for byte), commits, publishes to each cluster like a rotation, and after the
    /// grace period revokes the key at the source — unless another manifest still uses it,
    /// in which case the key is kept. Needs at least one selection flag.
    Delete(RotateArgs),
    /// The audit trail: `audit export [--since T] [--until T] [--cluster C] [--source S]
    /// [--format jsonl|csv]`.
    Audit(AuditArgs),
}

/// Selection shared by list, rotate and delete.
#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Only credentials older than DUR (e.g. 90d, 12h, 2w). Unknown age counts as old.
    #[arg(long, value_name = "DUR")]
    pub older_than: Option<String>,
    /// Only this source (aws, azure, gcp, or a plugin name); repeatable.
    #[arg(long = "source", value_name = "S")]
    pub sources: Vec<String>,
    /// Only this cluster id (cloud.region.name); repeatable. Shared manifests match every cluster.
    #[arg(long = "cluster", value_name = "C")]
    pub clusters: Vec<String>,
    /// Only this namespace.
    #[arg(long, value_name = "N")]
    pub namespace: Option<String>,
    /// Only names matching this glob (e.g. 'cloudprovider-*').
    #[arg(long, value_name = "GLOB")]
    pub name: Option<String>,
}
