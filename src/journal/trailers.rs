//! The `Secret-Manager-*` trailer block: the one type the engine and gitops write and
//! `audit export` parses.
//!
//! A commit message may carry several blocks (a batch commit has one per rotation); each
//! block opens with `Secret-Manager-Action`. Keys are written in a fixed order so that a
//! block renders the same way every time, and parsing ignores keys it does not know (a
//! newer version may add some). Values never contain secrets: key ids, names, times.

use std::fmt;

/// What a commit (or one block of it) did.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrailerAction {
    /// New keys sealed into manifests and a record added.
    Stage,
    /// Pull-request mode: the change was proposed in a pull request.
    Propose,
    /// Cluster pointers received a staged change.
    Publish,
    /// An old key was deleted or disabled; the record closed (or marked disabled).
    Revoke,
    /// A disabled old key was deleted on a later run.
    DeleteDisabled,
    /// A deleted secret's key was kept because another manifest still uses it.
    RevokeSkipped,
    /// SealedSecret documents removed (the `delete` command's stage).
    DeleteSecret,
    /// A dead run's claim was released by a later run.
    Abandon,
    /// A key minted under a dead run's claim, never committed, was deleted.
    Cleanup,
    /// A run deleted its own new key again because staging it failed.
    Undo,
    /// A hot-fix for a cluster was merged back into main.
    MergeHotfix,
    /// A diverged cluster pointer was merged into main.
    Reconcile,
    /// `create` minted a credential and wrote a new SealedSecret (an audit-log event;
    /// the file itself is committed by whoever commits it).
    Create,
    /// `cluster promote` moved a pointer (an audit-log event: promotions add no commit
    /// to the pointer).
    Promote,
    /// A rotation was rolled back before its old key went: the old ciphertexts are back
    /// on main, and the rotation's new key is revoked once every cluster has them.
    Rollback,
    /// A value written by a version this one does not know.
    Other(String),
}

impl TrailerAction {
    /// The trailer value.
    pub fn as_str(&self) -> &str {
        match self {
            TrailerAction::Stage => "stage",
            TrailerAction::Propose => "propose",
            TrailerAction::Publish => "publish",
            TrailerAction::Revoke => "revoke",
            TrailerAction::DeleteDisabled => "delete-disabled",
            TrailerAction::RevokeSkipped => "revoke-skipped",
            TrailerAction::DeleteSecret => "delete",
            TrailerAction::Abandon => "abandon",
            TrailerAction::Cleanup => "cleanup",
            TrailerAction::Undo => "undo",
            TrailerAction::MergeHotfix => "merge-hotfix",
            TrailerAction::Reconcile => "reconcile",
            TrailerAction::Create => "create",
            TrailerAction::Promote => "promote",
            TrailerAction::Rollback => "rollback",
            TrailerAction::Other(s) => s,
        }
    }

