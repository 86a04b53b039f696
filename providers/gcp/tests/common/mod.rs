//! Shared setup for this crate's tests.
#![allow(dead_code)]

use secret_manager_gcp::GcpProvider;
use secret_manager_gcp::api::{RetryPolicy, Target};
use secret_manager_testkit::iam::FakeIam;
use std::time::Duration;

pub const PROJECT: &str = "payments-prod";
pub const EMAIL: &str = "dns-updater@payments-prod.iam.gserviceaccount.com";

pub fn fast(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..RetryPolicy::default()
    }
}

/// The provider authenticates as the fake's admin account from its JSON key file, the
/// way ADC does with GOOGLE_APPLICATION_CREDENTIALS.
pub async fn provider(f: &FakeIam) -> GcpProvider {
    let json: serde_json::Value = serde_json::from_str(f.admin_key_json()).unwrap();
    let creds = google_cloud_auth::credentials::service_account::Builder::new(json)
        .build()
        .unwrap();
    GcpProvider::new(Some(f.server.url.clone()), Some(creds))
        .await
        .unwrap()
        .with_clock(f.state().clock.clone())
}

pub fn target() -> Target {
    Target {
        source: "gcp".into(),
        params: [
            ("project".to_string(), PROJECT.to_string()),
            ("serviceAccount".to_string(), EMAIL.to_string()),
        ]
        .into(),
        current_key: None,
        referenced: Vec::new(),
    }
}

pub async fn setup() -> FakeIam {
    let f = FakeIam::start().await;
    f.state().add_account(PROJECT, EMAIL);
    f
}
