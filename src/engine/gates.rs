//! The optional revocation gates, evaluated per record once its grace period is over.
//!
//! A gate either opens, holds the old key for a reason that will pass by itself (the
//! controller has not synced yet), or cannot be evaluated at all — kubectl missing, an
//! unknown context, access denied. The last is an error with its own exit code, never a
//! silent "wait": a wait that can never end would keep the old key forever.

use super::context::Ctx;
use super::gate::Gate;
#[cfg(test)]
use super::gate::kubectl_failure;
use super::gate::{Got, kubectl_get};
use super::report::WaitingOn;
use crate::annotations::key_id_annotation;
use crate::journal::RotationRecord;
use crate::journal::record::{Promise, ts};
use chrono::{DateTime, Utc};

/// What the controller shows instead of the new key, Synced.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum NotSynced {
    /// The SealedSecret in the cluster still carries another key id (escaped: it comes
    /// from the cluster).
    #[error("the cluster still has key {0}")]
    OtherKey(String),
    /// The controller has not looked at the current generation yet.
    #[error("controller saw generation {observed:?}, current is {current:?}")]
    Generation {
        observed: Option<i64>,
        current: Option<i64>,
    },
    /// No `Synced=True` condition yet.
    #[error("not Synced=True yet")]
    NotYet,
}

/// Reads `kubectl get sealedsecret -o json`: the template holds `key_id` under
/// `key_annotation`, and `Synced=True` at the current generation.
pub(super) fn synced(
    json: &serde_json::Value,
    key_annotation: &str,
    key_id: &str,
) -> Result<(), NotSynced> {
    let ann = &json["spec"]["template"]["metadata"]["annotations"][key_annotation];
    if ann.as_str() != Some(key_id) {
        return Err(NotSynced::OtherKey(crate::text::escape_cut(
            ann.as_str().unwrap_or("?"),
            100,
        )));
    }
    let current = json["metadata"]["generation"].as_i64();
    let observed = json["status"]["observedGeneration"].as_i64();
    if current.is_some() && observed.is_some() && current != observed {
        return Err(NotSynced::Generation { observed, current });
    }
    let ok = json["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Synced" && c["status"] == "True")
    });
    if ok { Ok(()) } else { Err(NotSynced::NotYet) }
}

async fn synced_gate(ctx: &Ctx<'_>, rec: &RotationRecord) -> Gate {
    let key_annotation = format!("{}{}", ctx.prefix(), key_id_annotation(&rec.source));
    for m in &rec.manifests {
        let (ns, name) = m.secret.split_once('/').unwrap_or(("", ""));
        let json = match kubectl_get(
            ctx,
            &m.cluster,
            ns,
            "sealedsecret",
            Some(name),
            "--require-synced",
        )
        .await
        {
            Ok(Got::Object(json)) => json,
            Ok(Got::Missing) => {
                return Gate::Wait(
                    WaitingOn::Synced,
                    format!(
                        "waiting for {} to have SealedSecret {ns}/{name} (not applied yet)",
                        m.cluster
                    ),
                );
            }
            Err(e) => {
                return Gate::Error {
                    cluster: m.cluster.clone(),
                    message: e.to_string(),
                };
            }
        };
        if let Err(why) = synced(&json, &key_annotation, &rec.new_key_id) {
            return Gate::Wait(
                WaitingOn::Synced,
                format!("waiting for {} {ns}/{name}: {why}", m.cluster),
            );
        }
    }
    Gate::Open
}

/// Where an Argo CD application stands, from `kubectl get application -o json`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Argo {
    /// Synced at `revision` and Healthy.
    Ready(crate::gitops::git::Oid),
    /// Not there yet, for this reason (still syncing, progressing, out of sync).
    Waiting(String),
    /// Degraded: the workloads do not come up with what was synced. Someone must look
    /// before the old key goes.
    Degraded(String),
}

