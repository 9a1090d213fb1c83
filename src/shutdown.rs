//! Shutdown signals, in one place: SIGTERM (systemd, `docker stop`) and SIGINT (Ctrl-C).
//!
//! The daemon drains on the first signal and exits at once with 130 on the second
//! ([`crate::exit::Exit::Interrupted`]); the emulator and other one-shot servers simply stop.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// SIGTERM and SIGINT, received in turn.
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers (from then on the signals no longer kill the process).
    ///
    /// # Errors
    /// The OS refused a handler.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next signal; returns its name.
    ///
    /// # Cancellation
    /// Safe: a signal that arrives while not polled is kept for the next call.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Cancels `token` on the first SIGTERM or SIGINT (for servers without a drain: the emulator).
///
/// # Errors
/// The OS refused a handler.
pub fn cancel_on_signal(token: CancellationToken) -> std::io::Result<()> {
    let mut signals = Signals::install()?;
    tokio::spawn(async move {
        let name = signals.recv().await;
        tracing::info!(signal = name, "stopping");
        token.cancel();
    });
    Ok(())
}
