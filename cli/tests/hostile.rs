//! The repo is untrusted input: each test writes what a member of one app team could get
//! merged (or push to a ref) and proves, with the real binary, real `git` and real
//! `kubectl`, that nothing ran (marker files), nothing was sent (a listening socket that
//! counts connections) and nothing outside the repo was read or written.

use crate::common::{GitFleet, Run, cmd, git, run_cmd, with_demo_plugin};
use crate::safety::demo_fleet;
use std::path::{Path, PathBuf};

const DEV1: &str = "aws.eu-central-1.dev1";
const DEMO: &str = "applications/demo/state/overlays/aws.eu-central-1.dev1/demo.yaml";
const DEV1_VALUES: &str = "cluster-values/aws.eu-central-1.dev1.yaml";

/// `rotate --source demo` in `work` with the demo plugin, plus `extra` args and `env`.
fn rotate(f: &GitFleet, state: &Path, env: &[(&str, &str)], extra: &[&str]) -> Run {
    let work = f.path("work");
    let mut c = cmd();
    with_demo_plugin(&mut c, state);
    // The demo plugin stamps keys with the real time: the run's clock is the real one, so
    // that `--older-than 0s` selects them and the hostile input is really acted on.
    c.env("SECRET_MANAGER_NOW", chrono::Utc::now().to_rfc3339());
    for (k, v) in env {
        c.env(k, v);
    }
    c.current_dir(&work).args([
        "--repo",
        work.to_str().unwrap(),
        "--yes",
        "rotate",
        "--source",
        "demo",
        "--revoke-after",
        "0s",
    ]);
    c.args(extra);
    run_cmd(&mut c)
}

/// The demo plugin's key ids for every account, as it keeps them.
fn demo_keys(state: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(state.join("keys.json")) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut ids: Vec<String> = v
        .as_object()
        .unwrap()
        .values()
        .flat_map(|keys| keys.as_array().unwrap().clone())
        .map(|k| k["keyId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// A shell command that creates `marker` (what the attacker's payload does).
fn touch(marker: &Path) -> String {
    format!("touch {}", marker.display())
}

/// Commits `rel` with `content` in `work` and pushes main (the merged pull request).
fn merge(f: &GitFleet, rel: &str, content: &str) {
    let work = f.path("work");
    let p = work.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, content).unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "An app team's change"]);
    git(&work, &["push", "--quiet", "origin", "main"]);
}

/// Class 1: a SealedSecret whose name is a kubectl flag, next to a kubeconfig whose exec
/// credential plugin would run with the rotator's environment. The name is a lint
/// finding, the secret is never rotated, and kubectl never loads that kubeconfig.
#[test]
fn a_name_that_looks_like_a_kubectl_flag_never_reaches_kubectl() {
    let state = tempfile::tempdir().unwrap();
    let f = demo_fleet(state.path());
    let work = f.path("work");
    let marker = f.path("pwned-by-kubeconfig");
    // Its context is named like dev1's `kubeContext`, so kubectl would use it.
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"https://127.0.0.1:9\"}}}}]\nusers:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: sh\n      args: [\"-c\", \"{} && env > {}.env\"]\n      interactiveMode: Never\ncontexts: [{{name: dev1, context: {{cluster: c, user: u}}}}]\ncurrent-context: dev1\n",
        touch(&marker),
        marker.display()
    );
    let manifest = std::fs::read_to_string(work.join(DEMO)).unwrap();
    let hostile = manifest.replacen(
        "name: demo\n",
        "name: --kubeconfig=applications/demo/kubeconfig\n",
        1,
    );
    assert_ne!(hostile, manifest, "the manifest names the secret `demo`");
    merge(&f, "applications/demo/kubeconfig", &kubeconfig);
    merge(&f, DEMO, &hostile);

    let before = demo_keys(state.path());
    for _ in 0..2 {
        let r = rotate(
            &f,
            state.path(),
            &[("AWS_SECRET_ACCESS_KEY", "TEST-ONLY-rotator-secret")],
            &["--require-synced", "--older-than", "0s"],
        );
        assert!(
            !marker.exists(),
            "kubectl ran the repo's exec plugin: {}",
            r.stderr
        );
    }
    assert_eq!(demo_keys(state.path()), before, "nothing was minted for it");
    let lint = run_cmd(
        cmd()
            .env("SECRET_MANAGER_NOW", chrono::Utc::now().to_rfc3339())
            .args(["--repo", work.to_str().unwrap(), "lint"]),
    );
    assert_eq!(lint.code, 3, "{}{}", lint.stdout, lint.stderr);
    assert!(
        lint.stdout.contains(DEMO) && lint.stdout.contains("metadata.name"),
        "{}",
        lint.stdout
    );
}

