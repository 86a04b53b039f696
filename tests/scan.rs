//! Scanner edge cases over testdata/scan/edge-repo and the example repo.

use crate::support::{temp_repo, testdata};
use secret_manager::Repo;
use secret_manager::manifest::Scope;
use secret_manager::scan::{Attribution, DiagnosticKind, Found, NamespaceOrigin, ScanReport};
use std::path::Path;

fn scan(root: &Path) -> ScanReport {
    Repo::open(root).unwrap().scan()
}

fn by_name<'a>(r: &'a ScanReport, name: &str) -> &'a Found {
    r.secrets
        .iter()
        .find(|f| f.doc.name.as_deref() == Some(name))
        .unwrap_or_else(|| {
            panic!(
                "{name} not found in {:#?}",
                r.secrets.iter().map(|f| &f.doc.name).collect::<Vec<_>>()
            )
        })
}

#[test]
fn edge_repo_finds_every_sealed_secret_and_nothing_else() {
    let dir = temp_repo("scan/edge-repo");
    // A SealedSecret under a .gitignore'd directory must not be scanned, even though the
    // copy is not a git work tree.
    std::fs::create_dir_all(dir.path().join("ignored")).unwrap();
    std::fs::write(
        dir.path().join("ignored/secret.yaml"),
        "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: ignored, namespace: i}\n",
    )
    .unwrap();
    let r = scan(dir.path());
    let mut names: Vec<&str> = r
        .secrets
        .iter()
        .filter_map(|f| f.doc.name.as_deref())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ambiguous",
            "anywhere",
            "bom-crlf",
            "from-json",
            "managed",
            "no-namespace",
            "no-template",
            "ns-from-kustomization",
            "unmanaged"
        ]
    );
}

#[test]
fn multi_document_lines_and_indices() {
    let r = scan(&testdata("scan/edge-repo"));
    let m = by_name(&r, "managed");
    assert_eq!(m.doc.doc_index, 1);
    assert_eq!(m.doc.line, 5, "a document starts at its `---` marker");
    assert_eq!(m.doc.encrypted_keys, ["id", "secret"]);
    let managed = m.managed.as_ref().unwrap();
    assert_eq!(managed.source, "aws");
    assert_eq!(managed.key_id.as_deref(), Some("AKIAEDGEEDGEEDGE0001"));
    assert_eq!(managed.key_mappings().unwrap().unwrap().len(), 2);
    let u = by_name(&r, "unmanaged");
    assert_eq!(u.doc.doc_index, 2);
    assert!(u.managed.is_none());
    assert_eq!(
        u.attribution,
        Attribution::Cluster("aws.eu-west-1.a".into())
    );
}

#[test]
fn kubeseal_json_output_is_read() {
    let r = scan(&testdata("scan/edge-repo"));
    let j = by_name(&r, "from-json");
    assert_eq!(
        j.file,
        Path::new("apps/x/overlays/gcp.us-east1.b/kubeseal.json")
    );
    assert_eq!(j.namespace.as_deref(), Some("x"));
    assert_eq!(j.managed.as_ref().unwrap().source, "gcp");
    assert_eq!(j.doc.encrypted_keys, ["key.json"]);
}

#[test]
fn bom_and_crlf_are_tolerated() {
    let r = scan(&testdata("scan/edge-repo"));
    let b = by_name(&r, "bom-crlf");
    assert_eq!(b.doc.line, 1);
    assert_eq!(b.namespace.as_deref(), Some("y"));
    let m = b.managed.as_ref().unwrap();
    assert_eq!(
        m.create_date_raw.as_deref(),
        Some("2026-06-01T00:00:00Z"),
        "no stray \\r in values"
    );
    assert!(m.key_mappings().unwrap().is_ok());
}

#[test]
fn namespace_resolution() {
    let r = scan(&testdata("scan/edge-repo"));
    let k = by_name(&r, "ns-from-kustomization");
    assert_eq!(k.namespace.as_deref(), Some("zed"));
    assert_eq!(
        k.namespace_origin,
        NamespaceOrigin::Kustomization("apps/z/base/kustomization.yaml".into())
    );
    let n = by_name(&r, "no-namespace");
    assert_eq!(n.namespace, None);
    assert_eq!(n.namespace_origin, NamespaceOrigin::Unresolved);
    assert_eq!(n.attribution, Attribution::Shared);
}

#[test]
fn scopes_and_missing_template() {
    let r = scan(&testdata("scan/edge-repo"));
    let nt = by_name(&r, "no-template");
    assert!(!nt.doc.has_template);
    assert_eq!(nt.doc.scope, Scope::NamespaceWide);
    assert!(nt.managed.is_none());
    assert_eq!(by_name(&r, "anywhere").doc.scope, Scope::ClusterWide);
    assert_eq!(by_name(&r, "managed").doc.scope, Scope::Strict);
}

