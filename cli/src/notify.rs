//! `--notify` and `notify:`: a JSON summary of a `rotate`/`delete` run POSTed to
//! Slack/Mattermost-compatible incoming webhooks.
//!
//! The body has the `text` both chat tools show, plus structured fields for other
//! receivers. It names credentials, clusters, key ids and pull requests — never a secret
//! value or a ciphertext (the report holds neither). A webhook URL carries a token: it is
//! taken from the environment (`env:NAME`, or `urlEnv:` in the config), and messages only
//! ever name its scheme and host. Delivery is retried within a bound; a webhook that fails
//! is reported on stderr and never changes the run's exit code.

use secret_manager::config::NotifyOn;
use secret_manager::engine::{Action, RotateReport};
use serde::Serialize;

/// One webhook to tell.
#[derive(Clone)]
pub struct Target {
    url: String,
    on: NotifyOn,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (on {:?})", shown(&self.url), self.on)
    }
}

/// Scheme and host of `url`: what messages may say about a webhook.
fn shown(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let host = host.rsplit('@').next().unwrap_or_default();
            format!("{scheme}://{host}/…")
        }
        None => "(not a URL)".into(),
    }
}

/// The webhooks of this run: `--notify` values (`env:NAME` or a URL; `on` from
/// `--notify-on`) and the config's `notify:` entries.
pub fn targets(
    flags: &[String],
    flag_on: NotifyOn,
    config: &[secret_manager::config::Notify],
) -> crate::error::Result<Vec<Target>> {
    let from_env = |name: &str, what: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                crate::error::UsageError(format!(
                    "{what}: environment variable {name} is not set (it holds the webhook URL)"
                ))
            })
    };
    let mut out = Vec::new();
    for f in flags {
        let url = match f.strip_prefix("env:") {
            Some(name) => from_env(name, "--notify")?,
            None => f.clone(),
        };
        out.push(Target { url, on: flag_on });
    }
    for n in config {
        out.push(Target {
            url: from_env(&n.url_env, "notify[].urlEnv")?,
            on: n.on,
        });
    }
    for t in &out {
        // A webhook URL carries a token: https only (plain http to loopback, for a local
        // relay), never a redirect elsewhere (see `send`).
        if !secret_manager::config::secure_or_loopback(&t.url) {
            return Err(crate::error::UsageError(format!(
                "--notify: {} must be an https URL (plain http only to a loopback address)",
                shown(&t.url)
            ))
            .into());
        }
    }
    Ok(out)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FailureField {
    phase: String,
    during: &'static str,
    source: String,
    identity: String,
    cluster: Option<String>,
    message: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    text: String,
    run: String,
    outcome: &'static str,
    exit_code: u8,
    command: &'static str,
    counts: std::collections::BTreeMap<&'static str, usize>,
    failures: Vec<FailureField>,
    pull_requests: Vec<String>,
}

/// Whether the run changed anything: a key staged, published, revoked or deleted, a
/// pull request opened.
fn changed(report: &RotateReport) -> bool {
    report.steps.iter().any(|s| {
        s.done
            && matches!(
                s.action,
                Action::Stage
                    | Action::Propose
                    | Action::Publish
                    | Action::Revoke
                    | Action::Delete
                    | Action::Cleanup
                    | Action::Undo
            )
    })
}