/// Class 1 and 2: a cluster `remote:` that is a git option, a URL or an unconfigured
/// path. Every command that reads remotes refuses it before git runs; nothing executes
/// and the other repository is never contacted.
#[test]
fn a_remote_that_is_an_option_a_url_or_a_path_is_refused_before_git_runs() {
    let f = GitFleet::new();
    let work = f.path("work");
    let marker = f.path("pwned-by-remote");
    // Another bare repo that would log any fetch through its upload-pack.
    let elsewhere = f.path("elsewhere.git");
    git(
        f.root.path(),
        &["init", "--quiet", "--bare", elsewhere.to_str().unwrap()],
    );
    let values = std::fs::read_to_string(work.join(DEV1_VALUES)).unwrap();
    for remote in [
        format!("\"--upload-pack={}\"", touch(&marker)),
        format!("\"ext::sh -c {}\"", touch(&marker).replace(' ', "% ")),
        format!("\"{}\"", elsewhere.display()),
        "\"https://collector.evil.example/fleet.git\"".to_owned(),
        "stranger".to_owned(),
    ] {
        let hostile = values.replacen("remote: origin", &format!("remote: {remote}"), 1);
        assert_ne!(hostile, values);
        std::fs::write(work.join(DEV1_VALUES), &hostile).unwrap();
        let r = run_cmd(cmd().args(["--repo", work.to_str().unwrap(), "cluster", "status"]));
        assert!(!marker.exists(), "{remote}: git ran the repo's command");
        assert_ne!(r.code, 0, "{remote}: {}", r.stdout);
        assert!(
            r.stderr.contains("remote") && !r.stderr.contains("\u{1b}"),
            "{remote}: {}",
            r.stderr
        );
        if remote == "stranger" {
            assert!(r.stderr.contains("not configured"), "{}", r.stderr);
        } else {
            assert!(r.stderr.contains(DEV1_VALUES), "{remote}: {}", r.stderr);
        }
    }
    // The other repository saw nothing: no fetch ever ran against it (git would have
    // written FETCH_HEAD or logged in its reflog only on a push; an upload-pack leaves no
    // trace, so check that git was never even given its path: the errors above came from
    // validation, before git started).
    assert!(
        std::fs::read_dir(elsewhere.join("refs/heads"))
            .unwrap()
            .next()
            .is_none()
    );
}

