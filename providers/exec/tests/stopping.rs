//! The tool's forced stop (a second SIGINT/SIGTERM: `stop_all`, then the process exits).
//! Its own test binary: the stop is for the whole process, as it is in the tool.

mod common;
use common::{plugin, settings, target, wait_gone};
use secret_manager_exec::ExecProvider;
use secret_manager_exec::api::Provider;
use std::time::{Duration, Instant};

/// One stop ends the plugin of a call in flight — also when its call registers the
/// plugin's process group only after the stop looked (the plugin runs from `spawn` on) —
/// and no call starts a plugin after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_stop_ends_every_plugin_and_starts_none() {
    let dir = tempfile::tempdir().unwrap();
    let prog = plugin(dir.path(), "stuck", "echo $$ > \"$DIR/$1.pid\"\nsleep 300");
    let p = std::sync::Arc::new(ExecProvider::with_settings("stuck", prog, settings(60_000)));
    let p2 = p.clone();
    let call = tokio::spawn(async move { p2.preflight(&target(1)).await });
    let pidfile = dir.path().join("preflight.pid");
    let t0 = Instant::now();
    while !pidfile.exists() && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Once, right as the plugin has started (its call may not have registered it yet).
    secret_manager_exec::stop_all();
    let r = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the call ends within seconds, not at the plugin's 60 s timeout")
        .unwrap();
    assert!(r.is_err());
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    assert!(wait_gone(&pid), "the stop left plugin {pid}");
    // After the stop no plugin starts: the call fails at once, the plugin never ran.
    let t0 = Instant::now();
    let e = p.keys(&target(1)).await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(e.to_string().contains("stopping"), "{e}");
    assert!(
        !dir.path().join("keys.pid").exists(),
        "a plugin started after the stop"
    );
}
