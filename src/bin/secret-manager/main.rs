//! The `secret-manager` command line: parse, run one subcommand, map the result to an exit code.

mod args;
mod commands;
mod exit;
mod output;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = args::Cli::parse();
    output::init_logging(&cli.global);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            let code = exit::code_for(&err);
            crate::output::say(crate::output::Level::Error, &format!("{err:#}"));
            code
        }
    };
    std::process::ExitCode::from(code)
}
