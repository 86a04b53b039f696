//! The one integration-test binary: a module per area.

mod common;

mod audit;
mod cli_help;
mod cli_lint;
mod cli_list;
mod cli_providers;
mod cli_seal;
mod cloud;
mod demo;
mod deploy;
mod edit;
mod engine;
mod git_credentials;
mod gitops;
mod hostile;
mod monitoring;
mod mysql;
mod postgres;
mod pull_requests;
mod random;
mod rotate;
mod safety;
mod scan;
mod seal;
mod signing;

/// Every `tests/*.rs` file must be a module here, or it silently never runs.
#[test]
fn every_test_file_is_wired_in() {
    let main = include_str!("main.rs");
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let stem = path.file_stem().unwrap().to_str().unwrap();
            if stem != "main" {
                assert!(
                    main.contains(&format!("mod {stem};")),
                    "tests/{stem}.rs is not declared in tests/main.rs"
                );
            }
        }
    }
}
