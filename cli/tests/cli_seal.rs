//! `secret-manager seal`: new SealedSecrets, --merge-into, certificate sources.

use crate::common::{
    Run, cmd, decrypt_value, encrypted_data, run_cmd, snapshot_tree, temp_repo, testdata,
};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

const DEV1: &str = "aws.eu-central-1.dev1";

fn seal(repo: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    let mut c = cmd();
    c.current_dir(repo)
        .arg("--repo")
        .arg(repo)
        .arg("seal")
        .args(args);
    match stdin {
        None => run_cmd(c.stdin(Stdio::null())),
        Some(input) => {
            let mut child = c
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            Run {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8(out.stdout).unwrap(),
                stderr: String::from_utf8(out.stderr).unwrap(),
            }
        }
    }
}

/// A unified diff with the given ciphertexts replaced by `<sealed:KEY>`.
fn redacted_diff(old: &str, new: &str, redact: &[(String, String)]) -> String {
    let mut new = new.to_string();
    for (k, v) in redact {
        new = new.replace(v, &format!("<sealed:{k}>"));
    }
    similar::TextDiff::from_lines(old, &new)
        .unified_diff()
        .context_radius(1)
        .to_string()
}

const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: app\n  labels: {team: a}\n  annotations:\n    kubectl.kubernetes.io/last-applied-configuration: '{\"stringData\":{\"password\":\"s3cr3t-pw\"}}'\n    note: kept\n  ownerReferences: [{apiVersion: v1, kind: X, name: y, uid: z}]\n  creationTimestamp: null\ntype: Opaque\nstringData:\n  password: s3cr3t-pw\ndata:\n  token: dG9rZW4tdmFsdWU=\n";

