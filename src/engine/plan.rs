//! Selection → credentials: which identities to act on, which keys of each, and which
//! manifests hold those keys (all of them, whatever the filter says, so that a shared
//! credential is never rotated partially).

use super::outcome::Outcome;
use super::report::{Action, EngineError, Phase, Step};
use crate::journal::table::Listed;
use crate::journal::{RotationRecord, credential_id};
use crate::keys::{Identity, identities};
use crate::list::{Filter, State, state_of};
use crate::provider::{KeyId, Target};
use crate::scan::{Attribution, Found};
use std::collections::{BTreeMap, BTreeSet};

/// One key of a credential to replace, and every manifest holding it.
#[derive(Debug, Clone)]
pub(super) struct KeyGroup<'a> {
    pub old_key: String,
    pub manifests: Vec<&'a Found>,
    /// The filter did not select every manifest here: they join so nothing is left on
    /// the old key.
    pub expanded: bool,
}

/// A credential: an identity at a source, the keys of it to replace now, and what the
/// whole repo references of it.
#[derive(Debug, Clone)]
pub(super) struct Credential<'a> {
    pub source: String,
    pub identity: String,
    pub params: BTreeMap<String, String>,
    /// Every key of the identity a manifest on main references.
    pub referenced: BTreeSet<String>,
    pub groups: Vec<KeyGroup<'a>>,
}

impl Credential<'_> {
    /// The claim ref's credential id.
    pub fn id(&self) -> String {
        credential_id(&self.source, &self.identity)
    }

    /// What a provider needs; every referenced key is protected.
    pub fn target(&self) -> Target {
        Target {
            source: self.source.clone(),
            params: self.params.clone(),
            current_key: (self.groups.len() == 1).then(|| KeyId(self.groups[0].old_key.clone())),
            referenced: self.referenced.iter().cloned().map(KeyId).collect(),
        }
    }

    /// Clusters of every manifest, sorted.
    pub fn clusters(&self) -> Vec<String> {
        let c: BTreeSet<String> = self
            .groups
            .iter()
            .flat_map(|g| &g.manifests)
            .filter_map(|f| f.attribution.cluster().map(str::to_owned))
            .collect();
        c.into_iter().collect()
    }

    /// Files of every manifest, sorted.
    pub fn files(&self) -> Vec<String> {
        let f: BTreeSet<String> = self
            .groups
            .iter()
            .flat_map(|g| &g.manifests)
            .map(|f| f.file.display().to_string())
            .collect();
        f.into_iter().collect()
    }

    /// The keys being replaced.
    pub fn old_keys(&self) -> Vec<String> {
        self.groups.iter().map(|g| g.old_key.clone()).collect()
    }

    /// A step about this credential.
    pub fn step(&self, action: Action, detail: impl Into<String>) -> Step {
        let mut s = Step::new(action, &self.source, &self.identity, detail);
        s.old_key_id = Some(self.old_keys().join(","));
        s.clusters = self.clusters();
        s.files = self.files();
        s
    }
}

/// Why a credential cannot start now: another run has it.
pub(crate) fn busy_reason(
    source: &str,
    identity: &str,
    records: &[RotationRecord],
    claims: &[Listed],
    run: &crate::journal::RunId,
) -> Option<String> {
    if let Some(r) = records
        .iter()
        .find(|r| r.source == source && r.identity == identity)
    {
        return Some(format!(
            "rotation {} is in flight ({}); it finishes before another starts",
            r.id,
            match r.state() {
                crate::journal::RotationState::Staged { pending } =>
                    format!("staged, not yet on {}", pending.join(", ")),
                crate::journal::RotationState::Published { .. } =>
                    "published, waiting to revoke the old key".into(),
                crate::journal::RotationState::Disabled { .. } =>
                    "old key disabled, waiting to delete it".into(),
                crate::journal::RotationState::Proposed { proposal } => format!(
                    "proposed in {}, waiting for review",
                    proposal
                        .url
                        .as_deref()
                        .unwrap_or(&format!("branch {}", proposal.branch))
                ),
            }
        ));
    }
    let id = credential_id(source, identity);
    claims.iter().find_map(|l| {
        let c = l.claim.as_ref().ok()?;
        (l.refname.ends_with(&format!("/{id}")) && &c.run != run).then(|| c.describe())
    })
}