    /// Parses a trailer value (unknown values are kept as [`TrailerAction::Other`]).
    pub fn parse(s: &str) -> TrailerAction {
        match s {
            "stage" => TrailerAction::Stage,
            "propose" => TrailerAction::Propose,
            "publish" => TrailerAction::Publish,
            "revoke" => TrailerAction::Revoke,
            "delete-disabled" => TrailerAction::DeleteDisabled,
            "revoke-skipped" => TrailerAction::RevokeSkipped,
            "delete" => TrailerAction::DeleteSecret,
            "abandon" => TrailerAction::Abandon,
            "cleanup" => TrailerAction::Cleanup,
            "undo" => TrailerAction::Undo,
            "merge-hotfix" => TrailerAction::MergeHotfix,
            "reconcile" => TrailerAction::Reconcile,
            "create" => TrailerAction::Create,
            "promote" => TrailerAction::Promote,
            "rollback" => TrailerAction::Rollback,
            other => TrailerAction::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for TrailerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One secret a block is about: `Secret-Manager-Secret: <cluster>/<ns>/<name> <file>#<doc>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretTrailer {
    /// Cluster id.
    pub cluster: String,
    /// Namespace (`-` when unknown).
    pub namespace: String,
    /// Name (`-` when unknown).
    pub name: String,
    /// Repo-relative file.
    pub file: String,
    /// Document index in the file.
    pub document: usize,
}

/// One `Secret-Manager-*` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailerBlock {
    /// `Secret-Manager-Action`.
    pub action: TrailerAction,
    /// `Secret-Manager-Rotation`: the record id.
    pub rotation: Option<String>,
    /// `Secret-Manager-Run`: the run that acted (or, for abandon/cleanup, the dead run).
    pub run: Option<String>,
    /// `Secret-Manager-Claimed`: when the run claimed the credential (RFC 3339).
    pub claimed: Option<String>,
    /// `Secret-Manager-Source`.
    pub source: Option<String>,
    /// `Secret-Manager-Identity`.
    pub identity: Option<String>,
    /// `Secret-Manager-Secret`, one per manifest.
    pub secrets: Vec<SecretTrailer>,
    /// `Secret-Manager-Cluster`, one per cluster.
    pub clusters: Vec<String>,
    /// `Secret-Manager-Old-Key`.
    pub old_key: Option<String>,
    /// `Secret-Manager-New-Key`.
    pub new_key: Option<String>,
    /// `Secret-Manager-Operator`: the cloud caller identity.
    pub operator: Option<String>,
    /// `Secret-Manager-Published: <cluster> <time>`.
    pub published: Vec<(String, String)>,
    /// `Secret-Manager-Reason`: one line of why (cleanup, abandon, kept keys).
    pub reason: Option<String>,
}

impl TrailerBlock {
    /// An empty block for `action`.
    pub fn new(action: TrailerAction) -> TrailerBlock {
        TrailerBlock {
            action,
            rotation: None,
            run: None,
            claimed: None,
            source: None,
            identity: None,
            secrets: Vec::new(),
            clusters: Vec::new(),
            old_key: None,
            new_key: None,
            operator: None,
            published: Vec::new(),
            reason: None,
        }
    }

    /// The block as trailer lines, each ending in a newline.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: &str| {
            // A value is one line: a newline would end the trailer and start another.
            let v: String = v
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            out.push_str(&format!("Secret-Manager-{k}: {}\n", v.trim()));
        };
        line("Action", self.action.as_str());
        let opt = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
        if let Some(v) = opt(&self.rotation) {
            line("Rotation", &v);
        }
        if let Some(v) = opt(&self.run) {
            line("Run", &v);
        }
        if let Some(v) = opt(&self.claimed) {
            line("Claimed", &v);
        }
        if let Some(v) = opt(&self.source) {
            line("Source", &v);
        }
        if let Some(v) = opt(&self.identity) {
            line("Identity", &v);
        }
        for s in &self.secrets {
            line(
                "Secret",
                &format!(
                    "{}/{}/{} {}#{}",
                    s.cluster, s.namespace, s.name, s.file, s.document
                ),
            );
        }
        for c in &self.clusters {
            line("Cluster", c);
        }
        if let Some(v) = opt(&self.old_key) {
            line("Old-Key", &v);
        }
        if let Some(v) = opt(&self.new_key) {
            line("New-Key", &v);
        }
        if let Some(v) = opt(&self.operator) {
            line("Operator", &v);
        }
        for (c, t) in &self.published {
            line("Published", &format!("{c} {t}"));
        }
        if let Some(v) = opt(&self.reason) {
            line("Reason", &v);
        }
        out
    }

    fn set(&mut self, key: &str, value: &str) {
        let v = || Some(value.to_owned());
        match key {
            "Rotation" => self.rotation = v(),
            "Run" => self.run = v(),
            "Claimed" => self.claimed = v(),
            "Source" => self.source = v(),
            "Identity" => self.identity = v(),
            "Secret" => self.secrets.push(parse_secret(value)),
            "Cluster" => self.clusters.push(value.to_owned()),
            "Old-Key" => self.old_key = v(),
            "New-Key" => self.new_key = v(),
            "Operator" => self.operator = v(),
            "Published" => {
                if let Some((c, t)) = value.split_once(' ') {
                    self.published.push((c.to_owned(), t.trim().to_owned()));
                }
            }
            "Reason" => self.reason = v(),
            _ => {}
        }
    }
}

fn parse_secret(value: &str) -> SecretTrailer {
    let (who, loc) = value.split_once(' ').unwrap_or((value, ""));
    let mut parts = who.splitn(3, '/');
    let (file, document) = match loc.rsplit_once('#') {
        Some((f, d)) => (f, d.parse().unwrap_or(0)),
        None => (loc, 0),
    };
    SecretTrailer {
        cluster: parts.next().unwrap_or_default().to_owned(),
        namespace: parts.next().unwrap_or_default().to_owned(),
        name: parts.next().unwrap_or_default().to_owned(),
        file: file.to_owned(),
        document,
    }
}

/// Every block of a commit message, in order. Lines that are not our trailers are
/// ignored; a block starts at each `Secret-Manager-Action`.
pub fn parse(message: &str) -> Vec<TrailerBlock> {
    let mut out: Vec<TrailerBlock> = Vec::new();
    for l in message.lines() {
        let Some((k, v)) = l
            .strip_prefix("Secret-Manager-")
            .and_then(|rest| rest.split_once(": "))
        else {
            continue;
        };
        let v = v.trim();
        if k == "Action" {
            out.push(TrailerBlock::new(TrailerAction::parse(v)));
        } else if let Some(b) = out.last_mut() {
            b.set(k, v);
        }
    }
    out
}

/// A commit message: `subject`, a blank line, then every block.
pub fn message(subject: &str, blocks: &[TrailerBlock]) -> String {
    let mut m = format!("{}\n\n", subject.trim());
    for b in blocks {
        m.push_str(&b.render());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> TrailerBlock {
        TrailerBlock {
            action: TrailerAction::Stage,
            rotation: Some("aws-20261121T120000Z-1a2b3c4d".into()),
            run: Some("20261121T120000Z-ab12cd".into()),
            claimed: Some("2026-11-21T12:00:00Z".into()),
            source: Some("aws".into()),
            identity: Some("123456789012/bot".into()),
            secrets: vec![
                SecretTrailer {
                    cluster: "aws.eu-central-1.dev1".into(),
                    namespace: "ns".into(),
                    name: "n".into(),
                    file: "a/b.yaml".into(),
                    document: 2,
                },
                SecretTrailer {
                    cluster: "aws.us-east-1.prod1".into(),
                    namespace: "-".into(),
                    name: "m".into(),
                    file: "c d/e.yaml".into(),
                    document: 0,
                },
            ],
            clusters: vec!["aws.eu-central-1.dev1".into(), "aws.us-east-1.prod1".into()],
            old_key: Some("AKIAOLD".into()),
            new_key: Some("AKIANEW".into()),
            operator: Some("arn:aws:sts::123456789012:assumed-role/r/s".into()),
            published: vec![(
                "aws.eu-central-1.dev1".into(),
                "2026-11-21T12:00:05Z".into(),
            )],
            reason: Some("why".into()),
        }
    }

    #[test]
    fn a_block_round_trips() {
        let b = full();
        let parsed = parse(&message("subject", std::slice::from_ref(&b)));
        assert_eq!(parsed, vec![b]);
    }

    #[test]
    fn several_blocks_and_foreign_lines() {
        let mut second = TrailerBlock::new(TrailerAction::Revoke);
        second.old_key = Some("K3".into());
        let mut m = message("batch", &[full(), second.clone()]);
        m.push_str("Signed-off-by: someone\nSecret-Manager-Unknown: x\n");
        let parsed = parse(&m);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0], full());
        assert_eq!(parsed[1], second);
        // An action this version does not know survives as Other.
        let p = parse("x\n\nSecret-Manager-Action: future-thing\nSecret-Manager-Source: aws\n");
        assert_eq!(p[0].action, TrailerAction::Other("future-thing".into()));
        assert_eq!(p[0].source.as_deref(), Some("aws"));
    }

    #[test]
    fn values_stay_on_one_line() {
        let mut b = TrailerBlock::new(TrailerAction::Cleanup);
        b.reason = Some("line one\nSecret-Manager-Action: stage".into());
        let parsed = parse(&b.render());
        assert_eq!(
            parsed.len(),
            1,
            "a newline in a value must not open a block"
        );
        assert!(parsed[0].reason.as_deref().unwrap().contains("line one"));
    }

    #[test]
    fn every_action_round_trips_as_text() {
        for a in [
            TrailerAction::Stage,
            TrailerAction::Propose,
            TrailerAction::Publish,
            TrailerAction::Revoke,
            TrailerAction::DeleteDisabled,
            TrailerAction::RevokeSkipped,
            TrailerAction::DeleteSecret,
            TrailerAction::Abandon,
            TrailerAction::Cleanup,
            TrailerAction::Undo,
            TrailerAction::MergeHotfix,
            TrailerAction::Reconcile,
        ] {
            assert_eq!(TrailerAction::parse(a.as_str()), a);
        }
    }
}
