//! Metrics (`list -o prometheus`, `--metrics-file`, a real Pushgateway), notifications,
//! and the sealing-key lifecycle (`certCurrent`, `rotate --reseal`).

use crate::common::{Moto, cmd, decrypt_value, run_cmd, run_in, testdata};
use crate::rotate::{DEV1, LABEL, REL, USER, setup};
use std::io::{BufRead, BufReader, Read, Write};

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

fn value(v: &prometheus_parse::Value) -> f64 {
    match v {
        prometheus_parse::Value::Gauge(x)
        | prometheus_parse::Value::Counter(x)
        | prometheus_parse::Value::Untyped(x) => *x,
        other => panic!("unexpected {other:?}"),
    }
}

/// The samples of `metric` whose labels include `labels`.
fn samples<'s>(
    s: &'s prometheus_parse::Scrape,
    metric: &str,
    labels: &[(&str, &str)],
) -> Vec<&'s prometheus_parse::Sample> {
    s.samples
        .iter()
        .filter(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .collect()
}

#[test]
fn list_prints_prometheus_metrics_a_parser_reads_back() {
    let repo = testdata("example-repo");
    let r = run_in(&["--repo", repo.to_str().unwrap(), "-o", "prometheus", "list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = parse(&r.stdout);
    let json = run_in(&["--repo", repo.to_str().unwrap(), "-o", "json", "list"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json.stdout).unwrap();
    let due = samples(&s, "secret_manager_credential_due", &[]);
    assert_eq!(due.len(), rows.len(), "one series per managed credential");
    for row in &rows {
        let l = [
            ("cluster", row["cluster"].as_str().unwrap()),
            ("namespace", row["namespace"].as_str().unwrap()),
            ("name", row["name"].as_str().unwrap()),
            ("source", row["source"].as_str().unwrap()),
        ];
        let d = samples(&s, "secret_manager_credential_due", &l);
        assert_eq!(d.len(), 1, "{l:?}");
        assert_eq!(
            value(&d[0].value),
            if row["state"] == "due" { 1.0 } else { 0.0 },
            "{l:?}"
        );
        // A timestamp, so that the age is right whenever it is read: the pinned clock of
        // the run minus it is the age `list` shows.
        let created = samples(
            &s,
            "secret_manager_credential_created_timestamp_seconds",
            &l,
        );
        let now = chrono::DateTime::parse_from_rfc3339(crate::common::NOW)
            .unwrap()
            .timestamp() as f64;
        let days = row["ageDays"].as_f64().unwrap();
        assert!(
            ((now - value(&created[0].value)) / 86400.0 - days).abs() < 1.0,
            "{l:?}"
        );
    }
    // Never a key id in a label or anywhere else.
    for row in &rows {
        assert!(!r.stdout.contains(row["keyId"].as_str().unwrap()));
    }
    for x in &s.samples {
        let mut keys: Vec<&str> = x.labels.keys().map(String::as_str).collect();
        keys.sort();
        assert!(
            keys.iter()
                .all(|k| ["cluster", "kind", "name", "namespace", "source", "version"].contains(k)),
            "{keys:?}"
        );
    }
    let files = samples(&s, "secret_manager_scan_files", &[]);
    assert!(value(&files[0].value) > 10.0);
    let skipped = samples(
        &s,
        "secret_manager_scan_diagnostics",
        &[("kind", "skipped")],
    );
    assert_eq!(value(&skipped[0].value), 1.0, "the Helm template");
    // Same state, same text.
    let again = run_in(&["--repo", repo.to_str().unwrap(), "-o", "prometheus", "list"]);
    assert_eq!(again.stdout, r.stdout);
    // Other commands refuse the format.
    let r = run_in(&["--repo", repo.to_str().unwrap(), "-o", "prometheus", "keys"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

fn pushgateway_bin() -> String {
    std::env::var("PUSHGATEWAY").unwrap_or_else(|_| "prometheus-pushgateway".into())
}

/// `secret-manager --repo <work> --yes rotate`, with moto's environment.
fn rotate_cmd(f: &crate::common::GitFleet, moto: &Moto) -> std::process::Command {
    let mut c = cmd();
    moto.env(&mut c)
        .env("GIT_AUTHOR_NAME", "Rotator")
        .env("GIT_AUTHOR_EMAIL", "rotator@example.com")
        .args([
            "--repo",
            f.path("work").to_str().unwrap(),
            "--yes",
            "rotate",
        ]);
    c
}

/// Rotates the route53 credential of dev1 at once (no grace period), plus `extra`.
fn rotation(f: &crate::common::GitFleet, moto: &Moto, extra: &[&str]) -> crate::common::Run {
    let mut c = rotate_cmd(f, moto);
    c.args(ROUTE53_NOW).args(extra);
    run_cmd(&mut c)
}

const ROUTE53_NOW: [&str; 8] = [
    "--source",
    "aws",
    "--cluster",
    DEV1,
    "--name",
    "route53",
    "--revoke-after",
    "0s",
];

#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn a_rotation_writes_the_textfile_and_pushes_to_a_real_pushgateway() {
    let (f, moto, old) = setup();
    let gw = secret_manager_testkit::Pushgateway::start(&pushgateway_bin());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret_manager.prom");
    let r = rotation(
        &f,
        &moto,
        &[
            "--metrics-file",
            file.to_str().unwrap(),
            "--pushgateway",
            &gw.url,
            "--metrics-shard",
            "cron-dev1",
        ],
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(r.code, 0, "{}\n{text}", r.stderr);
    let s = parse(&text);
    assert_eq!(
        value(&samples(&s, "secret_manager_run_success", &[])[0].value),
        1.0
    );
    let staged = samples(
        &s,
        "secret_manager_last_run_steps",
        &[("phase", "stage"), ("outcome", "staged")],
    );
    assert_eq!(value(&staged[0].value), 1.0, "{text}");
    let revoked = samples(
        &s,
        "secret_manager_last_run_steps",
        &[("phase", "revoke"), ("outcome", "revoked")],
    );
    assert_eq!(value(&revoked[0].value), 1.0, "{text}");
    assert!(
        matches!(staged[0].value, prometheus_parse::Value::Gauge(_)),
        "a gauge of the last run, not a counter that restarts at every push: {text}"
    );
    let last_ok =
        value(&samples(&s, "secret_manager_last_success_timestamp_seconds", &[])[0].value);
    assert!(
        (last_ok - chrono::Utc::now().timestamp() as f64).abs() < 600.0,
        "{text}"
    );
    let build = samples(&s, "secret_manager_build_info", &[]);
    assert_eq!(value(&build[0].value), 1.0, "{text}");
    let ts = value(&samples(&s, "secret_manager_run_timestamp_seconds", &[])[0].value);
    assert!((ts - chrono::Utc::now().timestamp() as f64).abs() < 600.0);
    // The credential series reflect main after the run: the new key was created now.
    let created = samples(
        &s,
        "secret_manager_credential_created_timestamp_seconds",
        &[("cluster", DEV1), ("name", "route53")],
    );
    // (the source's own creation time of the new key: the wall clock)
    let wall = chrono::Utc::now().timestamp() as f64;
    assert!((value(&created[0].value) - wall).abs() < 600.0, "{text}");
    assert!(
        !text.contains(&old) && !text.contains("AKIA"),
        "no key id: {text}"
    );
    // What the Pushgateway serves: the same series, with job and instance, still typed.
    let mut body = String::new();
    std::net::TcpStream::connect(gw.url.trim_start_matches("http://"))
        .and_then(|mut c| {
            write!(c, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")?;
            c.read_to_string(&mut body)
        })
        .unwrap();
    let served = parse(body.split("\r\n\r\n").nth(1).unwrap());
    let pushed = samples(
        &served,
        "secret_manager_last_run_steps",
        &[
            ("job", "secret-manager"),
            ("shard", "cron-dev1"),
            ("phase", "stage"),
            ("outcome", "staged"),
        ],
    );
    assert_eq!(pushed.len(), 1, "{body}");
    assert!(
        matches!(pushed[0].value, prometheus_parse::Value::Gauge(1.0)),
        "{body}"
    );
    let success = samples(
        &served,
        "secret_manager_run_success",
        &[("job", "secret-manager")],
    );
    assert_eq!(value(&success[0].value), 1.0);
    // A push that fails after a good run: exit 16, said on stderr; the rotation stands.
    let dead = "http://robot:hunter2@127.0.0.1:9";
    let before = moto.key_ids(USER);
    let r = crate::rotate::rotate(
        &f,
        &moto,
        "2026-11-22T12:00:00Z",
        &["--yes", "--revoke-after", "0s", "--pushgateway", dead],
    );
    assert_eq!(r.code, 16, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("pushgateway http://127.0.0.1:9/metrics/job/secret-manager")
            && !r.stderr.contains("hunter2"),
        "{}",
        r.stderr
    );
    let after = moto.key_ids(USER);
    assert_eq!(after.len(), 1);
    assert_ne!(after, before, "rotated regardless");
}

/// A loopback HTTP server that records request bodies and answers `status`.
fn webhook(status: u16) -> (String, std::sync::mpsc::Receiver<(String, String)>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/hooks/T000/B000/TOKENTOKEN",
        l.local_addr().unwrap()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0u8; len];
            reader.read_exact(&mut body).ok();
            let _ = tx.send((head, String::from_utf8_lossy(&body).into_owned()));
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    (url, rx)
}

#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn notifications_say_what_happened_and_never_a_secret() {
    let (f, moto, _) = setup();
    let (url, rx) = webhook(200);
    // On success with `--notify-on always`, from an environment variable.
    let mut c = rotate_cmd(&f, &moto);
    c.env("HOOK_URL", &url).args(ROUTE53_NOW).args([
        "--notify",
        "env:HOOK_URL",
        "--notify-on",
        "always",
    ]);
    let r = run_cmd(&mut c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (head, body) = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    assert!(
        head.starts_with("POST /hooks/T000/B000/TOKENTOKEN"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(j["outcome"], "success");
    assert_eq!(j["counts"]["staged"], 1);
    assert_eq!(j["counts"]["revoked"], 1);
    assert!(j["text"].as_str().unwrap().contains("1 staged"), "{body}");
    // Neither the new secret nor any ciphertext of the manifest is in it.
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("m.yaml");
    std::fs::write(&p, f.show("dev", "main", REL)).unwrap();
    let secret =
        String::from_utf8(decrypt_value(&p, 0, DEV1, LABEL, "secretAccessKey").unwrap()).unwrap();
    assert!(!body.contains(&secret));
    for (_, ct) in crate::common::encrypted_data(&p, 0) {
        assert!(!body.contains(&ct[..40.min(ct.len())]));
    }
    assert!(!r.stderr.contains("TOKENTOKEN"));
    // On failure (the default `on`): a failing source. The webhook answers 500: reported,
    // retried, and the exit code stays the run's own.
    let (bad_url, bad_rx) = webhook(500);
    let mut c = rotate_cmd(&f, &moto);
    c.env("AWS_ENDPOINT_URL_IAM", "http://127.0.0.1:9")
        .env("HOOK_URL", &bad_url)
        // The credential without `--revoke-after 0s`: the source fails before that matters.
        .args(&ROUTE53_NOW[..6])
        .args(["--notify", "env:HOOK_URL"]);
    let r = run_cmd(&mut c);
    assert_eq!(r.code, 10, "{}", r.stderr);
    let (_, body) = bad_rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(j["outcome"], "failure");
    assert_eq!(j["exitCode"], 10);
    assert_eq!(j["failures"][0]["phase"], "preflight");
    assert!(
        j["failures"][0]["identity"]
            .as_str()
            .unwrap()
            .ends_with("external-dns-dev1")
    );
    let retries = 1 + bad_rx.try_iter().count();
    assert_eq!(retries, 3, "retried within a bound");
    assert!(r.stderr.contains("not delivered (HTTP 500"), "{}", r.stderr);
    assert!(!r.stderr.contains("TOKENTOKEN"), "{}", r.stderr);
    // `failure` does not post after a run that succeeded or did nothing.
    let (quiet_url, quiet_rx) = webhook(200);
    let mut c = rotate_cmd(&f, &moto);
    c.env("HOOK_URL", &quiet_url)
        .args(["--older-than", "9999d", "--notify", "env:HOOK_URL"]);
    assert_eq!(run_cmd(&mut c).code, 0);
    assert!(
        quiet_rx
            .recv_timeout(std::time::Duration::from_millis(300))
            .is_err()
    );
    // The same from `.secret-manager.yaml` on main: `notify: [{urlEnv, on}]`.
    let config = f.path("work").join(".secret-manager.yaml");
    let original = std::fs::read_to_string(&config).unwrap();
    let (cfg_url, cfg_rx) = webhook(200);
    f.commit_main(
        &f.path("work"),
        ".secret-manager.yaml",
        &format!("{original}notify:\n  - urlEnv: TEAM_HOOK\n    on: always\n"),
        "Tell the team's webhook about every run",
    );
    let mut c = rotate_cmd(&f, &moto);
    c.env("TEAM_HOOK", &cfg_url).args(["--older-than", "9999d"]);
    assert_eq!(run_cmd(&mut c).code, 0);
    let (_, body) = cfg_rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(j["outcome"], "success");
    f.commit_main(
        &f.path("work"),
        ".secret-manager.yaml",
        &original,
        "No webhook from the config",
    );
    // A bad entry names the file and the field.
    std::fs::write(
        &config,
        format!("{original}notify:\n  - urlEnv: \"https://hooks.example.com/x\"\n"),
    )
    .unwrap();
    let r = run_cmd(cmd().args([
        "--repo",
        f.path("work").to_str().unwrap(),
        "--yes",
        "rotate",
    ]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(".secret-manager.yaml") && r.stderr.contains("notify[].urlEnv"),
        "{}",
        r.stderr
    );
    std::fs::write(&config, &original).unwrap();
    // A missing variable is a usage error before anything runs.
    let mut c = rotate_cmd(&f, &moto);
    c.args(["--notify", "env:NOT_SET_ANYWHERE"]);
    let r = run_cmd(&mut c);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("NOT_SET_ANYWHERE is not set"),
        "{}",
        r.stderr
    );
}

/// A cluster's sealing certificate is replaced (the controller renewed its key): its
/// manifests are marked, `lint --require-current-cert` finds them, and `rotate --reseal`
/// re-seals exactly those with the new certificate.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn a_replaced_certificate_marks_manifests_and_rotate_reseal_reseals_them() {
    use rsa::pkcs8::DecodePrivateKey;
    let (f, moto, old) = setup();
    let work = f.path("work");
    let w = work.to_str().unwrap();
    // The renewed certificate is valid from the moment openssl makes it, the fleet's
    // pinned clock is earlier: each command runs at the real time of its start (a time
    // taken once before the certificate exists would be earlier than its notBefore).
    let now = || {
        let mut c = cmd();
        c.env("SECRET_MANAGER_NOW", chrono::Utc::now().to_rfc3339());
        c
    };
    let row = |extra: &[&str]| -> Vec<serde_json::Value> {
        let r = run_cmd(now().args(["--repo", w, "-o", "json", "list"]).args(extra));
        assert_eq!(r.code, 0, "{}", r.stderr);
        serde_json::from_str(&r.stdout).unwrap()
    };
    let route53 = |rows: &[serde_json::Value]| {
        rows.iter()
            .find(|r| r["file"] == REL)
            .cloned()
            .expect("route53 listed")
    };
    assert_eq!(route53(&row(&[]))["certCurrent"], true);
    // A new key pair for the cluster (as after the controller's renewal).
    let keys = tempfile::tempdir().unwrap();
    let (key, cert) = (keys.path().join("k.pem"), keys.path().join("c.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=TEST-ONLY renewed",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    f.commit_main(
        &work,
        "tooling/sealing-certs/aws.eu-central-1.dev1.pem",
        &std::fs::read_to_string(&cert).unwrap(),
        "The dev1 controller renewed its sealing key",
    );
    let rows = row(&[]);
    assert_eq!(route53(&rows)["certCurrent"], false);
    assert!(route53(&rows)["sealedWith"].as_str().unwrap().len() == 64);
    // Manifests without a sealedWith are unknown, not outdated.
    assert!(
        rows.iter()
            .filter(|r| r["file"] != REL && r["sealedWith"].is_null())
            .all(|r| r["certCurrent"].is_null())
    );
    let outdated = row(&["--cert-outdated"]);
    assert_eq!(outdated.len(), 1, "{outdated:#?}");
    let table = run_cmd(now().args(["--repo", w, "list", "--cert-outdated"]));
    assert!(table.stdout.contains("ok+reseal"), "{}", table.stdout);
    let lint = run_cmd(now().args(["--repo", w, "lint", "--require-current-cert"]));
    assert_eq!(lint.code, 3, "{}", lint.stdout);
    assert!(
        lint.stdout.contains(&format!("{REL}:1: outdated-cert:")),
        "{}",
        lint.stdout
    );
    assert!(lint.stdout.contains("rotate --reseal"), "{}", lint.stdout);
    // rotate --reseal alone: only the outdated credential, though every other aws
    // credential of dev1 is selected too.
    let before: Vec<serde_json::Value> = row(&[]);
    // A new certificate is not trusted because the repo holds it: without the operator's
    // pin (or the controller serving it) nothing is re-sealed.
    let reseal = |pin: Option<String>| {
        let mut c = now();
        if let Some(p) = pin {
            c.env("SECRET_MANAGER_TRUSTED_CERTS", p);
        }
        moto.env(&mut c).env("KUBECONFIG", "/dev/null").args([
            "--repo",
            w,
            "--yes",
            "rotate",
            "--source",
            "aws",
            "--cluster",
            DEV1,
            "--reseal",
            "--revoke-after",
            "0s",
        ]);
        run_cmd(&mut c)
    };
    let r = reseal(None);
    assert_eq!(r.code, 10, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("SECRET_MANAGER_TRUSTED_CERTS"),
        "{}",
        r.stderr
    );
    assert_eq!(row(&[]), before, "nothing changed");
    let fp = crate::common::cert_fingerprint(&cert);
    let r = reseal(Some(format!("{DEV1}={fp}")));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let after = row(&[]);
    for (b, a) in before.iter().zip(&after) {
        if b["file"] == REL {
            assert_ne!(a["keyId"], b["keyId"], "re-sealed with a new key");
            assert_eq!(a["certCurrent"], true);
        } else {
            assert_eq!(a["keyId"], b["keyId"], "{} untouched", b["file"]);
        }
    }
    assert_ne!(moto.key_ids(USER), vec![old]);
    // The new ciphertext is for the new key, not the old one.
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("m.yaml");
    std::fs::write(&p, f.show("dev", "main", REL)).unwrap();
    let data = crate::common::encrypted_data(&p, 0);
    let (_, ct) = data.iter().find(|(k, _)| k == "accessKeyId").unwrap();
    let renewed =
        rsa::RsaPrivateKey::from_pkcs8_pem(&std::fs::read_to_string(&key).unwrap()).unwrap();
    assert_eq!(
        String::from_utf8(crate::common::unseal::decrypt(&renewed, LABEL, ct).unwrap()).unwrap(),
        moto.key_ids(USER)[0]
    );
    assert!(
        decrypt_value(&p, 0, DEV1, LABEL, "accessKeyId").is_err(),
        "not the old key"
    );
    assert!(row(&["--cert-outdated"]).is_empty());
}
