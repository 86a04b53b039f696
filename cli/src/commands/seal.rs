//! `secret-manager seal`.

use super::{Ctx, open_repo};
use crate::exit::{self, UsageError};
use anyhow::Context as _;
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
    #[arg(long, value_name = "PATH|URL")]
    pub cert: Option<String>,
    /// Namespace of the secret (default: from the input manifest).
    #[arg(long, value_name = "N")]
    pub namespace: Option<String>,
    /// Name of the secret (default: from the input manifest).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Sealing scope (new secrets only; --merge-into keeps the file's scope). Default: what
    /// the input Secret's sealedsecrets.bitnami.com/namespace-wide or cluster-wide
    /// annotation says, else strict (as kubeseal does).
    #[arg(long, value_enum)]
    pub scope: Option<ScopeArg>,
    /// Secret type for new secrets (default: the manifest's, else Opaque).
    #[arg(long = "type", value_name = "T")]
    pub secret_type: Option<String>,
    /// A value as KEY=VALUE. It is visible in your shell history and process list:
    /// prefer --from-file or a manifest on stdin for real secrets.
    #[arg(long, value_name = "KEY=VALUE")]
    pub from_literal: Vec<String>,
    /// A value from a file, as KEY=PATH (or PATH, with the file name as key).
    #[arg(long, value_name = "KEY=PATH")]
    pub from_file: Vec<String>,
    /// A template annotation as KEY=VALUE (e.g. secret-manager/source=aws); repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub annotation: Vec<String>,
    /// Write a new SealedSecret to FILE (`-` for stdout). Refuses to overwrite a file.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Add or replace only the given keys of the SealedSecret in FILE, keeping its scope,
    /// its other values and every other byte of the file.
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

fn kv<'a>(flag: &str, s: &'a str) -> anyhow::Result<(&'a str, &'a str)> {
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
) -> anyhow::Result<(
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
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(UsageError(
            "no values: pipe a Secret manifest on stdin, or use --from-literal / --from-file"
                .into(),
        )
        .into());
    }
    let mut src = String::new();
    stdin
        .lock()
        .read_to_string(&mut src)
        .context("reading the Secret manifest from stdin")?;
    let src = zeroize::Zeroizing::new(src);
    let manifest = secret_manager::seal::parse_secret_manifest(&src)
        .map_err(|e| UsageError(format!("stdin: {e}")))?;
    let values = manifest.data.clone();
    if values.is_empty() {
        return Err(UsageError("stdin: the Secret has no data or stringData".into()).into());
    }
    Ok((values, Some(manifest)))
}

async fn load_cert(
    ctx: &Ctx,
    repo: &secret_manager::Repo,
    args: &SealArgs,
    inferred: Option<&str>,
) -> anyhow::Result<(SealingCert, String)> {
    if let Some(spec) = &args.cert {
        let src = CertSource::parse(spec, &std::env::current_dir()?)?;
        let cert = src.load(&format!("--cert {spec}"), None, ctx.now).await?;
        return Ok((cert, format!("--cert {spec}")));
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
            "which certificate? pass --cluster C (uses its sealingCert) or --cert PATH|URL".into(),
        )
        .into());
    };
    Ok((
        repo.sealing_cert_to_seal_with(id, ctx.now).await?,
        format!("cluster {id}"),
    ))
}

fn annotations(args: &SealArgs) -> anyhow::Result<BTreeMap<String, String>> {
    args.annotation
        .iter()
        .map(|a| kv("--annotation", a).map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// Runs `seal`.
pub async fn cmd_seal(ctx: &mut Ctx, args: &SealArgs) -> anyhow::Result<u8> {
    // With --cert and no file to merge into, no config repo is needed (as for kubeseal):
    // no warning about a directory that is not one.
    let repo = if args.cert.is_some() && args.merge_into.is_none() {
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
        let pins = secret_manager::seal::trust::Pins::from_env()
            .map_err(secret_manager::RepoError::UntrustedCert)?;
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
        let text = match ctx.global.output {
            crate::args::Format::Json => doc.to_json(),
            _ => doc.to_yaml(),
        };
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
) -> anyhow::Result<u8> {
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
) -> anyhow::Result<u8> {
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
    .map_err(|e| anyhow::Error::new(e).context(file.display().to_string()))?;
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