#[test]
fn ambiguous_attribution() {
    let r = scan(&testdata("scan/edge-repo"));
    assert_eq!(
        by_name(&r, "ambiguous").attribution,
        Attribution::Ambiguous(vec!["aws.eu-west-1.a".into(), "gcp.us-east1.b".into()])
    );
}

#[test]
fn bad_files_become_diagnostics_and_the_scan_goes_on() {
    let r = scan(&testdata("scan/edge-repo"));
    let d: Vec<(String, usize, DiagnosticKind)> = r
        .diagnostics
        .iter()
        .map(|d| (d.file.to_string_lossy().into_owned(), d.line, d.kind))
        .collect();
    assert_eq!(
        d,
        [
            (
                "apps/broken/chart/templates/sealed.yaml".to_string(),
                4,
                DiagnosticKind::Skipped
            ),
            (
                "apps/broken/latin1.yaml".to_string(),
                4,
                DiagnosticKind::Error
            ),
            (
                "apps/broken/malformed.yaml".to_string(),
                7,
                DiagnosticKind::Error
            ),
        ]
    );
    let malformed = &r.diagnostics[2].message;
    assert!(malformed.contains("YAML syntax error"), "{malformed}");
    assert!(r.diagnostics[1].message.contains("UTF-8"));
}

#[test]
fn example_repo_attribution_and_distractors() {
    let r = scan(&testdata("example-repo"));
    // 11 managed (one a generated `random` secret) + 4 unmanaged repo secrets; the CRD, the Application, the ExternalSecret,
    // the plain Secret and the Helm template are not SealedSecrets.
    assert_eq!(r.secrets.iter().filter(|f| f.managed.is_some()).count(), 11);
    assert_eq!(r.secrets.iter().filter(|f| f.managed.is_none()).count(), 4);
    assert!(
        r.secrets
            .iter()
            .all(|f| matches!(f.attribution, Attribution::Cluster(_)))
    );
    let dns: Vec<&Found> = r
        .secrets
        .iter()
        .filter(|f| f.file.ends_with("sealedSeacret-cloud-dns.yaml"))
        .collect();
    assert_eq!(dns.len(), 4);
    let sources: std::collections::BTreeSet<&str> = dns
        .iter()
        .map(|f| f.managed.as_ref().unwrap().source.as_str())
        .collect();
    assert_eq!(sources, ["aws", "azure", "gcp"].into_iter().collect());
    assert_eq!(r.diagnostics.len(), 1, "{:?}", r.diagnostics);
    assert_eq!(r.diagnostics[0].kind, DiagnosticKind::Skipped);
}

const SEALED: &str = "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: NAME, namespace: app}\nspec:\n  encryptedData: {k: AgB}\n";

/// Hidden directories are read (GitOps tools keep manifests there), except `.git` and the
/// tool's own `.secret-manager/`; a UTF-16 file is a diagnostic, not silence.
#[test]
fn hidden_directories_and_utf16_files() {
    let dir = tempfile::tempdir().unwrap();
    let put = |rel: &str, content: Vec<u8>| {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    };
    put(
        ".kontinuous/env/prod/secret.yaml",
        SEALED.replace("NAME", "hidden-dir").into_bytes(),
    );
    put(
        ".git/objects/x.yaml",
        SEALED.replace("NAME", "in-git").into_bytes(),
    );
    put(
        ".secret-manager/rotations/r.yaml",
        SEALED.replace("NAME", "state").into_bytes(),
    );
    let mut le = vec![0xFF, 0xFE];
    le.extend(
        SEALED
            .replace("NAME", "utf16")
            .encode_utf16()
            .flat_map(u16::to_le_bytes),
    );
    put("apps/utf16.yaml", le);
    let mut be = vec![0xFE, 0xFF];
    be.extend(
        SEALED
            .replace("NAME", "utf16be")
            .encode_utf16()
            .flat_map(u16::to_be_bytes),
    );
    put("apps/utf16be.yaml", be);
    let r = scan(dir.path());
    let names: Vec<&str> = r
        .secrets
        .iter()
        .filter_map(|f| f.doc.name.as_deref())
        .collect();
    assert_eq!(names, ["hidden-dir"], "{:#?}", r.diagnostics);
    let utf16: Vec<_> = r
        .diagnostics
        .iter()
        .filter(|d| d.message.contains("UTF-16"))
        .collect();
    assert_eq!(utf16.len(), 2, "{:#?}", r.diagnostics);
    assert!(utf16.iter().all(|d| d.kind == DiagnosticKind::Error));
    assert!(utf16[0].message.contains("re-save the file as UTF-8"));
}
