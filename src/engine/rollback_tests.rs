//! Unit tests of the rollback's pure parts: the deadline, the candidates, the restore edit.
use super::*;

const BEFORE: &str = "# comment\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: db\n  namespace: app\n  annotations:\n    secret-manager/sealedWith: \"aaa\"\nspec:\n  encryptedData:\n    password: AgOLD\n  template:\n    metadata:\n      annotations:\n        secret-manager/keyId: \"k1\"\n        secret-manager/createDate: \"2026-01-01T00:00:00Z\"\n";

#[test]
fn the_deadline_counts_from_staging_and_spares_reviews_and_rollbacks() {
    let rel = "testdata/journal/v1-published.yaml";
    let src = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap();
    let mut r: RotationRecord = crate::config::from_yaml(std::path::Path::new(rel), &src).unwrap();
    r.published_at.clear();
    let hour = chrono::Duration::hours(1);
    let staged = r.staged_at;
    assert_eq!(
        missed(&r, hour, staged + chrono::Duration::minutes(59)),
        None
    );
    let why = missed(&r, hour, staged + chrono::Duration::minutes(61)).unwrap();
    assert!(
        why.starts_with("not delivered within policy.publishDeadline (1h) of staging at "),
        "{why}"
    );
    let mut review = r.clone();
    review.proposal = Some(crate::journal::record::Proposal {
        branch: "b".into(),
        number: Some(1),
        url: None,
        opened_at: staged,
    });
    assert_eq!(
        missed(&review, hour, staged + chrono::Duration::hours(9)),
        None
    );
    let mut back = r.clone();
    back.rollback_of = Some(RollbackOf {
        rotation: "x".into(),
        reason: "y".into(),
        at: staged,
    });
    assert_eq!(
        missed(&back, hour, staged + chrono::Duration::hours(9)),
        None
    );
}

#[test]
fn only_a_selected_rotation_whose_old_key_works_is_a_candidate() {
    let rel = "testdata/journal/v1-published.yaml";
    let src = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap();
    let base: RotationRecord = crate::config::from_yaml(std::path::Path::new(rel), &src).unwrap();
    let with = |id: &str, f: &dyn Fn(&mut RotationRecord)| {
        let mut r = base.clone();
        r.id = id.into();
        r.identity = format!("123456789012/{id}");
        f(&mut r);
        r
    };
    let records = vec![
        with("published", &|_| {}),
        with("deletion", &|r| {
            r.kind = crate::journal::record::RecordKind::Delete
        }),
        with("disabled", &|r| r.disabled_at = Some(r.staged_at)),
        with("held", &|_| {}),
        with("held-rollback", &|r| {
            r.rollback_of = Some(RollbackOf {
                rotation: "held".into(),
                reason: "a gate failed".into(),
                at: r.staged_at,
            })
        }),
        with("elsewhere", &|r| {
            r.manifests[0].cluster = "gcp.europe-west1.dev2".into()
        }),
    ];
    let filter = crate::list::Filter {
        clusters: vec!["aws.eu-central-1.dev1".into()],
        ..crate::list::Filter::default()
    };
    let o = candidates(&filter, &records);
    let ids: Vec<&str> = o.advanced.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["published"]);
    let said: Vec<String> = o.failed.iter().map(|f| f.error.to_string()).collect();
    for (id, why) in [
        ("deletion", "a deletion, not a rotation"),
        ("disabled", "is disabled already: only forward"),
        ("held", "its rollback held-rollback is under way already"),
        ("held-rollback", "already the rollback of held"),
    ] {
        assert!(
            said.iter()
                .any(|m| m.contains(&format!("rotation {id}:")) && m.contains(why)),
            "{id}: {said:#?}"
        );
    }
    assert!(
        !said.iter().any(|m| m.contains("elsewhere")),
        "outside the selection"
    );
    assert!(o.failed.iter().all(|f| f.phase == Phase::Preflight));
}

#[test]
fn the_document_gets_back_exactly_what_it_had() {
    let after = BEFORE
        .replace("AgOLD", "AgNEW")
        .replace("\"k1\"", "\"k2\"")
        .replace("2026-01-01", "2026-06-01")
        .replace("\"aaa\"", "\"bbb\"");
    // Another change to the file since the rotation stays.
    let after = after.replace("# comment\n", "# comment, edited since\n");
    let was = find(BEFORE, "app/db").unwrap();
    let is = find(&after, "app/db").unwrap();
    let out = apply(
        &after,
        &restore(&was, &is, "secret-manager/", "secret-manager/keyId"),
    )
    .unwrap();
    assert_eq!(
        out,
        BEFORE.replace("# comment\n", "# comment, edited since\n")
    );
    assert!(find(BEFORE, "app/other").is_none());
    assert!(find(BEFORE, "other/db").is_none());
    // A document that had no `sealedWith` (sealed by hand, say) gets none back: the
    // one the rotation added goes, with the `annotations:` it created, and a
    // `sealedWith` next to other annotations goes alone.
    let rotated = |s: &str| s.replace("AgOLD", "AgNEW").replace("\"k1\"", "\"k2\"");
    let bare = BEFORE.replace(
        "  annotations:\n    secret-manager/sealedWith: \"aaa\"\n",
        "",
    );
    let other = BEFORE.replace("secret-manager/sealedWith: \"aaa\"", "team: dns");
    for (before, after) in [
        (
            bare.clone(),
            rotated(&bare).replace(
                "  namespace: app\n",
                "  namespace: app\n  annotations:\n    secret-manager/sealedWith: \"bbb\"\n",
            ),
        ),
        (
            other.clone(),
            rotated(&other).replace(
                "    team: dns\n",
                "    team: dns\n    secret-manager/sealedWith: \"bbb\"\n",
            ),
        ),
    ] {
        assert_ne!(after, before);
        let was = find(&before, "app/db").unwrap();
        let is = find(&after, "app/db").unwrap();
        let out = apply(
            &after,
            &restore(&was, &is, "secret-manager/", "secret-manager/keyId"),
        )
        .unwrap();
        assert_eq!(out, before);
    }
}
