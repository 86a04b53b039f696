//! `secret-manager create`.

use super::{Ctx, open_repo};
use crate::exit::{self, UsageError};
use anyhow::Context as _;
use clap::Args;
use secret_manager::annotations::{self, CREATE_DATE, KEY_MAPPINGS, SOURCE};
use secret_manager::manifest::Scope;
use secret_manager::manifest::render::NewSealedSecret;
use secret_manager::provider::{Revoke, Target};
use secret_manager::seal::{Plaintext, ops};
use std::collections::BTreeMap;
use std::path::Path;

/// Arguments of `create` (help text lives on `Command::Create`).
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Credential source: aws, azure, gcp, or a plugin name.
    #[arg(long, value_name = "S")]
    pub source: String,
    /// Cluster whose sealing certificate to use.
    #[arg(long, value_name = "C")]
    pub cluster: String,
    /// Namespace of the new secret.
    #[arg(long, value_name = "N")]
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
pub async fn cmd_create(ctx: &mut Ctx, args: &CreateArgs) -> anyhow::Result<u8> {
    let repo = open_repo(ctx)?;
    let prefix = repo.config.annotation_prefix.clone();
    let mappings = annotations::parse_key_mappings(&args.key_mappings)
        .map_err(|e| UsageError(format!("--key-mappings: {e}")))?;
    if let Some(fields) = annotations::output_fields(&args.source) {
        for m in &mappings {
            if !fields.contains(&m.field.as_str()) {
                return Err(UsageError(format!(
                    "--key-mappings: `{}` is not an output field of {} (one of: {})",
                    m.field,
                    args.source,
                    fields.join(", ")
                ))
                .into());
            }
        }
    }
    let mut params = BTreeMap::new();
    for p in &args.params {
        let (k, v) = p
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| UsageError(format!("--param: expected K=V, got `{p}`")))?;
        params.insert(k.to_owned(), v.to_owned());
    }
    for required in annotations::identity_annotations(&args.source) {
        if !params.contains_key(*required) {
            return Err(UsageError(format!(
                "--param {required}=... is required for source {}",
                args.source
            ))
            .into());
        }
    }
    if args.write.exists() {
        return Err(UsageError(format!(
            "{} exists; refusing to overwrite",
            args.write.display()
        ))
        .into());
    }
    let scope: Scope = args.scope.into();
    // Everything that can fail without side effects comes first: certificate, provider, preflight.
    let cert = repo.sealing_cert(&args.cluster, ctx.now).await?;
    let providers = secret_manager::providers::Providers::default();
    let provider = providers
        .get(&args.source)
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("loading the provider")?;
    let target = Target {
        source: args.source.clone(),
        params: params.clone(),
        current_key: None,
        referenced: Vec::new(),
    };
    provider.preflight(&target).await.context("preflight")?;
    let minted = provider.mint(&target).await.context("mint")?;
    // From here on a key exists: if anything fails, revoke it so nothing is orphaned.
    let result: anyhow::Result<()> = async {
        provider
            .verify(&minted)
            .await
            .context("verifying the new credential")?;
        let mut values = BTreeMap::new();
        for m in &mappings {
            let v = minted
                .fields
                .get(&m.field)
                .ok_or_else(|| anyhow::anyhow!("the provider returned no field {}", m.field))?;
            values.insert(
                m.secret_key.clone(),
                Plaintext::new(v.expose().as_bytes().to_vec()),
            );
        }
        let mut template_annotations: BTreeMap<String, String> = params
            .iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v.clone()))
            .collect();
        template_annotations.insert(format!("{prefix}{SOURCE}"), args.source.clone());
        template_annotations.insert(
            format!("{prefix}{}", annotations::key_id_annotation(&args.source)),
            minted.key_id.0.clone(),
        );
        template_annotations.insert(
            format!("{prefix}{CREATE_DATE}"),
            minted
                .created
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        template_annotations.insert(format!("{prefix}{KEY_MAPPINGS}"), args.key_mappings.clone());
        let doc = NewSealedSecret {
            template_annotations,
            secret_type: Some("Opaque".into()),
            ..NewSealedSecret::default()
        };
        let doc = ops::seal_new(
            &mut rand::rngs::OsRng,
            &cert,
            &prefix,
            &args.name,
            Some(&args.namespace),
            scope,
            &values,
            doc,
        )?;
        if let Some(dir) = args.write.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        secret_manager::manifest::edit::write_atomic(
            Path::new(&args.write),
            doc.to_yaml().as_bytes(),
        )
        .with_context(|| format!("writing {}", args.write.display()))?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        match provider
            .revoke(&target, &minted.key_id, Revoke::Delete)
            .await
        {
            Ok(()) => crate::output::say(
                crate::output::Level::Info,
                &format!(
                    "rolled back: deleted the new key {} at {}",
                    minted.key_id, args.source
                ),
            ),
            Err(r) => crate::output::say(
                crate::output::Level::Info,
                &format!(
                    "warning: could not delete the new key {} at {} ({r}); delete it by hand",
                    minted.key_id, args.source
                ),
            ),
        }
        return Err(e);
    }
    if !ctx.global.quiet {
        crate::output::say(
            crate::output::Level::Info,
            &format!(
                "created {}/{} with new {} key {} sealed for {} -> {}",
                args.namespace,
                args.name,
                args.source,
                minted.key_id,
                args.cluster,
                args.write.display()
            ),
        );
    }
    Ok(exit::OK)
}
