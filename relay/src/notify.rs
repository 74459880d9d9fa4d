//! systemd's readiness protocol (`sd_notify`), a few lines over a Unix datagram socket.
//!
//! Under a unit with `Type=notify`, systemd sets `NOTIFY_SOCKET` (a path, or `@name` for
//! the abstract namespace) and, with `WatchdogSec=`, `WATCHDOG_USEC` (and `WATCHDOG_PID`).
//! `serve` sends `READY=1` once its QUIC endpoint listens, `WATCHDOG=1` at half the
//! watchdog interval from its serving loop, `RELOADING=1` (with `MONOTONIC_USEC`) and
//! `READY=1` around a reload (SIGHUP), and `STOPPING=1` when it begins to shut down.
//! Without `NOTIFY_SOCKET` nothing is sent. A message that cannot be sent is logged at
//! debug level and otherwise ignored: notification never stops the relay.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where to send notifications (from `NOTIFY_SOCKET`).
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier of this process, or `None` when `NOTIFY_SOCKET` is unset or unusable
    /// (the latter logged).
    pub fn from_env() -> Option<Notifier> {
        let value = std::env::var_os("NOTIFY_SOCKET").filter(|v| !v.is_empty())?;
        match Self::connect(&value) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(error = %e, "NOTIFY_SOCKET is set but unusable; systemd will not be notified");
                None
            }
        }
    }

    fn connect(value: &std::ffi::OsStr) -> std::io::Result<Notifier> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = value.as_bytes();
        let addr = match bytes.split_first() {
            Some((b'@', name)) => abstract_addr(name)?,
            _ => SocketAddr::from_pathname(std::path::Path::new(value))?,
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Notifier { socket, addr })
    }

    /// Sends one notification (`KEY=VALUE` lines).
    pub fn send(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.addr) {
            tracing::debug!(error = %e, "could not notify systemd");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// `RELOADING=1` with the monotonic time systemd asks for.
    pub fn reloading(&self) {
        let mut msg = String::from("RELOADING=1\nSTATUS=reloading the configuration");
        if let Some(usec) = monotonic_usec() {
            msg.push_str(&format!("\nMONOTONIC_USEC={usec}"));
        }
        self.send(&msg);
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping: letting running syncs finish");
    }
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &[u8]) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_name: &[u8]) -> std::io::Result<SocketAddr> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract socket names exist only on Linux",
    ))
}

/// `CLOCK_MONOTONIC` in microseconds.
fn monotonic_usec() -> Option<u64> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(t.tv_sec).ok()?;
    let nanos = u64::try_from(t.tv_nsec).ok()?;
    secs.checked_mul(1_000_000)?.checked_add(nanos / 1000)
}

/// The watchdog interval systemd expects pings within (`WATCHDOG_USEC`), when it is
/// meant for this process (`WATCHDOG_PID` unset or equal to our pid).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    Some(Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn messages_reach_a_path_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::connect(path.as_os_str()).unwrap();
        n.ready("serving");
        n.reloading();
        let mut buf = [0u8; 512];
        let k = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"READY=1\nSTATUS=serving");
        let k = server.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..k]).unwrap();
        assert!(text.starts_with("RELOADING=1\n"), "{text}");
        let usec: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(usec > 0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn messages_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("musubi-notify-test-{}", std::process::id());
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let n = Notifier::connect(std::ffi::OsStr::new(&format!("@{name}"))).unwrap();
        n.watchdog();
        let mut buf = [0u8; 64];
        let k = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"WATCHDOG=1");
    }
}
