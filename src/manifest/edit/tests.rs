//! Unit tests of the format-preserving editor.
use super::*;

fn enc(k: &str, v: &str) -> Edit {
    let mut e = Edit::default();
    e.encrypted.insert(k.into(), v.into());
    e
}

const DOC: &str = "# head\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: a # c\n  namespace: b\nspec:\n  template:\n    metadata:\n      annotations:\n        secret-manager/source: \"aws\"\n        secret-manager/createDate: '2026-01-01T00:00:00Z'\n  encryptedData:\n    k1: AgOld1\n    k2: \"AgOld2\"   # keep\n";

#[test]
fn replaces_only_the_value_keeping_quotes_and_comments() {
    let mut e = enc("k2", "AgNew2");
    e.template_annotations.insert(
        "secret-manager/createDate".into(),
        "2026-11-21T00:00:00Z".into(),
    );
    let out = apply(DOC, &e).unwrap();
    assert_eq!(
        out,
        DOC.replace("\"AgOld2\"", "\"AgNew2\"")
            .replace("'2026-01-01T00:00:00Z'", "'2026-11-21T00:00:00Z'")
    );
}

#[test]
fn adds_missing_keys_in_the_existing_indentation() {
    let mut e = enc("k3", "AgNew3");
    e.template_annotations
        .insert("secret-manager/keyId".into(), "id-1".into());
    let out = apply(DOC, &e).unwrap();
    assert!(out.contains("        secret-manager/createDate: '2026-01-01T00:00:00Z'\n        secret-manager/keyId: \"id-1\"\n  encryptedData:"), "{out}");
    assert!(
        out.ends_with("    k2: \"AgOld2\"   # keep\n    k3: AgNew3\n"),
        "{out}"
    );
}

#[test]
fn adds_an_annotations_block_to_outer_metadata() {
    let mut e = Edit::default();
    e.outer_annotations
        .insert("secret-manager/sealedWith".into(), "ab12".into());
    let out = apply(DOC, &e).unwrap();
    assert!(
        out.contains(
            "  namespace: b\n  annotations:\n    secret-manager/sealedWith: \"ab12\"\nspec:"
        ),
        "{out}"
    );
}

#[test]
fn crlf_bom_and_no_final_newline() {
    let src = format!("\u{feff}{}", DOC.replace('\n', "\r\n"));
    let src = src.trim_end_matches("\r\n");
    let e = enc("k1", "AgNew1");
    let out = apply(src, &e).unwrap();
    assert_eq!(out, src.replace("AgOld1", "AgNew1"));
    let e = enc("k9", "AgNew9");
    let out = apply(src, &e).unwrap();
    assert!(out.ends_with("# keep\r\n    k9: AgNew9"), "{out:?}");
    assert!(out.starts_with('\u{feff}'));
}

#[test]
fn json_input_stays_json() {
    let src = "{\n  \"kind\": \"SealedSecret\",\n  \"apiVersion\": \"bitnami.com/v1alpha1\",\n  \"metadata\": {\"name\": \"a\", \"namespace\": \"b\"},\n  \"spec\": {\n    \"encryptedData\": {\n      \"k1\": \"AgOld\"\n    }\n  }\n}\n";
    let mut e = enc("k1", "AgNew");
    e.encrypted.insert("k2".into(), "AgTwo".into());
    e.outer_annotations.insert("x/y".into(), "z".into());
    let out = apply(src, &e).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["spec"]["encryptedData"]["k1"], "AgNew");
    assert_eq!(v["spec"]["encryptedData"]["k2"], "AgTwo");
    assert_eq!(v["metadata"]["annotations"]["x/y"], "z");
    assert!(
        out.contains("      \"k1\": \"AgNew\",\n      \"k2\": \"AgTwo\"\n    }"),
        "{out}"
    );
}

