//! `secret-manager seal`.

use super::{Ctx, open_repo};
use crate::error::Context as _;
use crate::error::UsageError;
use crate::exit;
use clap::{ArgGroup, Args, ValueEnum};
use secret_manager::manifest::Scope;
use secret_manager::manifest::render::NewSealedSecret;
use secret_manager::seal::{CertSource, Plaintext, SealingCert, ops};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

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
/// Without -w or --merge-into the new SealedSecret goes to stdout, as YAML (`-o json` for
/// JSON, kubeseal's default). --raw prints only the ciphertext of one value; --fetch-cert
/// prints the certificate that would be used. --cert works outside a config repo.
///
/// Examples:
///   kubectl create secret generic db -n app --from-literal=password=... --dry-run=client -o yaml \
///     | secret-manager seal --cluster aws.eu-central-1.dev1 -w db-sealed.yaml
///   secret-manager seal --from-file password=./pw.txt --merge-into overlays/aws.eu-central-1.dev1/db.yaml
///   secret-manager seal --cert cert.pem --raw --namespace app --name db --from-file password=./pw.txt
///   secret-manager seal --cluster aws.eu-central-1.dev1 --fetch-cert > cert.pem
///   secret-manager seal --controller-namespace kube-system -f secret.yaml -o json   # as kubeseal
///   secret-manager seal --validate --context prod1 -f db-sealed.yaml
///
/// Differences from kubeseal: a certificate source is always named (--cluster, --cert or
/// --controller-*; never the current context silently), -w refuses to overwrite a file,
/// the default format is YAML, and --re-encrypt is `rotate --reseal` (docs/guide.md).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
#[command(group(ArgGroup::new("target").args(["write", "merge_into", "raw", "fetch_cert"])))]
pub struct SealArgs {
    /// Cluster whose sealing certificate to use (cluster-values/<id>.yaml sealingCert).
    ///
    /// With --merge-into it defaults to the cluster the file's path belongs to. Repeatable
    /// for a new SealedSecret: the same input is sealed once per cluster, each with its own
    /// certificate, into the -w path with `{cluster}` replaced by the id.
    #[arg(long, value_name = "C")]
    pub cluster: Vec<String>,
    /// Seal for every cluster of the inventory that has a sealingCert (like repeating
    /// --cluster); needs -w with `{cluster}`.
    #[arg(long, conflicts_with_all = ["cluster", "cert", "merge_into", "raw", "fetch_cert"])]
    pub all_clusters: bool,
    /// Certificate to use instead of the cluster's: a PEM file, an https URL, or
    /// controller://<namespace>/<service>.
    #[arg(long, value_name = "PATH|URL", env = "SEALED_SECRETS_CERT")]
    pub cert: Option<String>,
    /// Ask the sealed-secrets controller of the current kubectl context (or --context)
    /// for its certificate, as kubeseal does: the controller's Service name. With
    /// --controller-namespace the same as --cert controller://<namespace>/<name>.
    #[arg(
        long,
        value_name = "NAME",
        env = "SEALED_SECRETS_CONTROLLER_NAME",
        conflicts_with = "cert",
        hide_short_help = true
    )]
    pub controller_name: Option<String>,
    /// The controller's namespace (kubeseal's default: kube-system).
    #[arg(
        long,
        value_name = "NS",
        env = "SEALED_SECRETS_CONTROLLER_NAMESPACE",
        conflicts_with = "cert",
        hide_short_help = true
    )]
    pub controller_namespace: Option<String>,
    /// The kubectl context for --cert controller://..., --controller-* and --validate
    /// (default: kubectl's current context). A --cluster uses its own
    /// secretManager.kubeContext instead.
    #[arg(
        long,
        value_name = "CONTEXT",
        conflicts_with_all = ["cluster", "all_clusters"],
        hide_short_help = true
    )]
    pub context: Option<String>,
    /// Ask the controller whether the SealedSecret on stdin (or -f) decrypts: exit 0, or 3.
    ///
    /// Nothing is applied: the controller's /v1/verify through the API server's service
    /// proxy, as kubeseal --validate. The controller: --controller-* (or their variables),
    /// else the --cluster's controller:// sealingCert and kubeContext, else kubeseal's
    /// defaults; --context picks the kubectl context. Exit 2 when it cannot be asked.
    #[arg(long, conflicts_with_all = ["write", "merge_into", "raw", "fetch_cert", "from_literal", "from_file"])]
    pub validate: bool,
    /// kubeseal's name for the output format: json or yaml (the same as -o).
    #[arg(
        long = "format",
        value_enum,
        value_name = "FORMAT",
        hide_short_help = true
    )]
    pub format: Option<SealFormat>,
    /// Read the input manifest from FILE instead of stdin.
    ///
    /// A Secret, or the SealedSecret for --validate (kubeseal's -f).
    #[arg(short = 'f', long = "secret-file", value_name = "FILE", conflicts_with_all = ["from_literal", "from_file"])]
    pub secret_file: Option<PathBuf>,
    /// Namespace of the secret (default: from the input manifest).
    #[arg(short = 'n', long, value_name = "N")]
    pub namespace: Option<String>,
    /// Name of the secret (default: from the input manifest).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Sealing scope (default: the input's scope annotation, else strict).
    ///
    /// New secrets only; --merge-into keeps the file's scope. Without it, the input
    /// Secret's sealedsecrets.bitnami.com/namespace-wide or cluster-wide annotation
    /// decides, else strict (as kubeseal does).
    #[arg(long, value_enum)]
    pub scope: Option<ScopeArg>,
    /// Secret type for new secrets (default: the manifest's, else Opaque).
    #[arg(long = "type", value_name = "T")]
    pub secret_type: Option<String>,
    /// A value as KEY=VALUE (visible in shell history: prefer --from-file).
    ///
    /// The value is visible in your shell history and the process list: prefer
    /// --from-file or a manifest on stdin for real secrets.
    #[arg(long, value_name = "KEY=VALUE")]
    pub from_literal: Vec<String>,
    /// A value from a file, as KEY=PATH (or PATH, with the file name as key).
    #[arg(long, value_name = "KEY=PATH")]
    pub from_file: Vec<String>,
    /// A template annotation as KEY=VALUE (e.g. secret-manager/source=aws); repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub annotation: Vec<String>,
    /// Write a new SealedSecret to FILE (`-` for stdout). Refuses to overwrite a file.
    #[arg(
        short = 'w',
        long = "write",
        visible_alias = "sealed-secret-file",
        value_name = "FILE"
    )]
    pub write: Option<PathBuf>,
    /// Add or replace only the given keys of the SealedSecret in FILE.
    ///
    /// Keeps its scope, its other values and every other byte of the file.
    #[arg(long, value_name = "FILE")]
    pub merge_into: Option<PathBuf>,
    /// Seal one value (--from-literal or --from-file) and print only its ciphertext.
    ///
    /// The ciphertext is bound to --namespace and --name as --scope says (strict needs
    /// both, namespace-wide the namespace, cluster-wide neither), as with kubeseal --raw;
    /// paste it under spec.encryptedData of a SealedSecret with that name and namespace.
    #[arg(long)]
    pub raw: bool,
    /// Print the certificate (PEM) of --cluster or --cert and exit; reads no values.
    #[arg(long)]
    pub fetch_cert: bool,
}

