//! A server under test (`atlas serve` or `atlas-floor`) as a child process: started on
//! 127.0.0.1 port 0 pinned to a CPU list (sched_setaffinity between fork and exec, so no
//! `taskset` is needed), its listening line parsed, its stderr kept for error messages, and
//! killed when dropped, on every exit path.
//!
//! Between fork and exec the child also asks for SIGKILL when atlas-bench dies
//! (PR_SET_PDEATHSIG, so a killed benchmark leaves no server behind) and raises its own
//! RLIMIT_MEMLOCK (io_uring registers buffers against it): soft to hard for anyone, to
//! unlimited when running as root. Every `unsafe` block of `scale` is here.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::load::sys;

use super::cpus::format_list;

/// How long a server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Stderr lines kept for error messages.
const STDERR_LINES: usize = 60;

/// Which server a child is, a closed set: how to start it and what it prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `atlas serve --listen 127.0.0.1:0`, one shard per CPU of its mask.
    Atlas,
    /// `atlas-floor 127.0.0.1:0`, one executor per CPU of its mask.
    Floor,
}

impl Kind {
    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Atlas => "atlas",
            Kind::Floor => "atlas-floor",
        }
    }
}

/// A running server, killed when dropped.
pub struct Server {
    kind: Kind,
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Shards (executors) it reported.
    pub shards: usize,
    /// The last `STDERR_LINES` lines of its stderr.
    stderr: Arc<Mutex<VecDeque<String>>>,
}

/// Why a server did not start: the message, with its stderr.
#[derive(Debug)]
pub struct StartError(pub String);

impl Server {
    /// Starts `binary` pinned to `cpus` and waits for its listening line.
    pub fn start(kind: Kind, binary: &Path, cpus: &[usize]) -> Result<Server, StartError> {
        let mut cmd = Command::new(binary);
        match kind {
            Kind::Atlas => {
                cmd.args(["serve", "--listen", "127.0.0.1:0"])
                    .env_remove("ATLAS_LISTEN")
                    .env_remove("ATLAS_CORES");
                if std::env::var_os("ATLAS_LOG").is_none() {
                    cmd.env("ATLAS_LOG", "warn");
                }
            }
            Kind::Floor => {
                cmd.arg("127.0.0.1:0");
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let pinned = cpus.to_vec();
        // SAFETY: getpid and geteuid take no pointers and cannot fail.
        let (parent, root) = unsafe { (libc::getpid(), libc::geteuid() == 0) };
        // SAFETY: the closure runs in the forked child before exec and only makes system
        // calls on stack values (prctl, getppid, sched_setaffinity, getrlimit, setrlimit):
        // no allocation, no locks.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                    || libc::getppid() != parent
                {
                    // The parent already died (or the request failed): do not outlive it.
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                sys::set_affinity(0, &pinned)?;
                raise_memlock(root);
                Ok(())
            });
        }
        let what = format!("{} on CPUs {}", kind.name(), format_list(cpus));
        let mut child = cmd
            .spawn()
            .map_err(|e| StartError(format!("cannot start {what} ({}): {e}", binary.display())))?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(err) = child.stderr.take() {
            let keep = Arc::clone(&stderr);
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if let Ok(mut q) = keep.lock() {
                        if q.len() == STDERR_LINES {
                            q.pop_front();
                        }
                        q.push_back(line);
                    }
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            // Sends the first line, then keeps draining so the child never blocks on stdout.
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let mut server = Server {
            kind,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            shards: 0,
            stderr,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => match parse_listening(&line) {
                    Some((addr, shards)) => {
                        server.addr = addr;
                        server.shards = shards;
                        return Ok(server);
                    }
                    None => {
                        return Err(server.failure(&format!(
                            "{what} printed `{line}` instead of its listening line"
                        )))
                    }
                },
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Err(e) = server.check_alive() {
                        return Err(StartError(format!("{what} did not start: {}", e)));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(server.failure(&format!(
                        "{what} printed no listening line in {} s",
                        START_TIMEOUT.as_secs()
                    )))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // Stdout closed: it is exiting. Give it a moment to say why.
                    let _ = server.wait_exit(Duration::from_secs(2));
                    return Err(match server.check_alive() {
                        Err(e) => StartError(format!("{what} did not start: {e}")),
                        Ok(()) => server.failure(&format!("{what} closed its stdout")),
                    });
                }
            }
        }
    }

