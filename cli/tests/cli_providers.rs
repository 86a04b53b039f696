//! `create` and `keys` against real sources: moto for AWS, the demo plugin for exec.

use crate::common::{Moto, cmd, decrypt_value, run_cmd, temp_repo, with_demo_plugin};

const DEV1: &str = "aws.eu-central-1.dev1";

#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn create_mints_seals_and_keys_shows_it() {
    let moto = Moto::start();
    moto.iam(&[("Action", "CreateUser"), ("UserName", "external-dns-dev1")]);
    let dir = temp_repo("example-repo");
    let repo = dir.path().to_str().unwrap();
    let rel = "applications/root/external-dns/state/overlays/aws.eu-central-1.dev1/new-dns.yaml";
    let r = run_cmd(moto.env(&mut cmd()).args([
        "--repo",
        repo,
        "create",
        "--source",
        "aws",
        "--cluster",
        DEV1,
        "--namespace",
        "external-dns",
        "--name",
        "dns2",
        "--key-mappings",
        "[accessKeyId:AccessKeyId,secretAccessKey:SecretAccessKey]",
        "--param",
        "username=external-dns-dev1",
        "--param",
        "account=123456789012",
        "-w",
        &format!("{repo}/{rel}"),
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let keys = moto.key_ids("external-dns-dev1");
    assert_eq!(keys.len(), 1);
    let file = dir.path().join(rel);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains(&format!("secret-manager/accessKeyId: {}", keys[0])),
        "{text}"
    );
    assert!(text.contains("secret-manager/sealedWith:"), "{text}");
    let id = decrypt_value(&file, 0, DEV1, "external-dns/dns2", "accessKeyId").unwrap();
    assert_eq!(String::from_utf8(id).unwrap(), keys[0]);
    let secret = decrypt_value(&file, 0, DEV1, "external-dns/dns2", "secretAccessKey").unwrap();
    assert_eq!(secret.len(), 40, "an AWS secret access key");
    assert!(!r.stderr.contains(std::str::from_utf8(&secret).unwrap()));
    // lint accepts what create wrote (real clock: moto stamps keys with the real time).
    let r = run_cmd(
        cmd()
            .env_remove("SECRET_MANAGER_NOW")
            .args(["--repo", repo, "lint"]),
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // keys: the new key is current; an extra unreferenced key shows up as an orphan.
    moto.iam(&[
        ("Action", "CreateAccessKey"),
        ("UserName", "external-dns-dev1"),
    ]);
    let r = run_cmd(
        moto.env(&mut cmd())
            .args(["--repo", repo, "keys", "--name", "dns2", "-o", "json"]),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    for row in &rows {
        for k in [
            "source",
            "identity",
            "keyId",
            "created",
            "status",
            "lastUsed",
            "role",
            "referencedBy",
        ] {
            assert!(row.get(k).is_some(), "missing {k}");
        }
        assert_eq!(row["identity"], "123456789012/external-dns-dev1");
    }
    let current = rows
        .iter()
        .find(|r| r["keyId"] == keys[0].as_str())
        .unwrap();
    assert_eq!(current["role"], "current");
    assert_eq!(current["referencedBy"][0], format!("{rel}:1"));
    // A key made by hand, outside any claim: foreign, never the tool's to delete.
    assert_eq!(rows.iter().filter(|r| r["role"] == "foreign").count(), 1);
    // -o name: the key ids, one per line, in the rows' order.
    let r = run_cmd(
        moto.env(&mut cmd())
            .args(["--repo", repo, "keys", "--name", "dns2", "-o", "name"]),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ids: Vec<&str> = rows.iter().map(|r| r["keyId"].as_str().unwrap()).collect();
    assert_eq!(r.stdout.lines().collect::<Vec<_>>(), ids);
    // --no-headers: the table's rows only.
    let r = run_cmd(moto.env(&mut cmd()).args([
        "--repo",
        repo,
        "keys",
        "--name",
        "dns2",
        "--no-headers",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), rows.len(), "{}", r.stdout);
    assert!(!r.stdout.contains("KEY ID"), "{}", r.stdout);
    // The user now holds AWS's two keys: another create stops before minting, with the
    // same key-limit error a rotation gives — each key and what holds it — and writes
    // nothing.
    let rel3 = "applications/root/external-dns/state/overlays/aws.eu-central-1.dev1/dns3.yaml";
    let r = run_cmd(moto.env(&mut cmd()).args([
        "--repo",
        repo,
        "create",
        "--source",
        "aws",
        "--cluster",
        DEV1,
        "--namespace",
        "external-dns",
        "--name",
        "dns3",
        "--key-mappings",
        "[accessKeyId:AccessKeyId,secretAccessKey:SecretAccessKey]",
        "--param",
        "username=external-dns-dev1",
        "--param",
        "account=123456789012",
        "-w",
        &format!("{repo}/{rel3}"),
    ]));
    assert_eq!(r.code, 11, "{}", r.stderr);
    let foreign = ids.iter().find(|id| **id != keys[0]).unwrap();
    for says in [
        "already has 2 of at most 2 keys".to_owned(),
        format!("{} (held by {rel}:1)", keys[0]),
        format!("{foreign} (created "),
        format!("if {foreign} is unused"),
    ] {
        assert!(r.stderr.contains(&says), "{says}: {}", r.stderr);
    }
    assert!(!dir.path().join(rel3).exists());
    assert_eq!(moto.key_ids("external-dns-dev1").len(), 2);
}

#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn keys_reports_missing_keys_and_unreachable_sources() {
    let moto = Moto::start();
    let dir = temp_repo("example-repo");
    let repo = dir.path().to_str().unwrap();
    // The example's dev1 DNS user is in account 111111111111, moto's credentials act in
    // 123456789012: the account check of `rotate` comes first, exit 10.
    let r = run_cmd(moto.env(&mut cmd()).args([
        "--repo",
        repo,
        "keys",
        "--source",
        "aws",
        "--name",
        "cloudprovider-dns-access",
        "--cluster",
        DEV1,
    ]));
    assert_eq!(r.code, 10, "{}", r.stderr);
    assert!(
        r.stderr.contains("aws 111111111111/external-dns-dev1:")
            && r.stderr.contains("the manifest's account is 111111111111"),
        "{}",
        r.stderr
    );
    // In moto's account the user does not exist: a clear per-identity error, exit 10.
    let dns = dir.path().join(
        "applications/root/external-dns/state/overlays/aws.eu-central-1.dev1/sealedSeacret-cloud-dns.yaml",
    );
    let text = std::fs::read_to_string(&dns).unwrap();
    assert!(text.contains("111111111111"));
    std::fs::write(&dns, text.replace("111111111111", "123456789012")).unwrap();
    let r = run_cmd(moto.env(&mut cmd()).args([
        "--repo",
        repo,
        "keys",
        "--source",
        "aws",
        "--name",
        "cloudprovider-dns-access",
        "--cluster",
        DEV1,
    ]));
    assert_eq!(r.code, 10, "{}", r.stderr);
    assert!(
        r.stderr.contains("aws 123456789012/external-dns-dev1:")
            && r.stderr.contains("NoSuchEntity"),
        "{}",
        r.stderr
    );
    // The user exists but has no key: the referenced key is reported as missing.
    moto.iam(&[("Action", "CreateUser"), ("UserName", "external-dns-dev1")]);
    let r = run_cmd(moto.env(&mut cmd()).args([
        "--repo",
        repo,
        "keys",
        "--source",
        "aws",
        "--name",
        "cloudprovider-dns-access",
        "--cluster",
        DEV1,
        "-o",
        "json",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "missing");
    assert_eq!(rows[0]["role"], "current");
}

#[test]
fn plugin_create_rolls_back_when_a_later_step_fails() {
    let dir = temp_repo("example-repo");
    let state = tempfile::tempdir().unwrap();
    let repo = dir.path().to_str().unwrap();
    let out = dir.path().join("demo.yaml");
    let args = [
        "--repo",
        repo,
        "create",
        "--source",
        "demo",
        "--cluster",
        DEV1,
        "--namespace",
        "app",
        "--name",
        "demo",
        "--key-mappings",
        "[token:Token]",
        "--param",
        "account=acme",
        "-w",
        out.to_str().unwrap(),
    ];
    // verify fails after mint: the new key must be deleted and nothing written.
    let r = run_cmd(
        with_demo_plugin(&mut cmd(), state.path())
            .env("DEMO_PROVIDER_FAIL", "verify:permanent")
            .args(args),
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("rolled back: deleted the new key demo-"),
        "{}",
        r.stderr
    );
    assert!(!out.exists());
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.path().join("keys.json")).unwrap())
            .unwrap();
    assert_eq!(
        st["acme"].as_array().unwrap().len(),
        0,
        "no orphan left: {st}"
    );
    // Without the failure it works, and the token decrypts.
    let r = run_cmd(with_demo_plugin(&mut cmd(), state.path()).args(args));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let token = decrypt_value(&out, 0, DEV1, "app/demo", "token").unwrap();
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.path().join("keys.json")).unwrap())
            .unwrap();
    assert_eq!(
        st["acme"][0]["token"].as_str().unwrap().as_bytes(),
        token.as_slice()
    );
    // An unknown source is a clear error before anything happens.
    let r = run_cmd(cmd().args([
        "--repo",
        repo,
        "create",
        "--source",
        "vault",
        "--cluster",
        DEV1,
        "--namespace",
        "a",
        "--name",
        "b",
        "--key-mappings",
        "[t:T]",
        "-w",
        "x.yaml",
    ]));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("unknown source `vault`"), "{}", r.stderr);
}

/// A plugin is third-party code: it gets the base environment plus the variables
/// `.secret-manager.yaml` names for it — never the other providers' admin credentials.
#[test]
fn a_plugin_sees_only_its_allowlisted_environment() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_repo("example-repo");
    let config = dir.path().join(".secret-manager.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "  exec:\n",
            "  exec:\n    envdump:\n      env: [DEMO_PROVIDER_STATE, ENVDUMP_EXTRA]\n",
        ),
    )
    .unwrap();
    let bin = tempfile::tempdir().unwrap();
    let demo = crate::common::testdata("plugins/secret-manager-provider-demo");
    let plugin = bin.path().join("secret-manager-provider-envdump");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\nenv > \"$(dirname \"$0\")/env.$1\"\nexec python3 '{}' \"$@\"\n",
            demo.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = dir.path().join("envdump.yaml");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    let leaks = [
        ("AWS_SECRET_ACCESS_KEY", "TEST-ONLY-aws-secret-value"),
        ("AZURE_CLIENT_SECRET", "TEST-ONLY-azure-secret-value"),
        (
            "GOOGLE_APPLICATION_CREDENTIALS",
            "/run/TEST-ONLY-gcp-key.json",
        ),
        ("GITHUB_TOKEN", "TEST-ONLY-forge-token"),
    ];
    let mut c = cmd();
    c.env("PATH", &path)
        .env("DEMO_PROVIDER_STATE", state.path())
        .env("ENVDUMP_EXTRA", "passed-through");
    for (k, v) in leaks {
        c.env(k, v);
    }
    let r = run_cmd(c.args([
        "--repo",
        dir.path().to_str().unwrap(),
        "create",
        "--source",
        "envdump",
        "--cluster",
        DEV1,
        "--namespace",
        "app",
        "--name",
        "envdump",
        "--key-mappings",
        "[token:Token]",
        "--param",
        "account=acme",
        "-w",
        out.to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    for op in ["capabilities", "preflight", "mint", "verify"] {
        let env = std::fs::read_to_string(bin.path().join(format!("env.{op}")))
            .unwrap_or_else(|e| panic!("{op}: {e}"));
        for (k, v) in leaks {
            assert!(
                !env.contains(k) && !env.contains(v),
                "{op}: {k} reached the plugin"
            );
        }
        assert!(env.contains("ENVDUMP_EXTRA=passed-through"), "{op}: {env}");
        assert!(env.lines().any(|l| l.starts_with("PATH=")), "{op}");
        assert!(env.lines().any(|l| l.starts_with("HOME=")), "{op}");
    }
}

/// A machine with no Azure or GCP credentials at all: `keys` says what to set, once per
/// source, as missing credentials (exit 10), not "access denied" and not the auth
/// library's retry wording.
#[test]
fn keys_without_azure_or_gcp_credentials_says_what_to_set_once() {
    let dir = temp_repo("example-repo");
    let home = tempfile::tempdir().unwrap();
    // A metadata server that is not there (a closed port answers at once).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mds = closed.local_addr().unwrap().to_string();
    drop(closed);
    for (source, hint) in [
        (
            "gcp",
            "no GCP credentials found: set GOOGLE_APPLICATION_CREDENTIALS",
        ),
        ("azure", "no Azure credentials found: set AZURE_TENANT_ID"),
    ] {
        let mut c = cmd();
        c.env("HOME", home.path())
            .env("GCE_METADATA_HOST", &mds)
            .env("GCE_METADATA_IP", &mds)
            .env("SECRET_MANAGER_GCP_IAM_ENDPOINT", format!("http://{mds}"))
            .env(
                "SECRET_MANAGER_AZURE_GRAPH_URL",
                format!("http://{mds}/v1.0"),
            )
            .env("AZURE_AUTHORITY_HOST", format!("http://{mds}"))
            .args([
                "--repo",
                dir.path().to_str().unwrap(),
                "keys",
                "--source",
                source,
            ]);
        let r = run_cmd(&mut c);
        assert_eq!(r.code, 10, "{source}\n{}\n{}", r.stdout, r.stderr);
        assert_eq!(r.stderr.matches(hint).count(), 1, "{source}: {}", r.stderr);
        for noise in ["access denied", "future attempts", "might succeed", "Debug"] {
            assert!(!r.stderr.contains(noise), "{source} {noise}: {}", r.stderr);
        }
    }
}

/// `eks-token` prints an ExecCredential whose token is a presigned STS GetCallerIdentity
/// URL bound to the cluster (the header `x-k8s-aws-id` is signed); calling it the way the
/// EKS authenticator does reaches STS (moto) as the caller. Neither the secret key nor a
/// log line carries the token.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn eks_token_is_a_presigned_caller_identity_bound_to_the_cluster() {
    use base64::Engine as _;
    let moto = Moto::start();
    let r = run_cmd(
        moto.env(&mut cmd())
            .env("AWS_SESSION_TOKEN", "session-token")
            .args([
                "eks-token",
                "--cluster-name",
                "prod-1",
                "--region",
                "eu-central-1",
            ]),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let cred: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(cred["kind"], "ExecCredential");
    assert_eq!(cred["apiVersion"], "client.authentication.k8s.io/v1beta1");
    let expires = chrono::DateTime::parse_from_rfc3339(
        cred["status"]["expirationTimestamp"].as_str().unwrap(),
    )
    .unwrap();
    let left = expires
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!((13 * 60..=14 * 60).contains(&left), "{left}s");
    let token = cred["status"]["token"].as_str().unwrap();
    let url = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.strip_prefix("k8s-aws-v1.").expect("EKS token prefix"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        url.starts_with(&format!("{}/?Action=GetCallerIdentity", moto.url)),
        "{url}"
    );
    for part in [
        "X-Amz-Credential=testing%2F",
        "%2Feu-central-1%2Fsts%2Faws4_request",
        "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
        "X-Amz-Expires=60",
        "X-Amz-Security-Token=session-token",
    ] {
        assert!(url.contains(part), "{part}: {url}");
    }
    assert!(!r.stdout.contains("AWS_SECRET") && !r.stderr.contains(token));
    // What the EKS authenticator does: GET the URL with the header. moto's single server
    // picks the service of a request from an Authorization header only (it checks no
    // signature either way), so the URL's own credential scope is repeated there: the
    // call reaches STS only if the token was signed for STS.
    let (host, path) = url
        .strip_prefix("http://")
        .unwrap()
        .split_once('/')
        .unwrap();
    let scope = url
        .split('&')
        .find_map(|p| p.strip_prefix("X-Amz-Credential="))
        .unwrap()
        .replace("%2F", "/");
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nx-k8s-aws-id: prod-1\r\nAuthorization: AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host;x-k8s-aws-id, Signature=0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("<Arn>arn:aws:"), "{answer}");
    // A cluster name that would smuggle a header is refused before anything is signed.
    let r = run_cmd(moto.env(&mut cmd()).args([
        "eks-token",
        "--cluster-name",
        "a\r\nx-amz-foo: 1",
        "--region",
        "eu-central-1",
    ]));
    assert_ne!(r.code, 0);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
}

/// `create` follows a rotation's busy rule: while a rotation of the credential is in
/// flight (published, its old key waiting out the grace period), no key is minted for it
/// and no file is written; the error says which rotation and what to do. Once the
/// rotation has ended, the same `create` works.
#[test]
fn create_mints_nothing_for_a_credential_whose_rotation_is_in_flight() {
    let state = tempfile::tempdir().unwrap();
    let f = crate::safety::demo_fleet(state.path());
    let keys = || -> Vec<String> {
        let st: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(state.path().join("keys.json")).unwrap())
                .unwrap();
        st["acme"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["keyId"].as_str().unwrap().to_owned())
            .collect()
    };
    let rotate = |now: &str, older_than: &str| {
        let mut c = f.bot(now).command();
        with_demo_plugin(&mut c, state.path()).args([
            "--yes",
            "rotate",
            "--source",
            "demo",
            "--older-than",
            older_than,
            "--revoke-after",
            "1h",
        ]);
        run_cmd(&mut c)
    };
    let r = rotate("2027-06-01T00:00:00Z", "0s");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let in_flight = keys();
    assert_eq!(
        in_flight.len(),
        2,
        "old and new key while the grace period runs"
    );
    let work = f.path("work");
    crate::common::git(&work, &["pull", "--quiet", "--ff-only", "origin", "main"]);
    let out = work.join(format!(
        "applications/demo/state/overlays/{DEV1}/second.yaml"
    ));
    let create = || crate::safety::try_create_demo(&f, state.path(), "second", "acme");
    let r = create();
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("is in flight (published, waiting to revoke the old key)")
            && r.stderr.contains("once that rotation has ended"),
        "{}",
        r.stderr
    );
    assert_eq!(keys(), in_flight, "nothing minted");
    assert!(!out.exists(), "nothing written");
    // The grace period over, the next run revokes and ends the rotation (and stages no
    // new one: the key is hours old); then it works.
    let r = rotate("2027-06-01T02:00:00Z", "100d");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    crate::common::git(&work, &["pull", "--quiet", "--ff-only", "origin", "main"]);
    let r = create();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(out.exists());
}
