//! Whether a cluster's sealing certificate may be used to seal a new credential.
//!
//! The repo says where a cluster's certificate is (`sealingCert`), but a certificate is
//! not trusted because the repo holds it: whoever could replace it would have every newly
//! minted credential sealed to a key of their own, readable by anyone who can read the
//! repo. A certificate is used when one of these holds, in this order:
//!
//! 1. **Pinned** by the operator (`SECRET_MANAGER_TRUSTED_CERTS`, `CLUSTER=SHA256,...`):
//!    when a cluster has pins, only a pinned certificate is used, whatever else holds.
//! 2. **Verified** against the controller: the certificate is fetched from the cluster's
//!    sealed-secrets controller through the operator's kubeconfig (`controller://` as the
//!    source, or a cluster with a `kubeContext` whose controller serves the same one).
//!    This is how the controller's 30-day key renewal keeps working unattended.
//! 3. **Continuity**: it is the certificate that most of the cluster's manifests on main
//!    record in `sealedWith` (a few forged annotations cannot outvote the others).
//! 4. **First use**: no manifest of the cluster records any certificate yet; it is used
//!    and a warning says to pin it.
//!
//! Otherwise the cluster is refused, with the recorded and the new fingerprints and the
//! ways to accept the new one.

use std::collections::{BTreeMap, BTreeSet};

/// The operator's pins: `CLUSTER=SHA256[,CLUSTER=SHA256...]`.
pub const TRUSTED_CERTS_ENV: &str = "SECRET_MANAGER_TRUSTED_CERTS";

/// Fingerprints the operator pinned, per cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pins(BTreeMap<String, BTreeSet<String>>);

/// Normalises a fingerprint: lowercase hex without `sha256:` or `:` separators.
fn normalise(fp: &str) -> Option<String> {
    let fp = fp.trim();
    let fp = fp.strip_prefix("sha256:").unwrap_or(fp);
    let hex: String = fp
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

impl Pins {
    /// Parses `CLUSTER=SHA256` entries separated by commas, spaces or newlines.
    pub fn parse(s: &str) -> Result<Pins, PinError> {
        let mut pins = Pins::default();
        for entry in s.split([',', ' ', '\n', '\t']).filter(|e| !e.is_empty()) {
            let (cluster, fp) = entry.split_once('=').ok_or_else(|| PinError::NotAPair {
                entry: crate::text::escape_cut(entry, 200),
            })?;
            let fp = normalise(fp).ok_or_else(|| PinError::NotAFingerprint {
                fingerprint: crate::text::escape_cut(fp, 200),
            })?;
            pins.0.entry(cluster.to_owned()).or_default().insert(fp);
        }
        Ok(pins)
    }

    /// The pins of the environment (none when unset).
    pub fn from_env() -> Result<Pins, PinError> {
        match std::env::var(TRUSTED_CERTS_ENV) {
            Ok(s) => Pins::parse(&s),
            Err(_) => Ok(Pins::default()),
        }
    }

    /// The fingerprints pinned for `cluster`.
    pub fn of(&self, cluster: &str) -> Option<&BTreeSet<String>> {
        self.0.get(cluster).filter(|s| !s.is_empty())
    }
}

/// An entry of the operator's pins that is not `CLUSTER=SHA256` (shown escaped).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// No `=`.
    #[error("{TRUSTED_CERTS_ENV}: `{entry}` is not CLUSTER=SHA256")]
    NotAPair {
        /// The pin as given, escaped.
        entry: String,
    },
    /// Not 64 hex digits.
    #[error(
        "{TRUSTED_CERTS_ENV}: `{fingerprint}` is not a SHA-256 fingerprint (64 hex digits, as `secret-manager seal --fetch-cert` and `list -o wide` show)"
    )]
    NotAFingerprint {
        /// What was given.
        fingerprint: String,
    },
}

/// Why the repo's certificate for a cluster may not seal: nothing is sealed for it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    /// The operator pinned other certificates for the cluster.
    #[error(
        "cluster {cluster}: the sealing certificate in the repo ({}…) is not one the operator pinned ({}); nothing is sealed for this cluster. If the controller's key really changed, {}",
        short(fingerprint),
        pinned.iter().map(|p| format!("{}…", short(p))).collect::<Vec<_>>().join(", "),
        accept(cluster, fingerprint)
    )]
    NotPinned {
        /// Whose certificate is not trusted.
        cluster: String,
        /// The repo's certificate.
        fingerprint: String,
        /// What the operator pinned.
        pinned: Vec<String>,
    },
    /// The cluster's manifests record another certificate, and neither a pin nor the
    /// controller vouches for the repo's.
    #[error(
        "cluster {cluster}: the sealing certificate in the repo changed: its manifests record {}… ({usual_count} of {total}), the repo's certificate is {}…{}; a certificate is not trusted because the repo holds it, so nothing is sealed for this cluster. {}",
        short(usual),
        short(fingerprint),
        match controller {
            Some(c) => format!(" and the cluster's controller serves {}…", short(c)),
            None => String::new(),
        },
        accept(cluster, fingerprint)
    )]
    Changed {
        /// Whose certificate is not trusted.
        cluster: String,
        /// The repo's certificate.
        fingerprint: String,
        /// The certificate most of its manifests record.
        usual: String,
        /// How many record it.
        usual_count: usize,
        /// How many record one.
        total: usize,
        /// What the controller serves, when it could be asked.
        controller: Option<String>,
    },
    /// The operator's pins cannot be read.
    #[error(transparent)]
    Pins(#[from] PinError),
}

