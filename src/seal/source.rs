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

async fn fetch_controller(
    namespace: &str,
    name: &str,
    kube_context: Option<&str>,
) -> SealResult<Vec<u8>> {
    let path = format!("/api/v1/namespaces/{namespace}/services/http:{name}:/proxy/v1/cert.pem");
    let origin = format!("controller://{namespace}/{name}");
    let mut cmd = tokio::process::Command::new("kubectl");
    if let Some(ctx) = kube_context {
        let ctx = crate::names::KubeContext::parse(ctx).map_err(|e| SealError::BadCertificate {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
        cmd.arg(format!("--context={ctx}"));
    }
    cmd.arg("get")
        .arg(format!("--raw={path}"))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .map_err(|_| SealError::BadCertificate {
            origin: origin.clone(),
            message: "kubectl timed out after 60s".into(),
        })?
        .map_err(|e| SealError::BadCertificate {
            origin: origin.clone(),
            message: format!("cannot run kubectl: {e}"),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(SealError::BadCertificate {
            origin,
            message: format!(
                "kubectl get --raw {path} failed{}: {}",
                kube_context
                    .map(|c| format!(" (context {c})"))
                    .unwrap_or_default(),
                stderr.trim()
            ),
        });
    }
    Ok(out.stdout)
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
