//! Our annotations on `spec.template.metadata.annotations`; the per-source table is in docs/annotations.md.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// Default annotation prefix; configurable in `.secret-manager.yaml`.
pub const ANNOTATION_PREFIX: &str = "secret-manager/";

/// Annotation (without prefix) naming the credential source.
pub const SOURCE: &str = "source";
/// Annotation (without prefix) holding the creation time (RFC 3339).
pub const CREATE_DATE: &str = "createDate";
/// Annotation (without prefix) mapping provider fields to `encryptedData` keys.
pub const KEY_MAPPINGS: &str = "keyMappings";
/// Outer annotation (without prefix) with the sealing certificate's SHA-256 fingerprint.
pub const SEALED_WITH: &str = "sealedWith";

/// Sources built into this tool.
pub const BUILTIN_SOURCES: &[&str] = &[
    "aws",
    "azure",
    "gcp",
    "random",
    "postgres",
    "mysql",
    "github-deploy-key",
    "gitlab-deploy-token",
];

/// The annotation (without prefix) that holds the key id for `source`.
pub fn key_id_annotation(source: &str) -> &'static str {
    if source == "aws" {
        "accessKeyId"
    } else {
        "keyId"
    }
}

/// Identity annotations each built-in source requires (besides key id and the common ones).
pub fn identity_annotations(source: &str) -> &'static [&'static str] {
    match source {
        "aws" => &["account", "username"],
        "azure" => &["tenantId", "applicationObjectId", "clientId"],
        "gcp" => &["project", "serviceAccount"],
        "random" => &["id"],
        "postgres" | "mysql" => &["instance", "users"],
        "github-deploy-key" => &["repository"],
        // `project` or `group`: see `identity_alternatives`.
        "gitlab-deploy-token" => &[],
        _ => &[],
    }
}

/// Identity annotations of which exactly one must be set (a GitLab deploy token belongs to
/// a project or to a group).
pub fn identity_alternatives(source: &str) -> &'static [&'static str] {
    match source {
        "gitlab-deploy-token" => &["project", "group"],
        _ => &[],
    }
}

/// Provider output fields each built-in source offers to `keyMappings`.
pub fn output_fields(source: &str) -> Option<&'static [&'static str]> {
    match source {
        "aws" => Some(&["AccessKeyId", "SecretAccessKey"]),
        "azure" => Some(&["ClientId", "ClientSecret", "TenantId", "KeyId"]),
        "gcp" => Some(&["KeyFileJson", "KeyId", "ClientEmail"]),
        "random" => Some(&["Value"]),
        "postgres" | "mysql" => Some(&["Username", "Password"]),
        "github-deploy-key" => Some(&["PrivateKey", "PublicKey"]),
        "gitlab-deploy-token" => Some(&["Username", "Token"]),
        _ => None,
    }
}

/// One `secretKey:ProviderField` pair of `keyMappings`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyMapping {
    /// Key in `encryptedData`.
    pub secret_key: String,
    /// Provider output field.
    pub field: String,
}

pub use crate::names::is_valid_secret_key;

/// Annotation (without prefix) naming the template of one Secret key:
/// `secret-manager/template.<secretKey>: <template name>`.
pub const TEMPLATE_ANNOTATION: &str = "template.";

/// An annotation of a managed SealedSecret that does not parse. What it quotes comes
/// from the repo and is escaped and cut when the error is made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    /// `keyMappings` is not a bracketed list.
    #[error("`{0}` is not of the form [secretKey:ProviderField,...]")]
    NotAList(String),
    /// `keyMappings` has an empty entry.
    #[error("`{0}` has an empty entry")]
    EmptyEntry(String),
    /// A `keyMappings` entry without `:`.
    #[error("entry `{0}` has no `:` (expected secretKey:ProviderField)")]
    NoColon(String),
    /// Not a Kubernetes Secret data key.
    #[error("`{0}` is not a valid Secret key (letters, digits, `-`, `_`, `.`)")]
    SecretKey(String),
    /// Not a provider output field name.
    #[error("`{0}` is not a valid provider field name")]
    Field(String),
    /// One Secret key mapped twice.
    #[error("secret key `{0}` is mapped twice")]
    MappedTwice(String),
    /// `createDate` is not RFC 3339.
    #[error("`{input}` is not an RFC 3339 timestamp ({reason}); write e.g. 2026-08-01T10:00:00Z")]
    Timestamp {
        /// What was given.
        input: String,
        /// What the parser said.
        reason: String,
    },
    /// A `template.<secretKey>` annotation whose key is not a Secret key.
    #[error(
        "{}{key}: `{key}` is not a valid Secret key (letters, digits, `-`, `_`, `.`)",
        TEMPLATE_ANNOTATION
    )]
    TemplateKey {
        /// The Secret key the annotation names (as written).
        key: String,
    },
    /// A `template.<secretKey>` annotation whose value is not a template name.
    #[error("{}{key}: `{name}` is not a template name", TEMPLATE_ANNOTATION)]
    TemplateName {
        /// The Secret key.
        key: String,
        /// What was given.
        name: String,
    },
}

