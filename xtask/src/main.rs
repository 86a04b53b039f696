//! Developer tasks for secret-manager (not part of the user CLI).
//!
//! * `cargo xtask gen-example [DIR]` — regenerates the sealed values of the example fleet repo
//!   (`testdata/example-repo`) from the TEST-ONLY keys, deterministically (seeded RNG), so
//!   every run writes the same bytes.
//! * `cargo xtask gen-fleet DIR [--secrets N] [--files M] [--clusters C]` — writes a synthetic
//!   fleet repo in the example repo's layout for the `list` benchmark.

mod example;
mod fleet;

use std::path::PathBuf;
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  cargo xtask gen-example [DIR]\n  cargo xtask gen-fleet DIR [--secrets N] [--files M] [--clusters C]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("gen-example") => {
            let dir = args
                .get(1)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("testdata/example-repo"));
            example::generate(&dir)
        }
        Some("gen-fleet") => {
            let Some(dir) = args.get(1).map(PathBuf::from) else {
                return usage();
            };
            let mut opts = fleet::FleetOptions::default();
            let mut it = args[2..].iter();
            while let Some(flag) = it.next() {
                let Some(v) = it.next().and_then(|v| v.parse::<usize>().ok()) else {
                    return usage();
                };
                match flag.as_str() {
                    "--secrets" => opts.secrets = v,
                    "--files" => opts.files = v,
                    "--clusters" => opts.clusters = v,
                    _ => return usage(),
                }
            }
            fleet::generate(&dir, &opts)
        }
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
