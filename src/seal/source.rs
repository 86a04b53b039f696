//! Where a cluster's sealing certificate comes from (`sealingCert` in cluster-values).
//!
//! * a path in the repo (`tooling/sealing-certs/<id>.pem`);
//! * an `https://` URL (plain `http://` only to a loopback address, e.g. `kubectl proxy`);
//! * `controller://<namespace>/<name>`: the sealed-secrets controller's `/v1/cert.pem`
//!   through the API server's service proxy, fetched with `kubectl get --raw` so the
//!   user's kubeconfig, contexts and auth plugins apply unchanged.

use super::{SealError, SealResult, SealingCert};
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest certificate we accept from the network.
const MAX_CERT_BYTES: usize = crate::fsx::MAX_CERT_BYTES as usize;

/// A parsed `sealingCert` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertSource {
    /// A file the operator named (absolute, or relative to the working directory).
    File(PathBuf),
    /// A file of the config repo: a regular file inside `root`, read with
    /// [`crate::fsx::read_in_repo`] (no symlink out of the repo, no FIFO, size cap).
    RepoFile {
        /// The repo root.
        root: PathBuf,
        /// Path relative to it.
        rel: PathBuf,
    },
    /// An https URL (or http to loopback).
    Url(String),
    /// The controller service in a cluster.
    Controller {
        /// Namespace of the controller service.
        namespace: String,
        /// Service name.
        name: String,
    },
}

impl CertSource {
    /// Parses a `sealingCert` / `--cert` value. Relative paths resolve against `base`.
    pub fn parse(spec: &str, base: &Path) -> SealResult<CertSource> {
        let bad = |m: &str| SealError::BadCertificate {
            origin: spec.to_owned(),
            message: m.to_owned(),
        };
        if let Some(rest) = spec.strip_prefix("controller://") {
            let (ns, name) = rest
                .split_once('/')
                .filter(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('/'))
                .ok_or_else(|| bad("expected controller://<namespace>/<service>, e.g. controller://kube-system/sealed-secrets-controller"))?;
            // Both end up in a kubectl argument: valid names only.
            crate::names::Namespace::parse(ns).map_err(|e| bad(&e.to_string()))?;
            crate::names::KubeName::parse(name).map_err(|e| bad(&e.to_string()))?;
            return Ok(CertSource::Controller {
                namespace: ns.to_owned(),
                name: name.to_owned(),
            });
        }
        if spec.starts_with("https://") {
            return Ok(CertSource::Url(spec.to_owned()));
        }
        if spec.starts_with("http://") {
            if crate::config::secure_or_loopback(spec) {
                return Ok(CertSource::Url(spec.to_owned()));
            }
            return Err(bad(
                "plain http is only allowed to a loopback address (kubectl proxy); use https",
            ));
        }
        if spec.contains("://") {
            return Err(bad(
                "unsupported scheme; use a file path, https://... or controller://ns/name",
            ));
        }
        let p = Path::new(spec);
        Ok(CertSource::File(if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }))
    }

    /// Parses a cluster's `sealingCert` as the repo writes it: a file must be a relative
    /// path inside the repo (no absolute path, no `..`).
    pub fn parse_in_repo(spec: &str, root: &Path) -> SealResult<CertSource> {
        match CertSource::parse(spec, root)? {
            CertSource::File(_) => {
                let rel = Path::new(spec);
                if !crate::fsx::is_contained(rel) {
                    return Err(SealError::BadCertificate {
                        origin: crate::text::escape(spec).into_owned(),
                        message: "a sealingCert file must be a path inside the repo (relative, without `..`)".into(),
                    });
                }
                Ok(CertSource::RepoFile {
                    root: root.to_path_buf(),
                    rel: rel.to_path_buf(),
                })
            }
            other => Ok(other),
        }
    }

    /// Fetches the certificate bytes. `kube_context` selects the kubectl context for
    /// controller sources.
    pub async fn fetch(&self, kube_context: Option<&str>) -> SealResult<Vec<u8>> {
        match self {
            CertSource::File(p) => std::fs::read(p).map_err(|e| SealError::BadCertificate {
                origin: p.display().to_string(),
                message: format!("cannot read: {e}"),
            }),
            CertSource::RepoFile { root, rel } => {
                match crate::fsx::read_in_repo(root, rel, crate::fsx::MAX_CERT_BYTES) {
                    Ok(Some(b)) => Ok(b),
                    Ok(None) => Err(SealError::BadCertificate {
                        origin: crate::text::path(rel),
                        message: "cannot read: no such file in the repo".into(),
                    }),
                    Err(e) => Err(SealError::BadCertificate {
                        origin: crate::text::path(rel),
                        message: e.to_string(),
                    }),
                }
            }
            CertSource::Url(u) => fetch_url(u).await,
            CertSource::Controller { namespace, name } => {
                fetch_controller(namespace, name, kube_context).await
            }
        }
    }

    /// Fetches and validates (expiry, RSA, key size) in one go.
    pub async fn load(
        &self,
        origin: &str,
        kube_context: Option<&str>,
        now: DateTime<Utc>,
    ) -> SealResult<SealingCert> {
        let bytes = self.fetch(kube_context).await.map_err(|e| match e {
            SealError::BadCertificate { origin: o, message } => SealError::BadCertificate {
                origin: format!("{origin} ({o})"),
                message,
            },
            other => other,
        })?;
        SealingCert::parse(&bytes, origin, now)
    }
}

