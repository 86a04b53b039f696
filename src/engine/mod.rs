//! The three-phase rotation engine (DESIGN §7): `due → staged → published → revoked`.
//!
//! Every run is a closed loop: it first advances rotations already recorded in git
//! (publish what is staged, revoke what is published and past its gates), cleans up keys
//! minted by a run that died before committing them, and then stages new rotations for the
//! selected secrets. All commits are made in a temporary worktree at the remote main; the
//! user's checkout is never touched.
//!
//! Safety rules, in order of importance:
//! * an old key is revoked only after every cluster's pointer contains the new ciphertext
//!   and the grace period has passed;
//! * a key minted but never committed is recorded as a local intent first, so the next run
//!   can find and delete it;
//! * one rotation in flight per credential: a record blocks a second one;
//! * a failure in one credential does not stop the others.

pub mod record;

use crate::annotations::{CREATE_DATE, SEALED_WITH, key_id_annotation};
use crate::config::RevokeMode;
use crate::gitops::git::{Git, GitError};
use crate::gitops::{Fleet, PublishError};
use crate::keys::identity_label;
use crate::list::{Filter, State, state_of};
use crate::manifest::edit::{Edit, apply, write_atomic};
use crate::provider::{KeyId, Minted, Provider, RetryPolicy, Revoke, Target};
use crate::providers::Providers;
use crate::scan::{Attribution, Found};
use crate::seal::{SealingCert, label, seal_value};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use record::{RecordManifest, RotationRecord, load_records};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Unreferenced keys younger than this are never treated as orphans: they may belong to a
/// run that is still between mint and commit.
pub const ORPHAN_MIN_AGE: chrono::Duration = chrono::Duration::hours(1);

/// The phase a failure happened in (drives the exit code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Checks before anything changed.
    Preflight,
    /// Minting, verifying, sealing or committing the new key.
    Mint,
    /// Moving cluster pointers.
    Publish,
    /// Deleting the old key.
    Revoke,
}

/// Errors that stop the whole run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Configuration problem.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Git problem before any rotation could start.
    #[error(transparent)]
    Git(#[from] GitError),
    /// Publishing machinery problem before any rotation could start.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// Called after every step (for progress displays), and with `minted` progress events
/// that are not in the report while a batch's provider calls run; must be cheap.
pub type StepObserver = std::sync::Arc<dyn Fn(&Step) + Send + Sync>;

/// Settings of one run.
#[derive(Clone)]
pub struct RotateOptions {
    /// Which secrets.
    pub filter: Filter,
    /// Grace period between publish and revoke.
    pub revoke_after: chrono::Duration,
    /// Delete or disable old keys.
    pub revoke_mode: RevokeMode,
    /// Plan only.
    pub dry_run: bool,
    /// Delete the selected SealedSecrets (and then their keys) instead of rotating.
    pub delete: bool,
    /// The reference time.
    pub now: DateTime<Utc>,
    /// Gate: revoke only when each cluster's SealedSecret shows the new key id with
    /// `Synced=True` at its current generation (checked with kubectl).
    pub require_synced: bool,
    /// Gate: revoke only when the source reports no use of the old key since publish.
    pub require_old_key_unused: bool,
    /// Credentials whose provider calls run at once (at least 1).
    pub concurrency: usize,
    /// Progress callback.
    pub observer: Option<StepObserver>,
}

/// Default of `--concurrency`.
pub const DEFAULT_CONCURRENCY: usize = 8;

impl std::fmt::Debug for RotateOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotateOptions")
            .field("filter", &self.filter)
            .field("revoke_after", &self.revoke_after)
            .field("dry_run", &self.dry_run)
            .field("delete", &self.delete)
            .finish_non_exhaustive()
    }
}

/// One line of the plan or the summary.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// `stage`, `publish`, `revoke`, `wait`, `skip`, `cleanup`.
    pub action: String,
    /// Source.
    pub source: String,
    /// Identity label.
    pub identity: String,
    /// Key being replaced.
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
}

/// A failure of one credential.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// Phase.
    pub phase: Phase,
    /// Source.
    pub source: String,
    /// Identity.
    pub identity: String,
    /// Error text (never contains secret values).
    pub error: String,
}

/// What a run did (or would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RotateReport {
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Failures, one per credential.
    pub failures: Vec<Failure>,
}

/// A credential to rotate: one identity's current key and every manifest holding it.
struct Group<'a> {
    source: String,
    identity: String,
    target: Target,
    old_key: String,
    manifests: Vec<&'a Found>,
    expanded: bool,
}

fn ts(d: DateTime<Utc>) -> String {
    d.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Local intents (`<git-common-dir>/secret-manager/intents`): written before minting,
/// removed once the new key is committed. Never committed, never secret.
#[derive(Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Intent {
    source: String,
    identity: String,
    params: BTreeMap<String, String>,
    started_at: DateTime<Utc>,
}

fn intents_dir(git: &Git) -> Result<PathBuf, GitError> {
    let common = git.run(&["rev-parse", "--path-format=absolute", "--git-common-dir"])?;
    Ok(PathBuf::from(common.trim()).join("secret-manager/intents"))
}

struct Ctx<'a> {
    user: &'a Git,
    fleet: Fleet<'a>,
    wt: Git,
    providers: &'a Providers,
    opts: &'a RotateOptions,
    prefix: String,
    certs: BTreeMap<String, Result<SealingCert, String>>,
    report: RotateReport,
    policy: RetryPolicy,
}

impl Ctx<'_> {
    fn fail(&mut self, phase: Phase, source: &str, identity: &str, error: impl std::fmt::Display) {
        tracing::error!(phase = ?phase, source, identity, error = %error, "rotation failed");
        self.report.failures.push(Failure {
            phase,
            source: source.into(),
            identity: identity.into(),
            error: error.to_string(),
        });
    }

    fn step(&mut self, s: Step) {
        if let Some(o) = &self.opts.observer {
            o(&s);
        }
        tracing::info!(action = %s.action, source = %s.source, identity = %s.identity, done = s.done, detail = %s.detail, "step");
        self.report.steps.push(s);
    }

    /// Commits `paths` in the worktree and pushes main, rebasing on a concurrent writer.
    fn commit_and_push(&self, paths: &[String], message: &str) -> Result<String, PublishError> {
        let commit = self.wt.commit_paths(paths, message)?;
        let wt = &self.wt;
        self.fleet.push_main_with_retry(commit, |new_main| {
            // Replay our commit on top of what the other writer pushed.
            if let Err(e) = wt.run(&["rebase", "--quiet", new_main]) {
                // Leave the worktree usable: a conflicting concurrent change is reported,
                // never half-applied.
                let _ = wt.run(&["rebase", "--abort"]);
                return Err(e.into());
            }
            Ok(wt.resolve("HEAD")?.expect("HEAD after rebase"))
        })
    }

    async fn cert(&mut self, repo: &crate::Repo, cluster: &str) -> Result<SealingCert, String> {
        if !self.certs.contains_key(cluster) {
            let c = repo
                .sealing_cert(cluster, self.opts.now)
                .await
                .map_err(|e| e.to_string());
            self.certs.insert(cluster.to_owned(), c);
        }
        self.certs[cluster].clone()
    }
}

