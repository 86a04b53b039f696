//! The claims table against a real bare remote: the lease semantics of a ref per claim,
//! kept by one table; claims of earlier versions; what others left in the table.

use super::*;
use crate::journal::{Claim, RunId};

const PREFIX: &str = "refs/secret-manager/claims/";

use crate::test_support::git as sh;

/// A bare remote and `n` clones of it, each with its own [`ClaimTable`].
struct Remote {
    _dir: tempfile::TempDir,
    bare: std::path::PathBuf,
    dirs: Vec<std::path::PathBuf>,
    clones: Vec<ClaimTable>,
}

fn remote(n: usize) -> Remote {
    remote_with(n, false)
}

/// [`remote`], with every object operation of the clones through the git CLI.
fn remote_with(n: usize, cli: bool) -> Remote {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("remote.git");
    std::fs::create_dir_all(&bare).unwrap();
    sh(&bare, &["init", "-q", "--bare", "-b", "main"]);
    let dirs: Vec<std::path::PathBuf> = (0..n)
        .map(|i| {
            let d = dir.path().join(format!("clone{i}"));
            std::fs::create_dir_all(&d).unwrap();
            sh(&d, &["init", "-q", "-b", "main"]);
            sh(&d, &["config", "user.name", "T"]);
            sh(&d, &["config", "user.email", "t@example.com"]);
            sh(&d, &["remote", "add", "origin", bare.to_str().unwrap()]);
            d
        })
        .collect();
    let clones = dirs
        .iter()
        .map(|d| {
            let g = Git::new(d);
            ClaimTable::on(if cli { g.cli_only() } else { g }, "origin", PREFIX)
        })
        .collect();
    Remote {
        _dir: dir,
        bare,
        dirs,
        clones,
    }
}

fn claim(run: &str, identity: &str) -> Claim {
    Claim::new(
        &RunId(run.into()),
        "aws",
        identity,
        &Default::default(),
        Vec::new(),
        Vec::new(),
        chrono::Utc::now(),
        chrono::Duration::minutes(10),
    )
}

fn won(t: Taken) -> Held {
    match t {
        Taken::Won(h) => *h,
        other => panic!("expected to win, got {other:?}"),
    }
}

