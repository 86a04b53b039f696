//! A rotation's lifecycle as types: one type per state, and transitions that consume the
//! state they start from and return the next one.
//!
//! ```text
//!             ┌─propose─▶ Proposed ─merged─┐          (pull-request mode)
//!  (stage) ─▶ Staged ◀───────────────────────┘
//!             Staged ─publish (last cluster)─▶ Published ─disable─▶ Disabled
//!  Proposed, Published, Disabled ─end─▶ Ended (the record file is removed)
//! ```
//!
//! A record is parsed into its state once, by [`RotationRecord::lifecycle`]; a step that
//! does not apply where the record stands is not a method of that state (disabling a
//! staged rotation does not compile). The only checks left at run time are those the
//! types cannot carry: publishing to a cluster the record does not name, proposing a
//! rotation a cluster already has. [`RotationRecord::apply`] runs a transition on a
//! record held in a list and leaves it as it was when the transition is refused.
//!
//! Pull-request hot-fixes ([`RotationRecord::hotfix_proposed`]) are notes on a record,
//! not steps of its lifecycle.

use super::record::{IllegalTransition, Proposal, RotationRecord, RotationState};
use chrono::{DateTime, Utc};

macro_rules! state {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name(RotationRecord);

        impl std::ops::Deref for $name {
            type Target = RotationRecord;
            fn deref(&self) -> &RotationRecord {
                &self.0
            }
        }

        impl $name {
            /// The record, for writing or showing.
            pub fn into_record(self) -> RotationRecord {
                self.0
            }

            /// The state's name, as `list` and errors say it.
            pub fn name(&self) -> &'static str {
                $label
            }
        }

        impl From<$name> for Lifecycle {
            fn from(s: $name) -> Lifecycle {
                Lifecycle::$name(s)
            }
        }
    };
}

state!(
    /// Pull-request mode: the change waits in a pull request; main does not have it yet.
    Proposed,
    "proposed"
);
state!(
    /// On main; some clusters' pointers do not have it yet.
    Staged,
    "staged"
);
state!(
    /// Every pointer has it; the revocation gates decide when the old key goes.
    Published,
    "published"
);
state!(
    /// The old key is disabled; it is deleted once the grace period has passed again.
    Disabled,
    "disabled"
);

/// A rotation that is over (revoked, deleted, or its pull request closed): the store
/// removes its file, and the audit trail keeps its history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended(RotationRecord);

impl std::ops::Deref for Ended {
    type Target = RotationRecord;
    fn deref(&self) -> &RotationRecord {
        &self.0
    }
}

/// A record in the state it stands in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// See [`Proposed`].
    Proposed(Proposed),
    /// See [`Staged`].
    Staged(Staged),
    /// See [`Published`].
    Published(Published),
    /// See [`Disabled`].
    Disabled(Disabled),
}

impl RotationRecord {
    /// The record as its state. A record just built by a stage (nothing published) is
    /// [`Staged`].
    pub fn lifecycle(self) -> Lifecycle {
        match self.state() {
            RotationState::Proposed { .. } => Lifecycle::Proposed(Proposed(self)),
            RotationState::Staged { .. } => Lifecycle::Staged(Staged(self)),
            RotationState::Published { .. } => Lifecycle::Published(Published(self)),
            RotationState::Disabled { .. } => Lifecycle::Disabled(Disabled(self)),
        }
    }

    /// Runs `step` on this record's state and keeps what it returns; when `step` refuses,
    /// the record is left exactly as it was. For records held in a list:
    /// `rec.apply(|l| l.staged("publish")?.publish(cluster, at))`.
    pub fn apply<S: Into<Lifecycle>>(
        &mut self,
        step: impl FnOnce(Lifecycle) -> Result<S, IllegalTransition>,
    ) -> Result<(), IllegalTransition> {
        *self = step(self.clone().lifecycle())?.into().into_record();
        Ok(())
    }
}

impl Lifecycle {
    /// The record.
    pub fn record(&self) -> &RotationRecord {
        match self {
            Lifecycle::Proposed(s) => s,
            Lifecycle::Staged(s) => s,
            Lifecycle::Published(s) => s,
            Lifecycle::Disabled(s) => s,
        }
    }