fn trailers(action: &str, rec: &RotationRecord) -> String {
    let mut t = format!(
        "Secret-Manager-Action: {action}\nSecret-Manager-Rotation: {}\nSecret-Manager-Source: {}\nSecret-Manager-Identity: {}\n",
        rec.id, rec.source, rec.identity
    );
    for m in &rec.manifests {
        t.push_str(&format!(
            "Secret-Manager-Secret: {}/{} {}#{}\n",
            m.cluster, m.secret, m.file, m.document
        ));
    }
    for c in rec.clusters() {
        t.push_str(&format!("Secret-Manager-Cluster: {c}\n"));
    }
    t.push_str(&format!(
        "Secret-Manager-Old-Key: {}\nSecret-Manager-New-Key: {}\n",
        rec.old_key_id, rec.new_key_id
    ));
    if let Some(op) = &rec.operator {
        t.push_str(&format!("Secret-Manager-Operator: {op}\n"));
    }
    t
}

fn target_of(rec: &RotationRecord) -> Target {
    let mut referenced = vec![KeyId(rec.old_key_id.clone())];
    if !rec.new_key_id.is_empty() {
        referenced.push(KeyId(rec.new_key_id.clone()));
    }
    Target {
        source: rec.source.clone(),
        params: rec.params.clone(),
        current_key: (!rec.new_key_id.is_empty()).then(|| KeyId(rec.new_key_id.clone())),
        referenced,
    }
}

/// Manifests on main that still hold `key` of the record's identity.
fn still_referenced(ctx: &Ctx<'_>, rec: &RotationRecord) -> Vec<String> {
    let Ok(repo) = crate::Repo::open(ctx.wt.dir()) else {
        return vec![];
    };
    repo.scan()
        .secrets
        .iter()
        .filter(|f| {
            f.managed.as_ref().is_some_and(|m| {
                m.source == rec.source
                    && m.key_id.as_deref() == Some(rec.old_key_id.as_str())
                    && identity_label(&m.source, &m.params()) == rec.identity
            })
        })
        .map(|f| format!("{}:{}", f.file.display(), f.doc.line))
        .collect()
}

/// Runs one closed-loop pass over the repo cloned at `clone`.
pub async fn rotate(
    clone: &Path,
    providers: &Providers,
    opts: &RotateOptions,
) -> Result<RotateReport, EngineError> {
    let repo = crate::Repo::open(clone)?;
    let user = Git::new(clone);
    let fleet = Fleet::new(&repo);
    fleet.fetch()?;
    let main = fleet.main_tracking();
    let worktree = user.temp_worktree(&main)?;
    let wt_repo = crate::Repo::open(worktree.git.dir())?;
    let mut ctx = Ctx {
        user: &user,
        fleet,
        wt: worktree.git.clone(),
        providers,
        opts,
        prefix: wt_repo.config.annotation_prefix.clone(),
        certs: BTreeMap::new(),
        report: RotateReport::default(),
        policy: RetryPolicy::default(),
    };
    let records = load_records(worktree.git.dir())?;
    cleanup_orphans(&mut ctx, &wt_repo, &records).await;
    advance_batch(&mut ctx, records.clone()).await;
    if opts.delete {
        delete_selected(&mut ctx, &wt_repo, &records).await;
    } else {
        stage_new(&mut ctx, &wt_repo, &records).await;
    }
    Ok(ctx.report)
}