fn cut(s: &str) -> String {
    crate::text::escape_cut(s, 120)
}

/// Parses `[secretKey:ProviderField,...]`.
pub fn parse_key_mappings(s: &str) -> Result<Vec<KeyMapping>, AnnotationError> {
    let inner = s
        .trim()
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| AnnotationError::NotAList(cut(s)))?;
    let mut out: Vec<KeyMapping> = Vec::new();
    // Linear: the annotation is repo input and may be huge.
    let mut seen = std::collections::HashSet::new();
    for part in inner.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(AnnotationError::EmptyEntry(cut(s)));
        }
        let (k, f) = part
            .split_once(':')
            .ok_or_else(|| AnnotationError::NoColon(cut(part)))?;
        let (k, f) = (k.trim(), f.trim());
        if !is_valid_secret_key(k) {
            return Err(AnnotationError::SecretKey(cut(k)));
        }
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(AnnotationError::Field(cut(f)));
        }
        if !seen.insert(k) {
            return Err(AnnotationError::MappedTwice(k.to_owned()));
        }
        out.push(KeyMapping {
            secret_key: k.to_owned(),
            field: f.to_owned(),
        });
    }
    Ok(out)
}

/// Parses an RFC 3339 timestamp such as `2026-08-01T10:00:00Z`.
pub fn parse_create_date(s: &str) -> Result<DateTime<Utc>, AnnotationError> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| AnnotationError::Timestamp {
            input: cut(s),
            reason: e.to_string(),
        })
}

/// The template annotations of a managed secret: `(secret key, template name)`, or why
/// one is malformed.
pub fn templated_keys(
    all: &BTreeMap<String, String>,
) -> Vec<Result<(String, String), AnnotationError>> {
    all.iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix(TEMPLATE_ANNOTATION)?;
            let name = v.trim();
            Some(if !crate::names::is_valid_secret_key(key) {
                Err(AnnotationError::TemplateKey {
                    key: crate::text::escape_cut(key, 120),
                })
            } else if !crate::names::is_valid_template_name(name) {
                Err(AnnotationError::TemplateName {
                    key: key.to_owned(),
                    name: crate::text::escape_cut(name, 120),
                })
            } else {
                Ok((key.to_owned(), name.to_owned()))
            })
        })
        .collect()
}

/// The managed view of a SealedSecret: our annotations with the prefix stripped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Managed {
    /// `source` value.
    pub source: String,
    /// The key id annotation (`accessKeyId` for aws, `keyId` otherwise), when it has the
    /// source's key-id format.
    pub key_id: Option<String>,
    /// A key id annotation without that format, escaped for display (`lint` reports it;
    /// the secret cannot drive a rotation).
    pub invalid_key_id: Option<String>,
    /// Raw `createDate`.
    pub create_date_raw: Option<String>,
    /// Raw `keyMappings`.
    pub key_mappings_raw: Option<String>,
    /// Every annotation under the prefix, prefix stripped (including the ones above).
    pub all: BTreeMap<String, String>,
}

