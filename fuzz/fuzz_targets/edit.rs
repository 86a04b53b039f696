//! Fuzzes the parser and the format-preserving editor together.
//!
//! Input: arbitrary bytes as a YAML file. For every SealedSecret document the parser finds,
//! replace its first encryptedData value and set an annotation. The editor must either
//! refuse with an error or return text that (a) parses, (b) holds the new values and
//! (c) is byte-identical to the input outside the edited values. It must never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use secret_manager::manifest::SealedSecretDoc;
use secret_manager::manifest::edit::{Edit, apply};
use secret_manager::manifest::yaml::parse_documents;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let Ok(docs) = parse_documents(src) else { return };
    for d in &docs {
        let _ = SealedSecretDoc::from_document(d);
        let Some(root) = d.root.as_ref() else { continue };
        let Some(first) = root
            .path(&["spec", "encryptedData"])
            .and_then(|n| n.entries())
            .and_then(|e| e.first())
            .and_then(|(k, _)| k.as_str())
        else {
            continue;
        };
        let mut edit = Edit { doc_index: d.index, ..Edit::default() };
        edit.encrypted.insert(first.to_owned(), "AgFuzzNewValue==".into());
        edit.template_annotations.insert("secret-manager/createDate".into(), "2026-11-21T00:00:00Z".into());
        if let Ok(out) = apply(src, &edit) {
            let again = parse_documents(&out).expect("verified output parses");
            assert_eq!(again.len(), docs.len());
            let v = again[d.index]
                .root
                .as_ref()
                .and_then(|r| r.path(&["spec", "encryptedData", first]))
                .and_then(|n| n.as_str())
                .map(str::to_owned);
            assert_eq!(v.as_deref(), Some("AgFuzzNewValue=="));
        }
    }
});
