//! What a run did: steps, failures, and the errors behind them.

use crate::config::ConfigError;
use crate::gitops::PublishError;
use crate::gitops::git::GitError;
use crate::provider::ProviderError;
use serde::{Serialize, Serializer};

/// What kind of step failed (it decides the exit code): a preflight check, minting, a git
/// or forge step that gets a change onto main and the pointers, a gate, a revocation.
/// Set where the error is understood — an audit-log append is a git step whichever part
/// of the run makes it; [`During`] says which part that was. Ordered as a run goes (after
/// a stale review, which is the mildest): when several credentials fail, the latest wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Pull-request mode: a pull request has waited for review longer than
    /// `forge.maxOpenAge`. Ordered first: any other failure of the run decides the code.
    Review,
    /// Checks before anything changed for the credential.
    Preflight,
    /// Claiming, minting, verifying, sealing or editing the new key.
    Mint,
    /// Getting the change onto main and the cluster pointers.
    Publish,
    /// A revocation gate could not be evaluated (kubectl missing, context unknown,
    /// access denied): the old key stays, and someone must look.
    Gate,
    /// Deleting or disabling the old key.
    Revoke,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Review => "Review",
            Phase::Preflight => "Preflight",
            Phase::Mint => "Mint",
            Phase::Publish => "Publish",
            Phase::Gate => "Gate",
            Phase::Revoke => "Revoke",
        })
    }
}

/// Where in a run's order a failure happened. Stamped by `rotate()` as it hands the run
/// to each part, never by the part itself; [`Phase`] says what failed. A report reads
/// `phase: publish, during: revoke` for a revoke commit that could not be pushed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum During {
    /// Opening the run (before any part started).
    #[default]
    Open,
    /// Cleaning up after runs that died.
    Recover,
    /// Claiming the recorded rotations this run advances.
    Resume,
    /// Pull-request mode: following the pull requests of proposed rotations.
    Review,
    /// Moving the cluster pointers to staged changes.
    Publish,
    /// The gates, and revoking or disabling old keys.
    Revoke,
    /// Staging new rotations: claim, mint, verify, seal, commit (or propose).
    Stage,
    /// Removing the selected SealedSecrets (`--delete`).
    Delete,
    /// Rolling rotations back (`--rollback`).
    Rollback,
    /// Releasing the run's claims.
    Release,
}

impl During {
    /// The name in JSON and logs.
    pub fn name(self) -> &'static str {
        match self {
            During::Open => "open",
            During::Recover => "recover",
            During::Resume => "resume",
            During::Review => "review",
            During::Publish => "publish",
            During::Revoke => "revoke",
            During::Stage => "stage",
            During::Delete => "delete",
            During::Rollback => "rollback",
            During::Release => "release",
        }
    }
}

impl std::fmt::Display for During {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a step did. Serialized as the lowercase strings of earlier versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// A new key was (or would be) minted, sealed and committed.
    Stage,
    /// Pull-request mode: a new key was minted and sealed, and the change proposed in a
    /// pull request.
    Propose,
    /// A cluster pointer received (or would receive) a staged change.
    Publish,
    /// An old key was (or would be) deleted or disabled.
    Revoke,
    /// A gate holds the old key for now.
    Wait,
    /// Nothing to do for it (invalid annotations, a key kept because it is still used).
    Skip,
    /// Another run has it in flight (a live claim, or a record on main).
    Busy,
    /// A key minted by a run that died, never committed, was (or would be) deleted.
    Cleanup,
    /// A dead run's claim was released.
    Abandon,
    /// This run's own new key was deleted again because staging it failed.
    Undo,
    /// SealedSecret documents were (or would be) removed (`delete`).
    Delete,
    /// Progress only: a new key was minted and verified (not part of the report).
    Minted,
    /// Left as it was because the run was interrupted.
    Interrupted,
    /// A rotation was (or would be) rolled back: the old ciphertexts restored on main,
    /// the new key revoked once every cluster has them.
    Rollback,
}