/// Reads an Application's `status`: `sync.status` Synced at `sync.revision` (a commit id;
/// anything else from the cluster is refused), `health.status` Healthy. What the cluster
/// says is escaped before it is shown.
pub(super) fn argocd_state(json: &serde_json::Value) -> Argo {
    let esc = |v: &serde_json::Value| crate::text::escape_cut(v.as_str().unwrap_or("?"), 100);
    let sync = &json["status"]["sync"]["status"];
    let health = &json["status"]["health"]["status"];
    if sync.as_str() != Some("Synced") {
        return Argo::Waiting(format!("sync status {}", esc(sync)));
    }
    match health.as_str() {
        Some("Healthy") => {}
        Some("Degraded") => {
            let message = &json["status"]["health"]["message"];
            return Argo::Degraded(if message.is_string() {
                format!("Degraded: {}", esc(message))
            } else {
                "Degraded".into()
            });
        }
        _ => return Argo::Waiting(format!("health {}", esc(health))),
    }
    match json["status"]["sync"]["revision"]
        .as_str()
        .and_then(crate::gitops::git::Oid::parse)
    {
        Some(rev) => Argo::Ready(rev),
        None => Argo::Waiting(format!(
            "no commit revision synced ({})",
            esc(&json["status"]["sync"]["revision"])
        )),
    }
}

/// Each cluster of `rec` has its Argo CD application (`argocdApp`, `name` in namespace
/// `argocd` or `namespace/name`) Synced and Healthy at a revision whose files hold the new
/// key and not the old one — read from git, so a hot-fixed pointer counts as well as the
/// staging commit itself.
async fn argocd_gate(ctx: &Ctx<'_>, rec: &RotationRecord) -> Gate {
    let mut clusters = rec.clusters();
    clusters.dedup();
    for cluster in clusters {
        let err = |message: String| Gate::Error {
            cluster: cluster.clone(),
            message,
        };
        let Some(app) = ctx
            .repo
            .inventory
            .get(&cluster)
            .and_then(|c| c.argocd_app.clone())
        else {
            return err(format!(
                "--require-argocd-synced: cluster {cluster} names no argocdApp in its cluster-values file"
            ));
        };
        let (ns, name) = app.split_once('/').unwrap_or(("argocd", app.as_str()));
        let json = match kubectl_get(
            ctx,
            &cluster,
            ns,
            "applications.argoproj.io",
            Some(name),
            "--require-argocd-synced",
        )
        .await
        {
            Ok(Got::Object(json)) => json,
            Ok(Got::Missing) => {
                return err(format!(
                    "Argo CD application {ns}/{name} does not exist in cluster {cluster}; fix argocdApp in its cluster-values file"
                ));
            }
            Err(e) => return err(e.to_string()),
        };
        let revision = match argocd_state(&json) {
            Argo::Ready(rev) => rev,
            Argo::Waiting(why) => {
                return Gate::Wait(
                    WaitingOn::Argocd,
                    format!("waiting for Argo CD application {ns}/{name} on {cluster}: {why}"),
                );
            }
            Argo::Degraded(why) => {
                return Gate::Failed {
                    cluster: cluster.clone(),
                    message: format!(
                        "Argo CD application {ns}/{name} is {why} after the change; the old key stays"
                    ),
                };
            }
        };
        let files: Vec<&str> = rec
            .manifests
            .iter()
            .filter(|m| m.cluster == cluster)
            .map(|m| m.file.as_str())
            .collect();
        let specs: Vec<String> = files.iter().map(|f| format!("{revision}:{f}")).collect();
        let blobs = match ctx.fleet.git().read_blobs(&specs) {
            Ok(b) => b,
            Err(e) => return err(format!("cannot read revision {revision}: {e}")),
        };
        for (file, blob) in files.iter().zip(blobs) {
            let holds =
                blob.is_some_and(|t| t.contains(&rec.new_key_id) && !t.contains(&rec.old_key_id));
            if !holds {
                return Gate::Wait(
                    WaitingOn::Argocd,
                    format!(
                        "waiting for Argo CD application {ns}/{name} on {cluster}: the synced revision {} does not hold the new key in {}",
                        &revision.as_str()[..12],
                        crate::text::escape(file)
                    ),
                );
            }
        }
    }
    Gate::Open
}