/// `seal --format` values (kubeseal's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SealFormat {
    /// JSON (kubeseal's default).
    Json,
    /// YAML (ours).
    Yaml,
}

/// `--scope` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// Label namespace/name (the default).
    Strict,
    /// Label namespace.
    NamespaceWide,
    /// No label.
    ClusterWide,
}

impl From<ScopeArg> for Scope {
    fn from(s: ScopeArg) -> Scope {
        match s {
            ScopeArg::Strict => Scope::Strict,
            ScopeArg::NamespaceWide => Scope::NamespaceWide,
            ScopeArg::ClusterWide => Scope::ClusterWide,
        }
    }
}

fn kv<'a>(flag: &str, s: &'a str) -> crate::error::Result<(&'a str, &'a str)> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| {
            UsageError(format!(
                "{flag}: expected KEY=VALUE, got `{}`",
                s.split('=').next().unwrap_or("")
            ))
            .into()
        })
}

/// Values from flags, or a Secret manifest from stdin.
fn read_values(
    args: &SealArgs,
) -> crate::error::Result<(
    BTreeMap<String, Plaintext>,
    Option<secret_manager::seal::SecretManifest>,
)> {
    let mut values = BTreeMap::new();
    for l in &args.from_literal {
        let (k, v) = kv("--from-literal", l)?;
        values.insert(k.to_owned(), Plaintext::new(v.as_bytes().to_vec()));
    }
    for f in &args.from_file {
        let (k, p) = match f.split_once('=') {
            Some((k, p)) if !k.is_empty() => (k.to_owned(), PathBuf::from(p)),
            _ => {
                let p = PathBuf::from(f);
                let k = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_owned();
                (k, p)
            }
        };
        let bytes = std::fs::read(&p)
            .map_err(|e| UsageError(format!("--from-file {}: {e}", p.display())))?;
        values.insert(k, Plaintext::new(bytes));
    }
    for k in values.keys() {
        if !secret_manager::annotations::is_valid_secret_key(k) {
            return Err(UsageError(format!(
                "`{k}` is not a valid Secret key (letters, digits, `-`, `_`, `.`)"
            ))
            .into());
        }
    }
    if !values.is_empty() {
        return Ok((values, None));
    }
    let (src, origin) = read_input(args, "a Secret manifest")?;
    let manifest = secret_manager::seal::parse_secret_manifest(&src)
        .map_err(|e| UsageError(format!("{origin}: {e}")))?;
    let values = manifest.data.clone();
    if values.is_empty() {
        return Err(UsageError(format!("{origin}: the Secret has no data or stringData")).into());
    }
    Ok((values, Some(manifest)))
}