impl Action {
    /// The JSON string.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Stage => "stage",
            Action::Propose => "propose",
            Action::Publish => "publish",
            Action::Revoke => "revoke",
            Action::Wait => "wait",
            Action::Skip => "skip",
            Action::Busy => "busy",
            Action::Cleanup => "cleanup",
            Action::Abandon => "abandon",
            Action::Undo => "undo",
            Action::Delete => "delete",
            Action::Minted => "minted",
            Action::Interrupted => "interrupted",
            Action::Rollback => "rollback",
        }
    }

    /// Whether a done step of this kind deleted or disabled a key at the source.
    pub fn removes_a_key(self) -> bool {
        matches!(self, Action::Revoke | Action::Cleanup | Action::Undo)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the plan or the summary.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// What.
    pub action: Action,
    /// The credential source (`aws`, `azure`, `gcp`, `random`, a database, a plugin).
    pub source: String,
    /// Identity label.
    pub identity: String,
    /// Key being replaced (or removed).
    pub old_key_id: Option<String>,
    /// New key (known after minting).
    pub new_key_id: Option<String>,
    /// Clusters involved.
    pub clusters: Vec<String>,
    /// Files changed.
    pub files: Vec<String>,
    /// Human explanation.
    pub detail: String,
    /// Whether it happened (false in a dry run or when it failed).
    pub done: bool,
    /// For a `wait`: what it waits on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_on: Option<WaitingOn>,
}

/// What a `wait` step waits on (the `secret_manager_last_run_waiting` series).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaitingOn {
    /// The grace period (or, after a disable, the second one).
    Grace,
    /// `--require-synced`: the SealedSecret controller.
    Synced,
    /// `--require-argocd-synced`: Argo CD's sync and health.
    Argocd,
    /// `--gate-command`: the operator's program (exit 75).
    Command,
    /// `--require-consumers-restarted`: pods that read the Secret with the old value.
    Consumers,
    /// `--require-old-key-unused`: the old key is still used.
    Unused,
    /// What git shows: main or a pointer does not hold the new key yet.
    Pointers,
    /// A hot-fix waiting for its pull request.
    Hotfix,
    /// A dead run's claim that is not believed.
    Claim,
}

impl WaitingOn {
    /// The name in JSON and metrics.
    pub fn name(self) -> &'static str {
        match self {
            WaitingOn::Grace => "grace",
            WaitingOn::Synced => "synced",
            WaitingOn::Argocd => "argocd",
            WaitingOn::Command => "command",
            WaitingOn::Consumers => "consumers",
            WaitingOn::Unused => "unused",
            WaitingOn::Pointers => "pointers",
            WaitingOn::Hotfix => "hotfix",
            WaitingOn::Claim => "claim",
        }
    }
}

impl Step {
    /// A step for (source, identity) with everything else empty.
    pub fn new(action: Action, source: &str, identity: &str, detail: impl Into<String>) -> Step {
        Step {
            action,
            source: source.to_owned(),
            identity: identity.to_owned(),
            old_key_id: None,
            new_key_id: None,
            clusters: Vec::new(),
            files: Vec::new(),
            detail: detail.into(),
            done: false,
            waiting_on: None,
        }
    }
}

