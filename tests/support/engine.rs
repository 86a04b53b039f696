//! The engine in-process over the example fleet: `Env` runs `secret_manager::engine::rotate`
//! on a `GitFleet` with `FakeProvider` as the AWS source, and checks what git and the fake
//! hold afterwards. Used by the library's engine tests and by the binary tests that compare
//! the two.

use super::{GitFleet, decrypt_value, git};
use chrono::{DateTime, Utc};
use secret_manager::engine::{RotateOptions, RotateReport, rotate};
use secret_manager::provider::RetryPolicy;
use secret_manager::providers::Providers;
use secret_manager_testkit::FakeProvider;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const DEV1: &str = "aws.eu-central-1.dev1";
pub const PROD1: &str = "aws.us-east-1.prod1";
pub const DNS: &str = "applications/root/external-dns/state/overlays/aws.eu-central-1.dev1/sealedSeacret-cloud-dns.yaml";
pub const DNS_PROD: &str = "applications/root/external-dns/state/overlays/aws.us-east-1.prod1/sealedSeacret-cloud-dns.yaml";
pub const DNS_KEY: &str = "AKIA2XDAMLXHPVQO3KSY";
pub const LABEL: &str = "external-dns/cloudprovider-dns-access";
pub const T0: &str = "2026-11-21T12:00:00Z";

pub fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

pub fn at(base: &str, minutes: i64) -> DateTime<Utc> {
    t(base) + chrono::Duration::minutes(minutes)
}

/// The dev1 external-dns bot's identity parameters (as its manifest has them).
pub fn dns() -> BTreeMap<String, String> {
    [
        ("account".to_string(), "111111111111".to_string()),
        ("username".to_string(), "external-dns-dev1".to_string()),
    ]
    .into()
}

pub struct Env {
    pub f: GitFleet,
    pub fake: Arc<FakeProvider>,
    pub providers: Providers,
}

impl Env {
    pub fn new() -> Env {
        Env::with(FakeProvider::new("aws"))
    }

    /// A fleet whose every AWS identity holds, at `fake`, the keys its manifests reference.
    pub fn with(fake: FakeProvider) -> Env {
        let f = GitFleet::new();
        let fake = Arc::new(fake);
        let repo = secret_manager::Repo::open(&f.path("work")).unwrap();
        let scan = repo.scan();
        for id in secret_manager::keys::identities(
            &scan.secrets,
            &secret_manager::list::Filter::default(),
            t(T0),
        ) {
            if id.source == "aws" {
                for k in &id.target.referenced {
                    fake.add_key(&id.target.params, &k.0, at(T0, -200 * 24 * 60));
                }
            }
        }
        let providers = Providers::default()
            .with("aws", fake.clone())
            .with_retry_policy(RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(5),
                ..RetryPolicy::default()
            });
        Env { f, fake, providers }
    }

    /// The dev1 DNS credential, zero grace.
    pub fn opts(&self, now: DateTime<Utc>) -> RotateOptions {
        let mut o = RotateOptions::new(now);
        o.filter.sources = vec!["aws".into()];
        o.filter.clusters = vec![DEV1.into()];
        o.filter.namespace = Some("external-dns".into());
        o.revoke_after = chrono::Duration::zero();
        o
    }

    pub async fn run(&self, o: &RotateOptions) -> RotateReport {
        rotate(&self.f.path("work"), &self.providers, o)
            .await
            .expect("the run starts")
    }

    pub fn keys(&self) -> Vec<String> {
        self.fake
            .keys_of(&dns())
            .into_iter()
            .map(|k| k.id)
            .collect()
    }

    /// The key id the manifest at `rel` holds on main.
    pub fn main_key(&self, rel: &str) -> String {
        self.f
            .show("dev", "main", rel)
            .lines()
            .find_map(|l| l.trim().strip_prefix("secret-manager/accessKeyId: "))
            .unwrap()
            .trim_matches('"')
            .to_owned()
    }

    pub fn refs(&self, remote: &str, prefix: &str) -> Vec<String> {
        let out = git(
            &self.f.path(&format!("{remote}.git")),
            &["for-each-ref", "--format=%(refname)", prefix],
        );
        out.lines().map(str::to_owned).collect()
    }

    pub fn all_refs(&self) -> String {
        format!(
            "{}\n{}",
            git(&self.f.path("dev.git"), &["for-each-ref"]),
            git(&self.f.path("prod.git"), &["for-each-ref"])
        )
    }

    pub fn records_on_main(&self) -> Vec<String> {
        git(
            &self.f.path("dev.git"),
            &["ls-tree", "-r", "--name-only", "main"],
        )
        .lines()
        .filter(|l| l.starts_with(".secret-manager/rotations/"))
        .map(str::to_owned)
        .collect()
    }

    /// The audit event log's messages, newest first.
    pub fn events(&self) -> String {
        if self.refs("dev", "refs/secret-manager/audit").is_empty() {
            return String::new();
        }
        git(
            &self.f.path("dev.git"),
            &["log", "--format=%B", "refs/secret-manager/audit"],
        )
    }

    /// The manifest at `rel` on main, in cluster `cluster`, decrypts to key `key` and its
    /// secret; the pointer holds the same file.
    pub fn assert_sealed(&self, rel: &str, cluster: &str, remote: &str, key: &str) {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("m.yaml");
        let text = self.f.show("dev", "main", rel);
        std::fs::write(&file, &text).unwrap();
        let id = decrypt_value(&file, 0, cluster, LABEL, "accessKeyId").unwrap();
        assert_eq!(String::from_utf8(id).unwrap(), key);
        let secret = decrypt_value(&file, 0, cluster, LABEL, "secretAccessKey").unwrap();
        assert_eq!(
            Some(String::from_utf8(secret).unwrap()),
            self.fake.secret_of(key)
        );
        assert_eq!(
            self.f
                .show(remote, &format!("refs/heads/cluster/{cluster}"), rel),
            text,
            "the pointer has main's version"
        );
    }

    /// Exactly one live key, the one main and the dev1 pointer hold; no record, no claim.
    pub fn assert_converged(&self) {
        let key = self.main_key(DNS);
        assert_eq!(self.keys(), vec![key.clone()], "exactly the manifest's key");
        self.assert_sealed(DNS, DEV1, "dev", &key);
        assert!(
            self.records_on_main().is_empty(),
            "{:?}",
            self.records_on_main()
        );
        assert!(self.f.claims("dev").is_empty(), "no claim left");
    }
}

pub fn errors(r: &RotateReport) -> String {
    r.failures
        .iter()
        .map(|f| format!("{:?}: {}", f.phase, f.error))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn hook(env: &Env, remote: &str, script: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let hook = env.f.path(&format!("{remote}.git/hooks/pre-receive"));
    std::fs::write(&hook, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    hook
}

/// What the run's `stage` step says (its plan): the step every staging test reads.
pub fn stage_detail(r: &RotateReport) -> &str {
    &r.steps
        .iter()
        .find(|s| s.action == secret_manager::engine::Action::Stage)
        .expect("a stage step")
        .detail
}