    /// The child's process id (for its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Err` with the exit status and stderr once the process has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                // The stderr reader may still be taking the last lines.
                std::thread::sleep(Duration::from_millis(200));
                Err(format!(
                    "{} exited ({status}){}",
                    self.kind.name(),
                    self.stderr_tail()
                ))
            }
            Err(e) => Err(format!("{}: cannot wait: {e}", self.kind.name())),
        }
    }

    /// Kills it and returns a start error carrying `message` and its stderr.
    fn failure(&mut self, message: &str) -> StartError {
        let _ = self.child.kill();
        let _ = self.wait_exit(Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(200));
        StartError(format!("{message}{}", self.stderr_tail()))
    }

    fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// `; its stderr:\n  line\n  line` or nothing.
    fn stderr_tail(&self) -> String {
        let lines: Vec<String> = self
            .stderr
            .lock()
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default();
        if lines.is_empty() {
            "; it printed nothing on stderr".into()
        } else {
            format!("; its stderr:\n  {}", lines.join("\n  "))
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `... listening on http://IP:PORT shards=N` (Atlas's and the floor's line).
pub fn parse_listening(line: &str) -> Option<(SocketAddr, usize)> {
    let rest = &line[line.find("listening on http://")? + "listening on http://".len()..];
    let (addr, rest) = rest.split_once(' ')?;
    let shards = rest
        .split_whitespace()
        .find_map(|w| w.strip_prefix("shards="))?
        .parse()
        .ok()?;
    Some((addr.parse().ok()?, shards))
}

/// Raises this process's RLIMIT_MEMLOCK: unlimited for root, else soft up to hard.
/// Allocates nothing (runs between fork and exec); failures leave the limit as it was.
fn raise_memlock(root: bool) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return;
    }
    let want = if root {
        libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        }
    } else {
        libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        }
    };
    // SAFETY: setrlimit reads the struct we own.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &want) };
}

/// This process's RLIMIT_MEMLOCK soft limit, for the report (`None` when unlimited).
pub fn memlock_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return None;
    }
    (lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines_of_atlas_and_the_floor_parse() {
        assert_eq!(
            parse_listening("atlas listening on http://127.0.0.1:41234 shards=4"),
            Some(("127.0.0.1:41234".parse().unwrap(), 4))
        );
        assert_eq!(
            parse_listening("floor listening on http://127.0.0.1:9 shards=1"),
            Some(("127.0.0.1:9".parse().unwrap(), 1))
        );
        for bad in [
            "",
            "atlas listening on http://127.0.0.1:1",
            "atlas listening on http://nowhere shards=1",
            "atlas listening on http://127.0.0.1:1 shards=x",
            "hello",
        ] {
            assert_eq!(parse_listening(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_missing_binary_or_one_that_exits_is_a_clear_start_error() {
        let cpu = sys::allowed_cpus().unwrap()[0];
        let e = Server::start(Kind::Atlas, Path::new("/nonexistent/atlas"), &[cpu])
            .err()
            .unwrap();
        assert!(
            e.0.contains(&format!(
                "cannot start atlas on CPUs {cpu} (/nonexistent/atlas)"
            )),
            "{e:?}"
        );
        // A shell given Atlas's arguments complains that it cannot open `serve` and exits.
        let started = Instant::now();
        let e = Server::start(Kind::Atlas, Path::new("/bin/sh"), &[cpu])
            .err()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(e.0.contains("did not start: atlas exited"), "{e:?}");
        assert!(
            e.0.contains("its stderr:") && e.0.contains("serve"),
            "{e:?}"
        );
    }
}