/// Largest input manifest read (a Secret holds at most 1 MiB of data; base64 and YAML
/// add to that).
const MAX_INPUT_BYTES: u64 = 4 << 20;

/// The input manifest: the -f file, else stdin (not a terminal). The text is zeroized on
/// drop: it may hold the values in the clear.
fn read_input(
    args: &SealArgs,
    what: &str,
) -> crate::error::Result<(zeroize::Zeroizing<String>, String)> {
    let mut src = zeroize::Zeroizing::new(String::new());
    if let Some(path) = &args.secret_file {
        let origin = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| UsageError(format!("-f {origin}: {e}")))?;
        if !meta.is_file() {
            return Err(UsageError(format!("-f {origin}: not a regular file")).into());
        }
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_INPUT_BYTES + 1).read_to_string(&mut src))
            .map_err(|e| UsageError(format!("-f {origin}: {e}")))?;
        if src.len() as u64 > MAX_INPUT_BYTES {
            return Err(UsageError(format!(
                "-f {origin}: larger than {} MiB; not a Secret manifest",
                MAX_INPUT_BYTES >> 20
            ))
            .into());
        }
        return Ok((src, origin));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(UsageError(format!(
            "no input: pipe {what} on stdin or pass -f FILE{}",
            if args.validate {
                ""
            } else {
                ", or use --from-literal / --from-file"
            }
        ))
        .into());
    }
    stdin
        .lock()
        .take(MAX_INPUT_BYTES + 1)
        .read_to_string(&mut src)
        .with_context(|| format!("reading {what} from stdin"))?;
    if src.len() as u64 > MAX_INPUT_BYTES {
        return Err(UsageError(format!(
            "stdin: larger than {} MiB; not a Secret manifest",
            MAX_INPUT_BYTES >> 20
        ))
        .into());
    }
    Ok((src, "stdin".into()))
}