/// (credential, run) of every claim on the remote, as a fresh reader sees them.
fn holders(r: &ClaimTable) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r
        .list()
        .unwrap()
        .into_iter()
        .map(|l| {
            let c = l.claim.unwrap();
            (c.identity, c.run.0)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_batch_is_one_ref_and_a_taken_credential_is_lost_to_the_second_run() {
    let r = remote(2);
    let (a, b) = (&r.clones[0], &r.clones[1]);
    let got = a
        .create(vec![claim("run-a", "u1"), claim("run-a", "u2")])
        .unwrap();
    assert!(got.iter().all(|t| matches!(t, Taken::Won(_))), "{got:?}");
    // b read nothing yet: its first write reads the table, then takes only what is free.
    let got = b
        .create(vec![claim("run-b", "u2"), claim("run-b", "u3")])
        .unwrap();
    assert_eq!(got[0], Taken::Lost);
    assert!(matches!(got[1], Taken::Won(_)));
    let refs = sh(&r.bare, &["for-each-ref", "--format=%(refname)", PREFIX]);
    assert_eq!(
        refs.trim(),
        "refs/secret-manager/claims/table",
        "one ref: {refs}"
    );
    assert_eq!(
        holders(a),
        vec![
            ("u1".into(), "run-a".into()),
            ("u2".into(), "run-a".into()),
            ("u3".into(), "run-b".into())
        ]
    );
}

#[test]
fn a_stale_view_loses_the_push_rereads_and_keeps_the_other_runs_claims() {
    stale_view(remote(2));
}

/// The same through the git CLI (`mktree -z`, `ls-tree -z`, `cat-file --batch`): what a
/// repository gix cannot open, and signed claims, go through.
#[test]
fn the_table_reads_and_writes_the_same_through_the_git_cli() {
    stale_view(remote_with(2, true));
}

fn stale_view(r: Remote) {
    let (a, b) = (&r.clones[0], &r.clones[1]);
    let held_a = won(a.create(vec![claim("run-a", "u1")]).unwrap().remove(0));
    // b writes after a's view was taken: a's next push carries a stale lease.
    let held_b = won(b.create(vec![claim("run-b", "u2")]).unwrap().remove(0));
    let renewed = won(a
        .replace(&held_a.refname, &held_a.commit, claim("run-a", "u1"))
        .unwrap());
    assert_ne!(renewed.commit, held_a.commit, "a new version of the claim");
    // Renewing with the old version now loses: the lease compares the entry.
    assert_eq!(
        a.replace(&held_a.refname, &held_a.commit, claim("run-x", "u1"))
            .unwrap(),
        Taken::Lost
    );
    // Releasing b's claim through a with a's idea of it does nothing.
    let mut fake = held_b.clone();
    fake.commit = renewed.commit.clone();
    let left = a.release(&[fake]).unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(holders(b).len(), 2);
    // Each releases its own: the table is empty, the ref stays.
    assert!(a.release(&[renewed]).unwrap().is_empty());
    assert!(b.release(&[held_b]).unwrap().is_empty());
    assert!(holders(a).is_empty());
}

#[test]
fn runs_racing_on_one_table_each_get_exactly_their_share() {
    let r = remote(4);
    let wins: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = r
            .dirs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                s.spawn(move || {
                    let c = ClaimTable::on(Git::new(d), "origin", PREFIX);
                    // Every run wants the same 6 credentials plus 3 of its own.
                    let mut want: Vec<Claim> = (0..6)
                        .map(|k| claim(&format!("run-{i}"), &format!("shared{k}")))
                        .collect();
                    want.extend((0..3).map(|k| claim(&format!("run-{i}"), &format!("own{i}-{k}"))));
                    c.create(want)
                        .unwrap()
                        .into_iter()
                        .filter_map(|t| match t {
                            Taken::Won(h) => Some(h.claim.identity),
                            _ => None,
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<String> = wins.iter().flatten().cloned().collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(total, all.len(), "a credential won twice: {wins:?}");
    assert_eq!(total, 6 + 4 * 3, "{wins:?}");
    let listed = holders(&r.clones[0]);
    assert_eq!(listed.len(), total);
    for (i, w) in wins.iter().enumerate() {
        for id in w {
            assert!(
                listed.contains(&(id.clone(), format!("run-{i}"))),
                "{id} of run-{i}"
            );
        }
    }
}

#[test]
fn an_earlier_versions_claim_ref_is_busy_and_is_taken_over_into_the_table_atomically() {
    let r = remote(2);
    let (a, b) = (&r.clones[0], &r.clones[1]);
    // An earlier version's claim: a commit with claim.yaml under <prefix><credential-id>.
    let old = claim("run-old", "u1");
    let git = &b.git;
    let blob = git.write_blob(&old.to_yaml()).unwrap();
    let commit = git
        .commit_files_tree(&[("claim.yaml", blob.as_str())], &[], "old claim\n")
        .unwrap();
    let legacy = format!("{PREFIX}{}", credential_id("aws", "u1"));
    sh(
        git.dir(),
        &["push", "-q", "origin", &format!("{commit}:{legacy}")],
    );
    assert_eq!(
        a.create(vec![claim("run-a", "u1")]).unwrap(),
        vec![Taken::Lost]
    );
    let listed = a.list().unwrap();
    let l = listed.iter().find(|l| l.refname == legacy).unwrap();
    assert_eq!(l.commit, commit);
    assert_eq!(l.claim.as_ref().unwrap().run.0, "run-old");
    // Taking it over with a wrong lease loses; with the listed one it moves into the table.
    assert_eq!(
        a.replace(
            &legacy,
            &Oid::parse(&"0".repeat(40)).unwrap(),
            claim("run-a", "u1")
        )
        .unwrap(),
        Taken::Lost
    );
    let held = won(a.replace(&legacy, &l.commit, claim("run-a", "u1")).unwrap());
    let refs = sh(&r.bare, &["for-each-ref", "--format=%(refname)", PREFIX]);
    assert_eq!(refs.trim(), "refs/secret-manager/claims/table", "{refs}");
    assert_eq!(holders(b), vec![("u1".into(), "run-a".into())]);
    assert!(a.release(&[held]).unwrap().is_empty());
}

#[test]
fn what_others_left_in_the_table_is_reported_or_carried_never_trusted() {
    let r = remote(1);
    let a = &r.clones[0];
    let git = &a.git;
    // A hostile table: a claim far over the size limit, a symlink named like a claim, a
    // subdirectory, a file that is no claim and a claim that does not parse.
    let huge = git.write_blob(&"x".repeat(200 * 1024)).unwrap();
    let junk = git.write_blob("not: [a claim").unwrap();
    let note = git.write_blob("hello\n").unwrap();
    let empty_tree = sh(git.dir(), &["mktree"]).trim().to_owned();
    let entries = vec![
        TreeEntry {
            name: format!("{}.yaml", credential_id("aws", "big")),
            mode: FILE_MODE,
            oid: huge,
        },
        TreeEntry {
            name: "link.yaml".into(),
            mode: 0o120000,
            oid: note.clone(),
        },
        TreeEntry {
            name: "README".into(),
            mode: FILE_MODE,
            oid: note.clone(),
        },
        TreeEntry {
            name: "sub".into(),
            mode: 0o040000,
            oid: Oid::parse(&empty_tree).unwrap(),
        },
        TreeEntry {
            name: format!("{}.yaml", credential_id("aws", "bad")),
            mode: FILE_MODE,
            oid: junk,
        },
    ];
    let commit = git.commit_tree(&entries, &[], "hostile\n").unwrap();
    sh(
        git.dir(),
        &["push", "-q", "origin", &format!("{commit}:{PREFIX}table")],
    );
    let listed = a.list().unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.iter().all(|l| l.claim.is_err()), "{listed:?}");
    let big = listed
        .iter()
        .find(|l| l.refname.ends_with(&credential_id("aws", "big")))
        .unwrap();
    assert!(
        matches!(big.claim, Err(Unreadable::TooLarge { .. })),
        "{big:?}"
    );
    assert!(
        big.claim
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("larger than"),
        "{big:?}"
    );
    // A credential with an unreadable claim is not free: taking it loses.
    assert_eq!(
        a.create(vec![claim("run-a", "bad")]).unwrap(),
        vec![Taken::Lost]
    );
    // Our own claim goes in beside them; everything else is carried over byte for byte.
    let held = won(a.create(vec![claim("run-a", "u1")]).unwrap().remove(0));
    assert!(a.release(&[held]).unwrap().is_empty());
    let tip = sh(&r.bare, &["rev-parse", &format!("{PREFIX}table")]);
    let bare = Git::new(&r.bare);
    let mut now = bare.tree_entries(tip.trim(), u64::MAX).unwrap().unwrap();
    let mut before = entries.clone();
    now.sort_by(|x, y| x.name.cmp(&y.name));
    before.sort_by(|x, y| x.name.cmp(&y.name));
    assert_eq!(now, before);
}

/// The recipe docs/rotation.md gives for an unreadable claim removes exactly that file,
/// and the table is still one a run can use.
#[test]
fn the_documented_remedy_for_an_unreadable_claim_removes_only_it() {
    let r = remote(1);
    let a = &r.clones[0];
    let git = &a.git;
    let junk = git.write_blob("not: [a claim").unwrap();
    let bad = credential_id("aws", "bad");
    let commit = git
        .commit_tree(
            &[TreeEntry {
                name: format!("{bad}.yaml"),
                mode: FILE_MODE,
                oid: junk,
            }],
            &[],
            "hostile\n",
        )
        .unwrap();
    sh(
        git.dir(),
        &["push", "-q", "origin", &format!("{commit}:{PREFIX}table")],
    );
    let held = won(a.create(vec![claim("run-a", "u1")]).unwrap().remove(0));
    let doc = include_str!("../../docs/rotation.md");
    let section = &doc[doc.find("### An unreadable claim").unwrap()..];
    let start = section.find("```sh\n").unwrap() + "```sh\n".len();
    let script = &section[start..start + section[start..].find("```").unwrap()];
    assert!(script.contains("id=aws-0123456789abcdef"), "{script}");
    let script = script.replace("id=aws-0123456789abcdef", &format!("id={bad}"));
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(git.dir())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = a.list().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].claim.as_ref().unwrap().run.0, "run-a");
    // Our claim survived the hand edit: the stale view re-reads and releases it.
    let mut held = held;
    held.commit = listed[0].commit.clone();
    assert!(a.release(&[held]).unwrap().is_empty());
    assert!(a.list().unwrap().is_empty());
}
