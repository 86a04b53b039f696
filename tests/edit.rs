//! Property tests for the format-preserving editor (see docs/guide.md, "How files are edited").

use proptest::prelude::*;
use secret_manager::manifest::edit::{Edit, apply};
use secret_manager::manifest::yaml::parse_documents;

#[derive(Debug, Clone, Copy)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

fn style() -> impl Strategy<Value = Style> {
    prop_oneof![
        Just(Style::Plain),
        Just(Style::Single),
        Just(Style::Double),
        Just(Style::Literal)
    ]
}

fn b64() -> impl Strategy<Value = String> {
    "Ag[A-Za-z0-9+/]{8,60}={0,2}"
}

fn render(v: &str, st: Style, indent: &str, nl: &str) -> String {
    match st {
        Style::Plain => v.to_string(),
        Style::Single => format!("'{v}'"),
        Style::Double => format!("\"{v}\""),
        Style::Literal => format!("|{nl}{indent}  {v}"),
    }
}

/// A ConfigMap-ish distractor document with comments, a block scalar and flow collections.
fn other_doc(i: usize, nl: &str) -> String {
    [
        "# other document".to_string(),
        "apiVersion: v1".into(),
        "kind: ConfigMap".into(),
        format!("metadata: {{name: cm{i}, labels: {{a: \"b\"}}}}"),
        "data:".into(),
        "  script: |".into(),
        "    echo 'hello: world'".into(),
        "    # not a comment".into(),
        "  list: [1, 'two', \"three\"]  # trailing".into(),
        String::new(),
    ]
    .join(nl)
}

#[derive(Debug, Clone)]
struct Case {
    bom: bool,
    crlf: bool,
    final_newline: bool,
    before: usize,
    after: usize,
    values: Vec<(String, Style, bool)>,
    ann_styles: (Style, Style),
    target: usize,
    new_value: String,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0usize..3,
        0usize..3,
        prop::collection::vec((b64(), style(), any::<bool>()), 1..5),
        (style(), style()),
        any::<prop::sample::Index>(),
        b64(),
    )
        .prop_map(
            |(bom, crlf, final_newline, before, after, values, ann_styles, idx, new_value)| Case {
                target: idx.index(values.len()),
                bom,
                crlf,
                final_newline,
                before,
                after,
                values,
                ann_styles: (
                    if matches!(ann_styles.0, Style::Literal) {
                        Style::Double
                    } else {
                        ann_styles.0
                    },
                    if matches!(ann_styles.1, Style::Literal) {
                        Style::Single
                    } else {
                        ann_styles.1
                    },
                ),
                new_value,
            },
        )
}

/// Builds the file; returns it with the byte range of the target value's text (from just
/// after `key: ` to the end of the value's last line, line break excluded).
fn build(c: &Case) -> (String, std::ops::Range<usize>, usize) {
    let nl = if c.crlf { "\r\n" } else { "\n" };
    let mut s = String::new();
    if c.bom {
        s.push('\u{feff}');
    }
    for i in 0..c.before {
        s.push_str(&other_doc(i, nl));
        s.push_str("---");
        s.push_str(nl);
    }
    let doc_index = c.before;
    let lines = [
        "# The SealedSecret under test".to_string(),
        "apiVersion: bitnami.com/v1alpha1".into(),
        "kind: SealedSecret".into(),
        "metadata:".into(),
        "  name: \"prop\"   # quoted name".into(),
        "  namespace: 'ns'".into(),
        "spec:".into(),
        "  template:".into(),
        "    metadata:".into(),
        "      annotations:".into(),
        format!(
            "        secret-manager/source: {}",
            render("aws", c.ann_styles.0, "", nl)
        ),
        format!(
            "        secret-manager/createDate: {}  # when",
            render("2026-01-01T00:00:00Z", c.ann_styles.1, "", nl)
        ),
        "  encryptedData:".into(),
    ];
    s.push_str(&lines.join(nl));
    s.push_str(nl);
    let mut target = 0..0;
    for (i, (v, st, comment)) in c.values.iter().enumerate() {
        let key = format!("    key{i}: ");
        s.push_str(&key);
        let start = s.len();
        s.push_str(&render(v, *st, "    ", nl));
        let end = s.len();
        if *comment && !matches!(st, Style::Literal) {
            s.push_str("  # comment");
        }
        if i == c.target {
            target = start..end;
        }
        s.push_str(nl);
    }
    for i in 0..c.after {
        s.push_str("---");
        s.push_str(nl);
        s.push_str(&other_doc(100 + i, nl));
    }
    if !c.final_newline {
        while s.ends_with(nl) {
            s.truncate(s.len() - nl.len());
        }
    }
    (s, target, doc_index)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn only_the_edited_value_changes(c in case()) {
        let (src, span, doc_index) = build(&c);
        let key = format!("key{}", c.target);
        let mut edit = Edit { doc_index, ..Edit::default() };
        edit.encrypted.insert(key.clone(), c.new_value.clone());
        let out = apply(&src, &edit).map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?;
        // Byte identity outside the edited span.
        prop_assert_eq!(&out[..span.start], &src[..span.start]);
        let tail = &src[span.end..];
        prop_assert!(out.ends_with(tail), "suffix changed:\n{}\n---\n{}", src, out);
        // The value reads back exactly.
        let docs = parse_documents(&out).unwrap();
        prop_assert_eq!(docs.len(), parse_documents(&src).unwrap().len());
        let root = docs[doc_index].root.as_ref().unwrap();
        let got = root.path(&["spec", "encryptedData", &key]).and_then(|n| n.as_str()).unwrap();
        prop_assert_eq!(got, c.new_value.as_str());
    }

    #[test]
    fn annotation_edits_keep_everything_else(c in case(), date in "20[0-9]{2}-0[1-9]-1[0-9]T0[0-9]:00:00Z") {
        let (src, _, doc_index) = build(&c);
        let mut edit = Edit { doc_index, ..Edit::default() };
        edit.template_annotations.insert("secret-manager/createDate".into(), date.clone());
        edit.template_annotations.insert("secret-manager/accessKeyId".into(), "AKIANEWKEYNEWKEY0001".into());
        let out = apply(&src, &edit).map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?;
        let docs = parse_documents(&out).unwrap();
        let ann = docs[doc_index].root.as_ref().unwrap().path(&["spec", "template", "metadata", "annotations"]).unwrap();
        prop_assert_eq!(ann.get_str("secret-manager/createDate"), Some(date.as_str()));
        prop_assert_eq!(ann.get_str("secret-manager/accessKeyId"), Some("AKIANEWKEYNEWKEY0001"));
        prop_assert_eq!(ann.get_str("secret-manager/source"), Some("aws"));
        // Only lines of the annotations block differ, and exactly one line was added.
        let nl = if c.crlf { "\r\n" } else { "\n" };
        let (a, b): (Vec<&str>, Vec<&str>) = (src.split(nl).collect(), out.split(nl).collect());
        prop_assert_eq!(b.len(), a.len() + 1);
        let changed: Vec<&&str> = b.iter().filter(|l| !a.contains(l)).collect();
        prop_assert_eq!(changed.len(), 2, "changed lines: {:?}", changed);
        prop_assert!(changed.iter().all(|l| l.starts_with("        secret-manager/")));
    }
}