    /// The record, for writing or showing.
    pub fn into_record(self) -> RotationRecord {
        match self {
            Lifecycle::Proposed(s) => s.0,
            Lifecycle::Staged(s) => s.0,
            Lifecycle::Published(s) => s.0,
            Lifecycle::Disabled(s) => s.0,
        }
    }

    /// The state's name, as `list` and errors say it.
    pub fn name(&self) -> &'static str {
        match self {
            Lifecycle::Proposed(s) => s.name(),
            Lifecycle::Staged(s) => s.name(),
            Lifecycle::Published(s) => s.name(),
            Lifecycle::Disabled(s) => s.name(),
        }
    }

    fn refuse(&self, action: &'static str) -> IllegalTransition {
        refused(self.record(), action, self.name())
    }

    /// The [`Proposed`] record, or why `action` does not apply to it.
    pub fn proposed(self, action: &'static str) -> Result<Proposed, IllegalTransition> {
        match self {
            Lifecycle::Proposed(s) => Ok(s),
            other => Err(other.refuse(action)),
        }
    }

    /// The [`Staged`] record, or why `action` does not apply to it.
    pub fn staged(self, action: &'static str) -> Result<Staged, IllegalTransition> {
        match self {
            Lifecycle::Staged(s) => Ok(s),
            other => Err(other.refuse(action)),
        }
    }

    /// The [`Published`] record, or why `action` does not apply to it.
    pub fn published(self, action: &'static str) -> Result<Published, IllegalTransition> {
        match self {
            Lifecycle::Published(s) => Ok(s),
            other => Err(other.refuse(action)),
        }
    }

    /// `cluster`'s pointer has the change since `at`: a [`Staged`] record moves on (to
    /// [`Published`] with its last cluster), a [`Published`] one keeps its first time.
    pub fn publish(self, cluster: &str, at: DateTime<Utc>) -> Result<Lifecycle, IllegalTransition> {
        match self {
            Lifecycle::Staged(s) => s.publish(cluster, at),
            Lifecycle::Published(s) => s.publish(cluster, at).map(Lifecycle::Published),
            other => Err(other.refuse("publish")),
        }
    }

    /// The rotation is over, from any state (revoked, deleted, its proposal dropped).
    pub fn end(self) -> Ended {
        Ended(self.into_record())
    }
}

fn refused(r: &RotationRecord, action: &'static str, state: &'static str) -> IllegalTransition {
    IllegalTransition {
        id: r.id.clone(),
        action,
        state,
    }
}

impl Staged {
    /// Pull-request mode: the change waits on `branch` for review. Refused once any
    /// cluster has it (a published change is on main already).
    pub fn propose(self, branch: &str, at: DateTime<Utc>) -> Result<Proposed, IllegalTransition> {
        if !self.0.published_at.is_empty() || self.0.staging_commit.is_some() {
            return Err(refused(&self.0, "propose", self.name()));
        }
        let mut r = self.0;
        r.proposal = Some(Proposal {
            branch: branch.to_owned(),
            number: None,
            url: None,
            opened_at: at,
        });
        Ok(Proposed(r))
    }

    /// `cluster`'s pointer has the change since `at`: [`Staged`] with one cluster fewer
    /// to go, or [`Published`]. Refused for a cluster the record does not name.
    pub fn publish(self, cluster: &str, at: DateTime<Utc>) -> Result<Lifecycle, IllegalTransition> {
        if !self.0.manifests.iter().any(|m| m.cluster == cluster) {
            return Err(refused(&self.0, "publish", self.name()));
        }
        let mut r = self.0;
        r.published_at.entry(cluster.to_owned()).or_insert(at);
        Ok(r.lifecycle())
    }
}

impl Proposed {
    /// The pull request is open as `number` at `url`.
    pub fn opened(self, number: u64, url: &str) -> Proposed {
        let mut r = self.0;
        if let Some(p) = r.proposal.as_mut() {
            p.number = Some(number);
            p.url = Some(url.to_owned());
        }
        Proposed(r)
    }

    /// The pull request was merged: the change is on main at `commit`.
    pub fn merged(self, commit: &str) -> Staged {
        let mut r = self.0;
        r.staging_commit = Some(commit.to_owned());
        Staged(r)
    }
}

