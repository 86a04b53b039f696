//! `providers:` in `.secret-manager.yaml`: per-source settings (AWS accounts, propagation
//! windows, the Azure secret lifetime, external plugins' environment and timeout).

use super::{ConfigError, ConfigResult};
use serde::Deserialize;
use std::path::Path;

/// One AWS account's role, as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AwsAccount {
    /// Role to assume for this account's users.
    pub role_arn: String,
    /// External id the role's trust policy requires, if any (not secret).
    pub external_id: Option<String>,
}

/// `providers.aws:` as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AwsSettings {
    /// Account id → role to assume for it. Accounts not listed use the ambient
    /// credentials, which must belong to that account.
    #[serde(default)]
    pub accounts: std::collections::BTreeMap<String, AwsAccount>,
    /// How long a new access key may take to work (default 30s).
    pub propagation_window: Option<String>,
}

/// `providers.azure:` as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AzureSettings {
    /// How long a new client secret may take to work (default 60s).
    pub propagation_window: Option<String>,
    /// Lifetime of new client secrets (`endDateTime`), e.g. `180d`; default: Graph's
    /// (two years). A `secret-manager/secretLifetime` annotation overrides it.
    pub secret_lifetime: Option<String>,
}

/// `providers.gcp:` as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GcpSettings {
    /// How long a new service-account key may take to work (default 120s).
    pub propagation_window: Option<String>,
}

/// `providers.exec.<name>:` as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecSettings {
    /// Environment variables the plugin gets besides the base allowlist.
    #[serde(default)]
    pub env: Vec<String>,
    /// Time limit of one call (default 120s).
    pub timeout: Option<String>,
}

/// `providers:` as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProviderSettings {
    /// Settings of the `aws` source.
    #[serde(default)]
    pub aws: AwsSettings,
    /// Settings of the `azure` source.
    #[serde(default)]
    pub azure: AzureSettings,
    /// Settings of the `gcp` source.
    #[serde(default)]
    pub gcp: GcpSettings,
    /// External plugins by source name.
    #[serde(default)]
    pub exec: std::collections::BTreeMap<String, ExecSettings>,
}

/// A duration field already checked by [`super::RawConfig::validate`].
fn checked(v: &Option<String>) -> Option<std::time::Duration> {
    v.as_deref()
        .and_then(|s| crate::duration::parse_duration(s).ok())
}

impl ProviderSettings {
    /// `providers.aws.propagationWindow`, if set.
    pub fn aws_window(&self) -> Option<std::time::Duration> {
        checked(&self.aws.propagation_window)
    }
    /// `providers.azure.propagationWindow`, if set.
    pub fn azure_window(&self) -> Option<std::time::Duration> {
        checked(&self.azure.propagation_window)
    }
    /// `providers.azure.secretLifetime`, if set.
    pub fn azure_secret_lifetime(&self) -> Option<std::time::Duration> {
        checked(&self.azure.secret_lifetime)
    }
    /// `providers.gcp.propagationWindow`, if set.
    pub fn gcp_window(&self) -> Option<std::time::Duration> {
        checked(&self.gcp.propagation_window)
    }
    /// `providers.exec.<name>.timeout`, if set.
    pub fn exec_timeout(&self, name: &str) -> Option<std::time::Duration> {
        self.exec.get(name).and_then(|e| checked(&e.timeout))
    }

    pub(super) fn validate(&self, path: &Path) -> ConfigResult<()> {
        for (account, a) in &self.aws.accounts {
            if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    field: format!("providers.aws.accounts.{account}"),
                    message: "an AWS account id is 12 digits (quote it: \"012345678901\")".into(),
                });
            }
            if !a.role_arn.starts_with("arn:aws") || !a.role_arn.contains(":role/") {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    field: format!("providers.aws.accounts.{account}.roleArn"),
                    message: format!(
                        "`{}` is not a role ARN (arn:aws:iam::<account>:role/<name>)",
                        a.role_arn
                    ),
                });
            }
        }
        let invalid = |field: String, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            message,
        };
        let range = |field: String, v: &Option<String>, min: u64, max: u64| -> ConfigResult<()> {
            let Some(s) = v else { return Ok(()) };
            let d = crate::duration::parse_duration(s)
                .map_err(|m| invalid(field.clone(), m.to_string()))?;
            if d.as_secs() < min || d.as_secs() > max {
                return Err(invalid(
                    field,
                    format!(
                        "`{s}` is out of range: between {} and {}",
                        humantime::format_duration(std::time::Duration::from_secs(min)),
                        humantime::format_duration(std::time::Duration::from_secs(max))
                    ),
                ));
            }
            Ok(())
        };
        const WINDOW: (u64, u64) = (1, 15 * 60);
        range(
            "providers.aws.propagationWindow".into(),
            &self.aws.propagation_window,
            WINDOW.0,
            WINDOW.1,
        )?;
        range(
            "providers.azure.propagationWindow".into(),
            &self.azure.propagation_window,
            WINDOW.0,
            WINDOW.1,
        )?;
        range(
            "providers.gcp.propagationWindow".into(),
            &self.gcp.propagation_window,
            WINDOW.0,
            WINDOW.1,
        )?;
        range(
            "providers.azure.secretLifetime".into(),
            &self.azure.secret_lifetime,
            3600,
            3650 * 86400,
        )?;
        for (name, e) in &self.exec {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid(
                    format!("providers.exec.{name}"),
                    "a plugin name is the source annotation: letters, digits, `-` and `_`".into(),
                ));
            }
            range(
                format!("providers.exec.{name}.timeout"),
                &e.timeout,
                1,
                30 * 60,
            )?;
            for var in &e.env {
                let ok = var
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                    && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !ok {
                    return Err(invalid(
                        format!("providers.exec.{name}.env"),
                        format!("`{var}` is not an environment variable name"),
                    ));
                }
                if is_rotator_credential(var) {
                    return Err(invalid(
                        format!("providers.exec.{name}.env"),
                        format!(
                            "`{var}` holds (or locates) the rotator's own credentials; a plugin never gets them. Give the plugin a credential of its own under another name"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether `var` is one of the rotator's own credential variables (or one that locates or
/// unlocks them): the cloud SDKs' keys, tokens and identity files, the forge token and
/// GitHub App key, git and SSH credentials, kubeconfig, and the tool's own settings. A
/// plugin's `env:` allowlist may not list them: the repo writes that list, and plugins are
/// isolated from the credentials of every other source.
pub fn is_rotator_credential(var: &str) -> bool {
    const ALLOWED: &[&str] = &["AWS_REGION", "AWS_DEFAULT_REGION"];
    const PREFIXES: &[&str] = &[
        "AWS_",
        "AZURE_",
        "ARM_",
        "MSI_",
        "IDENTITY_",
        "GOOGLE_",
        "GCE_",
        "CLOUDSDK_",
        "GITHUB_",
        "GITLAB_",
        "GIT_",
        "SSH_",
        "SECRET_MANAGER_",
        "ACTIONS_ID_TOKEN_",
        "KUBE",
    ];
    const EXACT: &[&str] = &["XDG_CONFIG_HOME", "GNUPGHOME", "GPG_AGENT_INFO"];
    let upper = var.to_ascii_uppercase();
    if ALLOWED.contains(&upper.as_str()) {
        return false;
    }
    EXACT.contains(&upper.as_str()) || PREFIXES.iter().any(|p| upper.starts_with(p))
}
