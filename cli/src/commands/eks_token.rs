//! `secret-manager eks-token`: a kubectl exec credential plugin for EKS.

use super::Ctx;
use crate::exit;
use clap::Args;
use std::io::Write as _;

/// Print a bearer token for an EKS cluster as a kubectl exec credential (like `aws eks
/// get-token`).
///
/// The token is a presigned STS GetCallerIdentity URL bound to the cluster's name, signed
/// with the identity this process already has (IRSA or EKS Pod Identity in the rotation
/// pod, a profile elsewhere): no long-lived ServiceAccount token Secret for the target
/// cluster, and no AWS CLI in the image. kubectl caches it for 14 minutes. Map the
/// identity's IAM role to a Kubernetes group on the target cluster (an access entry, or
/// the aws-auth ConfigMap) bound to deploy/target-cluster's read-only ClusterRole.
///
/// In the kubeconfig (docs/cronjob.md, "kubectl in the pod"):
///   users:
///   - name: prod1
///     user:
///       exec:
///         apiVersion: client.authentication.k8s.io/v1beta1
///         command: secret-manager
///         args: [eks-token, --cluster-name, prod1, --region, eu-central-1]
///         interactiveMode: Never
// The kubeconfig example is printed verbatim in --help: its YAML indentation is meant.
#[allow(clippy::doc_overindented_list_items)]
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct EksTokenArgs {
    /// The EKS cluster's name (as `aws eks describe-cluster --name` takes it).
    #[arg(long, value_name = "NAME")]
    pub cluster_name: String,
    /// The cluster's region (default: AWS_REGION, else the profile's).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
}

/// Runs `eks-token`: the ExecCredential JSON on stdout, nothing else.
#[cfg(feature = "aws")]
pub async fn cmd_eks_token(ctx: &mut Ctx, args: &EksTokenArgs) -> crate::error::Result<u8> {
    let (token, expires) =
        secret_manager::providers::eks_token(&args.cluster_name, args.region.as_deref()).await?;
    let expires = chrono::DateTime::<chrono::Utc>::from(expires)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let credential = serde_json::json!({
        "kind": "ExecCredential",
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "spec": {},
        "status": {"expirationTimestamp": expires, "token": token},
    });
    writeln!(ctx.out, "{credential}")?;
    Ok(exit::OK)
}

/// Without the aws feature there is no signer.
#[cfg(not(feature = "aws"))]
pub async fn cmd_eks_token(_ctx: &mut Ctx, _args: &EksTokenArgs) -> crate::error::Result<u8> {
    Err(crate::error::UsageError("eks-token needs a build with the aws feature".into()).into())
}
