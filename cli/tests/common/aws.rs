//! The AWS fleet most end-to-end tests start from: the example repo whose dev1 cluster
//! holds a real (moto) IAM key, created and published.

use super::{GitFleet, Moto, cmd, run_cmd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const DEV1: &str = "aws.eu-central-1.dev1";
pub(crate) const REL: &str =
    "applications/root/external-dns/state/overlays/aws.eu-central-1.dev1/route53.yaml";
pub(crate) const LABEL: &str = "external-dns/route53";
pub(crate) const USER: &str = "external-dns-dev1";

/// `create` for an AWS IAM user (which must exist at moto): writes `rel` in `work`.
pub(crate) fn create_aws(
    moto: &Moto,
    work: &Path,
    cluster: &str,
    namespace: &str,
    user: &str,
    name: &str,
    rel: &str,
) {
    let r = run_cmd(moto.env(&mut cmd()).args([
        "--repo",
        work.to_str().unwrap(),
        "create",
        "--source",
        "aws",
        "--cluster",
        cluster,
        "--namespace",
        namespace,
        "--name",
        name,
        "--key-mappings",
        "[accessKeyId:AccessKeyId,secretAccessKey:SecretAccessKey]",
        "--param",
        &format!("username={user}"),
        "--param",
        "account=123456789012",
        "-w",
        work.join(rel).to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// A fleet whose dev1 cluster holds a real (moto) AWS key in `REL`, published.
pub(crate) fn setup() -> (GitFleet, Moto, String) {
    let f = GitFleet::new();
    let moto = Moto::start();
    moto.iam(&[("Action", "CreateUser"), ("UserName", USER)]);
    let work = f.path("work");
    create_aws(&moto, &work, DEV1, "external-dns", USER, "route53", REL);
    f.commit_and_publish("Add route53 credentials", &[DEV1]);
    let old = moto.key_ids(USER);
    assert_eq!(old.len(), 1);
    (f, moto, old[0].clone())
}

/// A `rotate` process on a fresh clone, the CronJob's way.
pub(crate) fn pod(f: &GitFleet, moto: &Moto, now: &str, dir: &Path, args: &[&str]) -> Command {
    let mut c = cmd();
    moto.env(&mut c)
        .env("SECRET_MANAGER_NOW", now)
        .env("GIT_AUTHOR_NAME", "cron")
        .env("GIT_AUTHOR_EMAIL", "cron@example.com")
        .env("GIT_COMMITTER_NAME", "cron")
        .env("GIT_COMMITTER_EMAIL", "cron@example.com")
        .env("TMPDIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .args([
            &format!("--clone={}", f.path("dev.git").display()),
            &format!("--clone-remote=prod={}", f.path("prod.git").display()),
            "--yes",
            "rotate",
            "--revoke-after=0s",
        ])
        .args(args);
    c
}

/// Waits until `path`'s content contains `needle` (the child's stderr, written to a file).
pub(crate) fn wait_for(path: &Path, needle: &str) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        if std::fs::read_to_string(path).is_ok_and(|s| s.contains(needle)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{needle} never appeared in {}", path.display());
}
