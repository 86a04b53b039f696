//! Key slots: a source's limit of keys per identity. Only keys this tool minted are ever
//! its to delete, so a full identity stops with an error that names every key and says
//! which one is in the way.

use super::context::Ctx;
use super::held;
use super::outcome::Said;
use super::pipeline::{Claimed, Ready};
use super::plan::Credential;
use super::report::{EngineError, Phase};
use crate::journal::record::ts;
use crate::provider::KeyInfo;

/// Describes why every key of a full identity stays, for the key-limit error.
pub(super) fn key_limit(cred: &Credential<'_>, keys: &[KeyInfo], limit: u32) -> EngineError {
    key_limit_error(&cred.identity, keys, limit, |id| {
        cred.referenced.iter().any(|r| r == id).then(|| {
            cred.groups
                .iter()
                .flat_map(|g| &g.manifests)
                .filter(|f| f.managed.as_ref().and_then(|m| m.key_id.as_deref()) == Some(id))
                .map(|f| format!("{}:{}", f.file.display(), f.doc.line))
                .collect()
        })
    })
}

/// The key-limit error of a full identity (`rotate` and `create` alike): every key and
/// why it stays. `holders(key id)` is `None` for a key no manifest references (not this
/// tool's: the operator decides), else the manifests that hold it (empty when they are
/// not among those at hand).
pub(crate) fn key_limit_error(
    identity: &str,
    keys: &[KeyInfo],
    limit: u32,
    holders: impl Fn(&str) -> Option<Vec<String>>,
) -> EngineError {
    let mut foreign = Vec::new();
    let described: Vec<String> = keys
        .iter()
        .map(|k| match holders(&k.id.0) {
            Some(h) if h.is_empty() => format!("{} (held by another manifest)", k.id),
            Some(h) => format!("{} (held by {})", k.id, h.join(", ")),
            None => {
                foreign.push(k.id.0.clone());
                format!(
                    "{} (created {}, referenced by no manifest: not minted by secret-manager)",
                    k.id,
                    k.created
                        .map(ts)
                        .unwrap_or_else(|| "at an unknown time".into())
                )
            }
        })
        .collect();
    let hint = if foreign.is_empty() {
        "every key is in use; finish the other rotation of this identity, or give the manifests that hold different keys the same one".into()
    } else {
        format!(
            "if {} is unused (`secret-manager keys` shows its last use), delete or deactivate it yourself, then run again",
            foreign.join(" and ")
        )
    };
    EngineError::KeyLimit {
        identity: identity.to_owned(),
        count: keys.len(),
        limit,
        keys: described.join("; "),
        hint,
    }
}

/// Lists each identity's keys (read-only) and stops those that would exceed the key
/// limit; returns the rest with their keys (the claim's `keysBefore`).
pub(super) async fn slots<'a>(
    ctx: &mut Ctx<'_>,
    said: &mut Said,
    ready: Vec<Ready<'a>>,
) -> Vec<(Ready<'a>, Vec<KeyInfo>)> {
    let listed: Vec<(Ready<'a>, Result<Vec<KeyInfo>, EngineError>)> =
        super::bounded(ctx.opts.concurrency, ready, |r| async move {
            let keys = r
                .provider
                .keys(&r.cred.target())
                .await
                .map_err(EngineError::from);
            (r, keys)
        })
        .await;
    let mut out = Vec::new();
    for (r, keys) in listed {
        match keys {
            Ok(k) => out.push((r, k)),
            Err(e) => said.fail(Phase::Preflight, &r.cred.source, &r.cred.identity, None, e),
        }
    }
    out
}

/// Whether minting a key per group would exceed the source's limit.
pub(super) fn over_limit(r: &Ready<'_>, keys: &[KeyInfo]) -> Option<u32> {
    r.provider
        .capabilities()
        .max_keys_per_identity
        .filter(|&limit| keys.len() + r.cred.groups.len() > limit as usize)
}

/// The key-slot check, after the claim: an identity that looked full may only have been
/// full because another run was minting for it (then the claim was lost: busy), so a
/// full identity whose claim this run won is listed again before it is reported.
pub(super) async fn check_slots<'a>(
    ctx: &mut Ctx<'_>,
    said: &mut Said,
    claimed: Vec<Claimed<'a>>,
    listed: &[(String, Vec<KeyInfo>)],
) -> Vec<Claimed<'a>> {
    let mut out = Vec::new();
    let mut release = Vec::new();
    for c in claimed {
        let id = c.cred.id();
        let keys = listed
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, k)| k.clone())
            .unwrap_or_default();
        let ready = Ready {
            cred: c.cred.clone(),
            provider: c.provider.clone(),
        };
        if over_limit(&ready, &keys).is_none() {
            out.push(c);
            continue;
        }
        let fresh = match c.provider.keys(&c.cred.target()).await {
            Ok(k) => k,
            Err(e) => {
                said.fail(
                    Phase::Preflight,
                    &c.cred.source,
                    &c.cred.identity,
                    None,
                    e.into(),
                );
                release.push(c.held);
                continue;
            }
        };
        match over_limit(&ready, &fresh) {
            None => out.push(c),
            Some(limit) => {
                let e = key_limit(&c.cred, &fresh, limit);
                said.fail(Phase::Mint, &c.cred.source, &c.cred.identity, None, e);
                release.push(c.held);
            }
        }
    }
    held::release(ctx, &release);
    out
}
