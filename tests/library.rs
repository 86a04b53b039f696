//! The library's integration tests: the engine, the rollback, the consumers restart,
//! cluster pointer moves, the scanner, sealing and the manifest editor, in-process —
//! against real git remotes (`support::GitFleet`) and the in-process fake provider, with
//! no binary. `cargo test -p secret-manager` runs them; the one that needs a tool
//! `scripts/test` installs (kubectl) is marked `#[ignore = "environment: ..."]`. The
//! binary's tests are in `cli/tests`.

mod support;

mod architecture;
mod consumers;
mod edit;
mod engine;
mod gitops;
mod rollback;
mod scan;
mod seal;

/// Every `tests/*.rs` file must be a module here, or it silently never runs.
#[test]
fn every_test_file_is_wired_in() {
    let here = include_str!("library.rs");
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let stem = path.file_stem().unwrap().to_str().unwrap();
            if stem != "library" {
                assert!(
                    here.contains(&format!("mod {stem};")),
                    "tests/{stem}.rs is not declared in tests/library.rs"
                );
            }
        }
    }
}
