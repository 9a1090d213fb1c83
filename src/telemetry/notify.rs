//! systemd `Type=notify` support: READY=1, WATCHDOG=1, STOPPING=1 and STATUS= datagrams to
//! `$NOTIFY_SOCKET`, without linking libsystemd.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A connection to the service manager, or nothing when not run under systemd.
#[derive(Debug, Default)]
pub struct Notifier {
    socket: Option<(UnixDatagram, String)>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`; absent or unusable means notifications are no-ops.
    pub fn from_env() -> Self {
        let Ok(path) = std::env::var("NOTIFY_SOCKET") else {
            return Self::default();
        };
        match UnixDatagram::unbound() {
            Ok(socket) => Self {
                socket: Some((socket, path)),
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot create notify socket; systemd notifications off");
                Self::default()
            }
        }
    }

    /// Sends one state string such as "READY=1". Failures are logged, never fatal.
    pub fn notify(&self, state: &str) {
        let Some((socket, path)) = &self.socket else {
            return;
        };
        let result = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
        } else {
            socket.send_to(state.as_bytes(), path)
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, state, "notify failed");
        }
    }

    /// Half of `WATCHDOG_USEC`, the interval systemd recommends for pings; None if unset.
    pub fn watchdog_interval() -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }

    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }
}
