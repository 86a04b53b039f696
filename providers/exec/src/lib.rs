#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The value of the `source` annotation this crate serves.
pub const NAME: &str = "exec";

/// Prefix of plugin executables looked up on PATH.
pub const PLUGIN_PREFIX: &str = "secret-manager-provider-";

// Re-exported so users of this crate see the contract it implements.
pub use secret_manager_provider as api;

mod plugin;
mod process;
pub use plugin::{DEFAULT_TIMEOUT, ExecProvider, PROTOCOL_VERSION, PluginSettings};
pub use process::{
    BASE_ENV, MAX_STDERR_KEPT, MAX_STDOUT, Output, RunError, kill_running, run, stop_all,
};

use std::path::{Path, PathBuf};

/// Finds the executable `secret-manager-provider-<name>` in the directories of `path_var`
/// (the value of `PATH`), like a shell would.
pub fn find_plugin_in(name: &str, path_var: &std::ffi::OsStr) -> Option<PathBuf> {
    if name.is_empty() || name.contains(['/', '\\']) {
        return None;
    }
    let file = format!("{PLUGIN_PREFIX}{name}");
    std::env::split_paths(path_var)
        .map(|dir| dir.join(&file))
        .find(|p| is_executable(p))
}

/// [`find_plugin_in`] with the process's `PATH`.
pub fn find_plugin(name: &str) -> Option<PathBuf> {
    find_plugin_in(name, &std::env::var_os("PATH")?)
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_executable_plugins() {
        let dir = std::env::temp_dir().join(format!("sm-exec-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plugin = dir.join("secret-manager-provider-vault");
        std::fs::write(&plugin, "#!/bin/sh\n").unwrap();
        assert_eq!(
            find_plugin_in("vault", dir.as_os_str()),
            None,
            "not executable yet"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
            assert_eq!(find_plugin_in("vault", dir.as_os_str()), Some(plugin));
        }
        assert_eq!(find_plugin_in("../vault", dir.as_os_str()), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
