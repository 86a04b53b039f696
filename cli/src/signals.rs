//! SIGINT and SIGTERM: the first asks the engine to stop (it finishes or undoes the step in
//! flight, removes its worktrees and reports where each credential stands); a second one
//! exits at once. Either way the next run converges: the state lives on the remote.

use secret_manager::engine::{Cancel, Signal};
use tokio::signal::unix::{SignalKind, signal};

/// Installs the handlers for the rest of the process; returns the flag they set.
pub fn install() -> Cancel {
    let cancel = Cancel::default();
    let flag = cancel.clone();
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; a signal stops the run at once");
        return cancel;
    };
    tokio::spawn(async move {
        let first = tokio::select! {
            _ = term.recv() => Signal::Terminate,
            _ = int.recv() => Signal::Interrupt,
        };
        flag.signal(first);
        crate::output::say(
            crate::output::Level::Warn,
            &format!(
                "received {}: finishing the step in flight, then stopping (send it again to stop at once)",
                first.name()
            ),
        );
        let second = tokio::select! {
            _ = term.recv() => Signal::Terminate,
            _ = int.recv() => Signal::Interrupt,
        };
        crate::output::say(
            crate::output::Level::Error,
            &format!(
                "received {} again: stopping now; the next run finishes what this one left",
                second.name()
            ),
        );
        secret_manager::providers::kill_plugins();
        std::process::exit(i32::from(match second {
            Signal::Interrupt => crate::exit::INTERRUPTED,
            Signal::Terminate => crate::exit::TERMINATED,
        }));
    });
    cancel
}
