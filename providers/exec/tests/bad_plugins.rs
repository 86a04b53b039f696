//! Deliberately bad plugins: each one is bounded, killed (children included), reported
//! clearly, and cannot block or flood the tool.

use secret_manager_exec::ExecProvider;
use secret_manager_exec::api::{Checked, Provider, ProviderError, RetryPolicy, Retrying};
use std::time::{Duration, Instant};

mod common;
use common::{plugin, settings, target, wait_gone};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_plugin_and_its_child_are_killed_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let prog = plugin(
        dir.path(),
        "hang",
        "sleep 300 &\necho $! > \"$DIR/child.pid\"\necho $$ > \"$DIR/plugin.pid\"\nsleep 300",
    );
    let p = ExecProvider::with_settings("hang", prog, settings(500));
    let t0 = Instant::now();
    let e = p.preflight(&target(1)).await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(matches!(e, ProviderError::TimedOut { .. }), "{e}");
    assert!(e.to_string().contains("did not answer within 0s") || e.to_string().contains("within"));
    for f in ["child.pid", "plugin.pid"] {
        let pid = std::fs::read_to_string(dir.path().join(f)).unwrap();
        assert!(wait_gone(&pid), "{f} {pid} still running");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_retried_once_not_six_times() {
    let dir = tempfile::tempdir().unwrap();
    let prog = plugin(dir.path(), "slow", "echo x >> \"$DIR/calls\"\nsleep 300");
    let p = Retrying::new(
        ExecProvider::with_settings("slow", prog, settings(300)),
        RetryPolicy {
            base_delay: Duration::from_millis(1),
            ..RetryPolicy::default()
        },
    );
    p.keys(&target(1)).await.unwrap_err();
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
    assert_eq!(calls.lines().count(), 2);
}

/// A plugin that answers without reading its (large) request: the tool's write fails with
/// EPIPE, and the answer still counts — every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_answers_without_reading_is_judged_by_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let prog = plugin(
        dir.path(),
        "rude",
        "printf '{\"protocolVersion\":1,\"ok\":true,\"keys\":[]}'",
    );
    let p = ExecProvider::with_settings("rude", prog, settings(10_000));
    for _ in 0..30 {
        assert!(p.keys(&target(256 << 10)).await.unwrap().is_empty());
    }
}

/// A plugin that never reads a request larger than the pipe buffer and never answers
/// cannot block the tool past its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_never_reads_cannot_block_past_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let prog = plugin(dir.path(), "deaf", "sleep 300");
    let p = ExecProvider::with_settings("deaf", prog, settings(700));
    let t0 = Instant::now();
    let e = p.preflight(&target(1 << 20)).await.unwrap_err();
    assert!(matches!(e, ProviderError::TimedOut { .. }), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_stdout_and_stderr_are_bounded_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let flood = plugin(
        dir.path(),
        "flood",
        "head -c 100000000 /dev/zero | tr '\\0' 'a'",
    );
    let p = ExecProvider::with_settings("flood", flood, settings(20_000));
    let t0 = Instant::now();
    let e = p.keys(&target(1)).await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(e.to_string().contains("more than 1024 KiB"), "{e}");
    // One 100 MiB stderr line: the error keeps a few KiB and says how much was cut.
    let noisy = plugin(
        dir.path(),
        "noisy",
        "head -c 104857600 /dev/zero | tr '\\0' 'e' >&2\nexit 1",
    );
    let p = ExecProvider::with_settings("noisy", noisy, settings(20_000));
    let e = p.keys(&target(1)).await.unwrap_err();
    let text = e.to_string();
    assert!(text.len() < 8 << 10, "{} bytes", text.len());
    assert!(
        text.contains("more bytes of stderr cut"),
        "{}",
        &text[..200]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_and_control_characters_are_reported_not_relayed() {
    let dir = tempfile::tempdir().unwrap();
    let p = ExecProvider::with_settings(
        "garbage",
        plugin(dir.path(), "garbage", "printf '{\"ok\": true, oops'"),
        settings(5_000),
    );
    let e = p.keys(&target(1)).await.unwrap_err().to_string();
    assert!(e.contains("is not one JSON object"), "{e}");
    assert!(e.contains("at byte 13"), "{e}");
    assert!(!e.contains("oops"), "stdout is never quoted: {e}");
    // Escapes on stderr and in error messages arrive escaped.
    let p = ExecProvider::with_settings(
        "ansi",
        plugin(
            dir.path(),
            "ansi",
            "printf 'evil \\033[31mred\\007\\n' >&2\nprintf '{\"protocolVersion\":1,\"ok\":false,\"error\":{\"kind\":\"permanent\",\"message\":\"no \\\\u001b[2J way\"}}'\nexit 1",
        ),
        settings(5_000),
    );
    let e = p.keys(&target(1)).await.unwrap_err().to_string();
    assert!(!e.contains('\u{1b}'), "{e:?}");
    assert!(e.contains("\\u{1b}[2J"), "{e}");
    let p = ExecProvider::with_settings(
        "crash",
        plugin(
            dir.path(),
            "crash",
            "printf 'bad \\033]0;title\\007 news\\n' >&2\nexit 3",
        ),
        settings(5_000),
    );
    let e = p.keys(&target(1)).await.unwrap_err().to_string();
    assert!(
        e.contains("with no output") && e.contains("stderr: bad \\u{1b}]0;title"),
        "{e}"
    );
    assert!(!e.contains('\u{7}'), "{e:?}");
}

/// Key ids with escapes, newlines or bidi overrides never leave the provider layer: a
/// listing fails, and a mint that returns one deletes that key again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_ids_with_control_characters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let prog = plugin(
        dir.path(),
        "ids",
        r#"op="$1"
case "$op" in
  keys) printf '{"protocolVersion":1,"ok":true,"keys":[{"keyId":"k1\\u001b[31m"}]}' ;;
  mint) printf '{"protocolVersion":1,"ok":true,"keyId":"new\\u202eid","fields":{"Token":"t"}}' ;;
  revoke) cat > "$DIR/revoked"; printf '{"protocolVersion":1,"ok":true}' ;;
  *) printf '{"protocolVersion":1,"ok":true}' ;;
