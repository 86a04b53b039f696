//! What the webhook and Pushgateway clients share: the retry bound and how a failed
//! request is described (reqwest's own message may repeat the URL, which can carry a
//! token or a password, so only the kind of failure is kept).

use secret_manager::provider::RetryPolicy;

/// Attempts per delivery (the first and two retries).
pub const ATTEMPTS: u32 = RetryPolicy::DELIVERY.max_attempts;

/// The kind of a failed request, without the URL.
pub fn failure_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        "request failed".into()
    }
}

/// Waits before attempt `attempt + 1` under [`RetryPolicy::DELIVERY`] (jittered, up to
/// 0.5 s, then up to 1 s); nothing after the last.
pub async fn backoff(attempt: u32) {
    if let Some(d) = RetryPolicy::DELIVERY.backoff(attempt, None, std::time::Duration::ZERO) {
        tokio::time::sleep(d).await;
    }
}