/// How long the operator's gate command may take for one cluster.
pub const GATE_COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Exit code of a gate command that says "not yet" (`EX_TEMPFAIL`).
pub const GATE_WAIT: i32 = 75;

/// What the gate command reads on stdin for one cluster: where the new key is, never a
/// value.
pub(super) fn gate_input(
    rec: &RotationRecord,
    cluster: &str,
    published: DateTime<Utc>,
) -> serde_json::Value {
    let secrets: Vec<serde_json::Value> = rec
        .manifests
        .iter()
        .filter(|m| m.cluster == cluster)
        .map(|m| {
            let (ns, name) = m.secret.split_once('/').unwrap_or(("", m.secret.as_str()));
            serde_json::json!({"namespace": ns, "name": name, "file": m.file})
        })
        .collect();
    serde_json::json!({
        "version": 1,
        "cluster": cluster,
        "source": rec.source,
        "identity": rec.identity,
        "oldKeyId": rec.old_key_id,
        "newKeyId": rec.new_key_id,
        "publishedAt": ts(published),
        "secrets": secrets,
    })
}

/// The operator's gate command (`--gate-command`), once per cluster: `<program> gate` with
/// [`gate_input`] on stdin, isolated as an exec plugin is (a cleared environment but for
/// the plugins' base variables and `KUBECONFIG`, its own process group, a timeout,
/// bounded output). Exit 0 passes, [`GATE_WAIT`] waits, anything else fails.
#[cfg(feature = "exec")]
async fn command_gate(ctx: &Ctx<'_>, rec: &RotationRecord, published: DateTime<Utc>) -> Gate {
    let mut clusters = rec.clusters();
    clusters.dedup();
    for cluster in clusters {
        let err = |message: String| Gate::Error {
            cluster: cluster.clone(),
            message,
        };
        let Some(program) = ctx.opts.gate_command.as_ref() else {
            return err(
                "this rotation was staged with --gate-command: give this run the gate command too"
                    .into(),
            );
        };
        let input = zeroize::Zeroizing::new(
            serde_json::to_vec(&gate_input(rec, &cluster, published)).unwrap_or_default(),
        );
        let shown = crate::text::escape(&program.display().to_string()).into_owned();
        let out = match secret_manager_exec::run(
            program,
            "gate",
            &["KUBECONFIG".to_owned()],
            input,
            GATE_COMMAND_TIMEOUT,
        )
        .await
        {
            Ok(o) => o,
            Err(secret_manager_exec::RunError::Timeout) => {
                return err(format!(
                    "gate command {shown} did not finish within {}s",
                    GATE_COMMAND_TIMEOUT.as_secs()
                ));
            }
            Err(
                secret_manager_exec::RunError::Spawn(e) | secret_manager_exec::RunError::Wait(e),
            ) => return err(format!("gate command {shown} cannot run: {e}")),
        };
        let said = crate::text::escape_cut(String::from_utf8_lossy(&out.stderr).trim(), 300);
        match out.status.code() {
            Some(0) => {}
            Some(GATE_WAIT) => {
                return Gate::Wait(
                    WaitingOn::Command,
                    format!(
                        "waiting for the gate command on {cluster}{}",
                        if said.is_empty() {
                            String::new()
                        } else {
                            format!(": {said}")
                        }
                    ),
                );
            }
            code => {
                return Gate::Failed {
                    cluster: cluster.clone(),
                    message: format!(
                        "gate command {shown} failed ({}){}",
                        code.map_or("killed by a signal".into(), |c| format!("exit {c}")),
                        if said.is_empty() {
                            String::new()
                        } else {
                            format!(": {said}")
                        }
                    ),
                };
            }
        }
    }
    Gate::Open
}

#[cfg(not(feature = "exec"))]
async fn command_gate(_: &Ctx<'_>, rec: &RotationRecord, _: DateTime<Utc>) -> Gate {
    Gate::Error {
        cluster: "-".into(),
        message: format!(
            "rotation {}: --gate-command needs a build with the exec feature",
            rec.id
        ),
    }
}