/// Phase 0: keys minted by a run that died before committing them.
async fn cleanup_orphans(ctx: &mut Ctx<'_>, repo: &crate::Repo, records: &[RotationRecord]) {
    let Ok(dir) = intents_dir(ctx.user) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let report = repo.scan();
    for e in entries.flatten() {
        let path = e.path();
        let Ok(intent) = std::fs::read_to_string(&path)
            .map_err(drop)
            .and_then(|s| serde_json::from_str::<Intent>(&s).map_err(drop))
        else {
            continue;
        };
        let mut referenced: BTreeSet<String> = report
            .secrets
            .iter()
            .filter_map(|f| f.managed.as_ref())
            .filter(|m| {
                m.source == intent.source
                    && identity_label(&m.source, &m.params()) == intent.identity
            })
            .filter_map(|m| m.key_id.clone())
            .collect();
        for r in records
            .iter()
            .filter(|r| r.source == intent.source && r.identity == intent.identity)
        {
            referenced.insert(r.old_key_id.clone());
            referenced.insert(r.new_key_id.clone());
        }
        let target = Target {
            source: intent.source.clone(),
            params: intent.params.clone(),
            current_key: None,
            referenced: referenced.iter().cloned().map(KeyId).collect(),
        };
        let orphans: Vec<KeyId> = match ctx.providers.get(&intent.source).await {
            Ok(p) => match ctx.policy.run("keys", || p.keys(&target)).await {
                Ok(keys) => keys
                    .into_iter()
                    .filter(|k| !referenced.contains(&k.id.0))
                    .filter(|k| {
                        k.created
                            .is_none_or(|c| c >= intent.started_at - chrono::Duration::minutes(5))
                    })
                    .map(|k| k.id)
                    .collect(),
                Err(e) => {
                    ctx.fail(
                        Phase::Preflight,
                        &intent.source,
                        &intent.identity,
                        format!("orphan check: {e}"),
                    );
                    continue;
                }
            },
            Err(e) => {
                ctx.fail(Phase::Preflight, &intent.source, &intent.identity, e);
                continue;
            }
        };
        let mut all_ok = true;
        for k in &orphans {
            let done = if ctx.opts.dry_run {
                false
            } else {
                let p = ctx
                    .providers
                    .get(&intent.source)
                    .await
                    .expect("loaded above");
                match ctx
                    .policy
                    .run("revoke", || p.revoke(&target, k, Revoke::Delete))
                    .await
                {
                    Ok(()) => true,
                    Err(e) => {
                        all_ok = false;
                        ctx.fail(
                            Phase::Revoke,
                            &intent.source,
                            &intent.identity,
                            format!("orphan {k}: {e}"),
                        );
                        false
                    }
                }
            };
            ctx.step(Step {
                action: "cleanup".into(),
                source: intent.source.clone(),
                identity: intent.identity.clone(),
                old_key_id: Some(k.0.clone()),
                new_key_id: None,
                clusters: vec![],
                files: vec![],
                detail: "delete a key minted by an interrupted run and never committed".into(),
                done,
            });
        }
        if all_ok && !ctx.opts.dry_run {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The staging commit of every record file on main, in one `git log` (a per-record
/// lookup costs a git process and a history walk each — seconds for a thousand records).
fn staging_commits(wt: &Git) -> Result<BTreeMap<String, String>, String> {
    let out = wt
        .run(&[
            "log",
            "--first-parent",
            "--diff-filter=A",
            "--format=%x1e%H",
            "--name-only",
            "--",
            record::RECORDS_DIR,
        ])
        .map_err(|e| format!("cannot list the staging commits of the rotation records: {e}"))?;
    let mut map = BTreeMap::new();
    for entry in out.split('\x1e').filter(|e| !e.trim().is_empty()) {
        let mut lines = entry.lines().map(str::trim).filter(|l| !l.is_empty());
        let Some(sha) = lines.next() else { continue };
        for path in lines {
            // Newest first: the most recent commit that added the path wins.
            map.entry(path.to_owned()).or_insert_with(|| sha.to_owned());
        }
    }
    Ok(map)
}

fn rec_step(
    rec: &RotationRecord,
    action: &str,
    clusters: Vec<String>,
    detail: String,
    done: bool,
) -> Step {
    Step {
        action: action.into(),
        source: rec.source.clone(),
        identity: rec.identity.clone(),
        old_key_id: Some(rec.old_key_id.clone()),
        new_key_id: (!rec.new_key_id.is_empty()).then(|| rec.new_key_id.clone()),
        clusters,
        files: rec.manifests.iter().map(|m| m.file.clone()).collect(),
        detail,
        done,
    }
}

/// A commit message for several records: a summary line, then each record's trailer
/// block (each starts with `Secret-Manager-Action`, which is how audit splits them).
fn batch_message(summary: &str, blocks: &[String]) -> String {
    format!("{summary}\n\n{}", blocks.concat())
}

fn published_lines(rec: &RotationRecord, clusters: &[String]) -> String {
    clusters
        .iter()
        .filter_map(|c| rec.published_at.get(c).map(|t| (c, t)))
        .map(|(c, t)| format!("Secret-Manager-Published: {c} {}\n", ts(*t)))
        .collect()
}

/// Advances every record as one batch: one pointer move per cluster and distinct staging
/// commit, one commit per phase, provider calls `concurrency` at a time. In a dry run it
/// only reports what it would do.
async fn advance_batch(ctx: &mut Ctx<'_>, mut batch: Vec<RotationRecord>) {
    if batch.is_empty() {
        return;
    }
    let now = ctx.opts.now;
    // Publish: per cluster, each distinct staging commit once (a batch staged together
    // shares one commit, so one pointer move per cluster).
    let mut blocked = vec![false; batch.len()];
    let mut by_cluster: BTreeMap<String, Vec<(String, usize)>> = BTreeMap::new();
    let mut commits: Option<Result<BTreeMap<String, String>, String>> = None;
    for (i, rec) in batch.iter().enumerate() {
        let pending: Vec<String> = rec
            .clusters()
            .into_iter()
            .filter(|c| !rec.published_at.contains_key(c))
            .collect();
        if pending.is_empty() {
            continue;
        }
        let found = match commits.get_or_insert_with(|| staging_commits(&ctx.wt)) {
            Ok(map) => map
                .get(&rec.path())
                .cloned()
                .ok_or_else(|| format!("cannot find the staging commit of {}", rec.path())),
            Err(e) => Err(e.clone()),
        };
        match found {
            Ok(sha) if ctx.opts.dry_run => {
                blocked[i] = true;
                let s = rec_step(
                    rec,
                    "publish",
                    pending,
                    format!("move the pointers to include {}", &sha[..12]),
                    false,
                );
                ctx.step(s);
            }
            Ok(sha) => {
                for c in pending {
                    by_cluster.entry(c).or_default().push((sha.clone(), i));
                }
            }
            Err(e) => {
                blocked[i] = true;
                ctx.fail(Phase::Publish, &rec.source, &rec.identity, e);
            }
        }
    }
    let mut newly: Vec<Vec<(String, String)>> = vec![Vec::new(); batch.len()];
    for (c, list) in &by_cluster {
        let mut commits: Vec<&String> = Vec::new();
        for (sha, _) in list {
            if !commits.contains(&sha) {
                commits.push(sha);
            }
        }
        for sha in commits {
            let members: Vec<usize> = list
                .iter()
                .filter(|(s, _)| s == sha)
                .map(|(_, i)| *i)
                .collect();
            match ctx.fleet.publish(c, sha) {
                Ok(out) => {
                    let detail = format!("{:?} {} -> {}", out.mode, &out.from[..12], &out.to[..12]);
                    for i in members {
                        batch[i].published_at.insert(c.clone(), now);
                        newly[i].push((c.clone(), detail.clone()));
                    }
                }
                Err(e) => {
                    for i in members {
                        blocked[i] = true;
                        let r = &batch[i];
                        ctx.fail(
                            Phase::Publish,
                            &r.source,
                            &r.identity,
                            format!("cluster {c}: {e}"),
                        );
                    }
                }
            }
        }
    }
    crate::failpoint("after-publish");
    // Record the publications in one commit.
    let changed: Vec<usize> = (0..batch.len()).filter(|i| !newly[*i].is_empty()).collect();
    if !changed.is_empty() {
        let mut paths = Vec::new();
        let mut blocks = Vec::new();
        let mut clusters = BTreeSet::new();
        for &i in &changed {
            let rec = &batch[i];
            if let Err(e) = std::fs::write(ctx.wt.dir().join(rec.path()), rec.to_yaml()) {
                let _ = ctx.wt.run(&["reset", "--quiet", "--hard", "HEAD"]);
                for &j in &changed {
                    ctx.fail(Phase::Publish, &batch[j].source, &batch[j].identity, &e);
                }
                return;
            }
            let names: Vec<String> = newly[i].iter().map(|(c, _)| c.clone()).collect();
            blocks.push(format!(
                "{}{}",
                trailers("publish", rec),
                published_lines(rec, &names)
            ));
            clusters.extend(names);
            paths.push(rec.path());
        }
        let clusters: Vec<String> = clusters.into_iter().collect();
        let msg = if changed.len() == 1 {
            format!(
                "secret-manager: published rotation {} to {}\n\n{}",
                batch[changed[0]].id,
                clusters.join(", "),
                blocks[0]
            )
        } else {
            batch_message(
                &format!(
                    "secret-manager: published {} rotations to {}",
                    changed.len(),
                    clusters.join(", ")
                ),
                &blocks,
            )
        };
        if let Err(e) = ctx.commit_and_push(&paths, &msg) {
            for &i in &changed {
                ctx.fail(Phase::Publish, &batch[i].source, &batch[i].identity, &e);
            }
            return;
        }
        for &i in &changed {
            for (c, detail) in &newly[i] {
                let s = rec_step(&batch[i], "publish", vec![c.clone()], detail.clone(), true);
                ctx.step(s);
            }
        }
    }
    // Revoke: gates per record, provider calls in parallel, one commit.
    let how = match ctx.opts.revoke_mode {
        RevokeMode::Delete => Revoke::Delete,
        RevokeMode::Disable => Revoke::Disable,
    };
    let mut due = Vec::new();
    let mut kept: Vec<(usize, Vec<String>)> = Vec::new();
    for (i, rec) in batch.iter().enumerate() {
        if blocked[i] || !rec.fully_published() {
            continue;
        }
        let last = rec
            .published_at
            .values()
            .max()
            .copied()
            .unwrap_or(rec.staged_at);
        let after = last + ctx.opts.revoke_after;
        if now < after {
            let s = rec_step(
                rec,
                "wait",
                rec.clusters(),
                format!("grace period: revoke the old key after {}", ts(after)),
                false,
            );
            ctx.step(s);
            continue;
        }
        if let Some(reason) = gates_closed(ctx, rec, last).await {
            let s = rec_step(rec, "wait", rec.clusters(), reason, false);
            ctx.step(s);
            continue;
        }
        if ctx.opts.dry_run {
            let verb = match how {
                Revoke::Delete => "delete",
                Revoke::Disable => "disable",
            };
            let s = rec_step(
                rec,
                "revoke",
                rec.clusters(),
                format!("{verb} the old key"),
                false,
            );
            ctx.step(s);
            continue;
        }
        if rec.is_delete() {
            // Other manifests still use the key: keep it, close the record.
            let users = still_referenced(ctx, rec);
            if !users.is_empty() {
                kept.push((i, users));
                continue;
            }
        }
        due.push(i);
    }
    if due.is_empty() && kept.is_empty() {
        return;
    }
    let (providers, policy) = (ctx.providers, ctx.policy);
    let results: Vec<(usize, Result<(), String>)> = futures::stream::iter(due)
        .map(|i| {
            let rec = &batch[i];
            async move {
                let result = match providers.get(&rec.source).await {
                    Ok(p) => {
                        let target = target_of(rec);
                        let old = KeyId(rec.old_key_id.clone());
                        policy
                            .run("revoke", || p.revoke(&target, &old, how))
                            .await
                            .map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                };
                (i, result)
            }
        })
        .buffered(ctx.opts.concurrency.max(1))
        .collect()
        .await;
    let mut revoked = Vec::new();
    for (i, r) in results {
        match r {
            Ok(()) => revoked.push(i),
            Err(e) => ctx.fail(Phase::Revoke, &batch[i].source, &batch[i].identity, e),
        }
    }
    if revoked.is_empty() && kept.is_empty() {
        return;
    }
    crate::failpoint("after-revoke");
    let mut paths = Vec::new();
    let mut blocks = Vec::new();
    for &i in &revoked {
        let rec = &batch[i];
        let _ = std::fs::remove_file(ctx.wt.dir().join(rec.path()));
        paths.push(rec.path());
        blocks.push(format!(
            "{}{}",
            trailers("revoke", rec),
            published_lines(rec, &rec.clusters())
        ));
    }
    for (i, _) in &kept {
        let rec = &batch[*i];
        let _ = std::fs::remove_file(ctx.wt.dir().join(rec.path()));
        paths.push(rec.path());
        blocks.push(trailers("revoke-skipped", rec));
    }
    let msg = match (revoked.as_slice(), kept.as_slice()) {
        ([i], []) => {
            let rec = &batch[*i];
            format!(
                "secret-manager: revoked {} key of {} ({})\n\n{}",
                if rec.is_delete() {
                    "the deleted secret's"
                } else {
                    "old"
                },
                rec.identity,
                rec.source,
                blocks[0]
            )
        }
        ([], [(i, _)]) => format!(
            "secret-manager: deleted {} (key kept: still used)\n\n{}",
            batch[*i].identity, blocks[0]
        ),
        _ => {
            let mut parts = Vec::new();
            if !revoked.is_empty() {
                parts.push(format!(
                    "revoked the old keys of {} rotations",
                    revoked.len()
                ));
            }
            if !kept.is_empty() {
                parts.push(format!(
                    "kept {} still-used key(s) of deleted secrets",
                    kept.len()
                ));
            }
            batch_message(&format!("secret-manager: {}", parts.join(" and ")), &blocks)
        }
    };
    let verb = if how == Revoke::Delete {
        "deleted"
    } else {
        "disabled"
    };
    match ctx.commit_and_push(&paths, &msg) {
        Ok(_) => {
            for &i in &revoked {
                let rec = &batch[i];
                let s = rec_step(
                    rec,
                    "revoke",
                    rec.clusters(),
                    format!("{verb} old key {}", rec.old_key_id),
                    true,
                );
                ctx.step(s);
            }
            for (i, users) in &kept {
                let rec = &batch[*i];
                let s = rec_step(
                    rec,
                    "skip",
                    rec.clusters(),
                    format!("old key kept: still used by {}", users.join(", ")),
                    true,
                );
                ctx.step(s);
            }
        }
        // The keys are revoked; the records stay and the next run revokes again
        // (idempotent) and retries the commit.
        Err(e) => {
            let _ = ctx.wt.run(&["reset", "--quiet", "--hard", "HEAD"]);
            for &i in &revoked {
                ctx.fail(
                    Phase::Revoke,
                    &batch[i].source,
                    &batch[i].identity,
                    format!("old key revoked, but recording it failed: {e}"),
                );
            }
            for (i, _) in &kept {
                ctx.fail(Phase::Revoke, &batch[*i].source, &batch[*i].identity, &e);
            }
        }
    }
}

/// The plan line of a credential.
fn plan_step(ctx: &Ctx<'_>, g: &Group<'_>, clusters: &[String]) -> Step {
    let files: Vec<String> = g
        .manifests
        .iter()
        .map(|f| f.file.display().to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    Step {
        action: "stage".into(),
        source: g.source.clone(),
        identity: g.identity.clone(),
        old_key_id: Some(g.old_key.clone()),
        new_key_id: None,
        clusters: clusters.to_vec(),
        files,
        detail: format!(
            "mint a new key, seal it into {} manifest(s){}, publish to {}, then revoke the old key after {}",
            g.manifests.len(),
            if g.expanded {
                " (expanded: every manifest holding this key)"
            } else {
                ""
            },
            clusters.join(", "),
            humantime::format_duration(ctx.opts.revoke_after.to_std().unwrap_or_default())
        ),
        done: false,
    }
}

/// A credential after its provider work: the new key (verified) and its local intent.
struct Prepared<'a> {
    g: Group<'a>,
    p: Arc<dyn Provider>,
    clusters: Vec<String>,
    cleanup: Vec<Step>,
    result: Result<(Minted, PathBuf), (Phase, String)>,
}

/// Provider work of one credential, run `concurrency` at a time: preflight, local intent,
/// cleanup of orphans an interrupted run left at the source, mint, verify.
async fn prepare<'a>(
    g: Group<'a>,
    p: Arc<dyn Provider>,
    clusters: Vec<String>,
    opts: &RotateOptions,
    policy: RetryPolicy,
    dir: &Path,
) -> Prepared<'a> {
    let now = opts.now;
    let mut cleanup = Vec::new();
    let result = async {
        policy
            .run("preflight", || p.preflight(&g.target))
            .await
            .map_err(|e| (Phase::Preflight, e.to_string()))?;
        // Intent before mint: if we die between mint and commit, the next run cleans up.
        // Per credential, not per identity: two keys of one identity (two manifests that
        // drifted apart) may be minted in the same batch.
        let id = format!(
            "{}-{}",
            g.source,
            crate::seal::fingerprint_hex(format!("{}\n{}", g.identity, g.old_key).as_bytes())
        );
        let intent_path = dir.join(format!("{id}.json"));
        let intent = Intent {
            source: g.source.clone(),
            identity: g.identity.clone(),
            params: g.target.params.clone(),
            started_at: now.min(Utc::now()),
        };
        std::fs::write(
            &intent_path,
            serde_json::to_vec(&intent).expect("serializable"),
        )
        .map_err(|e| (Phase::Mint, format!("cannot write the local intent: {e}")))?;
        // Orphans seen from the provider: a pod that died between mint and commit leaves
        // no local intent behind (CronJob pods clone fresh). A key of this identity that
        // nothing references, created after the manifests' current key and more than
        // ORPHAN_MIN_AGE ago, can only come from such an attempt. (Younger ones may belong
        // to a run still in progress elsewhere and are left alone; on AWS they then block
        // the second key slot until they are old enough, with a clear KeyLimit error.)
        // "Never used" is no signal: verify itself uses the new key.
        let current_created = g
            .manifests
            .iter()
            .filter_map(|f| f.managed.as_ref()?.create_date()?.ok())
            .max();
        if let (Some(since), Ok(keys)) = (
            current_created,
            policy.run("keys", || p.keys(&g.target)).await,
        ) {
            for k in keys {
                let orphan = !g.target.referenced.contains(&k.id)
                    && k.created
                        .is_some_and(|c| c > since && now - c >= ORPHAN_MIN_AGE);
                if !orphan {
                    continue;
                }
                let done = policy
                    .run("revoke", || p.revoke(&g.target, &k.id, Revoke::Delete))
                    .await
                    .is_ok();
                cleanup.push(Step {
                    action: "cleanup".into(),
                    source: g.source.clone(),
                    identity: g.identity.clone(),
                    old_key_id: Some(k.id.0.clone()),
                    new_key_id: None,
                    clusters: clusters.clone(),
                    files: vec![],
                    detail: "delete an unreferenced key left by an interrupted rotation".into(),
                    done,
                });
            }
        }
        crate::failpoint("before-mint");
        let minted = match p.mint(&g.target).await {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_file(&intent_path);
                return Err((Phase::Mint, e.to_string()));
            }
        };
        crate::failpoint("after-mint");
        if let Err(e) = p.verify(&minted).await {
            // Not in git: nothing references the new key. Delete it now.
            if policy
                .run("revoke", || {
                    p.revoke(&g.target, &minted.key_id, Revoke::Delete)
                })
                .await
                .is_ok()
            {
                let _ = std::fs::remove_file(&intent_path);
            }
            return Err((Phase::Mint, format!("the new key does not work: {e}")));
        }
        // Progress only (not part of the report): the batch's steps come after its commit.
        if let Some(o) = &opts.observer {
            o(&Step {
                action: "minted".into(),
                source: g.source.clone(),
                identity: g.identity.clone(),
                old_key_id: Some(g.old_key.clone()),
                new_key_id: Some(minted.key_id.0.clone()),
                clusters: clusters.clone(),
                files: vec![],
                detail: "new key minted and verified".into(),
                done: true,
            });
        }
        Ok((minted, intent_path))
    }
    .await;
    Prepared {
        g,
        p,
        clusters,
        cleanup,
        result,
    }
}

/// A credential sealed and written, waiting for the batch commit.
struct Staged {
    rec: RotationRecord,
    intent: PathBuf,
    plan: Step,
    p: Arc<dyn Provider>,
    target: Target,
}

/// Phase 1 for every selected credential without a rotation in flight: provider work in
/// parallel, sealing and editing in order, one commit and push for all, then publish and
/// revoke as a batch.
async fn stage_new(ctx: &mut Ctx<'_>, repo: &crate::Repo, records: &[RotationRecord]) {
    let report = repo.scan();
    let groups = plan_groups(ctx, &report.secrets, records);
    // Preflight without side effects: provider, certificates.
    let mut ready = Vec::new();
    for g in groups {
        let clusters = clusters_of(&g);
        let p: Arc<dyn Provider> = match ctx.providers.get(&g.source).await {
            Ok(p) => p,
            Err(e) => {
                ctx.fail(Phase::Preflight, &g.source, &g.identity, e);
                continue;
            }
        };
        let mut cert_error = None;
        for c in &clusters {
            if let Err(e) = ctx.cert(repo, c).await {
                cert_error = Some(e);
                break;
            }
        }
        if let Some(e) = cert_error {
            ctx.fail(Phase::Preflight, &g.source, &g.identity, e);
            continue;
        }
        if ctx.opts.dry_run {
            let s = plan_step(ctx, &g, &clusters);
            ctx.step(s);
            continue;
        }
        ready.push((g, p, clusters));
    }
    if ready.is_empty() {
        return;
    }
    let dir = match intents_dir(ctx.user) {
        Ok(d) => d,
        Err(e) => {
            for (g, _, _) in &ready {
                ctx.fail(Phase::Mint, &g.source, &g.identity, &e);
            }
            return;
        }
    };
    let _ = std::fs::create_dir_all(&dir);
    let (policy, opts) = (ctx.policy, ctx.opts);
    let prepared: Vec<Prepared<'_>> = futures::stream::iter(ready)
        .map(|(g, p, clusters)| prepare(g, p, clusters, opts, policy, &dir))
        .buffered(ctx.opts.concurrency.max(1))
        .collect()
        .await;
    // Seal and edit, credential by credential (several may share a file).
    let mut staged: Vec<Staged> = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    for pr in prepared {
        for s in pr.cleanup {
            ctx.step(s);
        }
        let (minted, intent) = match pr.result {
            Ok(x) => x,
            Err((phase, e)) => {
                ctx.fail(phase, &pr.g.source, &pr.g.identity, e);
                continue;
            }
        };
        match seal_group(ctx, repo, &pr.g, &minted).await {
            Ok((rec, files)) => {
                for f in files {
                    if !paths.contains(&f) {
                        paths.push(f);
                    }
                }
                paths.push(rec.path());
                let mut plan = plan_step(ctx, &pr.g, &pr.clusters);
                plan.new_key_id = Some(rec.new_key_id.clone());
                plan.done = true;
                staged.push(Staged {
                    rec,
                    intent,
                    plan,
                    p: pr.p,
                    target: pr.g.target.clone(),
                });
            }
            Err(e) => {
                if policy
                    .run("revoke", || {
                        pr.p.revoke(&pr.g.target, &minted.key_id, Revoke::Delete)
                    })
                    .await
                    .is_ok()
                {
                    let _ = std::fs::remove_file(&intent);
                }
                ctx.fail(Phase::Mint, &pr.g.source, &pr.g.identity, e);
            }
        }
    }
    if staged.is_empty() {
        return;
    }
    let mut clusters = BTreeSet::new();
    let blocks: Vec<String> = staged
        .iter()
        .map(|Staged { rec, .. }| {
            clusters.extend(rec.clusters());
            trailers("stage", rec)
        })
        .collect();
    let clusters: Vec<String> = clusters.into_iter().collect();
    let msg = if staged.len() == 1 {
        let rec = &staged[0].rec;
        format!(
            "secret-manager: stage rotation of {} ({}) for {}\n\n{}",
            rec.identity,
            rec.source,
            clusters.join(", "),
            blocks[0]
        )
    } else {
        batch_message(
            &format!(
                "secret-manager: stage rotation of {} credentials for {}",
                staged.len(),
                clusters.join(", ")
            ),
            &blocks,
        )
    };
    crate::failpoint("before-commit");
    if let Err(e) = ctx.commit_and_push(&paths, &msg) {
        // Did it land anyway (e.g. the connection died after the remote accepted it)?
        let first = staged[0].rec.path();
        let landed = ctx.fleet.fetch().is_ok()
            && ctx
                .fleet
                .git()
                .resolve(&ctx.fleet.main_tracking())
                .ok()
                .flatten()
                .is_some_and(|m| {
                    ctx.wt
                        .run(&["cat-file", "-e", &format!("{m}:{first}")])
                        .is_ok()
                });
        if !landed {
            // Not in git: nothing references the new keys. Delete them now.
            let _ = ctx.wt.run(&["reset", "--quiet", "--hard", "HEAD"]);
            let _: Vec<()> = futures::stream::iter(&staged)
                .map(
                    |Staged {
                         rec,
                         intent,
                         p,
                         target,
                         ..
                     }| async move {
                        let key = KeyId(rec.new_key_id.clone());
                        if policy
                            .run("revoke", || p.revoke(target, &key, Revoke::Delete))
                            .await
                            .is_ok()
                        {
                            let _ = std::fs::remove_file(intent);
                        }
                    },
                )
                .buffered(ctx.opts.concurrency.max(1))
                .collect()
                .await;
        }
        for Staged { rec, .. } in &staged {
            ctx.fail(
                Phase::Mint,
                &rec.source,
                &rec.identity,
                format!("committing the staged rotation: {e}"),
            );
        }
        return;
    }
    let mut recs = Vec::new();
    for Staged {
        rec, intent, plan, ..
    } in staged
    {
        let _ = std::fs::remove_file(&intent);
        ctx.step(plan);
        recs.push(rec);
    }
    crate::failpoint("after-stage");
    advance_batch(ctx, recs).await;
}

/// Seals the new key for each manifest of `g`, edits the files and writes the rotation
/// record — all or nothing: the files are written only when every edit succeeded.
async fn seal_group(
    ctx: &mut Ctx<'_>,
    repo: &crate::Repo,
    g: &Group<'_>,
    minted: &Minted,
) -> Result<(RotationRecord, Vec<String>), String> {
    let mut rng = rand::rngs::OsRng;
    let mut manifests = Vec::new();
    // New contents by path; several documents of one file are edited one after another.
    let mut contents: BTreeMap<String, String> = BTreeMap::new();
    let mut originals: BTreeMap<String, String> = BTreeMap::new();
    for f in &g.manifests {
        let m = f.managed.as_ref().expect("managed");
        let mappings = m.key_mappings().and_then(Result::ok).unwrap_or_default();
        let cluster = f.attribution.cluster().expect("checked in plan").to_owned();
        let cert = ctx.cert(repo, &cluster).await?;
        let l = label(f.doc.scope, f.namespace.as_deref(), f.doc.name.as_deref())
            .map_err(|e| e.to_string())?;
        let mut edit = Edit {
            doc_index: f.doc.doc_index,
            ..Edit::default()
        };
        for km in &mappings {
            let v = minted
                .fields
                .get(&km.field)
                .ok_or_else(|| format!("{} returned no field {}", g.source, km.field))?;
            let ct = seal_value(&mut rng, &cert, &l, v.expose().as_bytes())
                .map_err(|e| e.to_string())?;
            edit.encrypted.insert(km.secret_key.clone(), ct);
        }
        edit.template_annotations.insert(
            format!("{}{}", ctx.prefix, key_id_annotation(&g.source)),
            minted.key_id.0.clone(),
        );
        edit.template_annotations
            .insert(format!("{}{CREATE_DATE}", ctx.prefix), ts(minted.created));
        edit.outer_annotations.insert(
            format!("{}{SEALED_WITH}", ctx.prefix),
            cert.fingerprint.clone(),
        );
        let file = f.file.display().to_string();
        let src = match contents.get(&file) {
            Some(s) => s.clone(),
            None => {
                let s = std::fs::read_to_string(ctx.wt.dir().join(&f.file))
                    .map_err(|e| format!("{file}: {e}"))?;
                originals.insert(file.clone(), s.clone());
                s
            }
        };
        let out = apply(&src, &edit).map_err(|e| format!("{file}: {e}"))?;
        contents.insert(file.clone(), out);
        manifests.push(RecordManifest {
            file,
            document: f.doc.doc_index,
            cluster,
            secret: format!(
                "{}/{}",
                f.namespace.as_deref().unwrap_or("-"),
                f.doc.name.as_deref().unwrap_or("-")
            ),
        });
    }
    let rec = RotationRecord {
        version: 1,
        id: format!(
            "{}-{}-{}",
            g.source,
            minted.created.format("%Y%m%dT%H%M%SZ"),
            &crate::seal::fingerprint_hex(format!("{}{}", g.identity, minted.key_id).as_bytes())
                [..8]
        ),
        source: g.source.clone(),
        identity: g.identity.clone(),
        params: g.target.params.clone(),
        old_key_id: g.old_key.clone(),
        new_key_id: minted.key_id.0.clone(),
        staged_at: ctx.opts.now,
        manifests,
        published_at: BTreeMap::new(),
        operator: minted.operator.clone(),
        kind: "rotate".into(),
    };
    let rec_path = ctx.wt.dir().join(rec.path());
    std::fs::create_dir_all(rec_path.parent().expect("has parent")).map_err(|e| e.to_string())?;
    // Write everything; on a failure undo what this credential wrote.
    let mut written: Vec<String> = Vec::new();
    let mut result = Ok(());
    for (file, text) in &contents {
        if let Err(e) = write_atomic(&ctx.wt.dir().join(file), text.as_bytes()) {
            result = Err(format!("{file}: {e}"));
            break;
        }
        written.push(file.clone());
    }
    if result.is_ok()
        && let Err(e) = std::fs::write(&rec_path, rec.to_yaml())
    {
        result = Err(e.to_string());
    }
    if let Err(e) = result {
        // Back to what the file held before this credential (earlier credentials of the
        // same batch may have edited it too).
        for f in &written {
            let _ = write_atomic(&ctx.wt.dir().join(f), originals[f].as_bytes());
        }
        let _ = std::fs::remove_file(&rec_path);
        return Err(e);
    }
    Ok((rec, contents.into_keys().collect()))
}

/// A managed manifest and the key id it holds.
type Member<'a> = (&'a Found, Option<&'a str>);

fn plan_groups<'a>(
    ctx: &mut Ctx<'_>,
    found: &'a [Found],
    records: &[RotationRecord],
) -> Vec<Group<'a>> {
    let opts = ctx.opts;
    // Every managed manifest by (source, identity), computed once.
    let mut by_identity: BTreeMap<(String, String), Vec<Member<'a>>> = BTreeMap::new();
    for f in found {
        if let Some(m) = &f.managed {
            by_identity
                .entry((m.source.clone(), identity_label(&m.source, &m.params())))
                .or_default()
                .push((f, m.key_id.as_deref()));
        }
    }
    let mut groups: BTreeMap<(String, String, String), Group<'a>> = BTreeMap::new();
    for ((source, identity), members) in &by_identity {
        for (f, key) in members {
            if !opts.filter.matches(f, opts.now) {
                continue;
            }
            if state_of(f, opts.now, chrono::Duration::zero()) == State::Invalid {
                ctx.step(Step {
                    action: "skip".into(),
                    source: source.clone(),
                    identity: identity.clone(),
                    old_key_id: key.map(str::to_owned),
                    new_key_id: None,
                    clusters: vec![f.attribution.label()],
                    files: vec![f.file.display().to_string()],
                    detail: "annotations cannot drive a rotation; run `secret-manager lint`".into(),
                    done: false,
                });
                continue;
            }
            let key = key.unwrap_or_default().to_owned();
            if groups.contains_key(&(source.clone(), identity.clone(), key.clone())) {
                continue;
            }
            // A filter never rotates a shared credential partially: every manifest holding
            // the key joins, and every key of the identity a manifest references is protected.
            let manifests: Vec<&'a Found> = members
                .iter()
                .filter(|(_, k)| *k == Some(key.as_str()))
                .map(|(f, _)| *f)
                .collect();
            let expanded = manifests.iter().any(|f| !opts.filter.matches(f, opts.now));
            let referenced: BTreeSet<KeyId> = members
                .iter()
                .filter_map(|(_, k)| k.map(|k| KeyId(k.to_owned())))
                .collect();
            groups.insert(
                (source.clone(), identity.clone(), key.clone()),
                Group {
                    source: source.clone(),
                    identity: identity.clone(),
                    target: Target {
                        source: source.clone(),
                        params: f.managed.as_ref().expect("managed").params(),
                        current_key: Some(KeyId(key.clone())),
                        referenced: referenced.into_iter().collect(),
                    },
                    old_key: key,
                    manifests,
                    expanded,
                },
            );
        }
    }
    let mut out = Vec::new();
    for g in groups.into_values() {
        if let Some(r) = records
            .iter()
            .find(|r| r.source == g.source && r.identity == g.identity)
        {
            ctx.step(Step {
                action: "skip".into(),
                source: g.source.clone(),
                identity: g.identity.clone(),
                old_key_id: Some(g.old_key.clone()),
                new_key_id: Some(r.new_key_id.clone()),
                clusters: r.clusters(),
                files: vec![],
                detail: format!("rotation {} is in flight", r.id),
                done: false,
            });
            continue;
        }
        if let Some(f) = g
            .manifests
            .iter()
            .find(|f| !matches!(f.attribution, Attribution::Cluster(_)))
        {
            ctx.fail(
                Phase::Preflight,
                &g.source.clone(),
                &g.identity.clone(),
                format!(
                    "{} is not under one cluster's path: cannot choose a sealing certificate",
                    f.file.display()
                ),
            );
            continue;
        }
        out.push(g);
    }
    out
}