#[test]
fn other_documents_are_untouched() {
    let src = format!("a: 1 # x\n---\n{DOC}---\nb: [1, 2]\n");
    let out = apply(
        &src,
        &Edit {
            doc_index: 1,
            ..enc("k1", "AgNew")
        },
    )
    .unwrap();
    assert_eq!(out, src.replace("AgOld1", "AgNew"));
    assert_eq!(
        apply(
            &src,
            &Edit {
                doc_index: 7,
                ..enc("k1", "x")
            }
        ),
        Err(EditError::NoDocument(7))
    );
}

#[test]
fn literal_block_values_keep_their_header() {
    let src = "spec:\n  encryptedData:\n    k: |\n      AgOld\n    j: x\n";
    let out = apply(src, &enc("k", "AgNew")).unwrap();
    assert_eq!(out, "spec:\n  encryptedData:\n    k: AgNew\n    j: x\n");
    let src = "spec:\n  encryptedData:\n    k: >-\n      AgOld\n      more\n";
    assert_eq!(
        apply(src, &enc("k", "AgNew")).unwrap(),
        "spec:\n  encryptedData:\n    k: AgNew\n"
    );
}

#[test]
fn ambiguous_plain_values_get_quoted() {
    let src = "metadata:\n  annotations:\n    a/b: x\nspec:\n  encryptedData:\n    k: v\n";
    let mut e = Edit::default();
    e.outer_annotations
        .insert("a/b".into(), "123456789012".into());
    let out = apply(src, &e).unwrap();
    assert!(out.contains("a/b: \"123456789012\""), "{out}");
    e.outer_annotations.insert("a/b".into(), "true".into());
    assert!(apply(src, &e).unwrap().contains("a/b: \"true\""));
    e.outer_annotations
        .insert("a/b".into(), "has: colon".into());
    assert!(apply(src, &e).unwrap().contains("a/b: \"has: colon\""));
}

#[test]
fn refuses_aliases_and_missing_parents() {
    let src = "x: &a AgOld\nspec:\n  encryptedData:\n    k: *a\n";
    assert!(matches!(
        apply(src, &enc("k", "n")),
        Err(EditError::Unsupported { .. })
    ));
    let src = "spec:\n  template: {}\n";
    assert!(matches!(
        apply(src, &enc("k", "n")),
        Err(EditError::MissingParent { .. })
    ));
}

