//! What a push asked for and what came back: leases (never a force), and telling a lost
//! race (fetch and retry) from a final refusal (a hook, a protected branch).

use super::types::Oid;

/// How a pushed ref may replace what the remote has. There is no "force".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lease {
    /// Plain push: only a fast-forward (or a new ref) is accepted.
    FastForward,
    /// Only if the ref does not exist on the remote (atomic create).
    Absent,
    /// Only if the ref is exactly at this commit on the remote (atomic compare-and-swap).
    At(Oid),
}

/// One ref update of [`super::git::Git::push_refs`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefUpdate {
    /// Commit to push; `None` deletes the ref.
    pub src: Option<Oid>,
    /// Full ref name on the remote.
    pub dst: String,
    /// What the remote ref must be for the update to apply.
    pub lease: Lease,
}

/// What happened to one ref of a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefOutcome {
    /// The remote took it (or already had it).
    Updated,
    /// Someone else moved the ref first (client-side `[rejected]`, or the server's
    /// compare-and-swap failed): fetch and try again.
    Lost(String),
    /// A hook or a permission refused it: final.
    Refused(String),
}

/// Porcelain lines of `git push --porcelain`: (flag, destination ref, summary).
pub(super) fn porcelain_lines(stdout: &str) -> Vec<(char, String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, '\t');
            let flag = parts.next()?.chars().next()?;
            let refs = parts.next()?;
            let summary = parts.next().unwrap_or_default();
            let to = refs.rsplit_once(':').map(|(_, t)| t)?;
            Some((flag, to.to_owned(), summary.to_owned()))
        })
        .collect()
}

/// Tells a lost race from a final refusal. Races: git's own `[rejected]` (non-fast-forward,
/// fetch first, stale info, already exists) and the server failing to lock or
/// compare-and-swap the ref because another push won. Everything else the server
/// rejects — hooks, protected branches, permissions — is final.
pub fn classify_rejection(summary: &str, stderr: &str) -> RefOutcome {
    let reason = summary
        .split_once('(')
        .map_or(summary, |(_, r)| r.trim_end_matches(')'))
        .trim()
        .to_owned();
    if summary.starts_with("[rejected]") {
        return RefOutcome::Lost(reason);
    }
    let lower = reason.to_ascii_lowercase();
    let raced = [
        "failed to update ref",
        "cannot lock ref",
        "failed to lock",
        "incorrect old value",
        "reference already exists",
        "stale info",
    ]
    .iter()
    .any(|p| lower.contains(p));
    if raced {
        return RefOutcome::Lost(reason);
    }
    // The server's own words (hook output arrives as `remote: ...` lines on stderr).
    let remote: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("remote: "))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    RefOutcome::Refused(if remote.is_empty() {
        reason
    } else {
        format!("{reason}: {}", remote.join("; "))
    })
}