fn clusters_of(g: &Group<'_>) -> Vec<String> {
    let mut c: Vec<String> = g
        .manifests
        .iter()
        .filter_map(|f| f.attribution.cluster().map(str::to_owned))
        .collect();
    c.sort();
    c.dedup();
    c
}

/// `delete`: remove the selected documents, commit, publish; the key goes after the gates.
async fn delete_selected(ctx: &mut Ctx<'_>, repo: &crate::Repo, records: &[RotationRecord]) {
    let report = repo.scan();
    let opts = ctx.opts;
    let selected: Vec<&Found> = report
        .secrets
        .iter()
        .filter(|f| f.managed.is_some() && opts.filter.matches(f, opts.now))
        .collect();
    let mut deleted = Vec::new();
    // One record per credential (source, identity, key).
    let mut by_key: BTreeMap<(String, String, String), Vec<&Found>> = BTreeMap::new();
    for f in selected {
        let m = f.managed.as_ref().expect("managed");
        by_key
            .entry((
                m.source.clone(),
                identity_label(&m.source, &m.params()),
                m.key_id.clone().unwrap_or_default(),
            ))
            .or_default()
            .push(f);
    }
    for ((source, identity, key), manifests) in by_key {
        if let Some(r) = records
            .iter()
            .find(|r| r.source == source && r.identity == identity)
        {
            ctx.step(Step {
                action: "skip".into(),
                source,
                identity,
                old_key_id: Some(key),
                new_key_id: None,
                clusters: r.clusters(),
                files: vec![],
                detail: format!("rotation {} is in flight; delete after it finishes", r.id),
                done: false,
            });
            continue;
        }
        if let Some(f) = manifests.iter().find(|f| f.attribution.cluster().is_none()) {
            ctx.fail(
                Phase::Preflight,
                &source,
                &identity,
                format!("{} is not under one cluster's path", f.file.display()),
            );
            continue;
        }
        let mut clusters: Vec<String> = manifests
            .iter()
            .filter_map(|f| f.attribution.cluster().map(str::to_owned))
            .collect();
        clusters.sort();
        clusters.dedup();
        let files: Vec<String> = manifests
            .iter()
            .map(|f| f.file.display().to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut step = Step {
            action: "delete".into(),
            source: source.clone(),
            identity: identity.clone(),
            old_key_id: Some(key.clone()),
            new_key_id: None,
            clusters: clusters.clone(),
            files: files.clone(),
            detail: format!(
                "remove {} SealedSecret document(s), publish to {}, then revoke the key if nothing else uses it",
                manifests.len(),
                clusters.join(", ")
            ),
            done: false,
        };
        if opts.dry_run {
            ctx.step(step);
            continue;
        }
        // Remove documents, highest index first so earlier indices stay valid.
        let mut ordered = manifests.clone();
        ordered.sort_by(|a, b| (&b.file, b.doc.doc_index).cmp(&(&a.file, a.doc.doc_index)));
        let mut failed = None;
        for f in &ordered {
            let path = ctx.wt.dir().join(&f.file);
            let result = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|src| {
                    crate::manifest::edit::remove_document(&src, f.doc.doc_index)
                        .map_err(|e| e.to_string())
                })
                .and_then(|out| match out {
                    Some(text) => write_atomic(&path, text.as_bytes()).map_err(|e| e.to_string()),
                    None => std::fs::remove_file(&path).map_err(|e| e.to_string()),
                });
            if let Err(e) = result {
                failed = Some(format!("{}: {e}", f.file.display()));
                break;
            }
        }
        if let Some(e) = failed {
            let _ = ctx.wt.run(&["reset", "--quiet", "--hard", "HEAD"]);
            ctx.fail(Phase::Mint, &source, &identity, e);
            continue;
        }
        let m0 = manifests[0].managed.as_ref().expect("managed");
        let rec = RotationRecord {
            version: 1,
            id: format!(
                "delete-{}-{}",
                opts.now.format("%Y%m%dT%H%M%SZ"),
                &crate::seal::fingerprint_hex(format!("{identity}{key}").as_bytes())[..8]
            ),
            kind: "delete".into(),
            source: source.clone(),
            identity: identity.clone(),
            params: m0.params(),
            old_key_id: key.clone(),
            new_key_id: String::new(),
            staged_at: opts.now,
            manifests: manifests
                .iter()
                .map(|f| RecordManifest {
                    file: f.file.display().to_string(),
                    document: f.doc.doc_index,
                    cluster: f.attribution.cluster().expect("checked").to_owned(),
                    secret: format!(
                        "{}/{}",
                        f.namespace.as_deref().unwrap_or("-"),
                        f.doc.name.as_deref().unwrap_or("-")
                    ),
                })
                .collect(),
            published_at: BTreeMap::new(),
            operator: None,
        };
        let rec_path = ctx.wt.dir().join(rec.path());
        let _ = std::fs::create_dir_all(rec_path.parent().expect("parent"));
        if let Err(e) = std::fs::write(&rec_path, rec.to_yaml()) {
            ctx.fail(Phase::Mint, &source, &identity, e);
            continue;
        }
        let mut paths = files.clone();
        paths.push(rec.path());
        let msg = format!(
            "secret-manager: delete {} ({}) from {}\n\n{}",
            identity,
            source,
            clusters.join(", "),
            trailers("delete", &rec)
        );
        if let Err(e) = ctx.commit_and_push(&paths, &msg) {
            let _ = ctx.wt.run(&["reset", "--quiet", "--hard", "HEAD"]);
            ctx.fail(Phase::Mint, &source, &identity, e);
            continue;
        }
        step.done = true;
        ctx.step(step);
        deleted.push(rec);
    }
    advance_batch(ctx, deleted).await;
}