/// kubeseal's defaults for the controller's Service.
const CONTROLLER_NAMESPACE: &str = "kube-system";
const CONTROLLER_NAME: &str = "sealed-secrets-controller";

/// The controller named by --controller-namespace/--controller-name (or their
/// SEALED_SECRETS_CONTROLLER_* variables), kubeseal's defaults for the one not given;
/// `None` when neither is set.
fn controller_flags(args: &SealArgs) -> Option<(String, String)> {
    if args.controller_name.is_none() && args.controller_namespace.is_none() {
        return None;
    }
    Some((
        args.controller_namespace
            .clone()
            .unwrap_or_else(|| CONTROLLER_NAMESPACE.into()),
        args.controller_name
            .clone()
            .unwrap_or_else(|| CONTROLLER_NAME.into()),
    ))
}

/// `seal --validate`: asks the controller whether the SealedSecret decrypts.
async fn validate(ctx: &mut Ctx, args: &SealArgs) -> crate::error::Result<u8> {
    let (src, origin) = read_input(args, "a SealedSecret manifest")?;
    if !src.contains("SealedSecret") {
        return Err(UsageError(format!(
            "{origin}: not a SealedSecret manifest (--validate checks one that is already sealed)"
        ))
        .into());
    }
    // The controller: --controller-*, else the --cluster's controller:// sealingCert and
    // kubeContext, else kubeseal's defaults in the current context.
    let mut context = args.context.clone();
    let mut controller = controller_flags(args);
    if let Some(id) = args.cluster.first() {
        let repo = open_repo(ctx)?;
        let cluster = repo.inventory.get(id).ok_or_else(|| {
            UsageError(format!(
                "--cluster {id}: not in the inventory (cluster-values/)"
            ))
        })?;
        context = cluster.kube_context.as_ref().map(|c| c.to_string());
        if controller.is_none()
            && let Some(spec) = cluster.sealing_cert.as_deref()
            && let Ok(CertSource::Controller { namespace, name }) =
                CertSource::parse(spec, &repo.root)
        {
            controller = Some((namespace, name));
        }
    }
    let (namespace, name) =
        controller.unwrap_or_else(|| (CONTROLLER_NAMESPACE.into(), CONTROLLER_NAME.into()));
    let ok = secret_manager::seal::verify_with_controller(
        &namespace,
        &name,
        context.as_deref(),
        src.as_bytes(),
    )
    .await?;
    let at = format!("controller://{namespace}/{name}");
    if ok {
        if !ctx.global.quiet {
            crate::output::say(
                crate::output::Level::Info,
                &format!("{origin}: {at} decrypts it"),
            );
        }
        Ok(exit::OK)
    } else {
        crate::output::say(
            crate::output::Level::Error,
            &format!(
                "{origin}: {at} cannot decrypt it (sealed for another controller's key, or for another namespace or name); re-seal it for this cluster"
            ),
        );
        Ok(exit::LINT_FINDINGS)
    }
}

