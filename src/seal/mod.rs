//! kubeseal-compatible sealing.
//!
//! Per value: a random 32-byte AES-256-GCM session key encrypts the plaintext with a zero
//! nonce (the key is used once); RSA-OAEP-SHA256, with the scope label, encrypts the session
//! key. Output: `u16be(len(rsa)) ‖ rsa ‖ gcm`, standard base64 — byte-for-byte the format of
//! sealed-secrets' `HybridEncrypt`.
//!
//! The RSA operation is AWS-LC's (`aws-lc-rs`, already in the tree through rustls and the
//! cloud SDKs): the pure-Rust `rsa` crate's public-key operation is ~7× slower. AWS-LC draws
//! the OAEP seed from its own generator, so a ciphertext is not reproducible from an
//! injected RNG (the session key still comes from it); tests check sealing by decrypting
//! with the TEST-ONLY private keys and an independent OAEP implementation.

mod input;
pub mod ops;
mod source;
pub mod trust;

pub use input::{InputError, Plaintext, SecretManifest, parse_secret_manifest};

pub use source::{CertSource, verify_with_controller};

use crate::manifest::Scope;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use x509_cert::der::{Decode, DecodePem, Encode};
use zeroize::Zeroizing;

/// Smallest RSA modulus we accept.
pub const MIN_RSA_BITS: usize = 2048;

/// Errors while loading certificates or sealing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Not a PEM/DER X.509 certificate.
    #[error("{origin}: not an X.509 certificate: {message}")]
    BadCertificate {
        /// Where the certificate came from (file, URL, cluster).
        origin: String,
        /// Parser message.
        message: String,
    },
    /// The sealed-secrets controller could not be asked (kubectl failed or timed out).
    #[error("{origin}: {message}")]
    Controller {
        /// The controller, as controller://<namespace>/<name>.
        origin: String,
        /// What went wrong (kubectl's stderr, escaped).
        message: String,
    },
    /// The certificate's key is not RSA.
    #[error("{origin}: certificate key is not RSA; sealed-secrets needs an RSA key")]
    NotRsa {
        /// Where the certificate came from.
        origin: String,
    },
    /// The RSA key is too small.
    #[error("{origin}: RSA key has {bits} bits; at least {MIN_RSA_BITS} are required")]
    WeakKey {
        /// Where the certificate came from.
        origin: String,
        /// Modulus size.
        bits: usize,
    },
    /// The certificate expired (or is not valid yet).
    #[error(
        "{origin}: certificate is not valid at {now} (valid {not_before} to {not_after}); fetch the controller's current certificate"
    )]
    Expired {
        /// Where the certificate came from.
        origin: String,
        /// Reference time.
        now: String,
        /// Start of validity.
        not_before: String,
        /// End of validity.
        not_after: String,
    },
    /// Strict or namespace-wide scope without a namespace (never guessed).
    #[error(
        "{scope} scope needs a namespace for the sealing label; pass --namespace (or set metadata.namespace in the file)"
    )]
    NoNamespace {
        /// Strict, namespace-wide or cluster-wide: what the ciphertext is bound to.
        scope: Scope,
    },
    /// Strict scope without a name.
    #[error("strict scope needs metadata.name for the sealing label")]
    NoName,
    /// Encryption failed (should not happen with a valid key).
    #[error("encryption failed: {0}")]
    Crypto(String),
}

/// Result alias.
pub type SealResult<T> = Result<T, SealError>;

/// A validated sealing certificate.
#[derive(Clone)]
pub struct SealingCert {
    /// Size of the RSA modulus in bits.
    pub bits: usize,
    /// SHA-256 of the DER certificate, lowercase hex (recorded in `sealedWith`).
    pub fingerprint: String,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// Where it came from, for messages.
    pub origin: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The same key for AWS-LC's RSA-OAEP.
    oaep: std::sync::Arc<aws_lc_rs::rsa::OaepPublicEncryptingKey>,
}

impl std::fmt::Debug for SealingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealingCert")
            .field("origin", &self.origin)
            .field("fingerprint", &self.fingerprint)
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

fn to_utc(t: x509_cert::time::Time) -> DateTime<Utc> {
    DateTime::<Utc>::from(t.to_system_time())
}

