//! `secret-manager lint`.

use super::{Ctx, open_repo};
use crate::error::UsageError;
use crate::exit;
use crate::output::write_structured;
use clap::Args;

/// Check that every managed SealedSecret can be rotated (for CI; exit 3 on findings).
///
/// Checks: required annotations per source present and well-formed, createDate
/// parseable, keyMappings keys present in encryptedData and naming known provider fields,
/// a known source, a resolvable namespace for strict and namespace-wide scope, an
/// unambiguous cluster, and optionally a maximum age. Unparseable files that mention
/// SealedSecret are findings too.
///
/// Exit status: 0 when clean, 3 when there are findings (so a PR pipeline can gate on it).
#[derive(Debug, Args)]
pub struct LintArgs {
    /// Also flag credentials older than DUR (e.g. 90d).
    #[arg(long, value_name = "DUR")]
    pub max_age: Option<String>,
    /// A SealedSecret sealed with a certificate other than its cluster's current one is a
    /// finding (compares secret-manager/sealedWith with each cluster's sealingCert).
    #[arg(long)]
    pub require_current_cert: bool,
}

/// Runs `lint`.
pub async fn cmd_lint(ctx: &mut Ctx, args: &LintArgs) -> crate::error::Result<u8> {
    let repo = open_repo(ctx)?;
    let max_age = args
        .max_age
        .as_deref()
        .map(secret_manager::duration::parse_chrono)
        .transpose()
        .map_err(|e| UsageError(format!("--max-age: {e}")))?;
    let report = repo.scan();
    let plugin_exists = |name: &str| secret_manager_exec_lookup(name);
    let certs = if args.require_current_cert {
        Some(secret_manager::reseal::CurrentCerts::load(&repo, &report.secrets, ctx.now).await)
    } else {
        None
    };
    let findings = secret_manager::lint::lint(
        &report,
        &secret_manager::lint::LintOptions {
            prefix: &repo.config.annotation_prefix,
            now: ctx.now,
            max_age,
            plugin_exists: &plugin_exists,
            certs: certs.as_ref(),
            templates: &repo.config.templates,
        },
    );
    if !write_structured(&mut *ctx.out, ctx.global.output, &findings)? {
        for f in &findings {
            writeln!(ctx.out, "{f}")?;
        }
    }
    let managed = report
        .secrets
        .iter()
        .filter(|s| s.managed.is_some())
        .count();
    if !ctx.global.quiet {
        let files: std::collections::BTreeSet<&str> =
            findings.iter().map(|f| f.file.as_str()).collect();
        crate::output::say(
            crate::output::Level::Info,
            &format!(
                "{} finding(s) in {} file(s); {} managed SealedSecret(s) checked",
                findings.len(),
                files.len(),
                managed
            ),
        );
    }
    Ok(if findings.is_empty() {
        exit::OK
    } else {
        exit::LINT_FINDINGS
    })
}

use std::io::Write as _;

fn secret_manager_exec_lookup(name: &str) -> bool {
    secret_manager::plugin_exists(name)
}