/// A loopback listener that counts the connections made to it.
struct Listener {
    url: String,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Listener {
    fn start() -> Listener {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(s);
            }
        });
        Listener { url, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Class 2: `forge.apiUrl` in the repo names a host of the writer's choosing. Without the
/// operator's `SECRET_MANAGER_FORGE_API_URL` the run refuses before anything is minted,
/// and the host never sees a connection (so never the token).
#[test]
fn the_repo_alone_cannot_send_the_forge_token_anywhere() {
    let state = tempfile::tempdir().unwrap();
    let f = demo_fleet(state.path());
    let work = f.path("work");
    let collector = Listener::start();
    let mut cfg = std::fs::read_to_string(work.join(".secret-manager.yaml")).unwrap();
    cfg.push_str(&format!(
        "mainVia: pull-request\nforge:\n  kind: gitlab\n  apiUrl: {}\n  repository: org/fleet\n",
        collector.url
    ));
    merge(&f, ".secret-manager.yaml", &cfg);
    let before = demo_keys(state.path());
    let r = rotate(
        &f,
        state.path(),
        &[("GITLAB_TOKEN", "TEST-ONLY-forge-token")],
        &[],
    );
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("SECRET_MANAGER_FORGE_API_URL") && r.stderr.contains("forge.apiUrl"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("TEST-ONLY-forge-token"));
    assert_eq!(collector.hits(), 0, "the repo's host was contacted");
    assert_eq!(demo_keys(state.path()), before, "nothing minted");
    // A webhook URL over plain http to another host is refused too.
    let r = rotate(
        &f,
        state.path(),
        &[
            ("GITLAB_TOKEN", "TEST-ONLY-forge-token"),
            ("SECRET_MANAGER_FORGE_API_URL", &collector.url),
            ("HOOK", "http://hooks.example.com/services/TEST-ONLY"),
        ],
        &["--notify", "env:HOOK", "--dry-run"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("https"), "{}", r.stderr);
}

/// A fresh self-signed certificate (TEST-ONLY) and its SHA-256 fingerprint.
fn new_cert(dir: &Path) -> (PathBuf, String) {
    let (key, cert) = (dir.join("k.pem"), dir.join("c.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
        ])
        .args(["-subj", "/CN=TEST-ONLY attacker"])
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
    let fp = crate::common::cert_fingerprint(&cert);
    (cert, fp)
}

/// Class 3: the sealing certificate of a cluster is replaced by one the writer holds.
/// Nothing is minted or sealed for that cluster; the error names both fingerprints and how
/// to accept the new one; the operator's pin accepts it.
#[test]
fn a_replaced_sealing_certificate_is_not_trusted_because_the_repo_holds_it() {
    let state = tempfile::tempdir().unwrap();
    let f = demo_fleet(state.path());
    let work = f.path("work");
    let keys = tempfile::tempdir().unwrap();
    let (cert, fp) = new_cert(keys.path());
    merge(
        &f,
        "tooling/sealing-certs/aws.eu-central-1.dev1.pem",
        &std::fs::read_to_string(&cert).unwrap(),
    );
    let before = demo_keys(state.path());
    let main_before = git(&work, &["rev-parse", "origin/main"]);
    let now = chrono::Utc::now().to_rfc3339();
    let r = rotate(
        &f,
        state.path(),
        &[("SECRET_MANAGER_NOW", &now), ("KUBECONFIG", "/dev/null")],
        &["--older-than", "0s"],
    );
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("changed") && r.stderr.contains(&fp[..16]),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&format!("SECRET_MANAGER_TRUSTED_CERTS={DEV1}={fp}")),
        "{}",
        r.stderr
    );
    assert_eq!(demo_keys(state.path()), before, "nothing minted");
    git(&work, &["fetch", "--quiet", "origin"]);
    assert_eq!(
        git(&work, &["rev-parse", "origin/main"]),
        main_before,
        "nothing committed"
    );
    // The operator pins it: the rotation goes through, sealed to the pinned certificate.
    let r = rotate(
        &f,
        state.path(),
        &[
            ("SECRET_MANAGER_NOW", &now),
            ("KUBECONFIG", "/dev/null"),
            ("SECRET_MANAGER_TRUSTED_CERTS", &format!("{DEV1}={fp}")),
        ],
        &["--older-than", "0s"],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_ne!(demo_keys(state.path()), before);
}

/// Class 4: symlinks out of the repo, a FIFO, a huge file. Each is an error naming the
/// file (or a finding), the run neither hangs nor reads outside the repo.
#[test]
fn symlinks_fifos_and_huge_files_in_the_repo_are_errors_not_reads() {
    let repo = crate::common::temp_repo("example-repo");
    let r = repo.path();
    let run = |args: &[&str]| {
        let mut c = cmd();
        c.args(["--repo", r.to_str().unwrap()]).args(args);
        // A FIFO that blocked a read would hang here: killed after 60 s, and a failure.
        let mut child = c
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > std::time::Duration::from_secs(60) {
                let _ = child.kill();
                panic!("`secret-manager {args:?}` hung on the repo's files");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    // A cluster-values symlink to /dev/zero.
    let values = r.join("cluster-values/aws.x.evil.yaml");
    std::os::unix::fs::symlink("/dev/zero", &values).unwrap();
    let out = run(&["list"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("aws.x.evil.yaml") && out.stderr.contains("leaves the repo"),
        "{}",
        out.stderr
    );
    std::fs::remove_file(&values).unwrap();
    // `.secret-manager.yaml` as a FIFO.
    let cfg = r.join(".secret-manager.yaml");
    let saved = std::fs::read(&cfg).unwrap();
    std::fs::remove_file(&cfg).unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&cfg)
            .status()
            .unwrap()
            .success()
    );
    let out = run(&["list"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("FIFO"), "{}", out.stderr);
    std::fs::remove_file(&cfg).unwrap();
    std::fs::write(&cfg, saved).unwrap();
    // A kustomization that is a symlink to a file outside the repo: a finding, not a read.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("k.yaml"), "namespace: stolen\n").unwrap();
    let k = r.join("applications/external-dns/base/kustomization.yaml");
    let _ = std::fs::remove_file(&k);
    std::fs::create_dir_all(k.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(outside.path().join("k.yaml"), &k).unwrap();
    std::fs::write(
        k.parent().unwrap().join("s.yaml"),
        "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: s\nspec:\n  encryptedData: {}\n",
    )
    .unwrap();
    let out = run(&["-o", "json", "list", "--all"]);
    assert!(!out.stdout.contains("stolen"), "{}", out.stdout);
    let lint = run(&["lint"]);
    assert!(lint.stdout.contains("leaves the repo"), "{}", lint.stdout);
    // A huge manifest: reported, not read into memory.
    let big = r.join("applications/big.yaml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len((16 << 20) + 1).unwrap();
    let lint = run(&["lint"]);
    assert!(
        lint.stdout.contains("applications/big.yaml") && lint.stdout.contains("limit"),
        "{}",
        lint.stdout
    );
}

/// Class 4: a committed `.secret-manager` symlink would make `rotate` write records
/// outside the repo. The run refuses to write through it and the target stays empty.
#[test]
fn a_committed_state_symlink_is_never_written_through() {
    let state = tempfile::tempdir().unwrap();
    let f = demo_fleet(state.path());
    let work = f.path("work");
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), work.join(".secret-manager")).unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "state elsewhere"]);
    git(&work, &["push", "--quiet", "origin", "main"]);
    let before = demo_keys(state.path());
    let r = rotate(&f, state.path(), &[], &["--older-than", "0s"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains(".secret-manager") && r.stderr.contains("symlink"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "written outside the repo"
    );
    assert_eq!(demo_keys(state.path()), before, "nothing minted");
}

/// Class 5: a plugin's `env:` allowlist in the repo may not hand it the rotator's own
/// credentials.
#[test]
fn a_plugin_allowlist_cannot_name_the_rotators_credentials() {
    let state = tempfile::tempdir().unwrap();
    let f = demo_fleet(state.path());
    let work = f.path("work");
    let cfg = std::fs::read_to_string(work.join(".secret-manager.yaml")).unwrap();
    let hostile = cfg.replacen(
        "DEMO_PROVIDER_STATE,",
        "DEMO_PROVIDER_STATE, AWS_SECRET_ACCESS_KEY,",
        1,
    );
    assert_ne!(hostile, cfg);
    merge(&f, ".secret-manager.yaml", &hostile);
    let before = demo_keys(state.path());
    let r = rotate(
        &f,
        state.path(),
        &[("AWS_SECRET_ACCESS_KEY", "TEST-ONLY-rotator-secret")],
        &["--older-than", "0s"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("providers.exec.demo.env") && r.stderr.contains("AWS_SECRET_ACCESS_KEY"),
        "{}",
        r.stderr
    );
    assert_eq!(demo_keys(state.path()), before);
}

/// Class 7: terminal escapes and newlines in file names and names are shown escaped by
/// `lint` (a newline cannot forge a finding line).
#[test]
fn lint_escapes_what_it_quotes_from_the_repo() {
    let repo = crate::common::temp_repo("example-repo");
    let dir = repo.path().join("applications/evil");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("x\nforged.yaml:1: all-good: \u{1b}[2Jnothing.yaml"),
        "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: \"a\u{1b}]0;pwned\u{7}\"\n  namespace: x\n  annotations: {}\nspec:\n  encryptedData: {}\n",
    )
    .unwrap();
    let r = run_cmd(cmd().args(["--repo", repo.path().to_str().unwrap(), "lint"]));
    assert!(
        !r.stdout.contains('\u{1b}') && !r.stdout.contains('\u{7}'),
        "{:?}",
        r.stdout
    );
    assert!(
        !r.stdout.lines().any(|l| l.starts_with("forged.yaml")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("\\n"), "{}", r.stdout);
}

/// Class 5: settings come from the fetched main, not from the checkout `--repo` names
/// (another branch, uncommitted edits): a webhook and a remote added only in the checkout
/// are never used.
#[test]
fn settings_come_from_main_not_from_the_checkout() {
    let state = tempfile::tempdir().unwrap();
    let f = demo_fleet(state.path());
    let work = f.path("work");
    let hook = Listener::start();
    // A remote the checkout has configured, pointing at a repository of the writer's.
    let elsewhere = f.path("elsewhere.git");
    git(
        f.root.path(),
        &["init", "--quiet", "--bare", elsewhere.to_str().unwrap()],
    );
    git(
        &work,
        &["remote", "add", "elsewhere", elsewhere.to_str().unwrap()],
    );
    // Uncommitted edits: a webhook, and dev1's pointer on that remote.
    let cfg = std::fs::read_to_string(work.join(".secret-manager.yaml")).unwrap();
    std::fs::write(
        work.join(".secret-manager.yaml"),
        format!("{cfg}notify:\n  - urlEnv: HOOK\n    on: always\n"),
    )
    .unwrap();
    let values = std::fs::read_to_string(work.join(DEV1_VALUES)).unwrap();
    std::fs::write(
        work.join(DEV1_VALUES),
        values.replacen("remote: origin", "remote: elsewhere", 1),
    )
    .unwrap();
    let r = rotate(
        &f,
        state.path(),
        &[
            ("HOOK", &hook.url),
            ("SECRET_MANAGER_NOW", &chrono::Utc::now().to_rfc3339()),
        ],
        &["--older-than", "0s"],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(hook.hits(), 0, "the checkout's webhook was used");
    assert!(
        git(&elsewhere, &["for-each-ref"]).is_empty(),
        "the checkout's remote received a push"
    );
    // dev1's pointer on main's remote moved: the rotation was published where main says.
    assert!(
        r.stdout.contains("publish") && r.stdout.contains(DEV1),
        "{}",
        r.stdout
    );
}

/// A loopback "forge" that answers every request with a redirect to `to`.
fn redirector(to: &str) -> String {
    use std::io::{Read as _, Write as _};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let to = to.to_owned();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 302 Found\r\nLocation: {to}/collect\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    url
}

/// Class 2: a client that carries a credential follows no redirect: the operator's forge
/// answering 302 to another host does not hand that host the token.
#[test]
fn a_redirect_never_carries_the_forge_token_to_another_host() {
    let state = tempfile::tempdir().unwrap();
    let f = demo_fleet(state.path());
    let work = f.path("work");
    let collector = Listener::start();
    let forge = redirector(&collector.url);
    let mut cfg = std::fs::read_to_string(work.join(".secret-manager.yaml")).unwrap();
    cfg.push_str("mainVia: pull-request\nforge:\n  kind: gitlab\n  repository: org/fleet\n");
    merge(&f, ".secret-manager.yaml", &cfg);
    let r = rotate(
        &f,
        state.path(),
        &[
            ("GITLAB_TOKEN", "TEST-ONLY-forge-token"),
            ("SECRET_MANAGER_FORGE_API_URL", &forge),
        ],
        &["--older-than", "0s"],
    );
    assert_ne!(r.code, 0, "{}", r.stdout);
    // The forge was asked (and answered with the redirect), and the other host never saw
    // a connection.
    assert!(r.stderr.contains("302"), "{}", r.stderr);
    assert_eq!(
        collector.hits(),
        0,
        "the redirect was followed: {}",
        r.stderr
    );
    assert!(!r.stderr.contains("TEST-ONLY-forge-token"), "{}", r.stderr);
}

/// Class 7: `-vvv` raises secret-manager's own log events only. The SDKs log request
/// bodies at debug and trace (AWS Query API parameters, an STS web-identity token); none
/// of that reaches the log.
#[test]
#[ignore = "environment: needs moto_server (scripts/test runs it)"]
fn verbose_logs_raise_our_crates_only() {
    let (f, moto, _) = crate::rotate::setup();
    let mut c = cmd();
    moto.env(&mut c).args([
        "-vvv",
        "--repo",
        f.path("work").to_str().unwrap(),
        "keys",
        "--name",
        "route53",
    ]);
    let r = run_cmd(&mut c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Our own debug events are there (the git commands)...
    assert!(r.stderr.contains("git "), "{}", r.stderr);
    // ... the SDK's request bodies and HTTP internals are not.
    let sdk_lines = ["Action=ListAccessKeys", "x-amz-", "smithy", "hyper"];
    for sdk in sdk_lines {
        assert!(!r.stderr.contains(sdk), "{sdk} in:\n{}", r.stderr);
    }
    // The same run with every crate at trace (what -vvv did before): those lines exist,
    // so the check above can fail.
    let mut c = cmd();
    moto.env(&mut c).env("SECRET_MANAGER_LOG", "trace").args([
        "--repo",
        f.path("work").to_str().unwrap(),
        "keys",
        "--name",
        "route53",
    ]);
    let all = run_cmd(&mut c);
    assert!(
        sdk_lines.iter().any(|l| all.stderr.contains(l)),
        "{}",
        all.stderr
    );
}

/// Class 6: a rotation record is only a claim about what happened. One merged to main (or
/// pushed to the journal ref) that names the live key as "old" never gets it revoked:
/// main still references it, and main does not hold the record's "new" key.
#[test]
fn a_forged_record_never_revokes_a_live_key() {
    let state = tempfile::tempdir().unwrap();
    let f = demo_fleet(state.path());
    let live = demo_keys(state.path());
    assert_eq!(live.len(), 1);
    let forged = format!(
        "version: 1\nid: demo-20260101T000000Z-forged00\nkind: rotate\nsource: demo\nidentity: account=acme\nparams:\n  account: acme\noldKeyId: {}\nnewKeyId: demo-forged\nstagedAt: \"2026-01-01T00:00:00Z\"\nmanifests:\n- file: {DEMO}\n  document: 0\n  cluster: {DEV1}\n  secret: demo/demo\npublishedAt:\n  {DEV1}: \"2026-01-01T00:00:05Z\"\n",
        live[0]
    );
    merge(
        &f,
        ".secret-manager/rotations/demo-20260101T000000Z-forged00.yaml",
        &forged,
    );
    // A run that selects nothing new to stage, with no grace period: only the forged
    // record is there to act on.
    let r = rotate(&f, state.path(), &[], &["--older-than", "9999d"]);
    assert_eq!(
        demo_keys(state.path()),
        live,
        "the live key was revoked: {}",
        r.stdout
    );
    assert!(
        r.stdout.contains("main still references the old key"),
        "{}",
        r.stdout
    );
}

/// Class 6: claims live under refs/secret-manager/, outside branch protection. A forged
/// "dead run" claim naming another identity's parameters and a years-long mint window
/// directs no clean-up: the other identity's live key stays.
#[test]
fn a_forged_claim_deletes_nothing() {
    use secret_manager::journal::{Claim, RunId, credential_id};
    let state = tempfile::tempdir().unwrap();
    let f = demo_fleet(state.path());
    let work = f.path("work");
    // A second credential: the victim.
    crate::safety::create_demo(&f, state.path(), "other", "other");
    f.commit_and_publish("Second demo credential", &[DEV1]);
    let before = demo_keys(state.path());
    assert_eq!(before.len(), 2);
    // The forged claim: acme's identity, the victim's parameters, an expired lease and a
    // window from 2000 to 2100.
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    let mut claim = Claim::new(
        &RunId("forged".into()),
        "demo",
        "account=acme",
        &[("account".to_owned(), "other".to_owned())].into(),
        Vec::new(),
        Vec::new(),
        t("2026-01-01T00:00:00Z"),
        chrono::Duration::minutes(10),
    );
    claim.mints_after = t("2000-01-01T00:00:00Z");
    claim.mints_before = t("2100-01-01T00:00:00Z");
    let blob = std::process::Command::new("git")
        .arg("-C")
        .arg(&work)
        .args(["hash-object", "-w", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin
                .take()
                .unwrap()
                .write_all(claim.to_yaml().as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let blob = String::from_utf8(blob.stdout).unwrap().trim().to_owned();
    let tree = {
        let mut c = std::process::Command::new("git")
            .arg("-C")
            .arg(&work)
            .arg("mktree")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        c.stdin
            .take()
            .unwrap()
            .write_all(format!("100644 blob {blob}\tclaim.yaml\n").as_bytes())
            .unwrap();
        String::from_utf8(c.wait_with_output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned()
    };
    let commit = git(&work, &["commit-tree", &tree, "-m", "claim"]);
    let refname = format!(
        "refs/secret-manager/claims/{}",
        credential_id("demo", "account=acme")
    );
    git(
        &work,
        &["push", "--quiet", "origin", &format!("{commit}:{refname}")],
    );
    let r = rotate(&f, state.path(), &[], &["--older-than", "9999d"]);
    assert_eq!(
        demo_keys(state.path()),
        before,
        "a key was deleted: {}",
        r.stdout
    );
    assert!(r.stdout.contains("is not believed"), "{}", r.stdout);
}

/// Class 3, the other side: the controller renews its key every 30 days. A changed
/// certificate that the cluster's controller serves (asked through the operator's
/// kubeconfig and the cluster's `kubeContext`) is trusted without a pin, so a renewal keeps
/// working unattended.
#[test]
fn a_renewed_certificate_the_controller_serves_is_trusted() {
    use std::os::unix::fs::PermissionsExt as _;
    let state = tempfile::tempdir().unwrap();
    let f = demo_fleet(state.path());
    let keys = tempfile::tempdir().unwrap();
    let (cert, fp) = new_cert(keys.path());
    merge(
        &f,
        "tooling/sealing-certs/aws.eu-central-1.dev1.pem",
        &std::fs::read_to_string(&cert).unwrap(),
    );
    // kubectl as the operator's kubeconfig would answer for dev1: the controller's cert.
    let bin = tempfile::tempdir().unwrap();
    let kubectl = bin.path().join("kubectl");
    std::fs::write(
        &kubectl,
        format!(
            "#!/bin/sh\n[ \"$*\" = \"--context=dev1 get --raw=/api/v1/namespaces/kube-system/services/http:sealed-secrets-controller:/proxy/v1/cert.pem\" ] || {{ echo \"unexpected: $*\" >&2; exit 1; }}\ncat {}\n",
            cert.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}:{}",
        bin.path().display(),
        crate::common::testdata("plugins").display(),
        std::env::var("PATH").unwrap()
    );
    let before = demo_keys(state.path());
    let r = rotate(
        &f,
        state.path(),
        &[("PATH", &path)],
        &["--older-than", "0s"],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_ne!(demo_keys(state.path()), before, "rotated");
    let sealed = f.show("dev", "main", DEMO);
    assert!(
        sealed.contains(&fp),
        "sealed with the renewed certificate:\n{sealed}"
    );
}

/// Class 7: git runs hardened: hooks of the checkout (here a post-checkout hook, which
/// `git worktree add` would run) never run inside the rotator.
#[test]
fn git_runs_no_hooks_of_the_checkout() {
    use std::os::unix::fs::PermissionsExt as _;
    let state = tempfile::tempdir().unwrap();
    let f = demo_fleet(state.path());
    let marker = f.path("pwned-by-hook");
    let hook = f.path("work/.git/hooks/post-checkout");
    std::fs::write(&hook, format!("#!/bin/sh\n{}\n", touch(&marker))).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = rotate(&f, state.path(), &[], &["--older-than", "0s"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!marker.exists(), "a hook of the checkout ran");
}
