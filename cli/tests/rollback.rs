//! `rotate --rollback` through the binary: what the command line refuses. The rollback
//! itself is the library's test (`tests/rollback.rs` at the root).

use crate::common::git;

/// `rotate --rollback` without a selection is a usage error (2): it never takes back every
/// rotation in flight. Nothing is read from or written to any remote.
#[test]
fn a_rollback_needs_a_selection() {
    let f = crate::common::GitFleet::new();
    let before = git(&f.path("dev.git"), &["for-each-ref"]);
    let r = f
        .bot("2027-06-01T00:00:00Z")
        .args(["--yes", "rotate", "--rollback"])
        .run();
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("rotate --rollback needs a selection"),
        "{}",
        r.stderr
    );
    assert_eq!(git(&f.path("dev.git"), &["for-each-ref"]), before);
    let r = f
        .bot("2027-06-01T00:00:00Z")
        .args([
            "--yes",
            "rotate",
            "--rollback",
            "--reseal",
            "--source",
            "aws",
        ])
        .run();
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
}
