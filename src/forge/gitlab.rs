//! GitLab REST: `/projects/:id/merge_requests` (`:id` is the URL-encoded project path).

use super::{Forge, ForgeResult, NewPullRequest, PrState, PullRequest, time};
use reqwest::Method;
use serde_json::json;

/// The project path as one URL path segment (`group/sub/project` → `group%2Fsub%2Fproject`).
fn project(f: &Forge) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(f.repository(), SEGMENT).to_string()
}

fn mr(v: &serde_json::Value) -> Option<PullRequest> {
    let state = match v["state"].as_str()? {
        "merged" => PrState::Merged,
        "opened" | "locked" => PrState::Open,
        _ => PrState::Closed,
    };
    Some(PullRequest {
        number: v["iid"].as_u64()?,
        url: v["web_url"].as_str().unwrap_or_default().to_owned(),
        state,
        head: v["source_branch"].as_str().unwrap_or_default().to_owned(),
        created_at: time(&v["created_at"]),
    })
}

pub(super) async fn open(f: &Forge, p: &NewPullRequest<'_>) -> ForgeResult<PullRequest> {
    let path = format!("/projects/{}/merge_requests", project(f));
    let body = json!({
        "source_branch": p.head,
        "target_branch": p.base,
        "title": p.title,
        "description": p.body,
        "labels": p.labels.join(","),
        "remove_source_branch": true,
    });
    let r = f.send(Method::POST, &path, Some(&body)).await?;
    match r.status {
        201 => mr(&r.json).ok_or_else(|| f.error("POST merge_requests (no iid)", &r)),
        // "Another open merge request already exists for this source branch": reuse it.
        409 => find(f, p.head)
            .await?
            .ok_or_else(|| f.error("POST merge_requests (exists, but not found)", &r)),
        _ => Err(f.error("POST merge_requests", &r)),
    }
}

pub(super) async fn find(f: &Forge, branch: &str) -> ForgeResult<Option<PullRequest>> {
    let path = format!(
        "/projects/{}/merge_requests{}",
        project(f),
        super::query(&[
            ("state", "all"),
            ("source_branch", branch),
            ("order_by", "created_at"),
            ("sort", "desc"),
        ])
    );
    let r = f.send(Method::GET, &path, None).await?;
    if r.status != 200 {
        return Err(f.error("GET merge_requests", &r));
    }
    Ok(r.json
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(mr)
        .find(|p| p.head == branch))
}

pub(super) async fn get(f: &Forge, number: u64) -> ForgeResult<PullRequest> {
    let path = format!("/projects/{}/merge_requests/{number}", project(f));
    let r = f.send(Method::GET, &path, None).await?;
    if r.status != 200 {
        return Err(f.error(&format!("GET merge_requests/{number}"), &r));
    }
    mr(&r.json).ok_or_else(|| f.error(&format!("GET merge_requests/{number} (no iid)"), &r))
}

/// "Merge when the pipeline succeeds": `auto_merge` since GitLab 17.11; the deprecated
/// `merge_when_pipeline_succeeds` too, for self-managed servers older than that (each
/// version ignores the parameter it does not know).
fn merge_body() -> serde_json::Value {
    json!({"auto_merge": true, "merge_when_pipeline_succeeds": true})
}

pub(super) async fn merge(f: &Forge, number: u64) -> ForgeResult<bool> {
    let path = format!("/projects/{}/merge_requests/{number}/merge", project(f));
    let body = merge_body();
    let r = f.send(Method::PUT, &path, Some(&body)).await?;
    match r.status {
        200 => Ok(mr(&r.json).is_some_and(|m| m.state == PrState::Merged)),
        // Not mergeable yet (approvals, pipeline, conflicts): try again next run.
        401 | 403 | 404 => Err(f.error(&format!("PUT merge_requests/{number}/merge"), &r)),
        405 | 406 | 409 | 422 => Ok(false),
        _ => Err(f.error(&format!("PUT merge_requests/{number}/merge"), &r)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn merge_asks_for_auto_merge_in_both_spellings() {
        let b = super::merge_body();
        assert_eq!(b["auto_merge"], true);
        assert_eq!(b["merge_when_pipeline_succeeds"], true);
    }
}