async fn load_cert(
    ctx: &Ctx,
    repo: &secret_manager::Repo,
    args: &SealArgs,
    inferred: Option<&str>,
) -> crate::error::Result<(SealingCert, String)> {
    if let Some(spec) = &args.cert {
        let src = CertSource::parse(spec, &std::env::current_dir()?)?;
        let cert = src
            .load(&format!("--cert {spec}"), args.context.as_deref(), ctx.now)
            .await?;
        return Ok((cert, format!("--cert {spec}")));
    }
    if let Some((namespace, name)) = controller_flags(args).filter(|_| args.cluster.is_empty()) {
        let spec = format!("controller://{namespace}/{name}");
        let src = CertSource::parse(&spec, &std::env::current_dir()?)?;
        let cert = src.load(&spec, args.context.as_deref(), ctx.now).await?;
        return Ok((cert, spec));
    }
    if args.cluster.len() > 1 {
        return Err(UsageError(
            "several --cluster values seal a new SealedSecret per cluster (-w with {cluster}); --merge-into, --raw and --fetch-cert take one"
                .into(),
        )
        .into());
    }
    let Some(id) = args.cluster.first().map(String::as_str).or(inferred) else {
        return Err(UsageError(
            "which certificate? pass --cluster C (uses its sealingCert), --cert PATH|URL, or --controller-namespace/--controller-name (the controller in the current kubectl context, as kubeseal)".into(),
        )
        .into());
    };
    Ok((
        repo.sealing_cert_to_seal_with(id, ctx.now).await?,
        format!("cluster {id}"),
    ))
}

