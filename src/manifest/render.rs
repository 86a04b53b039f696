//! Writing a new SealedSecret document (the `seal` and `create` commands).
//!
//! The shape follows kubeseal's YAML output, minus `creationTimestamp: null`. Every string
//! is double-quoted unless it is plainly safe, so no value can change type on the way.

use super::{CLUSTER_WIDE_ANNOTATION, NAMESPACE_WIDE_ANNOTATION, Scope};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Everything a new SealedSecret document holds (ciphertexts only, no plaintext).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewSealedSecret {
    /// metadata.name
    pub name: String,
    /// metadata.namespace (absent for cluster-wide secrets without one)
    pub namespace: Option<String>,
    /// Scope; its annotation is added to outer and template metadata.
    pub scope: Option<Scope>,
    /// Outer annotations besides the scope (e.g. `secret-manager/sealedWith`).
    pub outer_annotations: BTreeMap<String, String>,
    /// Template labels.
    pub labels: BTreeMap<String, String>,
    /// Template annotations besides the scope.
    pub template_annotations: BTreeMap<String, String>,
    /// Template `type`.
    pub secret_type: Option<String>,
    /// Ciphertexts by key.
    pub encrypted: BTreeMap<String, String>,
}

fn q(s: &str) -> String {
    let simple = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./+=".contains(&b))
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if simple {
        return s.to_owned();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn map(out: &mut String, indent: usize, key: &str, m: &BTreeMap<String, String>) {
    if m.is_empty() {
        return;
    }
    let pad = " ".repeat(indent);
    let _ = writeln!(out, "{pad}{key}:");
    for (k, v) in m {
        let _ = writeln!(out, "{pad}  {}: {}", q(k), q(v));
    }
}

impl NewSealedSecret {
    /// `m` plus the annotation that makes the scope (namespace-wide, cluster-wide), which
    /// kubeseal writes on both the outer and the template metadata.
    fn with_scope(&self, m: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut m = m.clone();
        let ann = match self.scope {
            Some(Scope::NamespaceWide) => Some(NAMESPACE_WIDE_ANNOTATION),
            Some(Scope::ClusterWide) => Some(CLUSTER_WIDE_ANNOTATION),
            _ => None,
        };
        if let Some(a) = ann {
            m.insert(a.to_owned(), "true".to_owned());
        }
        m
    }

    /// The YAML document (with a leading `---`, LF line endings, final newline).
    pub fn to_yaml(&self) -> String {
        let with_scope = |m: &BTreeMap<String, String>| self.with_scope(m);
        let mut out =
            String::from("---\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n");
        let _ = writeln!(out, "  name: {}", q(&self.name));
        if let Some(ns) = &self.namespace {
            let _ = writeln!(out, "  namespace: {}", q(ns));
        }
        map(
            &mut out,
            2,
            "annotations",
            &with_scope(&self.outer_annotations),
        );
        out.push_str("spec:\n  encryptedData:\n");
        for (k, v) in &self.encrypted {
            let _ = writeln!(out, "    {}: {}", q(k), v);
        }
        out.push_str("  template:\n    metadata:\n");
        let _ = writeln!(out, "      name: {}", q(&self.name));
        if let Some(ns) = &self.namespace {
            let _ = writeln!(out, "      namespace: {}", q(ns));
        }
        map(&mut out, 6, "labels", &self.labels);
        map(
            &mut out,
            6,
            "annotations",
            &with_scope(&self.template_annotations),
        );
        if let Some(t) = &self.secret_type {
            let _ = writeln!(out, "    type: {}", q(t));
        }
        out
    }
}

impl NewSealedSecret {
    /// The document as JSON (kubeseal's default output format), pretty-printed with a
    /// final newline. The scanner reads it like the YAML form.
    pub fn to_json(&self) -> String {
        let with_scope = |m: &BTreeMap<String, String>| self.with_scope(m);
        let mut meta = serde_json::Map::new();
        meta.insert("name".into(), self.name.clone().into());
        if let Some(ns) = &self.namespace {
            meta.insert("namespace".into(), ns.clone().into());
        }
        let mut template_meta = meta.clone();
        let outer = with_scope(&self.outer_annotations);
        if !outer.is_empty() {
            meta.insert("annotations".into(), serde_json::json!(outer));
        }
        if !self.labels.is_empty() {
            template_meta.insert("labels".into(), serde_json::json!(self.labels));
        }
        let inner = with_scope(&self.template_annotations);
        if !inner.is_empty() {
            template_meta.insert("annotations".into(), serde_json::json!(inner));
        }
        let mut template = serde_json::Map::new();
        template.insert("metadata".into(), template_meta.into());
        if let Some(t) = &self.secret_type {
            template.insert("type".into(), t.clone().into());
        }
        let doc = serde_json::json!({
            "apiVersion": "bitnami.com/v1alpha1",
            "kind": "SealedSecret",
            "metadata": meta,
            "spec": {
                "encryptedData": self.encrypted,
                "template": template,
            },
        });
        let mut s = serde_json::to_string_pretty(&doc).expect("JSON of strings");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{SealedSecretDoc, yaml::parse_documents};

    #[test]
    fn renders_a_document_the_scanner_reads_back() {
        let mut n = NewSealedSecret {
            name: "dns".into(),
            namespace: Some("external-dns".into()),
            scope: Some(Scope::NamespaceWide),
            secret_type: Some("Opaque".into()),
            ..Default::default()
        };
        n.encrypted.insert("accessKeyId".into(), "AgAAbb==".into());
        n.template_annotations
            .insert("secret-manager/account".into(), "123456789012".into());
        n.outer_annotations
            .insert("secret-manager/sealedWith".into(), "abc".into());
        let y = n.to_yaml();
        assert!(!y.contains("creationTimestamp"));
        assert!(
            y.contains("secret-manager/account: \"123456789012\""),
            "{y}"
        );
        let docs = parse_documents(&y).unwrap();
        let d = SealedSecretDoc::from_document(&docs[0]).unwrap();
        assert_eq!(d.scope, Scope::NamespaceWide);
        assert_eq!(d.namespace.as_deref(), Some("external-dns"));
        assert_eq!(d.encrypted_keys, ["accessKeyId"]);
        assert_eq!(
            d.template_annotations["secret-manager/account"],
            "123456789012"
        );
        assert_eq!(d.template_annotations[NAMESPACE_WIDE_ANNOTATION], "true");
        // The JSON form says the same.
        let j = n.to_json();
        let docs = parse_documents(&j).unwrap();
        let dj = SealedSecretDoc::from_document(&docs[0]).unwrap();
        assert_eq!(
            (
                dj.scope,
                dj.namespace,
                dj.encrypted_keys,
                dj.template_annotations,
                dj.outer_annotations
            ),
            (
                d.scope,
                d.namespace,
                d.encrypted_keys,
                d.template_annotations,
                d.outer_annotations
            )
        );
        assert_eq!(dj.secret_type.as_deref(), Some("Opaque"));
        assert!(j.ends_with("}\n"), "{j}");
    }
}
