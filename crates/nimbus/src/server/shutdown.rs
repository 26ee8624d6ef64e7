//! Signals that stop the server.

use tokio::signal::unix::{SignalKind, signal};

/// Resolves with the name of the first SIGINT or SIGTERM.
#[allow(
    clippy::disallowed_methods,
    reason = "the one place that installs signal handlers"
)]
pub async fn wait_for_signal() -> &'static str {
    let mut term = signal(SignalKind::terminate()).expect("can install a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("can install a SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