#[test]
fn refuses_annotations_shared_through_an_anchor_or_a_merge_key() {
    let mut e = Edit::default();
    e.template_annotations.insert(
        "secret-manager/createDate".into(),
        "2026-12-01T00:00:00Z".into(),
    );
    e.outer_annotations.insert(
        "secret-manager/createDate".into(),
        "2026-12-01T00:00:00Z".into(),
    );
    // The outer annotations are the template's: editing one would edit both.
    let shared = "kind: SealedSecret\nmetadata:\n  name: a\n  annotations: &ann\n    secret-manager/createDate: \"2026-01-01T00:00:00Z\"\nspec:\n  template:\n    metadata:\n      annotations: *ann\n  encryptedData:\n    k: AgOld\n";
    let err = apply(shared, &e).unwrap_err();
    assert!(
        matches!(&err, EditError::Unsupported { line: 4 | 9, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("anchor") || err.to_string().contains("alias"),
        "{err}"
    );
    // Only the template edit, through the alias: refused as well.
    let t = Edit {
        template_annotations: e.template_annotations.clone(),
        ..Edit::default()
    };
    let err = apply(shared, &t).unwrap_err();
    assert!(err.to_string().contains("line 9"), "{err}");
    // A merge key in the edited mapping.
    let merged = "base: &b {x: y}\nkind: SealedSecret\nmetadata:\n  name: a\n  annotations:\n    <<: *b\n    secret-manager/createDate: \"2026-01-01T00:00:00Z\"\nspec:\n  encryptedData:\n    k: AgOld\n";
    let o = Edit {
        outer_annotations: e.outer_annotations.clone(),
        ..Edit::default()
    };
    let err = apply(merged, &o).unwrap_err();
    assert!(err.to_string().contains("merge key"), "{err}");
    // An anchor elsewhere in the file does not block an edit that does not touch it.
    let elsewhere = "kind: SealedSecret\nmetadata:\n  name: a\n  labels: &l {app: x}\nspec:\n  encryptedData:\n    k: AgOld\n";
    assert!(
        apply(elsewhere, &enc("k", "AgNew"))
            .unwrap()
            .contains("k: AgNew")
    );
}

#[test]
fn refuses_duplicate_keys() {
    let src = "kind: SealedSecret\nspec:\n  encryptedData:\n    k: AgOne\n    k: AgTwo\n";
    let err = apply(src, &enc("k", "AgNew")).unwrap_err();
    assert!(
        matches!(&err, EditError::Parse { line: 5, message } if message.contains("duplicate key `k`")),
        "{err}"
    );
}

const LIST: &str = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: bitnami.com/v1alpha1\n  kind: SealedSecret\n  metadata:\n    name: a\n    namespace: n\n  spec:\n    encryptedData:\n      k: AgOldA # a\n- apiVersion: bitnami.com/v1alpha1\n  kind: SealedSecret\n  metadata:\n    name: b\n    namespace: n\n  spec:\n    encryptedData:\n      k: AgOldB\n    template:\n      metadata:\n        annotations:\n          x: \"1\"\nmetadata:\n  resourceVersion: \"\"\n";

#[test]
fn edits_a_sealed_secret_inside_a_list_in_place() {
    let mut e = enc("k", "AgNewB");
    e.item = Some(1);
    e.template_annotations.insert("x".into(), "2".into());
    let out = apply(LIST, &e).unwrap();
    assert_eq!(
        out,
        LIST.replace("k: AgOldB", "k: AgNewB")
            .replace("x: \"1\"", "x: \"2\"")
    );
    // Item 0 is another object: only it changes when it is the target.
    let mut a = enc("k", "AgNewA");
    a.item = Some(0);
    assert_eq!(apply(LIST, &a).unwrap(), LIST.replace("AgOldA", "AgNewA"));
    let mut missing = enc("k", "x");
    missing.item = Some(5);
    assert!(matches!(
        apply(LIST, &missing),
        Err(EditError::NoDocument(0))
    ));
}

#[test]
fn removes_one_item_of_a_list_and_keeps_the_rest_byte_for_byte() {
    let first = remove_item(LIST, 0, 0).unwrap().unwrap();
    assert_eq!(first, LIST.replace("- apiVersion: bitnami.com/v1alpha1\n  kind: SealedSecret\n  metadata:\n    name: a\n    namespace: n\n  spec:\n    encryptedData:\n      k: AgOldA # a\n", ""));
    let last = remove_item(LIST, 0, 1).unwrap().unwrap();
    assert!(
        last.contains("name: a") && !last.contains("name: b"),
        "{last}"
    );
    assert!(
        last.ends_with("metadata:\n  resourceVersion: \"\"\n"),
        "{last}"
    );
    // The only item left: the document goes (here: the file).
    assert_eq!(remove_item(&first, 0, 0).unwrap(), None);
    // JSON Lists are refused, not guessed at.
    let json = r#"{"apiVersion": "v1", "kind": "List", "items": [{"kind": "SealedSecret"}, {"kind": "SealedSecret"}]}"#;
    assert!(matches!(
        remove_item(json, 0, 1),
        Err(EditError::Unsupported { .. })
    ));
}

#[test]
fn removes_one_document_and_keeps_the_rest_byte_for_byte() {
    let src = "# head\na: 1\n---\n# mid\nb: 2\n---\nc: 3\n";
    assert_eq!(
        remove_document(src, 1).unwrap().unwrap(),
        "# head\na: 1\n---\nc: 3\n"
    );
    assert_eq!(
        remove_document(src, 2).unwrap().unwrap(),
        "# head\na: 1\n---\n# mid\nb: 2\n"
    );
    assert_eq!(
        remove_document(src, 0).unwrap().unwrap(),
        "# head\n---\n# mid\nb: 2\n---\nc: 3\n"
    );
    assert_eq!(remove_document("a: 1\n", 0).unwrap(), None);
    let crlf = src.replace('\n', "\r\n");
    assert_eq!(
        remove_document(&crlf, 1).unwrap().unwrap(),
        "# head\r\na: 1\r\n---\r\nc: 3\r\n"
    );
}

#[test]
fn atomic_write_keeps_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.yaml");
    std::fs::write(&p, "old").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    write_atomic(&p, b"new").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"new");
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );
}

