//! The library's module graph has no circles: a module and the modules it uses can be
//! read in one direction, from the bottom up (`text`, `names`, `fsx` → `config` →
//! `gitops` → `journal` → `engine`), and inside a module its files do the same (the
//! engine's `pipeline` types below `mint`, `slots` and `stage`; the git layer's `types`
//! below `git`, `objects` and `push`).
//!
//! Read from the source, as a reader does: `crate::a` names module `a`, `super::b` a
//! sibling file `b`. Comments and `#[cfg(test)] mod tests` are not part of the graph.
//!
//! And no function of the library says why it failed in a bare `String`: errors are
//! types that keep their causes (`Result<_, String>` loses them, and every caller has to
//! parse words to decide).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments and without its trailing test module.
fn code(src: &str) -> String {
    let src = src
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    src.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `prefix` followed by an identifier, the identifiers.
fn names_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    code.match_indices(prefix)
        .filter(|(i, _)| {
            // `crate::` but not `secret_manager_crate::`.
            !code[..*i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        .map(|(i, _)| {
            let rest = &code[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// (graph of the top-level modules, graph of sibling files inside each module).
fn graphs(src: &Path) -> (Graph, Graph) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut top = Graph::new();
    let mut inner = Graph::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap();
        let stem = rel.file_stem().unwrap().to_str().unwrap();
        if stem.ends_with("_tests") || stem == "tests" {
            continue;
        }
        let mut parts: Vec<&str> = rel
            .parent()
            .unwrap()
            .iter()
            .map(|c| c.to_str().unwrap())
            .collect();
        if stem != "mod" {
            parts.push(stem);
        }
        let Some(&module) = parts.first() else {
            continue; // lib.rs
        };
        let code = code(&std::fs::read_to_string(&f).unwrap());
        for used in names_after(&code, "crate::") {
            let is_module = src.join(used).is_dir() || src.join(format!("{used}.rs")).exists();
            if used != module && is_module {
                top.entry(module.to_owned())
                    .or_default()
                    .insert(used.to_owned());
            }
        }
        if parts.len() >= 2 {
            let parent = parts[..parts.len() - 1].join("/");
            let me = parts.join("/");
            let dir = src.join(&parent);
            let mut siblings: Vec<&str> = names_after(&code, "super::");
            let own = format!("crate::{}::", parent.replace('/', "::"));
            siblings.extend(names_after(&code, &own));
            for s in siblings {
                let node = format!("{parent}/{s}");
                if node != me && (dir.join(format!("{s}.rs")).exists() || dir.join(s).is_dir()) {
                    inner.entry(me.clone()).or_default().insert(node);
                }
            }
        }
    }
    (top, inner)
}

/// One circle of `g`, as the path that closes it, if there is any.
fn circle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        n: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_owned());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_owned());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, m, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(g, n, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_uses_a_module_that_uses_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (top, inner) = graphs(&src);
    // The graph was read (the engine uses the journal; the stage uses the pipeline).
    assert!(top["engine"].contains("journal"), "{top:?}");
    assert!(
        inner["engine/stage"].contains("engine/pipeline"),
        "{inner:?}"
    );
    if let Some(c) = circle(&top) {
        panic!("an import circle between modules: {}", c.join(" -> "));
    }
    if let Some(c) = circle(&inner) {
        panic!("an import circle inside a module: {}", c.join(" -> "));
    }
}

/// The `Result<T, E>` types written in `code` whose error type is a bare `String`.
fn string_errors(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (start, _) in code.match_indices("Result<") {
        let rest = &code[start + "Result<".len()..];
        let (mut depth, mut parens, mut args, mut cur) = (1, 0, Vec::new(), String::new());
        for c in rest.chars() {
            match c {
                '(' | '[' => {
                    parens += 1;
                    cur.push(c);
                }
                ')' | ']' => {
                    parens -= 1;
                    cur.push(c);
                }
                '<' => {
                    depth += 1;
                    cur.push(c);
                }
                '>' => {
                    depth -= 1;
                    if depth == 0 {
                        args.push(std::mem::take(&mut cur));
                        break;
                    }
                    cur.push(c);
                }
                ',' if depth == 1 && parens == 0 => args.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        if args.len() == 2 && args[1].trim() == "String" {
            out.push(format!("Result<{}>", args.join(",")));
        }
    }
    out
}

#[test]
fn no_library_function_fails_with_a_bare_string() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    for f in files {
        if f.file_stem().unwrap().to_str().unwrap().ends_with("_tests") {
            continue;
        }
        let code = code(&std::fs::read_to_string(&f).unwrap());
        for r in string_errors(&code) {
            found.push(format!("{}: {r}", f.strip_prefix(&src).unwrap().display()));
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn a_circle_is_found_and_named() {
    let g: Graph = [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]
        .into_iter()
        .fold(Graph::new(), |mut g, (x, y)| {
            g.entry(x.into()).or_default().insert(y.into());
            g
        });
    assert_eq!(circle(&g).unwrap(), ["a", "b", "c", "a"]);
    let mut dag = g.clone();
    dag.get_mut("c").unwrap().clear();
    assert_eq!(circle(&dag), None);
    // Comments and test modules do not count.
    let c = code("use crate::x; // crate::y\n#[cfg(test)]\nmod tests { use crate::z; }");
    assert_eq!(names_after(&c, "crate::"), ["x"]);
    // A string error is found however deep the success type; a map of strings is not one.
    assert_eq!(
        string_errors(
            "fn f() -> Result<Vec<(String, u8)>, String> {}\nfn g() -> Result<BTreeMap<String, String>, E> {}"
        ),
        ["Result<Vec<(String, u8)>, String>"]
    );
}