async fn fetch_url(url: &str) -> SealResult<Vec<u8>> {
    let bad = |m: String| SealError::BadCertificate {
        origin: url.to_owned(),
        message: m,
    };
    // A redirect could hand us another host's certificate: none is followed.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| bad(format!("cannot fetch: {e}")))?;
    if !resp.status().is_success() {
        return Err(bad(format!("HTTP {}", resp.status())));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| bad(format!("cannot read body: {e}")))?;
    if body.len() > MAX_CERT_BYTES {
        return Err(bad(format!(
            "response is {} bytes; not a certificate",
            body.len()
        )));
    }
    Ok(body.to_vec())
}

/// `kubectl [--context=C] <verb> --raw=<path>` against the controller's service proxy,
/// with `body` on stdin for a POST (`create --raw -f -`). Only valid names reach kubectl
/// (checked by the callers), every value in the `--flag=value` form.
async fn kubectl_raw(
    origin: &str,
    verb: &str,
    path: &str,
    kube_context: Option<&str>,
    body: Option<&[u8]>,
) -> SealResult<std::process::Output> {
    use tokio::io::AsyncWriteExt as _;
    let fail = |message: String| SealError::Controller {
        origin: origin.to_owned(),
        message,
    };
    let mut cmd = tokio::process::Command::new("kubectl");
    if let Some(ctx) = kube_context {
        let ctx = crate::names::KubeContext::parse(ctx).map_err(|e| fail(e.to_string()))?;
        cmd.arg(format!("--context={ctx}"));
    }
    cmd.arg(verb).arg(format!("--raw={path}"));
    if body.is_some() {
        cmd.args(["-f", "-"]).stdin(std::process::Stdio::piped());
    } else {
        cmd.stdin(std::process::Stdio::null());
    }
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let run = async {
        let mut child = cmd
            .spawn()
            .map_err(|e| fail(format!("cannot run kubectl: {e}")))?;
        if let (Some(body), Some(mut stdin)) = (body, child.stdin.take()) {
            stdin
                .write_all(body)
                .await
                .map_err(|e| fail(format!("writing to kubectl: {e}")))?;
        }
        child
            .wait_with_output()
            .await
            .map_err(|e| fail(format!("cannot run kubectl: {e}")))
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .map_err(|_| fail("kubectl timed out after 60s".into()))?
}

fn kubectl_message(out: &std::process::Output, what: &str, kube_context: Option<&str>) -> String {
    format!(
        "kubectl {what} failed{}: {}",
        kube_context
            .map(|c| format!(" (context {c})"))
            .unwrap_or_default(),
        crate::text::escape(String::from_utf8_lossy(&out.stderr).trim())
    )
}

async fn fetch_controller(
    namespace: &str,
    name: &str,
    kube_context: Option<&str>,
) -> SealResult<Vec<u8>> {
    let path = format!("/api/v1/namespaces/{namespace}/services/http:{name}:/proxy/v1/cert.pem");
    let origin = format!("controller://{namespace}/{name}");
    let out = kubectl_raw(&origin, "get", &path, kube_context, None)
        .await
        .map_err(|e| match e {
            SealError::Controller { origin, message } => {
                SealError::BadCertificate { origin, message }
            }
            other => other,
        })?;
    if !out.status.success() {
        return Err(SealError::BadCertificate {
            message: kubectl_message(&out, &format!("get --raw {path}"), kube_context),
            origin,
        });
    }
    Ok(out.stdout)
}

/// Asks the sealed-secrets controller `namespace/name` whether it can decrypt the
/// SealedSecret `manifest` (YAML or JSON), without applying it: its `/v1/verify`
/// endpoint through the API server's service proxy, as `kubeseal --validate` does.
/// `Ok(true)` when it decrypts, `Ok(false)` when the controller answers 409 Conflict
/// (it cannot), an error when the controller cannot be asked.
pub async fn verify_with_controller(
    namespace: &str,
    name: &str,
    kube_context: Option<&str>,
    manifest: &[u8],
) -> SealResult<bool> {
    let origin = format!("controller://{namespace}/{name}");
    let bad = |m: String| SealError::Controller {
        origin: origin.clone(),
        message: m,
    };
    crate::names::Namespace::parse(namespace).map_err(|e| bad(e.to_string()))?;
    crate::names::KubeName::parse(name).map_err(|e| bad(e.to_string()))?;
    let path = format!("/api/v1/namespaces/{namespace}/services/http:{name}:/proxy/v1/verify");
    let out = kubectl_raw(&origin, "create", &path, kube_context, Some(manifest)).await?;
    if out.status.success() {
        return Ok(true);
    }
    // kubectl prints the API's status reason: a 409 is the controller's "cannot decrypt".
    if String::from_utf8_lossy(&out.stderr).contains("(Conflict)") {
        return Ok(false);
    }
    Err(bad(kubectl_message(
        &out,
        &format!("create --raw {path}"),
        kube_context,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        let base = Path::new("/repo");
        assert_eq!(
            CertSource::parse("certs/a.pem", base).unwrap(),
            CertSource::File("/repo/certs/a.pem".into())
        );
        assert_eq!(
            CertSource::parse("https://certs.example.com/a.pem", base).unwrap(),
            CertSource::Url("https://certs.example.com/a.pem".into())
        );
        assert_eq!(
            CertSource::parse("controller://kube-system/sealed-secrets-controller", base).unwrap(),
            CertSource::Controller {
                namespace: "kube-system".into(),
                name: "sealed-secrets-controller".into()
            }
        );
        assert!(CertSource::parse("http://127.0.0.1:8001/x", base).is_ok());
        assert!(CertSource::parse("http://certs.example.com/x", base).is_err());
        assert!(CertSource::parse("ftp://x/y", base).is_err());
        assert!(CertSource::parse("controller://only-ns", base).is_err());
    }
}