/// Whether a key last used at `last_used` has been idle since `published`.
pub fn unused_since(last_used: Option<DateTime<Utc>>, published: DateTime<Utc>) -> bool {
    last_used.is_none_or(|u| u < published)
}

/// Checks one cluster's SealedSecret with `kubectl get sealedsecret -o json`: the template
/// holds `key_id` under `key_annotation`, and `Synced=True` at the current generation.
fn synced(json: &serde_json::Value, key_annotation: &str, key_id: &str) -> Result<(), String> {
    let ann = &json["spec"]["template"]["metadata"]["annotations"][key_annotation];
    if ann.as_str() != Some(key_id) {
        return Err(format!(
            "the cluster still has key {}",
            ann.as_str().unwrap_or("?")
        ));
    }
    let generation = json["metadata"]["generation"].as_i64();
    let observed = json["status"]["observedGeneration"].as_i64();
    if generation.is_some() && observed.is_some() && generation != observed {
        return Err(format!(
            "controller saw generation {observed:?}, current is {generation:?}"
        ));
    }
    let ok = json["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Synced" && c["status"] == "True")
    });
    if ok {
        Ok(())
    } else {
        Err("not Synced=True yet".into())
    }
}

/// The optional gates (DESIGN §7); `Some(reason)` keeps the old key for now.
async fn gates_closed(
    ctx: &Ctx<'_>,
    rec: &RotationRecord,
    published: DateTime<Utc>,
) -> Option<String> {
    if ctx.opts.require_synced && !rec.is_delete() {
        let repo = crate::Repo::open(ctx.wt.dir()).ok()?;
        let key_annotation = format!("{}{}", ctx.prefix, key_id_annotation(&rec.source));
        for m in &rec.manifests {
            let (ns, name) = m.secret.split_once('/').unwrap_or(("", ""));
            let mut cmd = tokio::process::Command::new("kubectl");
            if let Some(c) = repo
                .inventory
                .get(&m.cluster)
                .and_then(|c| c.kube_context.as_deref())
            {
                cmd.arg("--context").arg(c);
            }
            cmd.args(["get", "sealedsecret", name, "-n", ns, "-o", "json"])
                .kill_on_drop(true);
            let out = match tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
                .await
            {
                Ok(Ok(o)) if o.status.success() => o.stdout,
                Ok(Ok(o)) => {
                    return Some(format!(
                        "{}: kubectl failed: {}",
                        m.cluster,
                        String::from_utf8_lossy(&o.stderr).trim()
                    ));
                }
                Ok(Err(e)) => return Some(format!("{}: cannot run kubectl: {e}", m.cluster)),
                Err(_) => return Some(format!("{}: kubectl timed out", m.cluster)),
            };
            let json: serde_json::Value = match serde_json::from_slice(&out) {
                Ok(j) => j,
                Err(e) => return Some(format!("{}: kubectl output is not JSON: {e}", m.cluster)),
            };
            if let Err(why) = synced(&json, &key_annotation, &rec.new_key_id) {
                return Some(format!("waiting for {} {}/{}: {why}", m.cluster, ns, name));
            }
        }
    }
    if ctx.opts.require_old_key_unused {
        let p = ctx.providers.get(&rec.source).await.ok()?;
        let target = target_of(rec);
        match ctx.policy.run("keys", || p.keys(&target)).await {
            Ok(keys) => {
                if let Some(k) = keys.iter().find(|k| k.id.0 == rec.old_key_id)
                    && !unused_since(k.last_used, published)
                {
                    return Some(format!(
                        "the old key was used at {} after publish; waiting until it is idle",
                        k.last_used.map(ts).unwrap_or_default()
                    ));
                }
            }
            Err(e) => return Some(format!("cannot check the old key's last use: {e}")),
        }
    }
    None
}

