//! GitHub REST: `/repos/{owner}/{repo}/pulls`.

use super::{Forge, ForgeResult, NewPullRequest, PrState, PullRequest, time};
use reqwest::Method;
use serde_json::json;

fn pr(v: &serde_json::Value) -> Option<PullRequest> {
    let state = if !v["merged_at"].is_null() || v["merged"] == true {
        PrState::Merged
    } else if v["state"] == "open" {
        PrState::Open
    } else {
        PrState::Closed
    };
    Some(PullRequest {
        number: v["number"].as_u64()?,
        url: v["html_url"].as_str().unwrap_or_default().to_owned(),
        state,
        head: v["head"]["ref"].as_str().unwrap_or_default().to_owned(),
        created_at: time(&v["created_at"]),
    })
}

fn owner(f: &Forge) -> &str {
    f.repository().split('/').next().unwrap_or_default()
}

pub(super) async fn open(f: &Forge, p: &NewPullRequest<'_>) -> ForgeResult<PullRequest> {
    let path = format!("/repos/{}/pulls", f.repository());
    let body = json!({"title": p.title, "head": p.head, "base": p.base, "body": p.body});
    let r = f.send(Method::POST, &path, Some(&body)).await?;
    let created = match r.status {
        201 => pr(&r.json),
        // "A pull request already exists for owner:branch": reuse it.
        422 if super::message_of(&r.json).contains("already exists") => {
            return find(f, p.head)
                .await?
                .ok_or_else(|| f.error("POST pulls (already exists, but not found)", &r));
        }
        _ => return Err(f.error("POST pulls", &r)),
    }
    .ok_or_else(|| f.error("POST pulls (no number in the answer)", &r))?;
    if !p.labels.is_empty() {
        let path = format!("/repos/{}/issues/{}/labels", f.repository(), created.number);
        let r = f
            .send(Method::POST, &path, Some(&json!({"labels": p.labels})))
            .await?;
        if r.status != 200 {
            tracing::warn!(error = %f.error("POST labels", &r), "labels not set");
        }
    }
    Ok(created)
}

pub(super) async fn find(f: &Forge, branch: &str) -> ForgeResult<Option<PullRequest>> {
    let head = format!("{}:{branch}", owner(f));
    let path = format!(
        "/repos/{}/pulls{}",
        f.repository(),
        super::query(&[
            ("state", "all"),
            ("head", &head),
            ("sort", "created"),
            ("direction", "desc"),
        ])
    );
    let r = f.send(Method::GET, &path, None).await?;
    if r.status != 200 {
        return Err(f.error("GET pulls", &r));
    }
    Ok(r.json
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(pr)
        .find(|p| p.head == branch))
}

pub(super) async fn get(f: &Forge, number: u64) -> ForgeResult<PullRequest> {
    let path = format!("/repos/{}/pulls/{number}", f.repository());
    let r = f.send(Method::GET, &path, None).await?;
    if r.status != 200 {
        return Err(f.error(&format!("GET pulls/{number}"), &r));
    }
    pr(&r.json).ok_or_else(|| f.error(&format!("GET pulls/{number} (no number)"), &r))
}

pub(super) async fn merge(f: &Forge, number: u64) -> ForgeResult<bool> {
    let path = format!("/repos/{}/pulls/{number}/merge", f.repository());
    let r = f.send(Method::PUT, &path, Some(&json!({}))).await?;
    match r.status {
        200 => Ok(true),
        // Not mergeable yet (reviews, checks) or the head moved: try again next run.
        405 | 409 => Ok(false),
        _ => Err(f.error(&format!("PUT pulls/{number}/merge"), &r)),
    }
}