/// In a worktree of its own the tool overwrites a plain file in place, and never writes
/// through a symlink or into another name of a hard-linked file: those are replaced.
#[test]
fn worktree_write_overwrites_plain_files_and_never_writes_through_links() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.yaml");
    std::fs::write(&plain, "old").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o640)).unwrap();
    write_in_worktree(&plain, b"new").unwrap();
    assert_eq!(std::fs::read(&plain).unwrap(), b"new");
    assert_eq!(
        std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let target = outside.path().join("secret");
    std::fs::write(&target, "outside").unwrap();
    let link = dir.path().join("link.yaml");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    write_in_worktree(&link, b"edited").unwrap();
    assert_eq!(
        std::fs::read(&target).unwrap(),
        b"outside",
        "wrote through a symlink"
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_file()
    );
    assert_eq!(std::fs::read(&link).unwrap(), b"edited");
    let other = outside.path().join("other-name");
    std::fs::write(&other, "shared").unwrap();
    let hard = dir.path().join("hard.yaml");
    std::fs::hard_link(&other, &hard).unwrap();
    write_in_worktree(&hard, b"edited").unwrap();
    assert_eq!(
        std::fs::read(&other).unwrap(),
        b"shared",
        "wrote into a hard link"
    );
    assert_eq!(std::fs::read(&hard).unwrap(), b"edited");
    let new = dir.path().join("new.yaml");
    write_in_worktree(&new, b"fresh").unwrap();
    assert_eq!(std::fs::read(&new).unwrap(), b"fresh");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        4,
        "no temp file left"
    );
}

#[test]
fn removes_an_outer_annotation_with_its_lines_and_refuses_what_it_cannot_remove_cleanly() {
    let remove = |key: &str| Edit {
        remove_outer_annotations: vec![key.into()],
        ..Edit::default()
    };
    let two = DOC.replace(
        "  namespace: b\n",
        "  namespace: b\n  annotations:\n    team: dns # owner\n    secret-manager/sealedWith: \"ab12\"\n",
    );
    // One of two: its line goes, the other and its comment stay.
    let out = apply(&two, &remove("secret-manager/sealedWith")).unwrap();
    assert_eq!(
        out,
        DOC.replace(
            "  namespace: b\n",
            "  namespace: b\n  annotations:\n    team: dns # owner\n"
        )
    );
    // The only one: `annotations:` goes too, byte for byte back to the file without it.
    let only = apply(&out, &remove("team")).unwrap();
    assert_eq!(only, DOC);
    // Absent: nothing changes.
    assert_eq!(apply(DOC, &remove("team")).unwrap(), DOC);
    // A flow mapping, and an `annotations:` that is all metadata holds: refused.
    let flow = DOC.replace(
        "  namespace: b\n",
        "  namespace: b\n  annotations: {team: dns}\n",
    );
    assert!(matches!(
        apply(&flow, &remove("team")),
        Err(EditError::Unsupported { .. })
    ));
    let alone = "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  annotations:\n    team: dns\nspec:\n  encryptedData:\n    k: v\n";
    assert!(matches!(
        apply(alone, &remove("team")),
        Err(EditError::Unsupported { .. })
    ));
}