impl SealingCert {
    /// Parses a PEM (or DER) certificate and refuses expired, non-RSA and weak keys.
    pub fn parse(bytes: &[u8], origin: &str, now: DateTime<Utc>) -> SealResult<SealingCert> {
        let bad = |m: String| SealError::BadCertificate {
            origin: origin.to_owned(),
            message: m,
        };
        let cert = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
            x509_cert::Certificate::from_pem(bytes).map_err(|e| bad(e.to_string()))?
        } else {
            x509_cert::Certificate::from_der(bytes).map_err(|e| bad(e.to_string()))?
        };
        let der = cert.to_der().map_err(|e| bad(e.to_string()))?;
        let spki = &cert.tbs_certificate.subject_public_key_info;
        // rsaEncryption
        if spki.algorithm.oid.to_string() != "1.2.840.113549.1.1.1" {
            return Err(SealError::NotRsa {
                origin: origin.to_owned(),
            });
        }
        // The modulus size from the PKCS#1 key (AWS-LC refuses small keys with a generic
        // error; this names the size).
        let bits = {
            use pkcs1::der::Decode as _;
            let key = pkcs1::RsaPublicKey::from_der(spki.subject_public_key.raw_bytes())
                .map_err(|e| bad(e.to_string()))?;
            let m = key.modulus.as_bytes();
            let lead = m.first().map_or(8, |b| b.leading_zeros() as usize);
            (m.len() * 8).saturating_sub(lead)
        };
        if bits < MIN_RSA_BITS {
            return Err(SealError::WeakKey {
                origin: origin.to_owned(),
                bits,
            });
        }
        let validity = &cert.tbs_certificate.validity;
        let (nb, na) = (to_utc(validity.not_before), to_utc(validity.not_after));
        if now < nb || now > na {
            return Err(SealError::Expired {
                origin: origin.to_owned(),
                now: now.to_rfc3339(),
                not_before: nb.to_rfc3339(),
                not_after: na.to_rfc3339(),
            });
        }
        let spki_der = spki.to_der().map_err(|e| bad(e.to_string()))?;
        let oaep = aws_lc_rs::rsa::PublicEncryptingKey::from_der(&spki_der)
            .map_err(|e| bad(format!("AWS-LC does not accept the RSA key: {e}")))
            .and_then(|k| {
                aws_lc_rs::rsa::OaepPublicEncryptingKey::new(k)
                    .map_err(|_| bad("AWS-LC does not accept the RSA key for OAEP".into()))
            })?;
        Ok(SealingCert {
            bits,
            fingerprint: fingerprint_hex(&der),
            not_after: na,
            origin: origin.to_owned(),
            der,
            oaep: std::sync::Arc::new(oaep),
        })
    }

    /// The certificate as PEM (what `kubeseal --fetch-cert` prints).
    pub fn to_pem(&self) -> String {
        use x509_cert::der::pem::{LineEnding, encode_string};
        encode_string("CERTIFICATE", LineEnding::LF, &self.der)
            .expect("a DER certificate encodes as PEM")
    }
}

/// Lowercase hex SHA-256 of `bytes` (fingerprints and stable ids).
pub fn fingerprint_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The OAEP label for a scope: `ns/name`, `ns`, or empty (sealed-secrets `EncryptionLabel`).
pub fn label(scope: Scope, namespace: Option<&str>, name: Option<&str>) -> SealResult<String> {
    let ns = || {
        namespace
            .filter(|n| !n.is_empty())
            .ok_or(SealError::NoNamespace { scope })
    };
    Ok(match scope {
        Scope::Strict => format!(
            "{}/{}",
            ns()?,
            name.filter(|n| !n.is_empty()).ok_or(SealError::NoName)?
        ),
        Scope::NamespaceWide => ns()?.to_owned(),
        Scope::ClusterWide => String::new(),
    })
}

/// Encrypts `plaintext` with kubeseal's hybrid scheme for `cert`; returns the raw
/// ciphertext. The session key comes from `rng`, the OAEP seed from AWS-LC.
pub fn hybrid_encrypt<R: RngCore + CryptoRng>(
    rng: &mut R,
    cert: &SealingCert,
    plaintext: &[u8],
    label: &str,
) -> SealResult<Vec<u8>> {
    let mut session = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(session.as_mut());
    let mut rsa_ct = vec![0u8; cert.oaep.ciphertext_size()];
    let n = cert
        .oaep
        .encrypt(
            &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
            session.as_ref(),
            &mut rsa_ct,
            (!label.is_empty()).then_some(label.as_bytes()),
        )
        .map_err(|_| SealError::Crypto("RSA-OAEP encryption failed".into()))?
        .len();
    rsa_ct.truncate(n);
    let cipher = Aes256Gcm::new_from_slice(session.as_ref())
        .map_err(|e| SealError::Crypto(e.to_string()))?;
    let gcm = cipher
        .encrypt(
            Nonce::from_slice(&[0u8; 12]),
            Payload {
                msg: plaintext,
                aad: &[],
            },
        )
        .map_err(|e| SealError::Crypto(e.to_string()))?;
    let len = u16::try_from(rsa_ct.len())
        .map_err(|_| SealError::Crypto("RSA ciphertext too long".into()))?;
    let mut out = Vec::with_capacity(2 + rsa_ct.len() + gcm.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&rsa_ct);
    out.extend_from_slice(&gcm);
    Ok(out)
}

/// Seals one value as it appears in `encryptedData` (standard base64).
pub fn seal_value<R: RngCore + CryptoRng>(
    rng: &mut R,
    cert: &SealingCert,
    label: &str,
    plaintext: &[u8],
) -> SealResult<String> {
    let ct = hybrid_encrypt(rng, cert, plaintext, label)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(ct))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_per_scope() {
        assert_eq!(label(Scope::Strict, Some("ns"), Some("n")).unwrap(), "ns/n");
        assert_eq!(
            label(Scope::NamespaceWide, Some("ns"), Some("n")).unwrap(),
            "ns"
        );
        assert_eq!(label(Scope::ClusterWide, None, None).unwrap(), "");
        assert!(matches!(
            label(Scope::Strict, None, Some("n")),
            Err(SealError::NoNamespace { .. })
        ));
        assert!(matches!(
            label(Scope::NamespaceWide, Some(""), None),
            Err(SealError::NoNamespace { .. })
        ));
        assert!(matches!(
            label(Scope::Strict, Some("ns"), None),
            Err(SealError::NoName)
        ));
    }
}
