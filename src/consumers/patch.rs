//! The tool-owned patch that restarts a workload of a shared base from the rotated
//! cluster's overlay: its file, its text, and its entry in the overlay's `patches:`.

use super::{Consumer, Fate};

/// The name of the tool-owned patch that restarts `kind/name` from an overlay.
pub fn patch_file(kind: &str, name: &str) -> String {
    format!(
        "secret-manager-restart-{}-{name}.yaml",
        kind.to_ascii_lowercase()
    )
}

/// A new tool-owned patch: `c`'s apiVersion, kind, name (and namespace) and the pod
/// template's `key: value` annotation — nothing else, so it changes nothing else.
pub fn patch_text(c: &Consumer, key: &str, value: &str) -> Option<String> {
    let Fate::Patch {
        api_version,
        namespace,
        ..
    } = &c.fate
    else {
        return None;
    };
    let mut t = String::from(
        "# Written by secret-manager: restarts a workload of a shared base when a Secret it\n# reads is rotated (consumers.restart). The next rotation updates it.\n",
    );
    t.push_str(&format!(
        "apiVersion: {api_version}\nkind: {}\nmetadata:\n  name: {}\n",
        c.kind, c.name
    ));
    if let Some(ns) = namespace {
        crate::names::Namespace::parse(ns).ok()?;
        t.push_str(&format!("  namespace: {ns}\n"));
    }
    let (spec, pad) = if c.job_template {
        (
            "spec:\n  jobTemplate:\n    spec:\n      template:\n",
            "        ",
        )
    } else {
        ("spec:\n  template:\n", "    ")
    };
    t.push_str(spec);
    t.push_str(&format!(
        "{pad}metadata:\n{pad}  annotations:\n{pad}    {key}: \"{value}\"\n"
    ));
    Some(t)
}

/// Adds `- path: <entry>` to the `patches:` of the kustomization `src` (creating the list
/// when there is none), byte for byte around it. `None` when the file cannot be edited
/// that way (a flow list, an anchor, an unusual layout): nothing is written then, and the
/// rotation fails for the credential rather than restart half its consumers. Verified:
/// the result parses to the same kustomization plus that one entry.
pub fn add_patch_entry(src: &str, entry: &str) -> Option<String> {
    let parse = |s: &str| {
        serde_saphyr::from_str::<serde_json::Value>(crate::manifest::yaml::strip_bom(s)).ok()
    };
    let before = parse(src)?;
    let listed = before.get("patches").and_then(|p| p.as_array());
    if listed.is_some_and(|l| l.iter().any(|p| p["path"] == entry)) {
        return Some(src.to_owned());
    }
    let eol = if src.contains("\r\n") { "\r\n" } else { "\n" };
    let lines: Vec<&str> = src.split_inclusive('\n').collect();
    let item_indent = |from: usize| -> String {
        lines[from..]
            .iter()
            .map(|l| l.trim_end_matches(['\r', '\n']))
            .find(|l| l.trim_start().starts_with("- "))
            .map(|l| l[..l.len() - l.trim_start().len()].to_owned())
            .unwrap_or_else(|| "  ".into())
    };
    let out = match lines.iter().position(|l| l.starts_with("patches:")) {
        None => {
            let mut out = src.to_owned();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push_str(eol);
            }
            out.push_str(&format!(
                "patches:{eol}{}- path: {entry}{eol}",
                item_indent(0)
            ));
            out
        }
        Some(at) => {
            if lines[at].trim_end_matches(['\r', '\n']).trim() != "patches:" {
                return None;
            }
            // The list runs while lines are indented, list items, blank or comments.
            let end = lines[at + 1..]
                .iter()
                .position(|l| {
                    let t = l.trim_end_matches(['\r', '\n']);
                    !(t.is_empty()
                        || t.starts_with(' ')
                        || t.starts_with("- ")
                        || t.starts_with('#'))
                })
                .map_or(lines.len(), |p| at + 1 + p);
            let mut out: String = lines[..end].concat();
            if !out.ends_with('\n') {
                out.push_str(eol);
            }
            out.push_str(&format!("{}- path: {entry}{eol}", item_indent(at + 1)));
            out.push_str(&lines[end..].concat());
            out
        }
    };
    let mut expected = before;
    let patches = expected
        .as_object_mut()?
        .entry("patches")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    patches
        .as_array_mut()?
        .push(serde_json::json!({ "path": entry }));
    (parse(&out)? == expected).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_entry_is_added_and_nothing_else_changes() {
        // No list yet: appended, in the file's list indentation.
        let k = "# dev1\nnamespace: x\nresources:\n- a.yaml # the app\n";
        assert_eq!(
            add_patch_entry(k, "p.yaml").unwrap(),
            "# dev1\nnamespace: x\nresources:\n- a.yaml # the app\npatches:\n- path: p.yaml\n"
        );
        // A list: the entry goes after its last item, before the next key.
        let k = "resources:\n  - a.yaml\npatches:\n  - path: mine.yaml\n    # keep\n  - patch: |-\n      - op: add\n        path: /x\n    target:\n      kind: Deployment\nnamePrefix: dev-\n";
        let out = add_patch_entry(k, "p.yaml").unwrap();
        assert!(
            out.contains("      kind: Deployment\n  - path: p.yaml\nnamePrefix: dev-\n"),
            "{out}"
        );
        // Already listed: unchanged. CRLF kept. A flow list, an anchor: refused.
        assert_eq!(add_patch_entry(&out, "p.yaml").unwrap(), out);
        let crlf = "resources:\r\n  - a.yaml\r\n";
        assert_eq!(
            add_patch_entry(crlf, "p.yaml").unwrap(),
            "resources:\r\n  - a.yaml\r\npatches:\r\n  - path: p.yaml\r\n"
        );
        assert_eq!(
            add_patch_entry("patches: [{path: a.yaml}]\n", "p.yaml"),
            None
        );
        assert_eq!(
            add_patch_entry("patches: &p\n  - path: a.yaml\n", "p.yaml"),
            None
        );
    }
}