impl Managed {
    /// Extracts our annotations; `None` when there is no `source` annotation.
    pub fn from_annotations(annotations: &BTreeMap<String, String>, prefix: &str) -> Option<Self> {
        let all: BTreeMap<String, String> = annotations
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_owned(), v.clone())))
            .collect();
        let source = all.get(SOURCE)?.trim().to_owned();
        let raw_id = all
            .get(key_id_annotation(&source))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        let valid = |id: &String| crate::provider::is_valid_key_id(&source, id);
        Some(Managed {
            invalid_key_id: raw_id
                .as_ref()
                .filter(|id| !valid(id))
                .map(|id| crate::provider::escape_for_display(id)),
            key_id: raw_id.filter(valid),
            create_date_raw: all.get(CREATE_DATE).cloned(),
            key_mappings_raw: all.get(KEY_MAPPINGS).cloned(),
            source,
            all,
        })
    }

    /// `createDate` parsed, `None` when absent.
    pub fn create_date(&self) -> Option<Result<DateTime<Utc>, AnnotationError>> {
        self.create_date_raw.as_deref().map(parse_create_date)
    }

    /// `keyMappings` parsed, `None` when absent.
    pub fn key_mappings(&self) -> Option<Result<Vec<KeyMapping>, AnnotationError>> {
        self.key_mappings_raw.as_deref().map(parse_key_mappings)
    }

    /// `template.<secretKey>` annotations: `(secret key, template name)` each, or why one
    /// is malformed.
    pub fn templates(&self) -> Vec<Result<(String, String), AnnotationError>> {
        templated_keys(&self.all)
    }

    /// Whether the values are well described: `keyMappings` (if present) parses, every
    /// template annotation is well-formed, no key is both mapped and templated, and at
    /// least one key gets a value.
    pub fn values_ok(&self) -> bool {
        let mapped = match self.key_mappings() {
            Some(Ok(m)) => m,
            Some(Err(_)) => return false,
            None => Vec::new(),
        };
        let templated = self.templates();
        if templated.iter().any(Result::is_err) {
            return false;
        }
        let templated: Vec<String> = templated.into_iter().flatten().map(|(k, _)| k).collect();
        (!mapped.is_empty() || !templated.is_empty())
            && !mapped.iter().any(|m| templated.contains(&m.secret_key))
    }

    /// Identity parameters: every annotation except the bookkeeping ones (and templates).
    pub fn params(&self) -> BTreeMap<String, String> {
        let key_id = key_id_annotation(&self.source);
        self.all
            .iter()
            .filter(|(k, _)| {
                ![SOURCE, CREATE_DATE, KEY_MAPPINGS, key_id].contains(&k.as_str())
                    && !k.starts_with(TEMPLATE_ANNOTATION)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_key_mappings_are_checked_in_one_pass() {
        let many: Vec<String> = (0..100_000).map(|i| format!("k{i}:F")).collect();
        let parsed = parse_key_mappings(&format!("[{}]", many.join(","))).unwrap();
        assert_eq!(parsed.len(), 100_000);
        let dup = format!("[{},k5:G]", many.join(","));
        let e = parse_key_mappings(&dup).unwrap_err();
        assert_eq!(e, AnnotationError::MappedTwice("k5".into()));
        assert!(e.to_string().contains("`k5` is mapped twice"), "{e}");
        let e = parse_key_mappings("x\u{1b}[2J").unwrap_err().to_string();
        assert!(!e.contains('\u{1b}'), "{e}");
        // A timestamp from the repo is quoted escaped too.
        let e = parse_create_date("x\u{1b}[2J").unwrap_err().to_string();
        assert!(!e.contains('\u{1b}'), "{e}");
    }

    #[test]
    fn key_mappings_from_the_seed() {
        let m = parse_key_mappings("[accessKeyId:AccessKeyId,secretAccessKey:SecretAccessKey]")
            .unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].secret_key, "secretAccessKey");
        assert_eq!(m[1].field, "SecretAccessKey");
        assert_eq!(parse_key_mappings("[ a : B , c.d:E ]").unwrap().len(), 2);
    }

    #[test]
    fn key_mappings_errors_say_what_is_wrong() {
        let e = |s: &str| parse_key_mappings(s).unwrap_err();
        assert_eq!(e("a:B"), AnnotationError::NotAList("a:B".into()));
        assert!(e("a:B").to_string().contains("not of the form"));
        assert!(matches!(e("[a:B,]"), AnnotationError::EmptyEntry(_)));
        assert!(e("[a:B,]").to_string().contains("empty entry"));
        assert_eq!(e("[aB]"), AnnotationError::NoColon("aB".into()));
        assert!(e("[aB]").to_string().contains("no `:`"));
        assert_eq!(e("[a:B,a:C]"), AnnotationError::MappedTwice("a".into()));
        assert_eq!(e("[a/b:C]"), AnnotationError::SecretKey("a/b".into()));
        assert!(e("[a/b:C]").to_string().contains("not a valid Secret key"));
        assert_eq!(e("[a:B-C]"), AnnotationError::Field("B-C".into()));
    }

    #[test]
    fn create_date_is_rfc3339() {
        assert!(parse_create_date("2026-08-01T10:00:00Z").is_ok());
        assert!(parse_create_date("2026-08-01T12:00:00+02:00").is_ok());
        assert!(
            parse_create_date("2026-08-01")
                .unwrap_err()
                .to_string()
                .contains("RFC 3339")
        );
    }

    #[test]
    fn managed_strips_prefix_and_picks_key_id() {
        let mut a = BTreeMap::new();
        a.insert("secret-manager/source".into(), "aws".into());
        a.insert(
            "secret-manager/accessKeyId".into(),
            "AKIAIOSFODNN7EXAMPLE".into(),
        );
        a.insert("secret-manager/username".into(), "bot".into());
        a.insert("other/x".into(), "y".into());
        let m = Managed::from_annotations(&a, ANNOTATION_PREFIX).unwrap();
        assert_eq!(m.key_id.as_deref(), Some("AKIAIOSFODNN7EXAMPLE"));
        assert_eq!(m.invalid_key_id, None);
        assert_eq!(m.params().keys().collect::<Vec<_>>(), vec!["username"]);
        // An id without the source's format never becomes a key id; it is kept escaped.
        a.insert(
            "secret-manager/accessKeyId".into(),
            "AKIA\u{1b}[31mEXAMPLE".into(),
        );
        let m = Managed::from_annotations(&a, ANNOTATION_PREFIX).unwrap();
        assert_eq!(m.key_id, None);
        assert_eq!(m.invalid_key_id.as_deref(), Some("AKIA\\u{1b}[31mEXAMPLE"));
        a.remove("secret-manager/source");
        assert!(Managed::from_annotations(&a, ANNOTATION_PREFIX).is_none());
    }
}
