//! Reading a Kubernetes Secret manifest (YAML or JSON) the way kubeseal does.
//!
//! Plaintext lives only in [`Plaintext`] (zeroized on drop, redacted `Debug`). Errors
//! report positions, never content: a parse message could quote a secret value.

use crate::manifest::yaml::{Node, parse_documents};
use base64::Engine as _;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// Secret bytes (Secret `data` may be binary). Wiped on drop; `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Plaintext(pub Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Plaintext {
    /// Wraps bytes.
    pub fn new(b: Vec<u8>) -> Self {
        Plaintext(Zeroizing::new(b))
    }
}

/// Annotation kubectl stores the last applied object in; never copied (it holds the data).
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A Secret read from a manifest.
#[derive(Debug, Default)]
pub struct SecretManifest {
    /// metadata.name
    pub name: Option<String>,
    /// metadata.namespace
    pub namespace: Option<String>,
    /// metadata.labels
    pub labels: BTreeMap<String, String>,
    /// metadata.annotations, without `last-applied-configuration`
    pub annotations: BTreeMap<String, String>,
    /// type
    pub secret_type: Option<String>,
    /// data (decoded) and stringData merged; stringData wins, as in the API server.
    pub data: BTreeMap<String, Plaintext>,
}

/// Why a Secret manifest was rejected. Never contains input content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputError {
    /// Not YAML/JSON.
    #[error(
        "line {line}: not valid YAML or JSON (details withheld: they could contain secret values)"
    )]
    Syntax {
        /// 1-based line.
        line: usize,
    },
    /// Not exactly one Secret.
    #[error("expected one Kubernetes Secret (kind: Secret), found {0}")]
    NotASecret(String),
    /// A `data` value is not base64.
    #[error(
        "data.{key} (line {line}) is not valid base64; put plain text under stringData instead"
    )]
    BadBase64 {
        /// The Secret data key.
        key: String,
        /// 1-based line in the file.
        line: usize,
    },
    /// A key is not a valid Secret key.
    #[error("`{0}` is not a valid Secret key (letters, digits, `-`, `_`, `.`)")]
    BadKey(String),
    /// A value is not a string.
    #[error("{section}.{key} (line {line}) is not a string")]
    NotAString {
        /// data or stringData.
        section: &'static str,
        /// The Secret data key.
        key: String,
        /// 1-based line in the file.
        line: usize,
    },
}

fn str_map(n: Option<&Node<'_>>) -> BTreeMap<String, String> {
    n.and_then(Node::entries)
        .map(|e| {
            e.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses one Secret manifest (YAML or JSON).
pub fn parse_secret_manifest(src: &str) -> Result<SecretManifest, InputError> {
    let docs = parse_documents(src).map_err(|e| InputError::Syntax { line: e.line })?;
    let roots: Vec<&Node<'_>> = docs.iter().filter_map(|d| d.root.as_ref()).collect();
    let [root] = roots.as_slice() else {
        return Err(InputError::NotASecret(format!("{} documents", roots.len())));
    };
    match root.get_str("kind") {
        Some("Secret") => {}
        Some(k) => return Err(InputError::NotASecret(format!("kind: {k}"))),
        None => return Err(InputError::NotASecret("no kind".into())),
    }
    let meta = root.get("metadata");
    let mut annotations = str_map(meta.and_then(|m| m.get("annotations")));
    annotations.remove(LAST_APPLIED);
    let mut data = BTreeMap::new();
    for (section, decode) in [("data", true), ("stringData", false)] {
        let Some(entries) = root.get(section).and_then(Node::entries) else {
            continue;
        };
        for (k, v) in entries {
            let key = k.as_str().unwrap_or_default().to_owned();
            if !crate::names::is_valid_secret_key(&key) {
                return Err(InputError::BadKey(key));
            }
            let Some(val) = v.as_str() else {
                return Err(InputError::NotAString {
                    section: if decode { "data" } else { "stringData" },
                    key,
                    line: v.line,
                });
            };
            let bytes = if decode {
                let compact: String = val.chars().filter(|c| !c.is_whitespace()).collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact.as_bytes())
                    .map_err(|_| InputError::BadBase64 {
                        key: key.clone(),
                        line: v.line,
                    })?
            } else {
                val.as_bytes().to_vec()
            };
            data.insert(key, Plaintext::new(bytes));
        }
    }
    Ok(SecretManifest {
        name: meta.and_then(|m| m.get_str("name")).map(str::to_owned),
        namespace: meta.and_then(|m| m.get_str("namespace")).map(str::to_owned),
        labels: str_map(meta.and_then(|m| m.get("labels"))),
        annotations,
        secret_type: root.get_str("type").map(str::to_owned),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_secrets() {
        let y = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: a\n  namespace: b\n  annotations:\n    kubectl.kubernetes.io/last-applied-configuration: '{\"data\":\"leak\"}'\n    keep: me\n  ownerReferences: [{kind: X}]\ntype: Opaque\ndata:\n  k: aGVsbG8=\nstringData:\n  s: plain\n";
        let s = parse_secret_manifest(y).unwrap();
        assert_eq!(s.name.as_deref(), Some("a"));
        assert_eq!(s.data["k"].0.as_slice(), b"hello");
        assert_eq!(s.data["s"].0.as_slice(), b"plain");
        assert_eq!(s.annotations.keys().collect::<Vec<_>>(), ["keep"]);
        let j =
            r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"a"},"data":{"k":"aGk="}}"#;
        assert_eq!(
            parse_secret_manifest(j).unwrap().data["k"].0.as_slice(),
            b"hi"
        );
    }

    #[test]
    fn errors_never_quote_values() {
        let e =
            parse_secret_manifest("kind: Secret\ndata:\n  k: not-base64-hunter2!\n").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(
            e,
            InputError::BadBase64 {
                key: "k".into(),
                line: 3
            }
        );
        let e = parse_secret_manifest("kind: Secret\nstringData:\n  k: \"hunter2\n").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(matches!(
            parse_secret_manifest("kind: ConfigMap\n"),
            Err(InputError::NotASecret(_))
        ));
        assert!(
            format!(
                "{:?}",
                parse_secret_manifest("kind: Secret\nstringData: {k: hunter2}\n").unwrap()
            )
            .contains("[redacted]")
        );
    }
}
