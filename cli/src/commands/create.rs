//! `secret-manager create`.

use super::{Ctx, open_repo};
use crate::error::UsageError;
use crate::exit;
use clap::Args;
use secret_manager::create::{CreateRequest, create};
use secret_manager::journal::RunId;
use std::collections::BTreeMap;

/// Mint a new credential and write it, sealed, as a new annotated SealedSecret.
///
/// For bootstrapping a cluster's secrets. Checks certificate, provider, permissions and
/// key slots first; the mint runs under a claim on the main remote, like a rotation's, and
/// not while a rotation of the credential is in flight; if anything fails after the key
/// was minted, the new key is deleted again so nothing is left orphaned. The file is
/// written, not committed: commit and publish it as you would any change. -w refuses to
/// overwrite an existing file.
///
/// Example:
///   secret-manager create --source aws --cluster aws.eu-central-1.dev1 \
///     --namespace external-dns --name cloudprovider-dns-access \
///     --key-mappings "[accessKeyId:AccessKeyId,secretAccessKey:SecretAccessKey]" \
///     --param username=external-dns-dev1 --param account=111111111111 \
///     -w applications/root/external-dns/state/overlays/aws.eu-central-1.dev1/dns-bot.yaml
///
/// A registry pull secret, its .dockerconfigjson rendered by a template of
/// .secret-manager.yaml (docs/templates.md):
///   secret-manager create --source gcp --cluster gcp.europe-west1.dev2 \
///     --namespace kube-system --name registry-pull --type kubernetes.io/dockerconfigjson \
///     --template .dockerconfigjson=gar-pull --param project=my-project \
///     --param serviceAccount=registry-reader@my-project.iam.gserviceaccount.com \
///     -w applications/root/registry/state/overlays/gcp.europe-west1.dev2/registry-pull.yaml
///
/// --param per source: aws username, account; azure tenantId, applicationObjectId
/// (the object id, not the appId), clientId; gcp project, serviceAccount (email);
/// random id (length, alphabet); postgres/mysql instance, users; github-deploy-key
/// repository (id); gitlab-deploy-token project or group (scopes, id).
/// Output fields for --key-mappings and templates: aws AccessKeyId, SecretAccessKey; azure
/// ClientId, ClientSecret, TenantId, KeyId; gcp KeyFileJson, KeyId, ClientEmail; random
/// Value; postgres/mysql Username, Password; github-deploy-key PrivateKey, PublicKey;
/// gitlab-deploy-token Username, Token.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct CreateArgs {
    /// Credential source: aws, azure, gcp, or a plugin name.
    #[arg(long, value_name = "S")]
    pub source: String,
    /// Cluster whose sealing certificate to use.
    #[arg(long, value_name = "C")]
    pub cluster: String,
    /// Namespace of the new secret.
    #[arg(short = 'n', long, value_name = "N")]
    pub namespace: String,
    /// Name of the new secret.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Which provider output goes to which Secret key, e.g.
    /// "[accessKeyId:AccessKeyId,secretAccessKey:SecretAccessKey]" (may be left out when
    /// every key is templated).
    #[arg(long, value_name = "MAPPINGS", default_value = "")]
    pub key_mappings: String,
    /// A Secret key rendered by a template of .secret-manager.yaml's templates:, as
    /// KEY=TEMPLATE (written as the secret-manager/template.KEY annotation, rendered again
    /// on every rotation); repeatable.
    #[arg(long = "template", value_name = "KEY=TEMPLATE")]
    pub templates: Vec<String>,
    /// The Secret's type (default Opaque), e.g. kubernetes.io/dockerconfigjson; a
    /// templated .dockerconfigjson is checked against it.
    #[arg(long = "type", value_name = "TYPE")]
    pub secret_type: Option<String>,
    /// An identity annotation as K=V (aws: username, account; azure: tenantId,
    /// applicationObjectId, clientId; gcp: project, serviceAccount); repeatable.
    #[arg(long = "param", value_name = "K=V")]
    pub params: Vec<String>,
    /// Sealing scope.
    #[arg(long, value_enum, default_value = "strict")]
    pub scope: super::seal::ScopeArg,
    /// Where to write the new SealedSecret (refuses to overwrite).
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: std::path::PathBuf,
}

/// Runs `create`.
pub async fn cmd_create(ctx: &mut Ctx, args: &CreateArgs) -> crate::error::Result<u8> {
    let repo = open_repo(ctx)?;
    let mut params = BTreeMap::new();
    for p in &args.params {
        let (k, v) = p
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| UsageError(format!("--param: expected K=V, got `{p}`")))?;
        params.insert(k.to_owned(), v.to_owned());
    }
    let mut templates = BTreeMap::new();
    for t in &args.templates {
        let (k, v) = t
            .split_once('=')
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            .ok_or_else(|| UsageError(format!("--template: expected KEY=TEMPLATE, got `{t}`")))?;
        templates.insert(k.to_owned(), v.to_owned());
    }
    if args.key_mappings.is_empty() && templates.is_empty() {
        return Err(UsageError(
            "give --key-mappings, --template KEY=TEMPLATE, or both: the new Secret needs at least one key".into(),
        )
        .into());
    }
    let req = CreateRequest {
        source: args.source.clone(),
        cluster: args.cluster.clone(),
        namespace: args.namespace.clone(),
        name: args.name.clone(),
        key_mappings: args.key_mappings.clone(),
        templates,
        secret_type: args.secret_type.clone(),
        params,
        scope: args.scope.into(),
        write: args.write.clone(),
    };
    let run = RunId::new(ctx.now);
    let providers =
        secret_manager::providers::Providers::builtin(repo.config.providers.clone(), &run.0);
    let created = create(&repo, &providers, &req, ctx.now, &run).await?;
    if !ctx.global.quiet {
        crate::output::say(
            crate::output::Level::Info,
            &format!(
                "created {}/{} with new {} key {} sealed for {} -> {}{}",
                args.namespace,
                args.name,
                args.source,
                created.key_id,
                args.cluster,
                created.file.display(),
                if created.claimed {
                    ""
                } else {
                    " (no main remote: minted without a claim)"
                }
            ),
        );
    }
    Ok(exit::OK)
}
