//! Unit tests of revoke's pure decisions.

use super::{Schedule, schedule};
use crate::config::RevokeMode;
use crate::journal::record::{Promise, RecordKind, RecordManifest, RotationRecord};
use crate::provider::Revoke;
use chrono::{DateTime, Duration, Utc};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A rotation of one credential on two clusters, staged at 10:00.
fn record(promised: Option<(i64, RevokeMode)>) -> RotationRecord {
    let manifest = |cluster: &str| RecordManifest {
        file: format!("applications/a/overlays/{cluster}/s.yaml"),
        document: 0,
        cluster: cluster.into(),
        secret: "ns/s".into(),
    };
    RotationRecord {
        version: 1,
        id: "r1".into(),
        kind: RecordKind::Rotate,
        source: "aws".into(),
        identity: "123456789012/app".into(),
        params: Default::default(),
        old_key_id: "AKIAOLD".into(),
        new_key_id: "AKIANEW".into(),
        staged_at: at("2026-12-01T10:00:00Z"),
        manifests: vec![manifest("aws.eu.dev1"), manifest("aws.eu.prod1")],
        published_at: Default::default(),
        operator: None,
        run: None,
        claimed_at: None,
        disabled_at: None,
        proposal: None,
        staging_commit: None,
        hotfixes: Default::default(),
        promised: promised.map(|(secs, mode)| Promise {
            revoke_after_seconds: secs,
            revoke_mode: mode,
            require_synced: false,
            require_old_key_unused: false,
            require_argocd_synced: false,
            require_consumers_restarted: false,
            require_gate_command: false,
        }),
        rollback_of: None,
        rollback_declined: None,
    }
}

fn published(mut r: RotationRecord) -> RotationRecord {
    let (a, b) = (
        r.manifests[0].cluster.clone(),
        r.manifests[1].cluster.clone(),
    );
    r.apply(|l| l.publish(&a, at("2026-12-01T10:05:00Z")))
        .unwrap();
    r.apply(|l| l.publish(&b, at("2026-12-01T11:00:00Z")))
        .unwrap();
    r
}

/// The grace period runs from the last cluster's publish; until every cluster has it,
/// nothing is scheduled.
#[test]
fn the_grace_period_runs_from_the_last_publish() {
    let mut r = record(Some((3600, RevokeMode::Delete)));
    r.apply(|l| l.publish("aws.eu.dev1", at("2026-12-01T10:05:00Z")))
        .unwrap();
    let hour = Duration::hours(1);
    let late = at("2026-12-09T00:00:00Z");
    assert_eq!(
        schedule(&r, hour, RevokeMode::Delete, late),
        Schedule::NotPublished
    );
    let r = published(record(Some((3600, RevokeMode::Delete))));
    assert_eq!(
        schedule(&r, hour, RevokeMode::Delete, at("2026-12-01T11:59:59Z")),
        Schedule::Wait {
            since: at("2026-12-01T11:00:00Z"),
            until: at("2026-12-01T12:00:00Z"),
            disabled: false,
        }
    );
    assert_eq!(
        schedule(&r, hour, RevokeMode::Delete, at("2026-12-01T12:00:00Z")),
        Schedule::Due {
            since: at("2026-12-01T11:00:00Z"),
            how: Revoke::Delete,
            disabled: false,
        }
    );
}

/// One run's flags never cut another's promise: `--revoke-after 0s` on a record
/// staged with 24 h waits 24 h; a longer grace of this run applies too.
#[test]
fn the_stricter_of_the_promise_and_the_flags_applies() {
    let r = published(record(Some((86_400, RevokeMode::Delete))));
    let next_morning = at("2026-12-02T09:00:00Z");
    assert!(matches!(
        schedule(&r, Duration::zero(), RevokeMode::Delete, next_morning),
        Schedule::Wait { until, .. } if until == at("2026-12-02T11:00:00Z")
    ));
    let r = published(record(Some((0, RevokeMode::Delete))));
    assert!(matches!(
        schedule(&r, Duration::hours(2), RevokeMode::Delete, at("2026-12-01T12:00:00Z")),
        Schedule::Wait { until, .. } if until == at("2026-12-01T13:00:00Z")
    ));
    // A record of an earlier version, with no promise: this run's flags.
    let r = published(record(None));
    assert!(matches!(
        schedule(
            &r,
            Duration::zero(),
            RevokeMode::Delete,
            at("2026-12-01T11:00:00Z")
        ),
        Schedule::Due {
            how: Revoke::Delete,
            ..
        }
    ));
}

/// Promised disable stays disable whatever this run says; a disabled key is deleted
/// once the grace period has passed again, counted from the disable.
#[test]
fn disable_is_kept_and_a_disabled_key_goes_after_a_second_grace_period() {
    let r = published(record(Some((600, RevokeMode::Disable))));
    let due = at("2026-12-01T11:10:00Z");
    assert_eq!(
        schedule(&r, Duration::zero(), RevokeMode::Delete, due),
        Schedule::Due {
            since: at("2026-12-01T11:00:00Z"),
            how: Revoke::Disable,
            disabled: false,
        }
    );
    let mut r = r;
    r.apply(|l| {
        Ok::<_, crate::journal::record::IllegalTransition>(l.published("disable")?.disable(due))
    })
    .unwrap();
    assert_eq!(
        schedule(
            &r,
            Duration::zero(),
            RevokeMode::Delete,
            at("2026-12-01T11:19:59Z")
        ),
        Schedule::Wait {
            since: due,
            until: at("2026-12-01T11:20:00Z"),
            disabled: true,
        }
    );
    assert_eq!(
        schedule(
            &r,
            Duration::zero(),
            RevokeMode::Delete,
            at("2026-12-01T11:20:00Z")
        ),
        Schedule::Due {
            since: due,
            how: Revoke::Delete,
            disabled: true,
        }
    );
}