/// Why one credential (or one cluster of it) failed. Messages name what failed and what
/// to do; none contains a secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The repo's configuration or a record is unreadable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Main's settings could not be read.
    #[error(transparent)]
    Main(#[from] crate::MainError),
    /// A git command failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// Publishing failed (pointer, hot-fix, push to main).
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The source refused or failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The new key was minted but does not work.
    #[error("the new key {key} does not work: {source}")]
    Verify {
        /// New key.
        key: String,
        /// Why.
        #[source]
        source: ProviderError,
    },
    /// A cluster's sealing certificate cannot be used (one cause, shared by every
    /// credential of the cluster).
    #[error(transparent)]
    Certificate(std::sync::Arc<crate::RepoError>),
    /// A manifest could not be sealed or edited.
    #[error("{file}: {message}")]
    Edit {
        /// Repo-relative file.
        file: String,
        /// What went wrong.
        message: String,
    },
    /// A templated key could not be rendered, or its value does not fit the Secret type.
    /// The message never quotes a value.
    #[error(
        "{file}: key {key}: {message}; fix the template in .secret-manager.yaml's templates: (`secret-manager lint` checks it)"
    )]
    Template {
        /// Repo-relative file.
        file: String,
        /// The Secret key.
        key: String,
        /// What went wrong.
        message: String,
    },
    /// A manifest is not under one cluster's path.
    #[error(
        "{file} is not under one cluster's path: cannot choose a sealing certificate; move it under overlays/<cluster>/ or give it a cluster-specific file"
    )]
    NotUnderCluster {
        /// Repo-relative file.
        file: String,
    },
    /// The source returned no value for a field `keyMappings` names.
    #[error("{source_name} returned no field {field}; check secret-manager/keyMappings")]
    MissingField {
        /// Source.
        source_name: String,
        /// The output field `keyMappings` names.
        field: String,
    },
    /// The identity holds as many keys as it may, and none is this tool's to delete.
    #[error(
        "{identity} already has {count} of at most {limit} keys: {keys}. secret-manager deletes only keys it minted itself; {hint}"
    )]
    KeyLimit {
        /// Identity label.
        identity: String,
        /// Keys present.
        count: usize,
        /// The source's limit.
        limit: u32,
        /// Each key and why it is kept.
        keys: String,
        /// What the operator can do.
        hint: String,
    },
    /// A claim on the remote cannot be read.
    #[error("claim {refname} is unreadable ({source}); {remedy}")]
    ClaimUnreadable {
        /// Where the claim lives (`<prefix><credential-id>`).
        refname: String,
        /// Why.
        source: crate::journal::table::Unreadable,
        /// What the operator can do.
        remedy: String,
    },
    /// The remote refused a claim ref (hook or permission).
    #[error(
        "the remote refused the claim ref {refname}: {reason}. The bot must be allowed to create and delete refs under {prefix} (see docs/rotation.md, \"Refs the bot pushes\")"
    )]
    ClaimRefused {
        /// Ref.
        refname: String,
        /// The ref namespace the claims live under (`claims.refPrefix`).
        prefix: String,
        /// What the remote said.
        reason: String,
    },
    /// Another run took over this run's claim (its lease ran out): the run stops for it.
    #[error(
        "the claim on this credential was lost ({refname} was taken over by another run); nothing more is done for it"
    )]
    ClaimLost {
        /// The claim's ref (`<prefix><credential-id>`).
        refname: String,
    },
    /// A revocation gate cannot be evaluated.
    #[error("cluster {cluster}: {message}")]
    Gate {
        /// The cluster id (`cloud.region.name`).
        cluster: String,
        /// What failed and what to do.
        message: String,
    },
    /// A record's staging commit is not on main.
    #[error("cannot find the commit that staged {record} on main")]
    NoStagingCommit {
        /// Record path.
        record: String,
    },
    /// Commits must be signed (`git: {sign: true}` or git's `commit.gpgSign`) and git
    /// cannot sign: nothing was changed.
    #[error(
        "commits must be signed, but git cannot sign ({0}); check gpg.format, user.signingKey and the key's availability (docs/pull-requests.md, \"Signed commits\")"
    )]
    Signing(#[source] GitError),
    /// A forge call failed (the cause says whether it is configuration or the forge).
    #[error(transparent)]
    Forge(#[from] crate::forge::ForgeError),
    /// The pull request of a staged change could not be opened; the change waits on its
    /// branch.
    #[error("{source}; the change is on branch {branch}, and the next run opens the pull request")]
    NotProposed {
        /// The branch holding the change.
        branch: String,
        /// Why.
        source: crate::forge::ForgeError,
    },
    /// A pull request is in a state the run cannot go on from (closed without merging).
    #[error("{0}")]
    PullRequest(String),
    /// Pull-request mode: a merged pull request's change is not on main as it was merged.
    #[error("{0}")]
    NotOnMain(String),
    /// Pull-request mode: a pull request waited too long for review.
    #[error("{0}")]
    Stale(String),
    /// The batch this credential was part of failed as a whole (the first credential of
    /// the batch carries the cause).
    #[error("{0}")]
    Batch(String),
    /// A record was asked for a change that does not apply where it stands (a bug in the
    /// run; the record was left as it was).
    #[error(transparent)]
    Transition(#[from] crate::journal::record::IllegalTransition),
    /// A single-user database login would be rotated without anything that restarts its
    /// consumers: nothing was minted.
    #[error(
        "{identity}: strategy single-user replaces the password in use at mint, before the cluster has the new one: consumers fail to log in until they run with the new value. Rotate it with --require-consumers-restarted (and consumers.restart: true, so the stage commit restarts them), or accept the gap with --allow-login-gap; the default strategy alternating-users has no gap"
    )]
    LoginGap {
        /// The identity (instance and login).
        identity: String,
    },
    /// A rotation cannot be rolled back (said with what to do instead).
    #[error("{0}")]
    Rollback(String),
    /// A file could not be written or removed.
    #[error("{path}: {source}")]
    Io {
        /// Repo-relative path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

impl EngineError {
    /// What makes this error the same for many credentials, so that a report says it
    /// once and points at it after that: `aws` for a source without credentials, `remote
    /// prod` for a remote the run could not reach. `None` for an error of its own.
    pub fn said_once_as(&self) -> Option<String> {
        match self {
            EngineError::Provider(ProviderError::NoCredentials { provider, .. }) => {
                Some(format!("no credentials for {provider}"))
            }
            EngineError::Publish(crate::gitops::PublishError::RemoteUnavailable {
                remote, ..
            }) => Some(format!("remote {remote} is unavailable")),
            _ => None,
        }
    }
}

impl From<crate::journal::store::StoreError> for EngineError {
    fn from(e: crate::journal::store::StoreError) -> Self {
        EngineError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

impl From<crate::journal::store::CommitError> for EngineError {
    fn from(e: crate::journal::store::CommitError) -> Self {
        match e {
            crate::journal::store::CommitError::Write(e) => e.into(),
            crate::journal::store::CommitError::Push(e) => EngineError::Publish(e),
        }
    }
}

/// Result alias.
pub type EngineResult<T> = Result<T, EngineError>;

fn as_text<S: Serializer>(e: &EngineError, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&e.to_string())
}

/// A failure of one credential (or of one of its clusters).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// What kind of step failed (it decides the exit code).
    pub phase: Phase,
    /// Which part of the run it happened in (stamped by the run's order).
    pub during: During,
    /// The credential source (`aws`, `azure`, `gcp`, `random`, a database, a plugin).
    pub source: String,
    /// The identity label the source keys belong to (an IAM user, an application, a service account).
    pub identity: String,
    /// The cluster, when the failure concerns one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// What went wrong (serialized as its message).
    #[serde(serialize_with = "as_text")]
    pub error: EngineError,
}

/// What a run did (or would do).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotateReport {
    /// The run's id (it names the run in claims, records and trailers).
    pub run: String,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// What failed, per credential (and cluster).
    pub failures: Vec<Failure>,
    /// The signal that interrupted the run, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
}

impl RotateReport {
    /// Done steps of `action`.
    pub fn count(&self, action: Action) -> usize {
        self.steps
            .iter()
            .filter(|s| s.done && s.action == action)
            .count()
    }

    /// The latest phase that failed, if any failed.
    pub fn worst_phase(&self) -> Option<Phase> {
        self.failures.iter().map(|f| f.phase).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_serialize_as_the_strings_of_earlier_versions() {
        for a in [
            Action::Stage,
            Action::Propose,
            Action::Publish,
            Action::Revoke,
            Action::Wait,
            Action::Skip,
            Action::Busy,
            Action::Cleanup,
            Action::Abandon,
            Action::Undo,
            Action::Delete,
            Action::Minted,
            Action::Interrupted,
            Action::Rollback,
        ] {
            assert_eq!(
                serde_json::to_value(a).unwrap(),
                serde_json::Value::String(a.as_str().into())
            );
        }
    }

    #[test]
    fn failures_serialize_their_message() {
        let f = Failure {
            phase: Phase::Mint,
            during: During::Stage,
            source: "aws".into(),
            identity: "1/u".into(),
            cluster: None,
            error: EngineError::MissingField {
                source_name: "aws".into(),
                field: "X".into(),
            },
        };
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["phase"], "mint");
        assert_eq!(v["during"], "stage");
        assert_eq!(
            v["error"],
            "aws returned no field X; check secret-manager/keyMappings"
        );
        assert!(v.get("cluster").is_none());
    }
}
