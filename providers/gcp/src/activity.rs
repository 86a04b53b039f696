//! The old key's use since publish, from the Policy Analyzer's Activity Analyzer
//! (`serviceAccountKeyLastAuthentication`; permission
//! `policyanalyzer.serviceAccountKeyLastAuthenticationActivities.query`, in the role
//! Activity Analysis Viewer).
//!
//! The Activity Analyzer reports the **day** of a key's last authentication (the start of
//! that day, US Pacific time) and, with it, the period its data covers
//! (`observationPeriod.endTime`). So "unused since publish" is said only once the data
//! covers a whole day after both the publish and the last day of use: a consumer still on
//! the old key would have moved its last day of use forward by then. A key with no activity
//! at all counts as idle once two days have passed since publish (the data is updated
//! daily). Until then the gate waits, saying until when.

use crate::{GcpProvider, NAME, NO_CREDENTIALS, permanent};
use chrono::{DateTime, SecondsFormat, Utc};
use secret_manager_provider::{ProviderError, ProviderResult, Target, Usage};

/// Policy Analyzer API, the default endpoint.
pub const POLICY_ANALYZER_URL: &str = "https://policyanalyzer.googleapis.com";
/// Overrides it (tests, private service connect).
pub const POLICY_ANALYZER_ENV: &str = "SECRET_MANAGER_GCP_POLICY_ANALYZER_ENDPOINT";

