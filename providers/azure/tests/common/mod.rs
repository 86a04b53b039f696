//! Shared setup for this crate's tests.
#![allow(dead_code)]

use secret_manager_azure::api::{RetryPolicy, Target};
use secret_manager_azure::{AzureEndpoints, AzureProvider, credential_chain_from};
use secret_manager_testkit::graph::{ADMIN_CLIENT_ID, ADMIN_SECRET, FakeGraph, TENANT};
use std::collections::BTreeMap;
use std::time::Duration;

pub const APP_ID: &str = "6a1f2c3d-0000-4000-8000-00000000a001";

pub fn endpoints(g: &FakeGraph) -> AzureEndpoints {
    let ca = reqwest::Certificate::from_pem(g.server.ca_pem.as_bytes()).unwrap();
    AzureEndpoints {
        graph_url: g.graph_url(),
        authority_host: g.server.url.clone(),
        http: reqwest::Client::builder()
            .tls_certs_merge([ca])
            .build()
            .unwrap(),
    }
}

/// The admin signs in with a client secret through azure_identity (the chain's third link).
pub fn provider(g: &FakeGraph) -> AzureProvider {
    let ep = endpoints(g);
    let vars: BTreeMap<&str, &str> = [
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", ADMIN_CLIENT_ID),
        ("AZURE_CLIENT_SECRET", ADMIN_SECRET),
    ]
    .into();
    let chain = credential_chain_from(&ep, |k| vars.get(k).map(|v| v.to_string())).unwrap();
    AzureProvider::with_chain(chain, ep)
        .with_home_tenant(Some(TENANT.into()))
        .with_clock(g.state().clock.clone())
}

pub fn fast(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..RetryPolicy::default()
    }
}

pub fn target(object_id: &str) -> Target {
    Target {
        source: "azure".into(),
        params: [
            ("tenantId".to_string(), TENANT.to_string()),
            ("applicationObjectId".to_string(), object_id.to_string()),
            ("clientId".to_string(), APP_ID.to_string()),
        ]
        .into(),
        current_key: None,
        referenced: Vec::new(),
    }
}

pub async fn setup() -> (FakeGraph, String) {
    let g = FakeGraph::start().await;
    let id = g.state().add_app(APP_ID, "payments-api");
    (g, id)
}