fn accept(cluster: &str, fp: &str) -> String {
    format!(
        "to accept it, pin it in the rotator's environment ({TRUSTED_CERTS_ENV}={cluster}={fp}), or give the cluster a kubeContext so that it is verified against its controller"
    )
}

/// Why a certificate is trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    /// The operator pinned it.
    Pinned,
    /// The cluster's controller serves it.
    Verified,
    /// Most of the cluster's manifests record it.
    Continuity,
    /// Nothing is recorded for the cluster yet.
    FirstUse,
}

/// How many of a cluster's manifests record each fingerprint.
pub type Recorded = BTreeMap<String, usize>;

/// The fingerprints the manifests of `cluster` in `found` record, with their counts.
pub fn recorded(found: &[crate::scan::Found], cluster: &str, prefix: &str) -> Recorded {
    let mut out = Recorded::new();
    for f in found
        .iter()
        .filter(|f| f.attribution.cluster() == Some(cluster))
    {
        if let Some(fp) =
            crate::reseal::CurrentCerts::sealed_with(f, prefix).and_then(|s| normalise(&s))
        {
            *out.entry(fp).or_default() += 1;
        }
    }
    out
}

fn short(fp: &str) -> &str {
    &fp[..16.min(fp.len())]
}

/// Decides whether certificate `fp` may seal for `cluster`. `controller` is the
/// fingerprint the cluster's controller serves, when it could be asked.
pub fn decide(
    cluster: &str,
    fp: &str,
    pins: &Pins,
    recorded: &Recorded,
    controller: Option<&str>,
) -> Result<Basis, Untrusted> {
    if let Some(pinned) = pins.of(cluster) {
        return if pinned.contains(fp) {
            Ok(Basis::Pinned)
        } else {
            Err(Untrusted::NotPinned {
                cluster: cluster.to_owned(),
                fingerprint: fp.to_owned(),
                pinned: pinned.iter().cloned().collect(),
            })
        };
    }
    if controller == Some(fp) {
        return Ok(Basis::Verified);
    }
    let total: usize = recorded.values().sum();
    if total == 0 {
        return Ok(Basis::FirstUse);
    }
    if recorded.get(fp).is_some_and(|n| 2 * n > total) {
        return Ok(Basis::Continuity);
    }
    let (usual, _) = recorded.iter().max_by_key(|(_, n)| **n).expect("total > 0");
    Err(Untrusted::Changed {
        cluster: cluster.to_owned(),
        fingerprint: fp.to_owned(),
        usual: usual.clone(),
        usual_count: recorded[usual],
        total,
        controller: controller.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn rec(entries: &[(&str, usize)]) -> Recorded {
        entries.iter().map(|(f, n)| ((*f).to_owned(), *n)).collect()
    }

    #[test]
    fn pins_parse_and_normalise() {
        let p = Pins::parse(&format!(
            "aws.x.dev1=sha256:{} gcp.y.dev2={}",
            A.to_uppercase(),
            B
        ))
        .unwrap();
        assert!(p.of("aws.x.dev1").unwrap().contains(A));
        assert!(p.of("gcp.y.dev2").unwrap().contains(B));
        assert_eq!(
            Pins::parse("aws.x.dev1"),
            Err(PinError::NotAPair {
                entry: "aws.x.dev1".into()
            })
        );
        assert!(matches!(
            Pins::parse("aws.x.dev1=abc"),
            Err(PinError::NotAFingerprint { .. })
        ));
    }

    #[test]
    fn a_changed_certificate_needs_a_pin_or_the_controller() {
        let none = Pins::default();
        // First use, continuity.
        assert_eq!(decide("c", A, &none, &rec(&[]), None), Ok(Basis::FirstUse));
        assert_eq!(
            decide("c", A, &none, &rec(&[(A, 3)]), None),
            Ok(Basis::Continuity)
        );
        // A few forged annotations do not outvote the rest.
        let e = decide("c", B, &none, &rec(&[(A, 3), (B, 1)]), None).unwrap_err();
        assert!(
            matches!(&e, Untrusted::Changed { usual, usual_count: 3, total: 4, .. } if usual == A),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(
            e.contains("changed") && e.contains(&A[..16]) && e.contains(&B[..16]),
            "{e}"
        );
        assert!(e.contains(&format!("{TRUSTED_CERTS_ENV}=c={B}")), "{e}");
        // The controller serves it: a renewal keeps working.
        assert_eq!(
            decide("c", B, &none, &rec(&[(A, 3)]), Some(B)),
            Ok(Basis::Verified)
        );
        assert!(decide("c", B, &none, &rec(&[(A, 3)]), Some(A)).is_err());
        // Pins decide alone.
        let pinned = Pins::parse(&format!("c={B}")).unwrap();
        assert_eq!(
            decide("c", B, &pinned, &rec(&[(A, 3)]), None),
            Ok(Basis::Pinned)
        );
        assert!(decide("c", A, &pinned, &rec(&[(A, 3)]), Some(A)).is_err());
        assert_eq!(
            decide("other", A, &pinned, &rec(&[]), None),
            Ok(Basis::FirstUse)
        );
    }
}