const DAY: chrono::Duration = chrono::Duration::days(1);

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Page {
    #[serde(default)]
    activities: Vec<Activity>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Activity {
    #[serde(default)]
    activity: serde_json::Value,
    observation_period: Option<Period>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Period {
    end_time: DateTime<Utc>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// What the analyzer's answer says, asked at `now` about use since `since`: `last` is the
/// start of the last day of use and `end` how far its data reaches, when it has any.
pub(crate) fn decide(
    activity: Option<(DateTime<Utc>, DateTime<Utc>)>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Usage {
    match activity {
        Some((last, _)) if last >= since => Usage::Used(last),
        Some((last, end)) => {
            let need = (last + DAY).max(since) + DAY;
            if end >= need {
                Usage::Idle
            } else {
                Usage::Pending(format!(
                    "the Activity Analyzer reports days: the old key was last used on the day starting {}, and its data reaches {}; waiting until it covers a whole day after publish without use ({})",
                    ts(last),
                    ts(end),
                    ts(need)
                ))
            }
        }
        None if now >= since + DAY * 2 => Usage::Idle,
        None => Usage::Pending(format!(
            "the Activity Analyzer shows no use of the old key, but its data is updated daily: waiting until {}",
            ts(since + DAY * 2)
        )),
    }
}

/// A key id as it may appear in a resource name (it comes from a manifest annotation and
/// goes into a filter expression).
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 254
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@.-_".contains(&b))
}

impl GcpProvider {
    /// Authorization headers for a REST call, from the credentials given or ADC.
    async fn auth_headers(&self) -> ProviderResult<reqwest::header::HeaderMap> {
        let no_credentials = |e: String| ProviderError::NoCredentials {
            provider: NAME.into(),
            message: format!("{NO_CREDENTIALS} ({e})"),
        };
        let creds = match &self.credentials {
            Some(c) => c.clone(),
            None => google_cloud_auth::credentials::Builder::default()
                .build()
                .map_err(|e| no_credentials(e.to_string()))?,
        };
        match creds.headers(http::Extensions::new()).await {
            Ok(google_cloud_auth::credentials::CacheableResource::New { data, .. }) => Ok(data),
            Ok(google_cloud_auth::credentials::CacheableResource::NotModified) => {
                Err(no_credentials("no headers".into()))
            }
            Err(e) => Err(no_credentials(e.to_string())),
        }
    }

    pub(crate) async fn activity_since(
        &self,
        t: &Target,
        key: &str,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> ProviderResult<Usage> {
        let (name, _) = crate::account(t)?;
        let project = t.param("project")?;
        for (what, v) in [("key id", key)] {
            if !plain(v) {
                return Err(permanent(
                    "activities.query",
                    format!(
                        "{what} `{}` cannot be part of a resource name: nothing was asked",
                        secret_manager_provider::escape_for_display(v)
                    ),
                ));
            }
        }
        let filter =
            format!("activities.full_resource_name=\"//iam.googleapis.com/{name}/keys/{key}\"");
        let url = format!(
            "{}/v1/projects/{project}/locations/global/activityTypes/serviceAccountKeyLastAuthentication/activities:query",
            self.analyzer_url
        );
        let headers = self.auth_headers().await?;
        let resp = self
            .http
            .get(url)
            .headers(headers)
            .query(&[("filter", filter.as_str()), ("pageSize", "10")])
            .send()
            .await
            .map_err(|e| ProviderError::Transient {
                provider: NAME.into(),
                operation: "activities.query",
                message: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap_or_default();
        if status != 200 {
            return Err(error(status, &body));
        }
        let page: Page = serde_json::from_slice(&body)
            .map_err(|e| permanent("activities.query", format!("unexpected response: {e}")))?;
        let found = page.activities.iter().find_map(|a| {
            let last = a.activity["lastAuthenticatedTime"]
                .as_str()?
                .parse::<DateTime<Utc>>()
                .ok()?;
            Some((last, a.observation_period.as_ref()?.end_time))
        });
        Ok(decide(found, since, now))
    }
}

/// A Policy Analyzer error (`{"error": {"code", "message", "status"}}`) as a provider error.
fn error(status: u16, body: &[u8]) -> ProviderError {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let message = v["error"]["message"]
        .as_str()
        .map_or_else(|| format!("HTTP {status}"), str::to_owned);
    match status {
        429 | 500 | 502 | 503 | 504 => ProviderError::Transient {
            provider: NAME.into(),
            operation: "activities.query",
            message,
        },
        401 | 403 => ProviderError::AccessDenied {
            provider: NAME.into(),
            operation: "activities.query",
            message: format!(
                "{message} (reading key activity needs the Policy Analyzer API enabled in the project and the role Activity Analysis Viewer, roles/policyanalyzer.activityAnalysisViewer)"
            ),
        },
        _ => permanent("activities.query", message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_of_use_counts_only_once_a_whole_day_after_it_was_observed() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let published = t("2026-12-01T18:00:00Z");
        let now = t("2026-12-05T00:00:00Z");
        // Used on the day of publish (it starts at 08:00Z, midnight Pacific): the data
        // must reach a whole day after that day.
        let day = t("2026-12-01T08:00:00Z");
        assert!(matches!(
            decide(Some((day, t("2026-12-02T09:00:00Z"))), published, now),
            Usage::Pending(why) if why.contains("2026-12-03T08:00:00Z")
        ));
        assert_eq!(
            decide(Some((day, t("2026-12-03T08:00:00Z"))), published, now),
            Usage::Idle
        );
        // Used on a later day: used after publish.
        let later = t("2026-12-02T08:00:00Z");
        assert_eq!(
            decide(Some((later, t("2026-12-03T08:00:00Z"))), published, now),
            Usage::Used(later)
        );
        // Last used days before: a whole day after publish is enough.
        assert_eq!(
            decide(
                Some((t("2026-11-20T08:00:00Z"), t("2026-12-02T18:00:00Z"))),
                published,
                now
            ),
            Usage::Idle
        );
        // No activity at all: idle after two days of daily updates.
        assert!(matches!(
            decide(None, published, t("2026-12-02T00:00:00Z")),
            Usage::Pending(_)
        ));
        assert_eq!(decide(None, published, now), Usage::Idle);
        assert!(!plain("0a1b\" OR x=\""));
        assert!(plain("0a1b2c3d4e5f"));
    }
}