esac"#,
    );
    let p = Checked::new(ExecProvider::with_settings("ids", prog, settings(5_000)));
    let e = p.keys(&target(1)).await.unwrap_err().to_string();
    assert!(
        e.contains("k1\\u{1b}[31m") && !e.contains('\u{1b}'),
        "{e:?}"
    );
    let e = p.mint(&target(1)).await.unwrap_err().to_string();
    assert!(e.contains("new\\u{202e}id"), "{e}");
    assert!(e.contains("deleted again"), "{e}");
    let revoked = std::fs::read_to_string(dir.path().join("revoked")).unwrap();
    assert!(revoked.contains("\"revoke\":\"delete\""), "{revoked}");
}

/// Capabilities are asked once, at connect, and used: the engine knows the limit, and a
/// keyLimit error carries the plugin's numbers instead of "0 keys".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_are_asked_once_and_key_limits_carry_the_plugins_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let prog = plugin(
        dir.path(),
        "full",
        r#"echo "$1" >> "$DIR/ops"
case "$1" in
  capabilities) printf '{"protocolVersion":1,"ok":true,"maxKeysPerIdentity":3,"canDisable":true}' ;;
  mint) printf '{"protocolVersion":1,"ok":false,"error":{"kind":"keyLimit","message":"vault holds 3 tokens","keyCount":3}}'; exit 1 ;;
  *) printf '{"protocolVersion":1,"ok":true,"keys":[]}' ;;
esac"#,
    );
    let p = ExecProvider::connect_program("full", prog, settings(5_000))
        .await
        .unwrap();
    let caps = p.capabilities();
    assert_eq!(caps.max_keys_per_identity, Some(3));
    assert!(caps.can_disable);
    p.keys(&target(1)).await.unwrap();
    p.capabilities();
    let e = p.mint(&target(1)).await.unwrap_err();
    assert!(matches!(e, ProviderError::KeyLimit { count: 3, .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("already has 3 keys"), "{text}");
    assert!(text.contains("allows 3 keys per identity"), "{text}");
    let ops = std::fs::read_to_string(dir.path().join("ops")).unwrap();
    assert_eq!(
        ops.lines().filter(|l| *l == "capabilities").count(),
        1,
        "{ops}"
    );
}

/// A call that is dropped (the run gives up on it) or cut short by kill_running (the
/// tool's second SIGTERM) leaves no plugin process behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_calls_and_a_forced_stop_kill_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let prog = plugin(dir.path(), "stuck", "echo $$ > \"$DIR/$1.pid\"\nsleep 300");
    let p = std::sync::Arc::new(ExecProvider::with_settings("stuck", prog, settings(60_000)));
    let t = target(1);
    let _ = tokio::time::timeout(Duration::from_millis(500), p.keys(&t)).await;
    let pid = std::fs::read_to_string(dir.path().join("keys.pid")).unwrap();
    assert!(wait_gone(&pid), "dropped call left plugin {pid}");
    let p2 = p.clone();
    let call = tokio::spawn(async move { p2.preflight(&target(1)).await });
    let pidfile = dir.path().join("preflight.pid");
    let t0 = Instant::now();
    while !pidfile.exists() && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The plugin wrote its pid file, but the provider may register its process group a
    // moment later (spawn returns, then registers): a stop in between misses it, so the
    // test stops again until the call ends, as a third signal would.
    let t0 = Instant::now();
    while !call.is_finished() && t0.elapsed() < Duration::from_secs(5) {
        secret_manager_exec::kill_running();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap()
        .unwrap();
    assert!(r.is_err());
    let pid = std::fs::read_to_string(pidfile).unwrap();
    assert!(wait_gone(&pid), "kill_running left plugin {pid}");
}