/// Every managed manifest by (source, identity): the one index planning, recovery and
/// deletion share.
pub(super) fn index(found: &[Found], now: chrono::DateTime<chrono::Utc>) -> Vec<Identity<'_>> {
    identities(found, &Filter::default(), now)
}

/// What [`credentials`] decides from: the run's selection and clocks, the records in
/// flight, the claims on the remote, and the run's own id.
pub(super) struct Planning<'p> {
    /// The run's settings (its filter, and the reference time ages are measured at).
    pub opts: &'p super::RotateOptions,
    /// The run's clock now.
    pub now: chrono::DateTime<chrono::Utc>,
    /// Rotations in flight.
    pub records: &'p [RotationRecord],
    /// Claims on the remote when the run started.
    pub claims: &'p [Listed],
    /// This run.
    pub run: &'p crate::journal::RunId,
}

/// The credentials to rotate: selected by the filter, valid, under one cluster each, and
/// not busy. Everything left out gets a step or a failure saying why. Pure: it reads only
/// `found` and `p`.
pub(super) fn credentials<'a>(
    found: &'a [Found],
    p: &Planning<'_>,
) -> Outcome<Vec<Credential<'a>>> {
    let (opts, now, records) = (p.opts, p.now, p.records);
    let mut o = Outcome::new(Vec::new());
    for ident in index(found, now) {
        let selected: Vec<&Found> = ident
            .manifests
            .iter()
            .copied()
            .filter(|f| opts.filter.matches(f, opts.now))
            .collect();
        if selected.is_empty() {
            continue;
        }
        let mut groups: Vec<KeyGroup<'a>> = Vec::new();
        for f in &selected {
            let m = f
                .managed
                .as_ref()
                .expect("identities holds managed manifests");
            if state_of(f, opts.now, chrono::Duration::zero()) == State::Invalid {
                let mut s = Step::new(
                    Action::Skip,
                    &ident.source,
                    &ident.identity,
                    "annotations cannot drive a rotation; run `secret-manager lint`",
                );
                s.old_key_id = m.key_id.clone();
                s.clusters = vec![f.attribution.label()];
                s.files = vec![f.file.display().to_string()];
                o.step(s);
                continue;
            }
            let key = m.key_id.clone().unwrap_or_default();
            if groups.iter().any(|g| g.old_key == key) {
                continue;
            }
            let manifests: Vec<&'a Found> = ident
                .manifests
                .iter()
                .copied()
                .filter(|g| g.managed.as_ref().and_then(|m| m.key_id.as_deref()) == Some(&key))
                .collect();
            let expanded = manifests.iter().any(|g| !opts.filter.matches(g, opts.now));
            groups.push(KeyGroup {
                old_key: key,
                manifests,
                expanded,
            });
        }
        if groups.is_empty() {
            continue;
        }
        let cred = Credential {
            source: ident.source.clone(),
            identity: ident.identity.clone(),
            params: ident.target.params.clone(),
            referenced: ident
                .target
                .referenced
                .iter()
                .map(|k| k.0.clone())
                .collect(),
            groups,
        };
        if let Some((l, Err(why))) = p
            .claims
            .iter()
            .find(|l| l.claim.is_err() && l.refname.ends_with(&format!("/{}", cred.id())))
            .map(|l| (l, &l.claim))
        {
            let remedy = if l.legacy {
                format!(
                    "if no run is active, delete it: git push <main remote> :{}",
                    l.refname
                )
            } else {
                format!(
                    "if no run is active, remove {}.yaml from the claims table (docs/rotation.md, \"An unreadable claim\")",
                    cred.id()
                )
            };
            let e = EngineError::ClaimUnreadable {
                refname: l.refname.clone(),
                source: why.clone(),
                remedy,
            };
            o.fail(Phase::Preflight, &cred.source, &cred.identity, None, e);
            continue;
        }
        if let Some(why) = busy_reason(&cred.source, &cred.identity, records, p.claims, p.run) {
            // A rotation in flight that this run advances already has its step (wait,
            // publish, revoke): a second `busy` row for the same credential says nothing.
            let advanced_here = records.iter().any(|r| {
                r.source == cred.source
                    && r.identity == cred.identity
                    && super::selection_covers(&opts.filter, r)
            });
            if advanced_here {
                continue;
            }
            let s = cred.step(Action::Busy, why);
            o.step(s);
            continue;
        }
        if let Some(f) = cred
            .groups
            .iter()
            .flat_map(|g| &g.manifests)
            .find(|f| !matches!(f.attribution, Attribution::Cluster(_)))
        {
            let e = EngineError::NotUnderCluster {
                file: f.file.display().to_string(),
            };
            o.fail(Phase::Preflight, &cred.source, &cred.identity, None, e);
            continue;
        }
        o.advanced.push(cred);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RotateOptions;
    use crate::journal::RunId;

    /// The example fleet's SealedSecrets, scanned as a run scans main.
    fn example() -> Vec<Found> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/example-repo");
        let repo = crate::Repo::open(&root).unwrap();
        let opts = crate::scan::ScanOptions {
            prefix: crate::annotations::ANNOTATION_PREFIX.into(),
            cluster_ids: repo.inventory.ids().map(str::to_owned).collect(),
            threads: 1,
        };
        crate::scan::scan(&root, &opts).secrets
    }

    /// A published rotation of the example fleet's DNS credential.
    fn record(name: &str) -> RotationRecord {
        let rel = format!("testdata/journal/{name}");
        let src =
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(&rel))
                .unwrap();
        let mut r: RotationRecord =
            crate::config::from_yaml(std::path::Path::new(&rel), &src).unwrap();
        r.identity = DNS.into();
        r
    }

    const DEV1: &str = "aws.eu-central-1.dev1";
    const DNS: &str = "111111111111/external-dns-dev1";

    #[test]
    fn a_credential_in_flight_or_claimed_unreadably_is_left_out_and_said_why() {
        let found = example();
        let now: chrono::DateTime<chrono::Utc> = "2027-01-01T00:00:00Z".parse().unwrap();
        let mut opts = RotateOptions::new(now);
        opts.filter.clusters = vec![DEV1.into()];
        let run = RunId::new(now);
        let plan = |records: &[RotationRecord], claims: &[Listed]| {
            credentials(
                &found,
                &Planning {
                    opts: &opts,
                    now,
                    records,
                    claims,
                    run: &run,
                },
            )
        };
        // Nothing in flight: the cluster's credentials, each under its cluster.
        let free = plan(&[], &[]);
        assert!(free.failed.is_empty(), "{:?}", free.failed);
        let ids: Vec<&str> = free.advanced.iter().map(|c| c.identity.as_str()).collect();
        assert!(ids.contains(&DNS), "{ids:?}");
        assert!(
            free.advanced
                .iter()
                .all(|c| c.clusters() == vec![DEV1.to_owned()]),
            "the selection holds"
        );

        // A rotation of it in flight that this run does not advance: busy, said why.
        let mut rec = record("v1-published.yaml");
        rec.manifests[0].cluster = "another.cluster".into();
        let busy = plan(std::slice::from_ref(&rec), &[]);
        assert!(!busy.advanced.iter().any(|c| c.identity == DNS));
        let said = busy
            .steps
            .iter()
            .find(|s| s.identity == DNS && s.action == Action::Busy)
            .expect("a busy step");
        assert!(said.detail.contains(&rec.id), "{}", said.detail);
        // One this run advances already has its own step: no second row.
        let advanced = plan(&[record("v1-published.yaml")], &[]);
        assert!(!advanced.advanced.iter().any(|c| c.identity == DNS));
        assert!(!advanced.steps.iter().any(|s| s.identity == DNS));

        // An unreadable claim on it: a preflight failure that says what to do.
        let id = credential_id("aws", DNS);
        let listed = Listed {
            refname: format!("refs/secret-manager/claims/{id}"),
            commit: crate::gitops::git::Oid::parse("0123456789abcdef0123456789abcdef01234567")
                .unwrap(),
            claim: Err(crate::journal::table::Unreadable::Missing {
                refname: "x".into(),
                id: id.clone(),
            }),
            legacy: false,
        };
        let claimed = plan(&[], std::slice::from_ref(&listed));
        assert!(!claimed.advanced.iter().any(|c| c.identity == DNS));
        let f = claimed
            .failed
            .iter()
            .find(|f| f.identity == DNS)
            .expect("a failure");
        assert_eq!(f.phase, Phase::Preflight);
        assert!(
            f.error.to_string().contains("remove") && f.error.to_string().contains(&id),
            "{}",
            f.error
        );
        // The rest of the cluster is planned as before.
        assert_eq!(claimed.advanced.len() + 1, free.advanced.len());
    }
}
