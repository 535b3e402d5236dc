//! systemd's service notification protocol (`sd_notify(3)`), written by hand: one datagram of
//! newline-separated `KEY=VALUE` assignments sent to the Unix socket named by `NOTIFY_SOCKET`
//! (a path, or an abstract name when it starts with `@`).
//!
//! Atlas sends `READY=1` once every shard listens (after the `listening on` line),
//! `RELOADING=1` / `READY=1` around a SIGHUP reload, `STOPPING=1` when it starts draining,
//! `WATCHDOG=1` from shard 0's health check when the unit sets `WatchdogSec=`, and a `STATUS=`
//! line with each. Without `NOTIFY_SOCKET` (not started by systemd) nothing is sent.
//!
//! The socket is non-blocking: a shard thread that sends a watchdog ping never waits on
//! systemd. Must not depend on the runtime or on shards.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    /// An unbound, non-blocking datagram socket.
    socket: UnixDatagram,
    /// `NOTIFY_SOCKET`, resolved.
    target: SocketAddr,
    /// `NOTIFY_SOCKET` as given, for logs.
    name: String,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` names, or `None` when it is unset or empty. A value that
    /// cannot be used (a relative path, an over-long name) is logged and ignored: the service
    /// manager would then time out the start, which names the cause in its own log.
    pub fn from_env() -> Option<Notifier> {
        let name = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|s| !s.is_empty())?;
        match Notifier::connect(&name) {
            Ok(n) => Some(n),
            Err(e) => {
                log::warn!("NOTIFY_SOCKET={name:?} cannot be used: {e}; not notifying systemd");
                None
            }
        }
    }

    /// A notifier for the socket `name`: an absolute path, or `@name` for an abstract socket.
    pub fn connect(name: &str) -> io::Result<Notifier> {
        let target = if let Some(abstract_name) = name.strip_prefix('@') {
            abstract_addr(abstract_name.as_bytes())?
        } else if name.starts_with('/') {
            SocketAddr::from_pathname(name)?
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "expected an absolute path or an @abstract name",
            ));
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Notifier {
            socket,
            target,
            name: name.to_string(),
        })
    }

    /// Sends one notification: `state` holds one or more `KEY=VALUE` lines.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.target)
            .map(|_| ())
    }

    /// Sends `state` and logs a failure at debug level (a lost notification is not an error
    /// Atlas can act on; a missing `READY=1` shows up as a start timeout in systemd's log).
    pub fn send(&self, state: &str) {
        if let Err(e) = self.notify(state) {
            log::debug!("sd_notify to {}: {e}", self.name);
        }
    }
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &[u8]) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets are Linux-only",
    ))
}

/// The watchdog interval systemd expects pings within (`WATCHDOG_USEC`), when it is set and
/// meant for this process (`WATCHDOG_PID` unset or equal to our pid).
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(pid) = pid.filter(|p| !p.is_empty()) {
        if pid.trim().parse::<u32>().ok()? != me {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// `MONOTONIC_USEC=` for a `RELOADING=1` message: CLOCK_MONOTONIC now, in microseconds.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("atlas-sdnotify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::connect(path.to_str().unwrap()).unwrap();
        n.notify("READY=1\nSTATUS=up").unwrap();
        assert_eq!(recv(&server), "READY=1\nSTATUS=up");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("atlas-sdnotify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::connect(&format!("@{name}")).unwrap();
        n.notify("STOPPING=1").unwrap();
        assert_eq!(recv(&server), "STOPPING=1");
    }

    #[test]
    fn refuses_relative_names() {
        assert!(Notifier::connect("notify.sock").is_err());
    }

    #[test]
    fn watchdog_needs_usec_and_our_pid() {
        let s = Some(Duration::from_secs(20));
        assert_eq!(watchdog_from(Some("20000000"), None, 7), s);
        assert_eq!(watchdog_from(Some("20000000"), Some("7"), 7), s);
        assert_eq!(watchdog_from(Some("20000000"), Some("8"), 7), None);
        assert_eq!(watchdog_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_from(Some("x"), None, 7), None);
        assert_eq!(watchdog_from(None, Some("7"), 7), None);
    }

    #[test]
    fn monotonic_clock_advances() {
        let a = monotonic_usec();
        std::thread::sleep(Duration::from_millis(2));
        assert!(monotonic_usec() > a);
    }
}