#[cfg(test)]
mod gate_tests {
    use super::*;

    #[test]
    fn synced_gate_reads_the_controller_status() {
        let ok = serde_json::json!({
            "metadata": {"generation": 3},
            "spec": {"template": {"metadata": {"annotations": {"secret-manager/accessKeyId": "NEW"}}}},
            "status": {"observedGeneration": 3, "conditions": [{"type": "Synced", "status": "True"}]}
        });
        assert!(synced(&ok, "secret-manager/accessKeyId", "NEW").is_ok());
        assert!(
            synced(&ok, "secret-manager/accessKeyId", "OTHER")
                .unwrap_err()
                .contains("still has key NEW")
        );
        let mut stale = ok.clone();
        stale["status"]["observedGeneration"] = 2.into();
        assert!(
            synced(&stale, "secret-manager/accessKeyId", "NEW")
                .unwrap_err()
                .contains("generation")
        );
        let mut failing = ok.clone();
        failing["status"]["conditions"][0]["status"] = "False".into();
        assert!(synced(&failing, "secret-manager/accessKeyId", "NEW").is_err());
    }

    #[test]
    fn unused_gate() {
        let t = |s: &str| crate::annotations::parse_create_date(s).unwrap();
        assert!(unused_since(None, t("2026-11-21T12:00:00Z")));
        assert!(unused_since(
            Some(t("2026-11-21T11:00:00Z")),
            t("2026-11-21T12:00:00Z")
        ));
        assert!(!unused_since(
            Some(t("2026-11-21T12:30:00Z")),
            t("2026-11-21T12:00:00Z")
        ));
    }
}
