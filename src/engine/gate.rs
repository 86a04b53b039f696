//! What a gate decides, and how the gates ask a cluster: `kubectl get -o json` for the
//! cluster's context, with checked names after `--` and a time limit.

use super::context::Ctx;
use super::report::WaitingOn;

/// What a gate decided.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Gate {
    /// Revoke now.
    Open,
    /// Revoke now, although the gate could not look: the source cannot tell (the reason
    /// goes into the revoke step, so nobody mistakes it for a check that passed).
    Blind(String),
    /// Not yet: what it waits on, and why.
    Wait(WaitingOn, String),
    /// The new key does not work there: the workloads crash with it, Argo CD reports
    /// Degraded, the operator's gate command fails. The old key stays, and the rotation
    /// rolls back while the old key still works.
    Failed {
        /// Where the new key does not work.
        cluster: String,
        /// What failed.
        message: String,
    },
    /// Cannot be evaluated.
    Error {
        /// Cluster (or `-` for source-side gates).
        cluster: String,
        /// What failed and what to do.
        message: String,
    },
}

/// Classifies a failed `kubectl get`: a SealedSecret the cluster does not have yet is a
/// wait (Argo CD has not applied it); anything else means the gate cannot be evaluated.
pub(super) fn kubectl_failure(stderr: &str) -> Option<String> {
    let s = stderr.trim();
    if s.contains("(NotFound)") || (s.contains("sealedsecret") && s.contains("not found")) {
        return None;
    }
    let first: String = s.lines().take(3).collect::<Vec<_>>().join(" ");
    let mut msg: String = first.chars().take(400).collect();
    if first.chars().count() > 400 {
        msg.push('…');
    }
    let hint = if s.contains("context") && s.contains("does not exist") {
        "fix secretManager.kubeContext in the cluster's cluster-values file, or the kubeconfig (KUBECONFIG)"
    } else if s.contains("Forbidden") || s.contains("forbidden") {
        "grant `get` on sealedsecrets.bitnami.com in that namespace to the kubeconfig's identity"
    } else if s.contains("Unauthorized") {
        "the kubeconfig's credentials were rejected"
    } else {
        "check that kubectl reaches the cluster, or drop --require-synced"
    };
    Some(format!("kubectl failed: {msg} ({hint})"))
}

/// What `kubectl get` answered.
pub(super) enum Got {
    /// The object, as JSON.
    Object(serde_json::Value),
    /// The cluster does not have it (yet).
    Missing,
}

/// Why a gate's `kubectl get` cannot be evaluated.
#[derive(Debug, thiserror::Error)]
pub(super) enum KubectlError {
    /// The record names something that is not a namespace or object name.
    #[error("not asking kubectl: {0}")]
    BadName(String),
    /// kubectl failed; the message says how and what to do ([`kubectl_failure`]).
    #[error("{0}")]
    Failed(String),
    /// kubectl is not there or cannot start.
    #[error(
        "kubectl cannot run ({source}); {flag} needs kubectl on PATH and a kubeconfig for the cluster"
    )]
    CannotRun {
        source: std::io::Error,
        flag: &'static str,
    },
    /// No answer in time.
    #[error("kubectl did not answer within 60s")]
    Timeout,
    /// The answer is not JSON.
    #[error("kubectl output is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
}

/// `kubectl [--context=<cluster's>] --namespace=<ns> get -o json -- <kind> [<name>]`
/// (without a name: the list of that kind in the namespace), with a 60 s limit. The
/// namespace and name are checked names and the name comes after `--`, so nothing from
/// the repo or the cluster can be read as an option (such as a `--kubeconfig` that runs an
/// exec credential plugin).
pub(super) async fn kubectl_get(
    ctx: &Ctx<'_>,
    cluster: &str,
    ns: &str,
    kind: &str,
    name: Option<&str>,
    flag: &'static str,
) -> Result<Got, KubectlError> {
    let ns =
        crate::names::Namespace::parse(ns).map_err(|e| KubectlError::BadName(e.to_string()))?;
    let name = match name.map(crate::names::KubeName::parse) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(e)) => return Err(KubectlError::BadName(e.to_string())),
    };
    let mut cmd = tokio::process::Command::new("kubectl");
    if let Some(c) = ctx
        .repo
        .inventory
        .get(cluster)
        .and_then(|c| c.kube_context.as_ref())
    {
        cmd.arg(format!("--context={c}"));
    }
    cmd.arg(format!("--namespace={ns}"))
        .args(["get", "-o", "json", "--", kind])
        .args(name.as_ref().map(|n| n.as_str()))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output()).await {
        Ok(Ok(o)) if o.status.success() => o.stdout,
        Ok(Ok(o)) => {
            return match kubectl_failure(&String::from_utf8_lossy(&o.stderr)) {
                None => Ok(Got::Missing),
                Some(message) => Err(KubectlError::Failed(message)),
            };
        }
        Ok(Err(source)) => return Err(KubectlError::CannotRun { source, flag }),
        Err(_) => return Err(KubectlError::Timeout),
    };
    serde_json::from_slice(&out)
        .map(Got::Object)
        .map_err(KubectlError::NotJson)
}
