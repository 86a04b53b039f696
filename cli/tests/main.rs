//! The CLI's binary tests: the real binary against local git remotes and the in-process
//! fakes, and — marked `#[ignore = "environment: ..."]` — the end-to-end runs against
//! moto. The library's in-process tests (the engine with a fake provider, the scanner,
//! sealing, the editor) are the root package's `tests/library.rs`. The tests that need
//! the environment `scripts/test` installs (the deploy/ manifests and image, real
//! PostgreSQL and MariaDB) are their own target, `environment.rs`.

mod common;

mod audit;
mod cli_help;
mod cli_lint;
mod cli_list;
mod cli_providers;
mod cli_seal;
mod cloud;
mod consumers;
mod demo;
mod git_credentials;
mod gitops;
mod hostile;
mod monitoring;
mod pull_requests;
mod random;
mod rollback;
mod rotate;
mod safety;
mod scan;
mod signing;

/// Every `tests/*.rs` file must be a module here or in `environment.rs`, or it silently
/// never runs.
#[test]
fn every_test_file_is_wired_in() {
    let main = [include_str!("main.rs"), include_str!("environment.rs")].concat();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let stem = path.file_stem().unwrap().to_str().unwrap();
            if stem != "main" && stem != "environment" {
                assert!(
                    main.contains(&format!("mod {stem};")),
                    "tests/{stem}.rs is declared in neither tests/main.rs nor tests/environment.rs"
                );
            }
        }
    }
}
