//! Azure and GCP end to end: the real binary, dev/prod bare remotes, and the testkit's
//! fake Entra ID + Graph (HTTPS) and fake IAM Admin API, reached the way an operator's
//! environment would point at them (managed identity endpoint, ADC key file, endpoint
//! and CA overrides). No secret may reach stdout or stderr.

use crate::common::{GitFleet, Run, cmd, decrypt_value, git, run_cmd};
use secret_manager_testkit::graph::{FakeGraph, IDENTITY_HEADER, TENANT};
use secret_manager_testkit::iam::FakeIam;
use std::path::Path;
use std::process::Command;

const AZ_CLUSTER: &str = "azure.westeurope.prod2";
const AZ_REL: &str =
    "applications/root/payments/state/overlays/azure.westeurope.prod2/payments-sp.yaml";
const APP_ID: &str = "6a1f2c3d-0000-4000-8000-00000000a001";
const GCP_CLUSTER: &str = "gcp.europe-west1.dev2";
const GCP_REL: &str =
    "applications/root/external-dns/state/overlays/gcp.europe-west1.dev2/clouddns-sa.yaml";
const EMAIL: &str = "external-dns@dns-dev2.iam.gserviceaccount.com";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn pointer(f: &GitFleet, cluster: &str) -> (String, String) {
    let repo = secret_manager::Repo::open(&f.path("work")).unwrap();
    let c = repo
        .inventory
        .clusters
        .iter()
        .find(|c| c.id == cluster)
        .unwrap();
    let remote = if c.remote == "prod" { "prod" } else { "dev" };
    (remote.to_owned(), secret_manager::gitops::pointer_ref(c))
}

/// Requests by `METHOD path` with the ids that vary per run (object ids, key ids, tenant)
/// replaced by `{id}`, counted: one `count METHOD path` line each, sorted.
fn calls(log: &[String]) -> String {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for l in log {
        let shape: Vec<String> = l
            .split('/')
            .map(|seg| {
                // `keys/{id}:disable`: the id before a custom verb.
                let (head, verb) = seg.split_once(':').unwrap_or((seg, ""));
                let id_like = head.contains('@')
                    || (head.len() >= 20
                        && head.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
                match (id_like, verb) {
                    (false, _) => seg.to_owned(),
                    (true, "") => "{id}".to_owned(),
                    (true, verb) => format!("{{id}}:{verb}"),
                }
            })
            .collect();
        *counts.entry(shape.join("/")).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(k, n)| format!("{n} {k}\n"))
        .collect()
}

/// One Azure rotation: per run and tenant, OpenID discovery and the managed identity's
/// token; per credential, one read of the application (preflight and the slot check
/// share it), `addPassword`, the sign-in with the new secret (verify), `removePassword`.
const AZURE_ROTATION_CALLS: &str = "\
1 GET /msi/token
1 GET /v1.0/applications/{id}
1 GET /{id}/v2.0/.well-known/openid-configuration
1 POST /v1.0/applications/{id}/addPassword
1 POST /v1.0/applications/{id}/removePassword
1 POST /{id}/oauth2/v2.0/token
";

/// One GCP rotation: one key listing (preflight and the slot check share it), create, the
/// read of the new key authenticated as itself (verify), disable.
const GCP_ROTATION_CALLS: &str = "\
1 GET /v1/projects/dns-dev2/serviceAccounts/{id}/keys
1 GET /v1/projects/dns-dev2/serviceAccounts/{id}/keys/{id}
1 POST /v1/projects/dns-dev2/serviceAccounts/{id}/keys
1 POST /v1/projects/dns-dev2/serviceAccounts/{id}/keys/{id}:disable
";

fn no_secret(r: &Run, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !r.stdout.contains(s) && !r.stderr.contains(s),
            "a secret reached the output"
        );
    }
}

fn azure_env<'a>(c: &'a mut Command, g: &FakeGraph, ca: &Path) -> &'a mut Command {
    c.env("SECRET_MANAGER_AZURE_GRAPH_URL", g.graph_url())
        .env("AZURE_AUTHORITY_HOST", &g.server.url)
        .env("SSL_CERT_FILE", ca)
        .env("IDENTITY_ENDPOINT", format!("{}/msi/token", g.server.url))
        .env("IDENTITY_HEADER", IDENTITY_HEADER)
        .env("GIT_AUTHOR_NAME", "Rotator")
        .env("GIT_AUTHOR_EMAIL", "rotator@example.com")
}

/// A fake Graph with the app, a fleet, and the fake's CA on disk.
struct AzureFleet {
    _rt: tokio::runtime::Runtime,
    g: FakeGraph,
    object_id: String,
    f: GitFleet,
    ca: std::path::PathBuf,
}

impl AzureFleet {
    fn new() -> AzureFleet {
        let rt = runtime();
        let g = rt.block_on(FakeGraph::start());
        let object_id = g.state().add_app(APP_ID, "payments-api");
        let f = GitFleet::new();
        let ca = f.path("fake-ca.pem");
        std::fs::write(&ca, &g.server.ca_pem).unwrap();
        AzureFleet {
            _rt: rt,
            g,
            object_id,
            f,
            ca,
        }
    }