fn annotations(args: &SealArgs) -> crate::error::Result<BTreeMap<String, String>> {
    args.annotation
        .iter()
        .map(|a| kv("--annotation", a).map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// Runs `seal`.
pub async fn cmd_seal(ctx: &mut Ctx, args: &SealArgs) -> crate::error::Result<u8> {
    // With --cert and no file to merge into, no config repo is needed (as for kubeseal):
    // no warning about a directory that is not one.
    if args.validate {
        return validate(ctx, args).await;
    }
    let outside_repo =
        args.cert.is_some() || (controller_flags(args).is_some() && args.cluster.is_empty());
    let repo = if outside_repo && args.merge_into.is_none() {
        secret_manager::Repo::open(&ctx.global.repo)
            .with_context(|| format!("cannot open {}", ctx.global.repo.display()))?
    } else {
        open_repo(ctx)?
    };
    if args.fetch_cert {
        let (cert, _) = load_cert(ctx, &repo, args, None).await?;
        ctx.out.write_all(cert.to_pem().as_bytes())?;
        return Ok(exit::OK);
    }
    let (values, manifest) = read_values(args)?;
    if args.raw {
        return raw(ctx, &repo, args, &values).await;
    }
    let extra_annotations = annotations(args)?;
    let prefix = repo.config.annotation_prefix.clone();
    let mut rng = rand::rngs::OsRng;
    if let Some(file) = &args.merge_into {
        return merge(
            ctx,
            &repo,
            args,
            file,
            &values,
            &extra_annotations,
            &prefix,
            &mut rng,
        )
        .await;
    }
    let m = manifest.unwrap_or_default();
    let name =
        args.name.clone().or(m.name.clone()).ok_or_else(|| {
            UsageError("--name is required (the input has no metadata.name)".into())
        })?;
    let namespace = args.namespace.clone().or(m.namespace.clone());
    // Like kubeseal: without --scope, the input Secret's scope annotations decide (a
    // namespace-wide Secret sealed strict would not unseal once renamed).
    let scope: Scope = args
        .scope
        .map(Into::into)
        .unwrap_or_else(|| Scope::from_annotations(&m.annotations));
    if scope.needs_namespace() && namespace.is_none() {
        return Err(UsageError(format!(
            "--namespace is required for {scope} scope (the sealing label includes it)"
        ))
        .into());
    }
    let mut template_annotations = m.annotations.clone();
    // The scope annotations are written by the renderer, from `scope`.
    template_annotations.remove(secret_manager::manifest::NAMESPACE_WIDE_ANNOTATION);
    template_annotations.remove(secret_manager::manifest::CLUSTER_WIDE_ANNOTATION);
    template_annotations.extend(extra_annotations);
    let template = NewSealedSecret {
        labels: m.labels.clone(),
        template_annotations,
        secret_type: args
            .secret_type
            .clone()
            .or(m.secret_type.clone())
            .or(Some("Opaque".into())),
        ..NewSealedSecret::default()
    };
    // Where each output goes: one certificate and one path per cluster. Everything is
    // checked (certificates, directories, existing files) before anything is written.
    let clusters: Vec<String> = if args.all_clusters {
        repo.inventory
            .clusters
            .iter()
            .filter(|c| c.sealing_cert.is_some())
            .map(|c| c.id.clone())
            .collect()
    } else {
        args.cluster.clone()
    };
    let out = args.write.as_deref().unwrap_or(Path::new("-"));
    let many = clusters.len() > 1 || args.all_clusters;
    if many && (out == Path::new("-") || !out.to_string_lossy().contains("{cluster}")) {
        return Err(UsageError(format!(
            "sealing for {} clusters writes one file each: pass -w with {{cluster}} in the path, e.g. -w 'overlays/{{cluster}}/{name}.yaml'",
            clusters.len()
        ))
        .into());
    }
    let mut targets: Vec<(SealingCert, String, PathBuf)> = Vec::new();
    if many {
        if clusters.is_empty() {
            return Err(UsageError("--all-clusters: no cluster has a sealingCert".into()).into());
        }
        // One scan and one read of the pins for every cluster, not one per cluster.
        let pins = secret_manager::seal::trust::Pins::from_env().map_err(|e| {
            secret_manager::RepoError::from(secret_manager::seal::trust::Untrusted::from(e))
        })?;
        let found = repo.scan().secrets;
        for id in &clusters {
            let cert = repo
                .trusted_sealing_cert(id, ctx.now, &found, &pins)
                .await?;
            let path = PathBuf::from(out.to_string_lossy().replace("{cluster}", id));
            targets.push((cert, format!("cluster {id}"), path));
        }
    } else {
        let (cert, origin) = load_cert(ctx, &repo, args, None).await?;
        let path = PathBuf::from(
            out.to_string_lossy()
                .replace("{cluster}", clusters.first().map_or("", String::as_str)),
        );
        targets.push((cert, origin, path));
    }
    for (_, _, path) in &targets {
        if path == Path::new("-") {
            continue;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(UsageError(format!(
                "-w {}: directory {} does not exist; create it first",
                path.display(),
                dir.display()
            ))
            .into());
        }
        if path.exists() {
            return Err(UsageError(format!(
                "{} exists; use --merge-into {} to change keys of it",
                path.display(),
                path.display()
            ))
            .into());
        }
    }
    for (cert, origin, path) in &targets {
        let doc = ops::seal_new(
            &mut rng,
            cert,
            &prefix,
            &name,
            namespace.as_deref(),
            scope,
            &values,
            template.clone(),
        )?;
        let json = match args.format {
            Some(f) => f == SealFormat::Json,
            None => ctx.global.output == crate::args::Format::Json,
        };
        let text = if json { doc.to_json() } else { doc.to_yaml() };
        if path == Path::new("-") {
            ctx.out.write_all(text.as_bytes())?;
        } else {
            secret_manager::manifest::edit::write_atomic(path, text.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if !ctx.global.quiet {
            crate::output::say(
                crate::output::Level::Info,
                &format!(
                    "sealed {} value(s) for {}/{name} ({scope}) with {origin} (sha256 {}…){}",
                    values.len(),
                    namespace.as_deref().unwrap_or("*"),
                    &cert.fingerprint[..12],
                    if path == Path::new("-") {
                        String::new()
                    } else {
                        format!(" -> {}", path.display())
                    }
                ),
            );
        }
    }
    Ok(exit::OK)
}

/// `--raw`: one value's ciphertext on stdout, no newline (as kubeseal prints it).
async fn raw(
    ctx: &mut Ctx,
    repo: &secret_manager::Repo,
    args: &SealArgs,
    values: &BTreeMap<String, Plaintext>,
) -> crate::error::Result<u8> {
    let [(_, value)] = values.iter().collect::<Vec<_>>()[..] else {
        return Err(UsageError(format!(
            "--raw seals exactly one value (--from-literal or --from-file); got {}",
            values.len()
        ))
        .into());
    };
    let scope: Scope = args.scope.map(Into::into).unwrap_or(Scope::Strict);
    if scope == Scope::Strict && (args.name.is_none() || args.namespace.is_none()) {
        return Err(UsageError(
            "--raw with strict scope needs --namespace and --name (the ciphertext is bound to both); or pass --scope namespace-wide|cluster-wide"
                .into(),
        )
        .into());
    }
    let (cert, _) = load_cert(ctx, repo, args, None).await?;
    let label = secret_manager::seal::label(scope, args.namespace.as_deref(), args.name.as_deref())
        .map_err(|e| UsageError(format!("--raw: {e}; pass --namespace")))?;
    let ciphertext =
        secret_manager::seal::seal_value(&mut rand::rngs::OsRng, &cert, &label, &value.0)?;
    ctx.out.write_all(ciphertext.as_bytes())?;
    ctx.out.flush()?;
    Ok(exit::OK)
}

#[allow(clippy::too_many_arguments)]
async fn merge(
    ctx: &mut Ctx,
    repo: &secret_manager::Repo,
    args: &SealArgs,
    file: &Path,
    values: &BTreeMap<String, Plaintext>,
    template_annotations: &BTreeMap<String, String>,
    prefix: &str,
    rng: &mut rand::rngs::OsRng,
) -> crate::error::Result<u8> {
    let src = std::fs::read_to_string(file)
        .map_err(|e| UsageError(format!("--merge-into {}: {e}", file.display())))?;
    let doc = ops::select_document(&src, args.name.as_deref())
        .map_err(|e| UsageError(format!("{}: {e}", file.display())))?;
    if let Some(s) = args.scope
        && Scope::from(s) != doc.scope
    {
        return Err(UsageError(format!(
            "{}: the SealedSecret is {}; --merge-into keeps the existing scope (drop --scope)",
            file.display(),
            doc.scope
        ))
        .into());
    }
    // The label namespace: the document's own, else its kustomization's, else --namespace.
    let abs = std::fs::canonicalize(file)?;
    let root = std::fs::canonicalize(&repo.root)?;
    let rel = abs.strip_prefix(&root).ok().map(Path::to_path_buf);
    let from_kustomization = match (&doc.namespace, &rel) {
        (None, Some(rel)) => secret_manager::scan::kustomization_namespace(&root, rel)
            .ok()
            .flatten()
            .map(|(ns, _)| ns),
        _ => None,
    };
    let namespace = doc.namespace.clone().or(from_kustomization);
    if let (Some(a), Some(b)) = (&namespace, &args.namespace)
        && a != b
    {
        return Err(UsageError(format!(
            "{}: the SealedSecret is in namespace {a}, not {b}",
            file.display()
        ))
        .into());
    }
    let namespace = namespace.or(args.namespace.clone());
    let inferred = rel
        .as_deref()
        .map(|r| {
            secret_manager::scan::attribute(r, &repo.inventory.ids().map(str::to_owned).collect())
        })
        .and_then(|a| a.cluster().map(str::to_owned));
    let (cert, origin) = load_cert(ctx, repo, args, inferred.as_deref()).await?;
    let out = ops::merge_into(
        rng,
        &cert,
        prefix,
        &src,
        &doc,
        namespace.as_deref(),
        values,
        template_annotations,
    )
    .context(file.display().to_string())?;
    secret_manager::manifest::edit::write_atomic(file, out.as_bytes())
        .with_context(|| format!("writing {}", file.display()))?;
    if !ctx.global.quiet {
        crate::output::say(
            crate::output::Level::Info,
            &format!(
                "sealed {} value(s) into {} ({}/{}, {}) with {origin} (sha256 {}…)",
                values.len(),
                file.display(),
                namespace.as_deref().unwrap_or("*"),
                doc.name.as_deref().unwrap_or("?"),
                doc.scope,
                &cert.fingerprint[..12]
            ),
        );
    }
    Ok(exit::OK)
}
