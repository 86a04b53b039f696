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
/// key slots first; the mint runs under a claim on the main remote, like a rotation's; if
/// anything fails after the key was minted, the new key is deleted again so nothing is
/// left orphaned. The file is written, not committed: commit and publish it as you would
/// any change. -w refuses to overwrite an existing file.
///
/// Example:
///   secret-manager create --source aws --cluster aws.eu-central-1.dev1 \
///     --namespace external-dns --name cloudprovider-dns-access \
///     --key-mappings "[accessKeyId:AccessKeyId,secretAccessKey:SecretAccessKey]" \
///     --param username=external-dns-dev1 --param account=111111111111 \
///     -w applications/root/external-dns/state/overlays/aws.eu-central-1.dev1/dns-bot.yaml
///
/// --param per source: aws username, account; azure tenantId, applicationObjectId
/// (the object id, not the appId), clientId; gcp project, serviceAccount (email).
/// Output fields for --key-mappings: aws AccessKeyId, SecretAccessKey; azure ClientId,
/// ClientSecret, TenantId, KeyId; gcp KeyFileJson, KeyId, ClientEmail.
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
    /// "[accessKeyId:AccessKeyId,secretAccessKey:SecretAccessKey]".
    #[arg(long, value_name = "MAPPINGS")]
    pub key_mappings: String,
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
    let req = CreateRequest {
        source: args.source.clone(),
        cluster: args.cluster.clone(),
        namespace: args.namespace.clone(),
        name: args.name.clone(),
        key_mappings: args.key_mappings.clone(),
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