    /// `create` of `payments/payments-sp` on the Azure cluster with `mappings`.
    fn create(&self, mappings: &str) -> Run {
        let work = self.f.path("work");
        run_cmd(
            azure_env(&mut cmd(), &self.g, &self.ca)
                .args([
                    "--repo",
                    work.to_str().unwrap(),
                    "create",
                    "--source",
                    "azure",
                ])
                .args(["--cluster", AZ_CLUSTER, "--namespace", "payments"])
                .args(["--name", "payments-sp", "--key-mappings", mappings])
                .args(["--param", &format!("tenantId={TENANT}")])
                .args([
                    "--param",
                    &format!("applicationObjectId={}", self.object_id),
                ])
                .args(["--param", &format!("clientId={APP_ID}")])
                .arg("-w")
                .arg(work.join(AZ_REL)),
        )
    }
}

#[test]
fn azure_create_rotate_and_keys_through_managed_identity() {
    let az = AzureFleet::new();
    let (g, object_id, f, ca) = (&az.g, &az.object_id, &az.f, &az.ca);
    let work = f.path("work");
    let r = az.create(
        "[AZURE_CLIENT_ID:ClientId,AZURE_CLIENT_SECRET:ClientSecret,AZURE_TENANT_ID:TenantId]",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let old = g.state().key_ids(object_id);
    assert_eq!(old.len(), 1);
    f.commit_and_publish("Add credentials", &[AZ_CLUSTER]);

    g.state().log.clear();
    let r = run_cmd(azure_env(&mut cmd(), g, ca).args([
        "--repo",
        work.to_str().unwrap(),
        "rotate",
        "--source",
        "azure",
        "--cluster",
        AZ_CLUSTER,
        "--name",
        "payments-sp",
        "--yes",
        "--revoke-after",
        "0s",
    ]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // The call budget of one rotation (docs/providers/azure.md).
    let log = g.state().log.clone();
    assert_eq!(calls(&log), AZURE_ROTATION_CALLS, "{log:?}");
    let now = g.state().key_ids(object_id);
    assert_eq!(now.len(), 1, "old password removed, new one kept: {now:?}");
    assert_ne!(now, old);
    let secret = g.state().apps[object_id]
        .passwords
        .iter()
        .find(|p| p.removed.is_none())
        .unwrap()
        .secret
        .clone();
    no_secret(&r, &[&secret]);
    // main and the cluster's pointer hold the new secret, sealed for that cluster.
    let (remote, refname) = pointer(f, AZ_CLUSTER);
    let on_pointer = f.show(&remote, &refname, AZ_REL);
    assert_eq!(on_pointer, f.show("dev", "main", AZ_REL));
    let file = f.path("m.yaml");
    std::fs::write(&file, &on_pointer).unwrap();
    let label = "payments/payments-sp";
    let got = decrypt_value(&file, 0, AZ_CLUSTER, label, "AZURE_CLIENT_SECRET").unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), secret);
    let key_line = on_pointer
        .lines()
        .find(|l| l.trim_start().starts_with("secret-manager/keyId:"))
        .unwrap();
    assert!(key_line.contains(&now[0]), "{key_line}");
    // The managed identity signed in; the new secret was verified by signing in with it.
    let log = g.state().log.clone();
    assert!(log.iter().any(|l| l == "GET /msi/token"), "{log:?}");
    assert!(
        log.iter().any(|l| l.ends_with("/oauth2/v2.0/token")),
        "{log:?}"
    );

    // `keys` reads the checkout: bring it up to what the rotation pushed.
    git(&work, &["pull", "--quiet", "--ff-only", "origin", "main"]);
    let r = run_cmd(azure_env(&mut cmd(), g, ca).args([
        "--repo",
        work.to_str().unwrap(),
        "keys",
        "--source",
        "azure",
        "--name",
        "payments-sp",
        "-o",
        "json",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["keyId"], now[0].as_str());
    assert_eq!(rows[0]["role"], "current");
}

#[test]
fn gcp_create_rotate_through_adc_key_file_and_disable_mode() {
    let rt = runtime();
    let iam = rt.block_on(FakeIam::start());
    iam.state().add_account("dns-dev2", EMAIL);
    let f = GitFleet::new();
    let work = f.path("work");
    // ADC from a key file (TEST-ONLY, the fake's admin account), outside the repo.
    let adc = f.path("adc.json");
    std::fs::write(&adc, iam.admin_key_json()).unwrap();
    let env = |c: &mut Command| {
        c.env("GOOGLE_APPLICATION_CREDENTIALS", &adc)
            .env("SECRET_MANAGER_GCP_IAM_ENDPOINT", &iam.server.url)
            .env("GIT_AUTHOR_NAME", "Rotator")
            .env("GIT_AUTHOR_EMAIL", "rotator@example.com");
    };
    let mut c = cmd();
    env(&mut c);
    let r = run_cmd(c.args([
        "--repo",
        work.to_str().unwrap(),
        "create",
        "--source",
        "gcp",
        "--cluster",
        GCP_CLUSTER,
        "--namespace",
        "external-dns",
        "--name",
        "clouddns-sa",
        "--key-mappings",
        "[credentials.json:KeyFileJson]",
        "--param",
        "project=dns-dev2",
        "--param",
        &format!("serviceAccount={EMAIL}"),
        "-w",
        work.join(GCP_REL).to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let old = iam.state().user_keys(EMAIL);
    assert_eq!(old.len(), 1);
    f.commit_and_publish("Add credentials", &[GCP_CLUSTER]);

    iam.state().log.clear();
    let mut c = cmd();
    env(&mut c);
    let r = run_cmd(c.args([
        "--repo",
        work.to_str().unwrap(),
        "rotate",
        "--source",
        "gcp",
        "--cluster",
        GCP_CLUSTER,
        "--name",
        "clouddns-sa",
        "--yes",
        "--revoke-after",
        "0s",
        "--revoke-mode",
        "disable",
    ]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // The call budget of one rotation (docs/providers/gcp.md).
    let log = iam.state().log.clone();
    assert_eq!(calls(&log), GCP_ROTATION_CALLS, "{log:?}");
    let keys = iam.state().user_keys(EMAIL);
    assert_eq!(
        keys.len(),
        2,
        "disable keeps the old key, disabled: {keys:?}"
    );
    assert_eq!(iam.state().is_disabled(EMAIL, &old[0]), Some(true));
    let new = keys.iter().find(|k| **k != old[0]).unwrap().clone();
    assert_eq!(iam.state().is_disabled(EMAIL, &new), Some(false));
    let (remote, refname) = pointer(&f, GCP_CLUSTER);
    let on_pointer = f.show(&remote, &refname, GCP_REL);
    assert_eq!(on_pointer, f.show("dev", "main", GCP_REL));
    let file = f.path("m.yaml");
    std::fs::write(&file, &on_pointer).unwrap();
    let json = decrypt_value(
        &file,
        0,
        GCP_CLUSTER,
        "external-dns/clouddns-sa",
        "credentials.json",
    )
    .unwrap();
    let key: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(key["private_key_id"], new.as_str());
    assert_eq!(key["client_email"], EMAIL);
    let pem_line = key["private_key"]
        .as_str()
        .unwrap()
        .lines()
        .nth(2)
        .unwrap()
        .to_owned();
    no_secret(&r, &[&pem_line]);
}

/// `--require-old-key-unused` on Azure through the binary: the gate reads the fake Graph's
/// sign-in logs. Right after publish it waits for the logs to catch up; a sign-in with the
/// old secret after publish keeps it; once the logs show none, the old secret is removed.
#[test]
fn azure_old_secret_is_revoked_only_when_the_sign_in_logs_show_it_idle() {
    use secret_manager_testkit::graph::SignIn;
    let az = AzureFleet::new();
    let (g, object_id, f, ca) = (&az.g, &az.object_id, &az.f, &az.ca);
    let work = f.path("work");
    let r = az.create("[AZURE_CLIENT_SECRET:ClientSecret]");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let old = g.state().key_ids(object_id)[0].clone();
    f.commit_and_publish("Add credentials", &[AZ_CLUSTER]);
    let t0: chrono::DateTime<chrono::Utc> = "2027-01-10T10:00:00Z".parse().unwrap();
    let rotate = |minutes: i64| {
        let now = t0 + chrono::Duration::minutes(minutes);
        run_cmd(
            azure_env(&mut cmd(), g, ca)
                .env("SECRET_MANAGER_NOW", now.to_rfc3339())
                .args(["--repo", work.to_str().unwrap(), "--yes", "rotate"])
                .args(["--source", "azure", "--cluster", AZ_CLUSTER])
                .args(["--name", "payments-sp", "--older-than", "0s"])
                .args(["--revoke-after", "0s", "--require-old-key-unused"]),
        )
    };
    let r = rotate(0);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("sign-in logs lag"), "{all}");
    assert!(
        g.state().key_ids(object_id).contains(&old),
        "kept while the logs lag"
    );

    g.state().sign_ins.push(SignIn {
        app_id: APP_ID.into(),
        key_id: old.clone(),
        at: t0 + chrono::Duration::minutes(5),
    });
    let r = rotate(30);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("the old key was used at 2027-01-10T10:05:00Z"),
        "{all}"
    );
    assert!(
        g.state().key_ids(object_id).contains(&old),
        "kept while used"
    );

    g.state().sign_ins.clear();
    let r = rotate(40);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        !g.state().key_ids(object_id).contains(&old),
        "idle: removed"
    );
    let log = g.state().log.clone();
    assert_eq!(
        log.iter()
            .filter(|l| *l == "GET /beta/auditLogs/signIns")
            .count(),
        3,
        "one sign-in query per run: {log:?}"
    );
}
