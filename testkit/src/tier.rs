//! Test tiers. A test that needs a tool `scripts/test` installs — `moto_server`,
//! PostgreSQL, MariaDB, the Pushgateway, promtool, kubectl, tini, the venv's linters — is
//! an *environment* test: it carries `#[ignore = "environment: needs <tool> (scripts/test
//! runs it)"]`, so a plain `cargo test` on a machine without the tools runs every other
//! test and lists these as ignored, with the reason. `scripts/test` installs the tools and
//! runs the hermetic tests first, then the environment tests (`--ignored`).
//!
//! Every helper that starts or runs such a tool calls [`environment`] first. In the
//! hermetic pass (`SECRET_MANAGER_TEST_TIER=hermetic`) that fails the test, so a test that
//! needs a tool and is not marked cannot slip into the tier that must run anywhere.

/// The variable `scripts/test` sets to `hermetic` for the pass without tools.
pub const TIER_VAR: &str = "SECRET_MANAGER_TEST_TIER";

/// Says that the running test uses `tool`; panics in the hermetic pass, with what to do.
pub fn environment(tool: &str) {
    if std::env::var(TIER_VAR).is_ok_and(|t| t == "hermetic") {
        panic!(
            "this test needs {tool}, which only scripts/test provides: mark it \
             #[ignore = \"environment: needs {tool} (scripts/test runs it)\"]"
        );
    }
}
