//! The `secret-manager` command line: parse, run one subcommand, map the result to an exit code.

mod args;
mod commands;
mod error;
mod exit;
mod http;
mod metrics;
mod notify;
mod output;
mod signals;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = commands::Cli::parse();
    output::init_logging(&cli.global);
    if let Some(path) = &cli.global.kubeconfig {
        // --kubeconfig reaches every kubectl child through the variable kubectl reads, as
        // an absolute path (children may run elsewhere).
        let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
        // SAFETY: no other thread exists yet (the runtime is built below, logging spawns
        // none), so nothing reads the environment concurrently.
        unsafe { std::env::set_var("KUBECONFIG", path) };
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            err.say();
            err.exit_code()
        }
    };
    std::process::ExitCode::from(code)
}
