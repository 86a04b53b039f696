//! SealedSecret documents: the model read out of YAML (and, later, format-preserving edits).

pub mod edit;
pub mod render;
pub mod yaml;

use serde::Serialize;
use std::collections::BTreeMap;
use yaml::{Document, Node};

/// Outer annotation that makes a SealedSecret namespace-wide (label = namespace).
pub const NAMESPACE_WIDE_ANNOTATION: &str = "sealedsecrets.bitnami.com/namespace-wide";
/// Outer annotation that makes a SealedSecret cluster-wide (empty label).
pub const CLUSTER_WIDE_ANNOTATION: &str = "sealedsecrets.bitnami.com/cluster-wide";

/// The sealing scope, which decides the RSA-OAEP label (see src/seal/mod.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Label `namespace/name`: the secret only decrypts under that exact name.
    Strict,
    /// Label `namespace`: may be renamed within the namespace.
    NamespaceWide,
    /// Empty label: may be moved anywhere.
    ClusterWide,
}

impl Scope {
    /// The kubeseal spelling (`strict`, `namespace-wide`, `cluster-wide`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Strict => "strict",
            Scope::NamespaceWide => "namespace-wide",
            Scope::ClusterWide => "cluster-wide",
        }
    }

    /// Whether the label needs a namespace.
    pub fn needs_namespace(self) -> bool {
        !matches!(self, Scope::ClusterWide)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the scanner learns from one SealedSecret document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedSecretDoc {
    /// Zero-based document index within the file.
    pub doc_index: usize,
    /// Zero-based index in `items` when the document is a `kind: List` (as `kubectl get
    /// -o yaml` and kubeseal write several objects); `None` for a document of its own.
    pub item: Option<usize>,
    /// 1-based line where the document (or the List item) starts.
    pub line: usize,
    /// Outer `metadata.name`.
    pub name: Option<String>,
    /// Outer `metadata.namespace` (the one kubeseal's label uses).
    pub namespace: Option<String>,
    /// Scope from the outer annotations.
    pub scope: Scope,
    /// Outer `metadata.annotations` (string values only).
    pub outer_annotations: BTreeMap<String, String>,
    /// `spec.template.metadata.annotations` (string values only).
    pub template_annotations: BTreeMap<String, String>,
    /// Keys of `spec.encryptedData`, in source order.
    pub encrypted_keys: Vec<String>,
    /// Whether `spec.template` exists.
    pub has_template: bool,
    /// `spec.template.type`, if any.
    pub secret_type: Option<String>,
}

fn string_map(n: Option<&Node<'_>>) -> BTreeMap<String, String> {
    n.and_then(Node::entries)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn is_true(map: &BTreeMap<String, String>, key: &str) -> bool {
    map.get(key).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

impl Scope {
    /// The scope the sealed-secrets annotations on `annotations` ask for (kubeseal reads
    /// them from an input Secret, the controller from a SealedSecret's outer metadata).
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Scope {
        if is_true(annotations, CLUSTER_WIDE_ANNOTATION) {
            Scope::ClusterWide
        } else if is_true(annotations, NAMESPACE_WIDE_ANNOTATION) {
            Scope::NamespaceWide
        } else {
            Scope::Strict
        }
    }
}

impl SealedSecretDoc {
    /// Reads `doc` as a SealedSecret; `None` when it is anything else (a CRD, a Secret, an
    /// Argo CD Application that merely mentions the kind, an empty document).
    pub fn from_document(doc: &Document<'_>) -> Option<Self> {
        Self::from_node(doc.root.as_ref()?, doc.index, doc.line, None)
    }

    /// Every SealedSecret of `doc`: the document itself, or the items of a `kind: List`.
    pub fn all_from_document(doc: &Document<'_>) -> Vec<Self> {
        let Some(root) = doc.root.as_ref() else {
            return Vec::new();
        };
        match list_items(root) {
            Some(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, n)| Self::from_node(n, doc.index, n.line, Some(i)))
                .collect(),
            None => Self::from_node(root, doc.index, doc.line, None)
                .into_iter()
                .collect(),
        }
    }

    fn from_node(
        root: &Node<'_>,
        doc_index: usize,
        line: usize,
        item: Option<usize>,
    ) -> Option<Self> {
        if root.get_str("kind") != Some("SealedSecret") {
            return None;
        }
        if !root
            .get_str("apiVersion")
            .is_some_and(|v| v.starts_with("bitnami.com/"))
        {
            return None;
        }
        let meta = root.get("metadata");
        let outer_annotations = string_map(meta.and_then(|m| m.get("annotations")));
        let scope = Scope::from_annotations(&outer_annotations);
        let spec = root.get("spec");
        let template = spec
            .and_then(|s| s.get("template"))
            .filter(|t| !t.is_null());
        let encrypted_keys = spec
            .and_then(|s| s.get("encryptedData"))
            .and_then(Node::entries)
            .map(|e| {
                e.iter()
                    .filter_map(|(k, _)| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Some(SealedSecretDoc {
            doc_index,
            item,
            line,
            name: meta.and_then(|m| m.get_str("name")).map(str::to_owned),
            namespace: meta
                .and_then(|m| m.get_str("namespace"))
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            scope,
            outer_annotations,
            template_annotations: string_map(
                template.and_then(|t| t.path(&["metadata", "annotations"])),
            ),
            encrypted_keys,
            has_template: template.is_some(),
            secret_type: template.and_then(|t| t.get_str("type")).map(str::to_owned),
        })
    }
}

/// The `items` of a `kind: List` (core `v1`) document, which kubectl and kubeseal write
/// to hold several objects.
pub fn list_items<'n, 'a>(root: &'n Node<'a>) -> Option<&'n [Node<'a>]> {
    if root.get_str("kind") != Some("List") || root.get_str("apiVersion") != Some("v1") {
        return None;
    }
    match &root.get("items")?.kind {
        yaml::NodeKind::Sequence { items, .. } => Some(items),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Option<SealedSecretDoc> {
        let docs = yaml::parse_documents(src).unwrap();
        SealedSecretDoc::from_document(&docs[0])
    }

    #[test]
    fn reads_scope_from_outer_annotations() {
        let s = one("apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: a\n  annotations:\n    sealedsecrets.bitnami.com/namespace-wide: \"true\"\nspec:\n  encryptedData:\n    k: Ag==\n").unwrap();
        assert_eq!(s.scope, Scope::NamespaceWide);
        assert_eq!(s.namespace, None);
        assert_eq!(s.encrypted_keys, vec!["k".to_string()]);
        assert!(!s.has_template);
    }

    #[test]
    fn reads_the_sealed_secrets_of_a_list() {
        let src = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c}\n- apiVersion: bitnami.com/v1alpha1\n  kind: SealedSecret\n  metadata:\n    name: s\n    namespace: n\n  spec:\n    encryptedData:\n      k: Ag==\n";
        let docs = yaml::parse_documents(src).unwrap();
        let found = SealedSecretDoc::all_from_document(&docs[0]);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].item, found[0].line), (Some(1), 7));
        assert_eq!(found[0].name.as_deref(), Some("s"));
        assert!(SealedSecretDoc::from_document(&docs[0]).is_none());
    }

    #[test]
    fn ignores_crd_and_other_kinds() {
        assert!(one("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nspec:\n  names:\n    kind: SealedSecret\n").is_none());
        assert!(one("apiVersion: example.com/v1\nkind: SealedSecret\n").is_none());
    }
}