async fn unused_gate(ctx: &Ctx<'_>, rec: &RotationRecord, published: DateTime<Utc>) -> Gate {
    let err = |message: String| Gate::Error {
        cluster: "-".into(),
        message,
    };
    let p = match ctx.providers.get(&rec.source).await {
        Ok(p) => p,
        Err(e) => return err(e.to_string()),
    };
    let old = crate::provider::KeyId(rec.old_key_id.clone());
    match p
        .usage_since(&rec.target(), &old, published, ctx.now())
        .await
    {
        Ok(crate::provider::Usage::Idle) => Gate::Open,
        Ok(crate::provider::Usage::Used(at)) => Gate::Wait(
            WaitingOn::Unused,
            format!(
                "the old key was used at {} after publish; waiting until it is idle",
                ts(at)
            ),
        ),
        Ok(crate::provider::Usage::Pending(why)) => Gate::Wait(WaitingOn::Unused, why),
        Ok(crate::provider::Usage::Unknown(why)) => Gate::Blind(format!(
            "{why}: --require-old-key-unused fell back to the grace period"
        )),
        Err(e) => err(format!("cannot check the old key's last use: {e}")),
    }
}

/// The gates a run with `opts` waits for before a revoke (with those `promised` by a
/// rotation in flight), in the order it asks them, as the plan says them:
/// `" and once …"`, or nothing without gates.
pub(super) fn planned(opts: &super::RotateOptions, promised: Option<&Promise>) -> String {
    let p = |f: fn(&Promise) -> bool| promised.is_some_and(f);
    let said: Vec<&str> = [
        (
            opts.require_synced || p(|p| p.require_synced),
            "each cluster's SealedSecret shows the new key Synced",
        ),
        (
            opts.require_argocd_synced || p(|p| p.require_argocd_synced),
            "each cluster's Argo CD application is Synced and Healthy with it",
        ),
        (
            opts.require_consumers_restarted || p(|p| p.require_consumers_restarted),
            "every pod reading the Secret runs the new value",
        ),
        (
            opts.gate_command.is_some() || p(|p| p.require_gate_command),
            "the gate command passes",
        ),
        (
            opts.require_old_key_unused || p(|p| p.require_old_key_unused),
            "the source sees no use of the old key since publish",
        ),
    ]
    .into_iter()
    .filter_map(|(on, what)| on.then_some(what))
    .collect();
    if said.is_empty() {
        String::new()
    } else {
        format!(" and once {}", said.join(", "))
    }
}

/// The optional gates of `rec`, published at `published`.
pub(super) async fn check(ctx: &Ctx<'_>, rec: &RotationRecord, published: DateTime<Utc>) -> Gate {
    let promised = rec.promised.as_ref();
    let require_synced = ctx.opts.require_synced || promised.is_some_and(|p| p.require_synced);
    let require_unused =
        ctx.opts.require_old_key_unused || promised.is_some_and(|p| p.require_old_key_unused);
    let require_argocd =
        ctx.opts.require_argocd_synced || promised.is_some_and(|p| p.require_argocd_synced);
    if require_synced && !rec.is_delete() {
        let g = synced_gate(ctx, rec).await;
        if g != Gate::Open {
            return g;
        }
    }
    if require_argocd && !rec.is_delete() {
        let g = argocd_gate(ctx, rec).await;
        if g != Gate::Open {
            return g;
        }
    }
    let require_consumers = ctx.opts.require_consumers_restarted
        || promised.is_some_and(|p| p.require_consumers_restarted);
    if require_consumers && !rec.is_delete() {
        let g = super::consumers_gate::check(ctx, rec, published).await;
        if g != Gate::Open {
            return g;
        }
    }
    let require_command =
        ctx.opts.gate_command.is_some() || promised.is_some_and(|p| p.require_gate_command);
    if require_command && !rec.is_delete() {
        let g = command_gate(ctx, rec, published).await;
        if g != Gate::Open {
            return g;
        }
    }
    if require_unused {
        return unused_gate(ctx, rec, published).await;
    }
    Gate::Open
}

#[cfg(test)]
#[path = "gates_tests.rs"]
mod tests;
