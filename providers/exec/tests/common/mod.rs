//! Helpers shared by the exec provider's test binaries.
#![allow(dead_code)]

use secret_manager_exec::PluginSettings;
use secret_manager_exec::api::Target;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Writes an executable `sh` plugin with `body`; `$DIR` is its directory.
pub fn plugin(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(format!("secret-manager-provider-{name}"));
    std::fs::write(&p, format!("#!/bin/sh\nDIR='{}'\n{body}\n", dir.display())).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

pub fn settings(timeout_ms: u64) -> PluginSettings {
    PluginSettings {
        env: Vec::new(),
        timeout: Duration::from_millis(timeout_ms),
    }
}

pub fn target(big: usize) -> Target {
    Target {
        source: "bad".into(),
        params: [("account".to_string(), "x".repeat(big.max(1)))].into(),
        current_key: None,
        referenced: Vec::new(),
    }
}

pub fn alive(pid: &str) -> bool {
    // A killed process may linger as a zombie of whoever reaps it: count it as gone.
    std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
        .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
}

pub fn wait_gone(pid: &str) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
