//! The sealing-key lifecycle: is a SealedSecret sealed with its cluster's current
//! certificate?
//!
//! The sealed-secrets controller renews its sealing key (every 30 days by default) and keeps
//! the old ones, so old ciphertexts still decrypt — but a leaked old key stays useful for as
//! long as something is sealed with it. Every manifest this tool seals records the SHA-256
//! fingerprint of the certificate in `<prefix>sealedWith`; comparing it with the cluster's
//! current certificate (its `sealingCert`, fetched once per cluster per run) says which
//! manifests to re-seal. A rotation re-seals: it mints a new key and seals it with the
//! current certificate.

use crate::annotations::SEALED_WITH;
use crate::scan::Found;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Where a manifest is: file, document, List item.
pub type ManifestAt = (PathBuf, usize, Option<usize>);

/// The current certificate's fingerprint per cluster; `None` where it cannot be read (the
/// reason is logged), so that comparisons against it are unknown rather than false.
#[derive(Clone, Debug, Default)]
pub struct CurrentCerts {
    by_cluster: BTreeMap<String, Option<String>>,
}

impl CurrentCerts {
    /// Loads the certificate of every cluster that `found` attributes a manifest with a
    /// recorded fingerprint to (a manifest without one compares as unknown anyway, so a
    /// repo without `sealedWith` annotations fetches nothing).
    pub async fn load(repo: &crate::Repo, found: &[Found], now: DateTime<Utc>) -> CurrentCerts {
        let prefix = &repo.config.annotation_prefix;
        let clusters: BTreeSet<&str> = found
            .iter()
            .filter(|f| Self::sealed_with(f, prefix).is_some())
            .filter_map(|f| f.attribution.cluster())
            .collect();
        let mut by_cluster = BTreeMap::new();
        for c in clusters {
            let fp = match repo.sealing_cert(c, now).await {
                Ok(cert) => Some(cert.fingerprint),
                Err(e) => {
                    tracing::info!(cluster = c, error = %e, "current sealing certificate unknown");
                    None
                }
            };
            by_cluster.insert(c.to_owned(), fp);
        }
        CurrentCerts { by_cluster }
    }

    /// A fixed map (tests).
    pub fn from_map(by_cluster: BTreeMap<String, Option<String>>) -> CurrentCerts {
        CurrentCerts { by_cluster }
    }

    /// The current fingerprint of `cluster`, when known.
    pub fn current(&self, cluster: &str) -> Option<&str> {
        self.by_cluster.get(cluster)?.as_deref()
    }

    /// The fingerprint `f` records (`<prefix>sealedWith` on its outer metadata).
    pub fn sealed_with(f: &Found, prefix: &str) -> Option<String> {
        f.doc
            .outer_annotations
            .get(&format!("{prefix}{SEALED_WITH}"))
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
    }

    /// Whether `f` is sealed with its cluster's current certificate; `None` when `f`
    /// records no fingerprint, belongs to no single cluster, or the certificate is unknown.
    pub fn is_current(&self, f: &Found, prefix: &str) -> Option<bool> {
        let recorded = Self::sealed_with(f, prefix)?;
        let current = self.by_cluster.get(f.attribution.cluster()?)?.as_ref()?;
        Some(&recorded == current)
    }

    /// The manifests of `found` sealed with an outdated certificate.
    pub fn outdated(&self, found: &[Found], prefix: &str) -> BTreeSet<ManifestAt> {
        found
            .iter()
            .filter(|f| self.is_current(f, prefix) == Some(false))
            .map(at)
            .collect()
    }
}

/// Where `f` is.
pub fn at(f: &Found) -> ManifestAt {
    (f.file.clone(), f.doc.doc_index, f.doc.item)
}
