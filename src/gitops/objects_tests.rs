//! The in-process answers against git's own.

use super::*;
use crate::gitops::git::Git;

use crate::test_support::git as sh;

/// A history with nested directories, a deletion, a file that becomes a directory, a
/// mode change and a merge: every in-process answer equals the CLI's.
#[test]
fn in_process_answers_equal_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sh(d, &["init", "-q", "-b", "main"]);
    let write = |rel: &str, text: &str| {
        let p = d.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("a/b/c.yaml", "one\n");
    write("a/d.yaml", "two\n");
    write("x", "file\n");
    write("run.sh", "echo\n");
    sh(d, &["add", "-A"]);
    sh(d, &["commit", "-qm", "first"]);
    let first = sh(d, &["rev-parse", "HEAD"]).trim().to_owned();
    write("a/b/c.yaml", "changed\n");
    std::fs::remove_file(d.join("a/d.yaml")).unwrap();
    std::fs::remove_file(d.join("x")).unwrap();
    write("x/inside.yaml", "now a dir\n");
    write("new dir/with space.yaml", "s\n");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    sh(d, &["add", "-A"]);
    sh(d, &["commit", "-qm", "second"]);
    let second = sh(d, &["rev-parse", "HEAD"]).trim().to_owned();
    sh(d, &["checkout", "-qb", "side", &first]);
    write("side.yaml", "s\n");
    sh(d, &["add", "-A"]);
    sh(d, &["commit", "-qm", "side"]);
    let side = sh(d, &["rev-parse", "HEAD"]).trim().to_owned();
    sh(d, &["checkout", "-q", "main"]);
    sh(d, &["merge", "-q", "--no-edit", "side"]);
    let merge = sh(d, &["rev-parse", "HEAD"]).trim().to_owned();

    let o = Objects::open(d).unwrap();
    let cli = |args: &[&str]| sh(d, args);
    for (a, b) in [
        (&first, &second),
        (&second, &first),
        (&first, &merge),
        (&side, &merge),
    ] {
        let mut want: Vec<String> = cli(&["diff", "--name-only", "--no-renames", a, b, "--"])
            .lines()
            .map(str::to_owned)
            .collect();
        want.sort();
        assert_eq!(o.changed_files(a, b).unwrap(), want, "{a}..{b}");
        let count: usize = cli(&["rev-list", "--count", &format!("{a}..{b}")])
            .trim()
            .parse()
            .unwrap();
        assert_eq!(o.count(a, b).unwrap(), count, "{a}..{b}");
        let anc = std::process::Command::new("git")
            .args(["merge-base", "--is-ancestor", a, b])
            .current_dir(d)
            .status()
            .unwrap()
            .success();
        assert_eq!(o.is_ancestor(a, b).unwrap(), anc, "{a} {b}");
    }
    assert_eq!(
        o.resolve("refs/heads/side").unwrap().unwrap().to_string(),
        side
    );
    assert_eq!(o.resolve("HEAD").unwrap().unwrap().to_string(), merge);
    assert_eq!(
        o.resolve(&format!("{second}^"))
            .unwrap()
            .unwrap()
            .to_string(),
        first
    );
    assert_eq!(o.resolve("refs/heads/nope").unwrap(), None);
    assert_eq!(o.resolve(&"0".repeat(40)).unwrap(), None);
    assert!(o.resolve("HEAD~1").is_err(), "other syntax is left to git");
    let texts = o
        .read_blobs(&[
            format!("{second}:a/b/c.yaml"),
            format!("{first}:a/b/c.yaml"),
            format!("{second}:a/d.yaml"),
            format!("{second}:x"),
            format!("{second}:new dir/with space.yaml"),
            "refs/heads/nope:a".to_owned(),
        ])
        .unwrap();
    assert_eq!(
        texts,
        [
            Some("changed\n".to_owned()),
            Some("one\n".to_owned()),
            None,
            None,
            Some("s\n".to_owned()),
            None
        ]
    );

    // Paths compared exactly (a glob-looking path is a path, not a pattern).
    let paths = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(
        o.same_paths(&first, &second, &paths(&["a/b/c.yaml"]))
            .is_ok_and(|s| !s)
    );
    assert!(
        o.same_paths(&second, &merge, &paths(&["a/b/c.yaml", "x/inside.yaml"]))
            .unwrap()
    );
    assert!(
        !o.same_paths(&first, &second, &paths(&["a/d.yaml"]))
            .unwrap(),
        "deleted"
    );
    assert!(
        o.same_paths(&first, &second, &paths(&["nope", "a/*"]))
            .unwrap()
    );
    assert!(
        !o.same_paths(&first, &second, &paths(&["run.sh"])).unwrap(),
        "mode"
    );
    // Local refs set and deleted in-process are git's refs.
    o.set_ref("refs/secret-manager/t", &first).unwrap();
    assert_eq!(cli(&["rev-parse", "refs/secret-manager/t"]).trim(), first);
    o.set_ref("refs/secret-manager/t", &second).unwrap();
    assert_eq!(cli(&["rev-parse", "refs/secret-manager/t"]).trim(), second);
    o.delete_ref("refs/secret-manager/t").unwrap();
    o.delete_ref("refs/secret-manager/t").unwrap();
    assert_eq!(cli(&["for-each-ref", "refs/secret-manager/"]), "");

    // A commit written in-process is one git reads back: tree, parent, message.
    let git = Git::new(d);
    let blob = o.write_blob(b"claim: yes\n").unwrap();
    assert_eq!(cli(&["cat-file", "-p", &blob]), "claim: yes\n");
    let idents = Idents {
        author: parse_ident("A <a@example.com> 1700000000 +0000").unwrap(),
        committer: parse_ident("C <c@example.com> 1700000000 +0000").unwrap(),
    };
    let file = |name: &str| crate::gitops::git::TreeEntry {
        name: name.to_owned(),
        mode: 0o100644,
        oid: blob.clone(),
    };
    let c = o
        .commit_tree(
            &[file("z.yaml"), file("claim.yaml")],
            &[&merge],
            "msg\n",
            &idents,
        )
        .unwrap();
    assert_eq!(cli(&["ls-tree", "--name-only", &c]), "claim.yaml\nz.yaml\n");
    assert_eq!(
        cli(&["log", "-1", "--format=%P %s %an %ce", &c]).trim(),
        format!("{merge} msg A c@example.com")
    );
    cli(&["fsck", "--strict", "--no-dangling"]);
    assert!(git.is_ancestor(&merge, &c).unwrap());
}

#[test]
fn idents_parse_as_git_var_prints_them() {
    let s = parse_ident("Rotator Bot <rotator@example.com> 1700000000 -0130").unwrap();
    assert_eq!(s.name, "Rotator Bot");
    assert_eq!(s.email, "rotator@example.com");
    assert_eq!(s.time.seconds, 1_700_000_000);
    assert_eq!(s.time.offset, -(3600 + 30 * 60));
    assert!(parse_ident("no email 1700000000 +0000").is_none());
    assert!(parse_ident("A <a@b> notanumber +0000").is_none());
}
