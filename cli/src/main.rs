//! The `secret-manager` command line: parse, run one subcommand, map the result to an exit code.

mod args;
mod commands;
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            output::say(output::Level::Error, &format!("{err:#}"));
            exit::code_for(&err)
        }
    };
    std::process::ExitCode::from(code)
}
