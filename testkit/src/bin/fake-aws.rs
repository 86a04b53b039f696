//! `fake-aws [--latency-ms N]`: the testkit's fast IAM + STS fake as a process, for
//! `scripts/bench-rotate --endpoint fake`. Prints `listening on http://127.0.0.1:PORT` on
//! stdout, then serves until killed.

use secret_manager_testkit::FakeAws;
use std::time::Duration;

fn main() {
    let mut latency_ms = 0u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--latency-ms" => {
                latency_ms = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage("--latency-ms needs a number of milliseconds"));
            }
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let fake = FakeAws::start(Duration::from_millis(latency_ms)).await;
        println!("listening on {}", fake.server.url);
        std::future::pending::<()>().await;
    });
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("fake-aws: {problem}");
    }
    eprintln!("usage: fake-aws [--latency-ms N]");
    std::process::exit(if problem.is_empty() { 0 } else { 2 });
}
