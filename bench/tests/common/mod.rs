//! Test support for `atlas-bench`'s integration tests: find the `atlas` binary beside the
//! `atlas-bench` being tested, start a server on port 0 and wait for its listening line,
//! speak just enough HTTP/1.1 to scrape it, and read this process's CPU mask.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `atlas-bench` binary under test.
pub fn bench_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_atlas-bench"))
}

/// The `atlas` binary in the same target directory (`cargo test --workspace` builds it;
/// `cargo test -p atlas-bench` alone does not). Fails with the fix when it is missing.
pub fn atlas_bin() -> PathBuf {
    let atlas = bench_bin().with_file_name("atlas");
    assert!(
        atlas.is_file(),
        "{} is missing: these tests run the real server. Build it first \
         (`cargo build -p atlas`, same profile and target directory) or run \
         `cargo test --workspace`, which builds it",
        atlas.display()
    );
    atlas
}

/// CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is the empty set; sched_getaffinity fills the set we own.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(rc, 0, "sched_getaffinity");
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// A server child, killed when dropped.
pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    pub shards: usize,
    /// The whole listening line.
    pub line: String,
    stderr: mpsc::Receiver<String>,
}

impl Running {
    /// Spawns `cmd` (stdout and stderr piped) and waits up to 20 s for a line containing
    /// `listening on http://`.
    pub fn start(mut cmd: Command) -> Running {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn the server");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = line_tx.send(line);
            }
        });
        let (err_tx, err_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = err_tx.send(line);
            }
        });
        let Ok(line) = line_rx.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            std::thread::sleep(Duration::from_millis(200));
            let err: Vec<String> = err_rx.try_iter().collect();
            panic!(
                "the server did not announce itself; stderr:\n{}",
                err.join("\n")
            );
        };
        let rest = &line[line.find("listening on http://").expect(&line) + 20..];
        let (addr, shards) = rest.split_once(" shards=").expect(&line);
        Running {
            child,
            addr: addr.parse().unwrap(),
            shards: shards.trim().parse().unwrap(),
            line: line.clone(),
            stderr: err_rx,
        }
    }

    /// `atlas serve --listen 127.0.0.1:0 --cores N` with the embedded models only.
    pub fn atlas(shards: usize) -> Running {
        let mut cmd = Command::new(atlas_bin());
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cores",
            &shards.to_string(),
        ])
        .env_remove("ATLAS_LISTEN")
        .env_remove("ATLAS_CORES")
        .env_remove("ATLAS_ENDPOINTS")
        .env_remove("ATLAS_EMBEDDED")
        .env_remove("ENABLE_PROMETHEUS")
        .env("ATLAS_LOG", "warn");
        Running::start(cmd)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stderr lines printed so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on a fresh connection; returns status and body (Content-Length framing, so
/// it works with servers that ignore `Connection: close`, like the floor).
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (&s).write_all(
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut r = BufReader::new(&s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .expect(&line)
        .parse()
        .unwrap();
    let mut len = None;
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let h = line.trim_end().to_ascii_lowercase();
        if h.is_empty() {
            break;
        }
        assert!(
            !h.starts_with("transfer-encoding"),
            "expected Content-Length framing: {h}"
        );
        if let Some(v) = h.strip_prefix("content-length:") {
            len = Some(v.trim().parse::<usize>().unwrap());
        }
    }
    let mut body = vec![0; len.expect("a Content-Length header")];
    r.read_exact(&mut body).unwrap();
    (status, String::from_utf8(body).unwrap())
}