impl Published {
    /// Publishing again (a pointer moved back and forward) keeps the first time: the
    /// grace period runs from it. Refused for a cluster the record does not name.
    pub fn publish(
        self,
        cluster: &str,
        _at: DateTime<Utc>,
    ) -> Result<Published, IllegalTransition> {
        if !self.0.manifests.iter().any(|m| m.cluster == cluster) {
            return Err(refused(&self.0, "publish", self.name()));
        }
        Ok(self)
    }

    /// The old key was disabled at `at`.
    pub fn disable(self, at: DateTime<Utc>) -> Disabled {
        let mut r = self.0;
        r.disabled_at = Some(at);
        Disabled(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_yaml;
    use std::path::Path;

    fn staged() -> RotationRecord {
        let rel = "testdata/journal/v1-published.yaml";
        let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap();
        let mut r: RotationRecord = from_yaml(Path::new(rel), &src).unwrap();
        r.published_at.clear();
        r
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn each_state_moves_only_to_the_next() {
        let r = staged();
        let cluster = r.clusters()[0].clone();
        let Lifecycle::Staged(s) = r.lifecycle() else {
            panic!("a record with nothing published is staged")
        };
        // A cluster the record does not name is refused, and says where it stands.
        let e = s
            .clone()
            .publish("other.cluster", t("2026-11-21T12:00:00Z"))
            .unwrap_err();
        assert_eq!(e.state, "staged");
        // The last cluster publishes it; publishing again keeps the first time.
        let p = s
            .publish(&cluster, t("2026-11-21T12:00:00Z"))
            .unwrap()
            .published("disable")
            .unwrap();
        let p = p.publish(&cluster, t("2026-11-21T18:00:00Z")).unwrap();
        assert_eq!(
            p.state(),
            RotationState::Published {
                since: t("2026-11-21T12:00:00Z")
            }
        );
        let d = p.disable(t("2026-11-22T00:00:00Z"));
        assert_eq!(
            d.clone().into_record().lifecycle().name(),
            "disabled",
            "the state round-trips through the record's fields"
        );
        let e = d
            .into_record()
            .lifecycle()
            .published("disable the old key of")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "rotation aws-20261121T120000Z-10017f28: cannot disable the old key of a rotation that is disabled"
        );
    }

    #[test]
    fn pull_request_mode_proposes_then_merges_into_staged() {
        let r = staged();
        let cluster = r.clusters()[0].clone();
        let Lifecycle::Staged(s) = r.lifecycle() else {
            panic!()
        };
        let p = s
            .propose("rotate-x", t("2026-11-21T12:00:00Z"))
            .unwrap()
            .opened(7, "https://forge/pr/7");
        assert_eq!(p.clone().into_record().lifecycle().name(), "proposed");
        assert!(
            Lifecycle::from(p.clone())
                .publish(&cluster, t("2026-11-21T12:00:00Z"))
                .is_err(),
            "a proposed change is not on main: nothing publishes it"
        );
        let s = p.merged("0123abcd");
        assert_eq!(s.proposal.as_ref().and_then(|p| p.number), Some(7));
        // A published change cannot be proposed again.
        let published = s
            .publish(&cluster, t("2026-11-21T13:00:00Z"))
            .unwrap()
            .published("x")
            .unwrap();
        let back = published.into_record();
        let Lifecycle::Published(_) = back.clone().lifecycle() else {
            panic!()
        };
        let mut fresh = staged();
        fresh.published_at = back.published_at.clone();
        assert!(
            fresh
                .clone()
                .lifecycle()
                .staged("propose")
                .is_err_and(|e| e.state == "published")
        );
    }

    #[test]
    fn apply_keeps_a_record_as_it_was_when_refused() {
        let mut r = staged();
        let before = r.clone();
        let e = r
            .apply(|l| {
                l.published("disable the old key of")
                    .map(|p| p.disable(t("2026-11-22T00:00:00Z")))
            })
            .unwrap_err();
        assert_eq!(e.state, "staged");
        assert_eq!(r, before);
        let cluster = r.clusters()[0].clone();
        r.apply(|l| l.publish(&cluster, t("2026-11-21T12:00:00Z")))
            .unwrap();
        assert_eq!(r.lifecycle().name(), "published");
    }
}