/// Like kubeseal: without --scope the input Secret's scope annotation decides, and the
/// SealedSecret carries it on its outer metadata; --scope still wins; -w into a directory
/// that does not exist is a usage error.
#[test]
fn the_input_secrets_scope_annotation_is_honoured() {
    let dir = temp_repo("example-repo");
    for (annotation, scope, label) in [
        (
            "sealedsecrets.bitnami.com/namespace-wide",
            "namespace-wide",
            "app",
        ),
        ("sealedsecrets.bitnami.com/cluster-wide", "cluster-wide", ""),
    ] {
        let input = SECRET.replace(
            "    note: kept\n",
            &format!("    note: kept\n    {annotation}: \"true\"\n"),
        );
        let out = dir.path().join(format!("in-{scope}.yaml"));
        let r = seal(
            dir.path(),
            &["--cluster", DEV1, "-w", out.to_str().unwrap()],
            Some(&input),
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(
            decrypt_value(&out, 0, DEV1, label, "password").unwrap(),
            b"s3cr3t-pw",
            "{scope}"
        );
        let report = secret_manager::Repo::open(dir.path()).unwrap().scan();
        let found = report
            .secrets
            .iter()
            .find(|f| f.file.to_str() == Some(&format!("in-{scope}.yaml")))
            .unwrap();
        assert_eq!(found.doc.scope.as_str(), scope);
        assert_eq!(found.doc.outer_annotations[annotation], "true");
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            text.matches(annotation).count(),
            2,
            "outer and template, once each: {text}"
        );
        // --scope strict overrides the annotation.
        let strict = dir.path().join(format!("strict-{scope}.yaml"));
        let r = seal(
            dir.path(),
            &[
                "--cluster",
                DEV1,
                "--scope",
                "strict",
                "-w",
                strict.to_str().unwrap(),
            ],
            Some(&input),
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(decrypt_value(&strict, 0, DEV1, "app/db", "password").is_ok());
    }
    let r = seal(
        dir.path(),
        &["--cluster", DEV1, "-w", "/nonexistent-dir/x.yaml"],
        Some(SECRET),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("directory /nonexistent-dir does not exist"),
        "{}",
        r.stderr
    );
}

#[test]
fn new_secret_from_stdin_in_every_scope_decrypts() {
    let dir = temp_repo("example-repo");
    for (scope, label) in [
        ("strict", "app/db"),
        ("namespace-wide", "app"),
        ("cluster-wide", ""),
    ] {
        let out = dir.path().join(format!("db-{scope}.yaml"));
        let r = seal(
            dir.path(),
            &[
                "--cluster",
                DEV1,
                "--scope",
                scope,
                "-w",
                out.to_str().unwrap(),
            ],
            Some(SECRET),
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(!text.contains("creationTimestamp"), "{text}");
        assert!(!text.contains("last-applied"), "{text}");
        assert!(!text.contains("ownerReferences"), "{text}");
        assert!(!text.contains("s3cr3t-pw") && !r.stderr.contains("s3cr3t-pw"));
        assert!(
            text.contains("note: kept") && text.contains("team: a"),
            "{text}"
        );
        assert_eq!(
            decrypt_value(&out, 0, DEV1, label, "password").unwrap(),
            b"s3cr3t-pw"
        );
        assert_eq!(
            decrypt_value(&out, 0, DEV1, label, "token").unwrap(),
            b"token-value"
        );
        // A wrong label does not open strict or namespace-wide values.
        if !label.is_empty() {
            assert!(decrypt_value(&out, 0, DEV1, "other/db", "password").is_err());
        }
        // The scanner reads the scope back.
        let report = secret_manager::Repo::open(dir.path()).unwrap().scan();
        let found = report
            .secrets
            .iter()
            .find(|f| f.file.to_str() == Some(&format!("db-{scope}.yaml")))
            .unwrap();
        assert_eq!(found.doc.scope.as_str(), scope);
        assert_eq!(
            found.doc.outer_annotations["secret-manager/sealedWith"].len(),
            64,
            "fingerprint recorded"
        );
    }
}

#[test]
fn write_refuses_to_overwrite_and_json_input_works() {
    let dir = temp_repo("example-repo");
    let out = dir.path().join("x.yaml");
    std::fs::write(&out, "keep me\n").unwrap();
    let json = r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"j","namespace":"n"},"data":{"k":"aGk="}}"#;
    let r = seal(
        dir.path(),
        &["--cluster", DEV1, "-w", out.to_str().unwrap()],
        Some(json),
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("exists; use --merge-into"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me\n");
    let r = seal(dir.path(), &["--cluster", DEV1, "-w", "-"], Some(json));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with("---\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\n")
    );
}

#[test]
fn merge_into_golden_diff_changes_only_the_given_key() {
    let dir = temp_repo("example-repo");
    let rel = "applications/root/external-dns/state/overlays/aws.eu-central-1.dev1/sealedSeacret-cloud-dns.yaml";
    let file = dir.path().join(rel);
    let before = std::fs::read_to_string(&file).unwrap();
    let old_data = encrypted_data(&file, 0);
    let secret_file = dir.path().join("new-secret.txt");
    std::fs::write(&secret_file, "NEW-SECRET-ACCESS-KEY").unwrap();
    let r = seal(
        dir.path(),
        &[
            "--from-file",
            &format!("secretAccessKey={}", secret_file.display()),
            "--merge-into",
            rel,
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("with cluster aws.eu-central-1.dev1"),
        "cluster inferred from the path: {}",
        r.stderr
    );
    let after = std::fs::read_to_string(&file).unwrap();
    let new_data = encrypted_data(&file, 0);
    assert_eq!(new_data[0], old_data[0], "accessKeyId is not re-sealed");
    assert_ne!(new_data[1], old_data[1]);
    let label = "external-dns/cloudprovider-dns-access";
    assert_eq!(
        decrypt_value(&file, 0, DEV1, label, "secretAccessKey").unwrap(),
        b"NEW-SECRET-ACCESS-KEY"
    );
    let fp = secret_manager::seal::SealingCert::parse(
        &std::fs::read(testdata(&format!(
            "example-repo/tooling/sealing-certs/{DEV1}.pem"
        )))
        .unwrap(),
        "t",
        secret_manager::annotations::parse_create_date(crate::common::NOW).unwrap(),
    )
    .unwrap()
    .fingerprint;
    let diff = redacted_diff(
        &before,
        &after.replace(&fp, "<fingerprint>"),
        &[("secretAccessKey".into(), new_data[1].1.clone())],
    );
    let diff: String = diff
        .lines()
        .map(|l| {
            if l.starts_with("-    secretAccessKey: ") {
                "-    secretAccessKey: <old ciphertext>"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!(diff);
}

#[test]
fn merge_into_multi_document_json_and_kustomization_namespace() {
    let dir = temp_repo("example-repo");
    // Multi-document YAML: only the named document changes.
    let rel = "applications/service1/state/overlays/aws.eu-central-1.dev1/secrets.yaml";
    let file = dir.path().join(rel);
    let before = std::fs::read_to_string(&file).unwrap();
    let r = seal(
        dir.path(),
        &[
            "--from-literal",
            "AWS_SECRET_ACCESS_KEY=rotated",
            "--merge-into",
            rel,
        ],
        None,
    );
    assert_eq!(r.code, 2, "two SealedSecrets: needs --name");
    assert!(
        r.stderr
            .contains("pick one with --name (s3-uploader, sqs-consumer)"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        before,
        "nothing written"
    );
    let r = seal(
        dir.path(),
        &[
            "--name",
            "sqs-consumer",
            "--from-literal",
            "AWS_SECRET_ACCESS_KEY=rotated",
            "--merge-into",
            rel,
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        encrypted_data(&file, 1),
        crate::common::encrypted_data(&testdata(&format!("example-repo/{rel}")), 1)
    );
    assert_eq!(
        decrypt_value(
            &file,
            2,
            DEV1,
            "service1/sqs-consumer",
            "AWS_SECRET_ACCESS_KEY"
        )
        .unwrap(),
        b"rotated"
    );
    let after = std::fs::read_to_string(&file).unwrap();
    let changed: Vec<&str> = after
        .lines()
        .filter(|l| !before.lines().any(|b| b == *l))
        .collect();
    assert_eq!(changed.len(), 3, "{changed:#?}"); // the value + `annotations:` + sealedWith

    // kubeseal JSON output stays JSON; namespace-wide label kept.
    let rel = "applications/service2/state/overlays/gcp.europe-west1.dev2/sealed-db.json";
    let r = seal(
        dir.path(),
        &[
            "--from-literal",
            "email=new@example-dev2.iam.gserviceaccount.com",
            "--merge-into",
            rel,
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(rel)).unwrap()).unwrap();
    assert_eq!(
        v["metadata"]["annotations"]["sealedsecrets.bitnami.com/namespace-wide"],
        "true"
    );
    assert!(v["metadata"]["annotations"]["secret-manager/sealedWith"].is_string());
    assert_eq!(
        decrypt_value(
            &dir.path().join(rel),
            0,
            "gcp.europe-west1.dev2",
            "service2",
            "email"
        )
        .unwrap(),
        b"new@example-dev2.iam.gserviceaccount.com"
    );

    // No metadata.namespace, CRLF: the label namespace comes from kustomization.yaml.
    let rel =
        "applications/root/cert-manager/state/overlays/aws.eu-central-1.dev1/dns-credentials.yaml";
    let r = seal(
        dir.path(),
        &[
            "--from-literal",
            "secret-access-key=crlf",
            "--merge-into",
            rel,
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(dir.path().join(rel)).unwrap();
    assert_eq!(
        text.matches('\n').count(),
        text.matches("\r\n").count(),
        "still CRLF only"
    );
    assert_eq!(
        decrypt_value(
            &dir.path().join(rel),
            0,
            DEV1,
            "cert-manager/route53-credentials",
            "secret-access-key"
        )
        .unwrap(),
        b"crlf"
    );
}

#[test]
fn bad_certificates_and_inputs_fail_cleanly_without_writing() {
    let dir = temp_repo("example-repo");
    let before = snapshot_tree(dir.path());
    let rel = "applications/root/external-dns/state/overlays/aws.eu-central-1.dev1/sealedSeacret-cloud-dns.yaml";
    for (cert, needle) in [
        ("expired.pem", "certificate is not valid"),
        ("rsa1024.pem", "1024 bits"),
        ("ec-p256.pem", "not RSA"),
        ("garbage.pem", "not an X.509 certificate"),
    ] {
        let p = testdata(&format!("keys/bad/{cert}"));
        let r = seal(
            dir.path(),
            &[
                "--cert",
                p.to_str().unwrap(),
                "--from-literal",
                "secretAccessKey=x",
                "--merge-into",
                rel,
            ],
            None,
        );
        assert_eq!(r.code, 2, "{cert}: {}", r.stderr);
        assert!(
            r.stderr.contains(needle) && r.stderr.contains(cert),
            "{cert}: {}",
            r.stderr
        );
    }
    let r = seal(
        dir.path(),
        &[
            "--cluster",
            "gcp.us-central1.pr1",
            "--namespace",
            "a",
            "--name",
            "b",
            "--from-literal",
            "k=v",
            "-w",
            "-",
        ],
        None,
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("gcp.us-central1.pr1 has no secretManager.sealingCert")
            || r.stderr
                .contains("`gcp.us-central1.pr1` has no secretManager.sealingCert"),
        "{}",
        r.stderr
    );
    let r = seal(
        dir.path(),
        &["--cluster", DEV1, "-w", "-"],
        Some("kind: Secret\nstringData:\n  password: \"unterminated-hunter2\n"),
    );
    assert_eq!(r.code, 2);
    assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
    let r = seal(
        dir.path(),
        &[
            "--cluster",
            DEV1,
            "--from-literal",
            "k=v",
            "--name",
            "n",
            "-w",
            "-",
        ],
        None,
    );
    assert_eq!(r.code, 2, "strict without namespace");
    assert!(
        r.stderr
            .contains("--namespace is required for strict scope"),
        "{}",
        r.stderr
    );
    let r = seal(
        dir.path(),
        &[
            "--cluster",
            DEV1,
            "--scope",
            "cluster-wide",
            "--from-literal",
            "k=v",
            "--merge-into",
            rel,
        ],
        None,
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("keeps the existing scope"),
        "{}",
        r.stderr
    );
    assert_eq!(
        snapshot_tree(dir.path()),
        before,
        "nothing written on any failure"
    );
}

#[test]
fn merge_into_refuses_files_it_cannot_edit_safely_with_exit_2() {
    let dir = temp_repo("example-repo");
    let overlay = "applications/root/external-dns/state/overlays/aws.eu-central-1.dev1";
    let head = "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: s\n  namespace: n\n";
    let cases = [
        (
            "helm.yaml",
            format!("{head}spec:\n  encryptedData:\n    k: {{{{ .Values.k }}}}\n"),
            "Helm/Go template",
        ),
        (
            "anchored.yaml",
            format!(
                "{head}  annotations: &a\n    x: y\nspec:\n  template:\n    metadata:\n      annotations: *a\n  encryptedData:\n    k: AgOld\n"
            ),
            "anchored",
        ),
        (
            "duplicate.yaml",
            format!("{head}spec:\n  encryptedData:\n    k: AgOld\n    k: AgOther\n"),
            "duplicate key `k`",
        ),
        (
            "no-data.yaml",
            format!("{head}spec:\n  template:\n    type: Opaque\n"),
            "spec.encryptedData is missing",
        ),
    ];
    for (name, text, _) in &cases {
        std::fs::write(dir.path().join(overlay).join(name), text).unwrap();
    }
    let before = snapshot_tree(dir.path());
    for (name, _, needle) in &cases {
        let rel = format!("{overlay}/{name}");
        let r = seal(
            dir.path(),
            &["--from-literal", "k=new-value", "--merge-into", &rel],
            None,
        );
        assert_eq!(r.code, 2, "{name}: {}", r.stderr);
        assert!(
            r.stderr.contains(needle) && r.stderr.contains(name),
            "{name}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("new-value"), "{}", r.stderr);
    }
    assert_eq!(snapshot_tree(dir.path()), before, "nothing written");
}

#[test]
fn controller_and_url_certificate_sources() {
    let dir = temp_repo("example-repo");
    let pem = std::fs::read(testdata(&format!(
        "example-repo/tooling/sealing-certs/{DEV1}.pem"
    )))
    .unwrap();
    // controller://: a fake kubectl on PATH that checks its arguments.
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("kubectl");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\n[ \"$*\" = \"--context=dev1 get --raw=/api/v1/namespaces/kube-system/services/http:sealed-secrets-controller:/proxy/v1/cert.pem\" ] || {{ echo \"unexpected: $*\" >&2; exit 1; }}\ncat {}\n",
            testdata(&format!("example-repo/tooling/sealing-certs/{DEV1}.pem")).display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let inv = dir.path().join(format!("cluster-values/{DEV1}.yaml"));
    let text = std::fs::read_to_string(&inv).unwrap().replace(
        &format!("sealingCert: tooling/sealing-certs/{DEV1}.pem"),
        "sealingCert: controller://kube-system/sealed-secrets-controller",
    );
    std::fs::write(&inv, text).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    let r = run_cmd(cmd().env("PATH", &path).stdin(Stdio::null()).args([
        "--repo",
        dir.path().to_str().unwrap(),
        "seal",
        "--cluster",
        DEV1,
        "--namespace",
        "a",
        "--name",
        "b",
        "--from-literal",
        "k=v",
        "-w",
        "-",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("kind: SealedSecret"));

    // https/http-loopback URL: a one-shot local server.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::Read;
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).unwrap();
        write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            pem.len()
        )
        .unwrap();
        s.write_all(&pem).unwrap();
    });
    let url = format!("http://127.0.0.1:{port}/v1/cert.pem");
    let r = seal(
        dir.path(),
        &[
            "--cert",
            &url,
            "--namespace",
            "a",
            "--name",
            "b",
            "--from-literal",
            "k=v",
            "-w",
            "-",
        ],
        None,
    );
    server.join().unwrap();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = seal(
        dir.path(),
        &[
            "--cert",
            "http://certs.example.com/c.pem",
            "--namespace",
            "a",
            "--name",
            "b",
            "--from-literal",
            "k=v",
            "-w",
            "-",
        ],
        None,
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("only allowed to a loopback address"),
        "{}",
        r.stderr
    );
}

/// What kubeseal users expect of `seal`: --cert without a config repo, stdout by default,
/// `-o json`, --raw and --fetch-cert.
#[test]
fn kubeseal_parity_cert_without_a_repo_stdout_json_raw_and_fetch_cert() {
    let pem = testdata("example-repo/tooling/sealing-certs/aws.eu-central-1.dev1.pem");
    let pem = pem.to_str().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let key = crate::common::unseal::key(DEV1);
    let base = ["--cert", pem, "--namespace", "app", "--name", "db"];
    // No -w: the SealedSecret goes to stdout; no warning about the directory.
    let r = seal(
        empty.path(),
        &[&base[..], &["--from-literal", "password=s3cret"]].concat(),
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("config repo"), "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with("---\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret"),
        "{}",
        r.stdout
    );
    let file = empty.path().join("out.yaml");
    std::fs::write(&file, &r.stdout).unwrap();
    assert_eq!(
        decrypt_value(&file, 0, DEV1, "app/db", "password").unwrap(),
        b"s3cret"
    );
    // -o json: kubeseal's JSON shape, which the scanner reads too.
    let r = seal(
        empty.path(),
        &[
            &["-o", "json"][..],
            &base[..],
            &["--from-literal", "password=s3cret"],
        ]
        .concat(),
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j["kind"], "SealedSecret");
    assert_eq!(j["spec"]["template"]["metadata"]["namespace"], "app");
    let ct = j["spec"]["encryptedData"]["password"].as_str().unwrap();
    assert_eq!(
        crate::common::unseal::decrypt(&key, "app/db", ct).unwrap(),
        b"s3cret"
    );
    // --raw: only the ciphertext, bound to namespace/name (strict) or less.
    let r = seal(
        empty.path(),
        &[&base[..], &["--raw", "--from-literal", "v=raw-value"]].concat(),
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !r.stdout.contains('\n') && r.stdout.starts_with("Ag"),
        "{:?}",
        r.stdout
    );
    assert_eq!(
        crate::common::unseal::decrypt(&key, "app/db", &r.stdout).unwrap(),
        b"raw-value"
    );
    assert!(crate::common::unseal::decrypt(&key, "app/other", &r.stdout).is_err());
    let r = seal(
        empty.path(),
        &[
            "--cert",
            pem,
            "--raw",
            "--scope",
            "cluster-wide",
            "--from-literal",
            "v=anywhere",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        crate::common::unseal::decrypt(&key, "", &r.stdout).unwrap(),
        b"anywhere"
    );
    for (args, needle) in [
        (
            &["--cert", pem, "--raw", "--from-literal", "v=x"][..],
            "needs --namespace and --name",
        ),
        (
            &[
                &base[..],
                &["--raw", "--from-literal", "a=1", "--from-literal", "b=2"],
            ]
            .concat()[..],
            "exactly one value",
        ),
        (
            &[
                &base[..],
                &["--raw", "-w", "x.yaml", "--from-literal", "a=1"],
            ]
            .concat()[..],
            "cannot be used with",
        ),
    ] {
        let r = seal(empty.path(), args, None);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        assert!(!r.stdout.contains("Ag"), "nothing sealed: {}", r.stdout);
    }
    // --fetch-cert: the certificate a cluster's secrets are sealed with, from the inventory.
    let repo = temp_repo("example-repo");
    let r = seal(repo.path(), &["--cluster", DEV1, "--fetch-cert"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let want = std::fs::read_to_string(pem).unwrap();
    assert_eq!(r.stdout.trim(), want.trim());
    let r = seal(empty.path(), &["--cert", pem, "--fetch-cert"], None);
    assert_eq!(r.stdout.trim(), want.trim());
    let r = seal(empty.path(), &["--fetch-cert"], None);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--cluster"), "{}", r.stderr);
}

/// One input sealed for several clusters: one file each, each for its own certificate.
#[test]
fn one_input_sealed_for_several_clusters_decrypts_only_with_each_clusters_key() {
    let dir = temp_repo("example-repo");
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    for c in ["aws.eu-central-1.dev1", "gcp.europe-west1.dev2"] {
        std::fs::create_dir_all(dir.path().join("out").join(c)).unwrap();
    }
    let two = ["--cluster", DEV1, "--cluster", "gcp.europe-west1.dev2"];
    let base = [
        "--namespace",
        "app",
        "--name",
        "db",
        "--from-literal",
        "password=multi",
    ];
    let r = seal(
        dir.path(),
        &[&two[..], &base[..], &["-w", "out/{cluster}/db.yaml"]].concat(),
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let key = |c: &str| crate::common::unseal::key(c);
    for (mine, other) in [
        (DEV1, "gcp.europe-west1.dev2"),
        ("gcp.europe-west1.dev2", DEV1),
    ] {
        let file = dir.path().join(format!("out/{mine}/db.yaml"));
        let data = encrypted_data(&file, 0);
        let ct = &data[0].1;
        assert_eq!(
            crate::common::unseal::decrypt(&key(mine), "app/db", ct).unwrap(),
            b"multi"
        );
        assert!(crate::common::unseal::decrypt(&key(other), "app/db", ct).is_err());
    }
    // Without {cluster} in -w, or with one target already there: nothing is written.
    let before = snapshot_tree(dir.path());
    let r = seal(
        dir.path(),
        &[&two[..], &base[..], &["-w", "out/db.yaml"]].concat(),
        None,
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("{cluster}"), "{}", r.stderr);
    assert_eq!(snapshot_tree(dir.path()), before);
    std::fs::create_dir_all(dir.path().join("again/gcp.europe-west1.dev2")).unwrap();
    std::fs::create_dir_all(dir.path().join("again").join(DEV1)).unwrap();
    std::fs::write(
        dir.path().join("again/gcp.europe-west1.dev2/db.yaml"),
        "taken\n",
    )
    .unwrap();
    let before_again = snapshot_tree(dir.path());
    let r = seal(
        dir.path(),
        &[&two[..], &base[..], &["-w", "again/{cluster}/db.yaml"]].concat(),
        None,
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("exists"), "{}", r.stderr);
    assert_eq!(
        snapshot_tree(dir.path()),
        before_again,
        "not even the first cluster's file"
    );
    // --all-clusters: every cluster with a sealingCert.
    let r = seal(
        dir.path(),
        &[
            &["--all-clusters"][..],
            &base[..],
            &["-w", "all-{cluster}.yaml"],
        ]
        .concat(),
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let written: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("all-"))
        .collect();
    assert_eq!(written.len(), 4, "{written:?}");
    assert!(
        !written.iter().any(|n| n.contains("pr1")),
        "no sealingCert: {written:?}"
    );
}

/// A fake Kubernetes API server (HTTPS, bearer token) serving a sealed-secrets
/// controller's service proxy: the certificate of `DEV1`, and `/v1/verify`, which decrypts
/// every value with that cluster's TEST-ONLY key as the controller does (409 when one
/// does not). Returns the server and the requests it saw.
fn fake_controller(
    rt: &tokio::runtime::Runtime,
) -> (
    secret_manager_testkit::server::TestServer,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use secret_manager_testkit::server::{Reply, TestServer};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let pem = std::fs::read(testdata(&format!(
        "example-repo/tooling/sealing-certs/{DEV1}.pem"
    )))
    .unwrap();
    let proxy = "/api/v1/namespaces/sealed/services/http:ctrl:/proxy/v1";
    let server = rt.block_on(TestServer::start(move |req| {
        log.lock()
            .unwrap()
            .push(format!("{} {}", req.method, req.path));
        if req.bearer() != Some("test-token") {
            return Reply::json(401, serde_json::json!({"kind": "Status", "code": 401}));
        }
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/version") => Reply::json(
                200,
                serde_json::json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0"}),
            ),
            ("GET", p) if p == format!("{proxy}/cert.pem") => Reply {
                status: 200,
                headers: vec![("content-type".into(), "text/plain".into())],
                body: pem.clone(),
            },
            ("POST", p) if p == format!("{proxy}/verify") => {
                let doc: serde_json::Value =
                    serde_saphyr::from_slice(&req.body).unwrap_or(serde_json::Value::Null);
                let ns = doc["metadata"]["namespace"].as_str().unwrap_or("");
                let name = doc["metadata"]["name"].as_str().unwrap_or("");
                let key = crate::common::unseal::key(DEV1);
                let data = doc["spec"]["encryptedData"].as_object();
                let ok = data.is_some_and(|d| {
                    !d.is_empty()
                        && d.values().all(|v| {
                            crate::common::unseal::decrypt(
                                &key,
                                &format!("{ns}/{name}"),
                                v.as_str().unwrap_or(""),
                            )
                            .is_ok()
                        })
                });
                if ok {
                    Reply::empty(200)
                } else {
                    Reply::json(
                        409,
                        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "message": "unable to decrypt sealed secret", "reason": "Conflict", "code": 409}),
                    )
                }
            }
            _ => Reply::json(404, serde_json::json!({"kind": "Status", "code": 404})),
        }
    }));
    (server, seen)
}

/// A kubeconfig whose context `fake` reaches `server`; the current context is a cluster
/// that does not answer, so only an explicit --context reaches the fake.
fn kubeconfig(
    dir: &Path,
    server: &secret_manager_testkit::server::TestServer,
) -> std::path::PathBuf {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(&server.ca_pem);
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"{}\", certificate-authority-data: {ca}}}\n- name: dead\n  cluster: {{server: \"https://127.0.0.1:9\"}}\nusers:\n- name: u\n  user: {{token: test-token}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: u}}\n- name: dead\n  context: {{cluster: dead, user: u}}\ncurrent-context: dead\n",
            server.url
        ),
    )
    .unwrap();
    path
}

/// kubeseal's flags with the real kubectl against a fake API server: -n, -f, --format,
/// --sealed-secret-file, the controller flags and their environment variables, --context
/// and --kubeconfig reaching kubectl, and --validate asking the controller.
#[test]
#[ignore = "environment: needs kubectl (scripts/test runs it)"]
fn kubeseal_flags_reach_the_controller_through_real_kubectl() {
    secret_manager_testkit::tier::environment("kubectl");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (server, seen) = fake_controller(&rt);
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), &server);
    let base = |c: &mut std::process::Command| {
        c.current_dir(dir.path())
            .env_remove("KUBECONFIG")
            .env("HOME", dir.path())
            .stdin(Stdio::null());
    };
    // As kubeseal: the controller by name and namespace, -n, --format json.
    let mut c = cmd();
    base(&mut c);
    let r = run_cmd(c.args([
        "--kubeconfig",
        kc.to_str().unwrap(),
        "seal",
        "--controller-namespace",
        "sealed",
        "--controller-name",
        "ctrl",
        "--context",
        "fake",
        "-n",
        "app",
        "--name",
        "db",
        "--from-literal",
        "password=hunter2",
        "--format",
        "json",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON, as asked");
    assert_eq!(doc["metadata"]["namespace"], "app");
    let ct = doc["spec"]["encryptedData"]["password"].as_str().unwrap();
    assert_eq!(
        crate::common::unseal::decrypt(&crate::common::unseal::key(DEV1), "app/db", ct).unwrap(),
        b"hunter2"
    );
    assert!(
        seen.lock().unwrap().contains(
            &"GET /api/v1/namespaces/sealed/services/http:ctrl:/proxy/v1/cert.pem".into()
        ),
        "{:?}",
        seen.lock().unwrap()
    );

    // The environment variables, -f and --sealed-secret-file.
    let input = dir.path().join("secret.yaml");
    std::fs::write(
        &input,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: app}\nstringData: {password: hunter2}\n",
    )
    .unwrap();
    let sealed = dir.path().join("sealed.yaml");
    let env_cmd = || {
        let mut c = cmd();
        base(&mut c);
        c.env("SEALED_SECRETS_CONTROLLER_NAMESPACE", "sealed")
            .env("SEALED_SECRETS_CONTROLLER_NAME", "ctrl")
            .args([
                "--kubeconfig",
                kc.to_str().unwrap(),
                "seal",
                "--context",
                "fake",
            ]);
        c
    };
    let r = run_cmd(env_cmd().args([
        "-f",
        input.to_str().unwrap(),
        "--sealed-secret-file",
        sealed.to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        std::fs::read_to_string(&sealed)
            .unwrap()
            .contains("kind: SealedSecret")
    );

    // --validate: the controller decrypts it (exit 0) ...
    let r = run_cmd(env_cmd().args(["--validate", "-f", sealed.to_str().unwrap()]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|s| s.ends_with("/proxy/v1/verify"))
    );
    // ... and not once it names another secret (strict scope binds namespace/name): exit 3.
    let moved = dir.path().join("moved.yaml");
    std::fs::write(
        &moved,
        std::fs::read_to_string(&sealed)
            .unwrap()
            .replace("name: db", "name: other"),
    )
    .unwrap();
    let r = run_cmd(env_cmd().args(["--validate", "-f", moved.to_str().unwrap()]));
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("cannot decrypt it"), "{}", r.stderr);

    // Without --context kubectl uses the kubeconfig's current context (a dead server):
    // a clear error, exit 2, never a pass.
    let mut c = cmd();
    base(&mut c);
    let r = run_cmd(c.args([
        "--kubeconfig",
        kc.to_str().unwrap(),
        "seal",
        "--controller-namespace",
        "sealed",
        "--controller-name",
        "ctrl",
        "--validate",
        "-f",
        sealed.to_str().unwrap(),
    ]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("controller://sealed/ctrl"),
        "{}",
        r.stderr
    );

    // SEALED_SECRETS_CERT: a certificate file, no repo and no kubectl needed.
    let before = seen.lock().unwrap().len();
    let mut c = cmd();
    base(&mut c);
    let r = run_cmd(
        c.env(
            "SEALED_SECRETS_CERT",
            testdata(&format!("example-repo/tooling/sealing-certs/{DEV1}.pem")),
        )
        .args(["seal", "-n", "app", "--name", "db", "--from-literal", "k=v"]),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("kind: SealedSecret"));
    assert_eq!(
        seen.lock().unwrap().len(),
        before,
        "no request for a file certificate"
    );
}

/// Hostile inputs to the kubeseal flags: a context or controller name that would be read as
/// a kubectl option, and a FIFO as -f. Nothing reaches kubectl or the server, nothing
/// hangs, nothing is written.
#[test]
fn hostile_kubeseal_flags_never_reach_kubectl() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (server, seen) = fake_controller(&rt);
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), &server);
    let run = |args: &[&str]| {
        let mut c = cmd();
        c.current_dir(dir.path())
            .env_remove("KUBECONFIG")
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .args(["--kubeconfig", kc.to_str().unwrap(), "seal"])
            .args(args);
        run_cmd(&mut c)
    };
    for args in [
        &[
            "--context=--kubeconfig=/tmp/evil",
            "--controller-namespace",
            "sealed",
            "--fetch-cert",
        ][..],
        &[
            "--context",
            "fake",
            "--controller-namespace=--as=system:admin",
            "--fetch-cert",
        ],
        &[
            "--context",
            "fake",
            "--controller-name",
            "../../x",
            "--fetch-cert",
        ],
    ] {
        let r = run(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}");
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );

    let fifo = dir.path().join("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let r = run(&["--cert", "x.pem", "-f", fifo.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("not a regular file"), "{}", r.stderr);
    let huge = dir.path().join("huge.yaml");
    std::fs::write(&huge, vec![b'a'; 5 << 20]).unwrap();
    let r = run(&[
        "--cert",
        testdata(&format!("example-repo/tooling/sealing-certs/{DEV1}.pem"))
            .to_str()
            .unwrap(),
        "-f",
        huge.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("larger than 4 MiB"), "{}", r.stderr);
}