fn payload(report: &RotateReport, code: u8, verb: &'static str) -> Payload {
    let mut counts = std::collections::BTreeMap::new();
    for (name, a) in [
        ("staged", Action::Stage),
        ("proposed", Action::Propose),
        ("published", Action::Publish),
        ("revoked", Action::Revoke),
        ("deleted", Action::Delete),
    ] {
        counts.insert(name, report.count(a));
    }
    counts.insert(
        "waiting",
        report
            .steps
            .iter()
            .filter(|s| s.action == Action::Wait)
            .count(),
    );
    counts.insert(
        "busy",
        report
            .steps
            .iter()
            .filter(|s| s.action == Action::Busy)
            .count(),
    );
    counts.insert("failed", report.failures.len());
    let failures: Vec<FailureField> = report
        .failures
        .iter()
        .map(|f| FailureField {
            phase: format!("{:?}", f.phase).to_lowercase(),
            during: f.during.name(),
            source: f.source.clone(),
            identity: f.identity.clone(),
            cluster: f.cluster.clone(),
            message: f.error.to_string().chars().take(500).collect(),
        })
        .collect();
    let pull_requests: Vec<String> = report
        .steps
        .iter()
        .filter(|s| matches!(s.action, Action::Propose | Action::Wait))
        .flat_map(|s| {
            s.detail
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|w| w.starts_with("https://") || w.starts_with("http://"))
        .map(|w| w.trim_end_matches([',', ';', ')']).to_owned())
        .collect();
    let ok = report.failures.is_empty() && report.interrupted.is_none();
    let mut text = format!(
        "secret-manager {verb} {}: {} staged, {} published, {} revoked, {} waiting, {} failed (exit {code})",
        if ok { "succeeded" } else { "FAILED" },
        counts["staged"] + counts["proposed"],
        counts["published"],
        counts["revoked"],
        counts["waiting"],
        counts["failed"],
    );
    for f in failures.iter().take(10) {
        text.push_str(&format!(
            "\n• {} {} {}{}: {}",
            f.phase,
            f.source,
            f.identity,
            f.cluster
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
            f.message
        ));
    }
    for pr in &pull_requests {
        text.push_str(&format!("\n• waiting for review: {pr}"));
    }
    Payload {
        text,
        run: report.run.clone(),
        outcome: if ok { "success" } else { "failure" },
        exit_code: code,
        command: verb,
        counts,
        failures,
        pull_requests,
    }
}

/// Tells every target that asked for this kind of run; returns how many deliveries failed
/// (each reported on stderr).
pub async fn send(
    targets: &[Target],
    report: &RotateReport,
    code: u8,
    verb: &'static str,
) -> usize {
    if targets.is_empty() {
        return 0;
    }
    let failed_run = code != crate::exit::OK;
    let body = serde_json::to_vec(&payload(report, code, verb)).expect("JSON of strings");
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            crate::output::say(crate::output::Level::Error, &format!("notify: {e}"));
            return targets.len();
        }
    };
    let mut failures = 0;
    for t in targets {
        let wanted = match t.on {
            NotifyOn::Always => true,
            NotifyOn::Failure => failed_run,
            NotifyOn::Change => failed_run || changed(report),
        };
        if !wanted {
            continue;
        }
        let mut last = String::new();
        let mut delivered = false;
        for attempt in 1..=crate::http::ATTEMPTS {
            match client
                .post(&t.url)
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {
                    delivered = true;
                    break;
                }
                Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                    last = format!("HTTP {}", r.status());
                }
                Ok(r) => {
                    last = format!("HTTP {}", r.status());
                    break;
                }
                Err(e) => last = crate::http::failure_kind(&e),
            }
            crate::http::backoff(attempt).await;
        }
        if !delivered {
            failures += 1;
            crate::output::say(
                crate::output::Level::Error,
                &format!(
                    "notify {}: not delivered ({last}); the run's result and exit code are unchanged",
                    shown(&t.url)
                ),
            );
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_url_is_shown_by_scheme_and_host_only() {
        assert_eq!(
            shown("https://hooks.slack.com/services/T000/B000/XXXXSECRET"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            shown("http://user:pw@127.0.0.1:9/x?token=1"),
            "http://127.0.0.1:9/…"
        );
        assert!(
            !format!(
                "{:?}",
                Target {
                    url: "https://h/secret".into(),
                    on: NotifyOn::Always
                }
            )
            .contains("secret")
        );
    }
}
