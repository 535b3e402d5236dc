//! Atlas under systemd, as far as a machine without systemd as PID 1 can show it: the
//! notification protocol against a fake `NOTIFY_SOCKET` (READY=1 after listening, STOPPING=1 on
//! SIGTERM, WATCHDOG=1 with `WATCHDOG_USEC`), the CPU set honoured (`taskset -c 1`), both units
//! verified and scored with `systemd-analyze`, every system call Atlas makes allowed by the
//! unit's filter (traced with `strace`), and `install.sh` run into a temporary root.
//!
//! Tools: `systemd-analyze` (Debian package `systemd`) and `strace`; `bash tests/run.sh`
//! installs both. A missing tool fails its test with that hint, never skips it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;

const ATLAS: &str = env!("CARGO_BIN_EXE_atlas");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("atlas-systemd-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fake service manager's notification socket.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: Scratch,
}

impl NotifySocket {
    fn new(name: &str) -> NotifySocket {
        let dir = Scratch::new(name);
        let path = dir.0.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        NotifySocket {
            socket,
            path,
            _dir: dir,
        }
    }

    fn name(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// The next datagram within `limit`.
    fn next(&self, limit: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(limit)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Waits for a datagram containing `line`, skipping others (watchdog pings); returns it.
    fn expect(&self, line: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left) {
                Some(msg) if msg.lines().any(|l| l == line) => return msg,
                Some(msg) => seen.push(msg),
                None => break,
            }
        }
        panic!("no {line} within {limit:?}; got {seen:?}");
    }
}

#[test]
fn notify_socket_gets_ready_after_listening_and_stopping_on_sigterm() {
    let notify = NotifySocket::new("ready");
    let mut server = Server::start(
        &["--cores", "2"],
        &[("NOTIFY_SOCKET", notify.name()), ("WATCHDOG_USEC", "")],
    );
    let ready = notify.expect("READY=1", Duration::from_secs(5));
    assert!(
        ready.contains(&format!("STATUS=serving on {}, 2 shards", server.addr)),
        "{ready}"
    );
    assert!(ready.contains(&format!("MAINPID={}", server.child.id())));
    // READY=1 means every shard listens.
    assert_eq!(server.connect().get("/health/ready").status, 200);

    server.terminate();
    let stopping = notify.expect("STOPPING=1", Duration::from_secs(5));
    assert!(stopping.contains("STATUS=draining"), "{stopping}");
    let status = server.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn an_abstract_notify_socket_works_too() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("atlas-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _server = Server::start(&["--cores", "1"], &[("NOTIFY_SOCKET", &format!("@{name}"))]);
    let mut buf = [0u8; 512];
    let n = socket
        .recv(&mut buf)
        .expect("READY=1 on the abstract socket");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("READY=1\n"));
}

#[test]
fn watchdog_pings_while_every_shard_answers() {
    let notify = NotifySocket::new("watchdog");
    // 400 ms: shard 0 checks every shard and pings every 200 ms.
    let server = Server::start(
        &["--cores", "2"],
        &[
            ("NOTIFY_SOCKET", notify.name()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    notify.expect("READY=1", Duration::from_secs(5));
    let started = Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_secs(2) {
        if let Some(msg) = notify.next(Duration::from_millis(500)) {
            pings += usize::from(msg == "WATCHDOG=1");
        }
    }
    assert!(pings >= 4, "{pings} pings in 2 s");
    let log = server.stderr().join("\n");
    assert!(
        log.contains("watchdog: systemd expects a ping every 0.4s"),
        "{log}"
    );
    drop(server);

    // WATCHDOG_PID naming another process: this one does not ping.
    let notify = NotifySocket::new("watchdog-other");
    let _server = Server::start(
        &["--cores", "1"],
        &[
            ("NOTIFY_SOCKET", notify.name()),
            ("WATCHDOG_USEC", "400000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    notify.expect("READY=1", Duration::from_secs(5));
    assert_eq!(notify.next(Duration::from_secs(1)), None);
}

#[test]
fn taskset_one_cpu_runs_one_shard_on_it() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert!(cpus >= 2, "this test needs 2 CPUs (found {cpus})");
    let server = Server::start_wrapped(&["taskset", "-c", "1"], &[], &[]);
    assert_eq!(server.shards, 1, "one shard for one allowed CPU");
    let detailed = server.connect().get("/health/detailed").json();
    let shards = detailed["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 1);
    assert_eq!(shards[0]["cpu"], 1, "{detailed}");
    drop(server);

    // Unpinned, shards run wherever the kernel puts them: no CPU of their own.
    let server = Server::start(&["--cores", "2"], &[("ATLAS_PIN_SHARDS", "false")]);
    let detailed = server.connect().get("/health/detailed").json();
    for shard in detailed["shards"].as_array().unwrap() {
        assert!(shard["cpu"].is_null(), "{detailed}");
    }
    drop(server);

    // Asking for more shards than allowed CPUs is a configuration error (exit 2).
    let out = Command::new("taskset")
        .args([
            "-c",
            "1",
            ATLAS,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cores",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ATLAS_CORES=2"));
}

/// Runs `systemd-analyze` or fails with the install hint.
fn systemd_analyze(args: &[&str]) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("systemd-analyze (Debian package `systemd`; bash tests/run.sh installs it)")
}

/// A copy of `unit` whose ExecStart points at the binary under test (`verify` checks that the
/// executable exists).
fn unit_copy(dir: &Path, unit: &str) -> PathBuf {
    let text = std::fs::read_to_string(Path::new(REPO).join("systemd").join(unit)).unwrap();
    let path = dir.join(unit);
    std::fs::write(&path, text.replace("/usr/local/bin/atlas", ATLAS)).unwrap();
    path
}

/// `systemd-analyze verify` accepts both units; `systemd-analyze security --offline=true`
/// scores each at an exposure of 2.0 or lower.
#[test]
fn units_verify_and_score_at_most_2() {
    let dir = Scratch::new("units");
    for unit in ["atlas.service", "atlas-model-endpoint.service"] {
        let path = unit_copy(&dir.0, unit);
        let p = path.to_str().unwrap();
        let out = systemd_analyze(&["verify", p]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains(unit),
            "{unit}: {stderr}"
        );
        let out = systemd_analyze(&["security", "--offline=true", p]);
        let text = String::from_utf8_lossy(&out.stdout);
        let exposure: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no exposure in {text}"));
        println!("{unit}: systemd-analyze security exposure {exposure}");
        assert!(exposure <= 2.0, "{unit}: exposure {exposure}\n{text}");
    }
}

/// Every system call group of this systemd, expanded (`@system-service` → names).
fn syscall_groups() -> HashMap<String, Vec<String>> {
    let out = systemd_analyze(&["syscall-filter"]);
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    let mut current = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(name) = line.strip_prefix('@') {
            current = Some(format!("@{}", name.trim()));
        } else if let (Some(g), Some(entry)) = (&current, line.strip_prefix("    ")) {
            if !entry.starts_with('#') && !entry.is_empty() {
                groups
                    .entry(g.clone())
                    .or_default()
                    .push(entry.trim().to_string());
            }
        } else if line.trim().is_empty() {
            current = None;
        }
    }
    groups
}

fn expand(groups: &HashMap<String, Vec<String>>, name: &str, out: &mut BTreeSet<String>) {
    match groups.get(name) {
        Some(members) => {
            for m in members {
                expand(groups, m, out);
            }
        }
        None if !name.starts_with('@') => {
            out.insert(name.to_string());
        }
        None => panic!("unknown syscall group {name}"),
    }
}

/// What atlas.service's `SystemCallFilter=` lines allow, computed the way systemd does: the
/// allow lists joined, then the `~` lists removed.
fn unit_allows(groups: &HashMap<String, Vec<String>>) -> BTreeSet<String> {
    let unit = std::fs::read_to_string(Path::new(REPO).join("systemd/atlas.service")).unwrap();
    let mut allowed = BTreeSet::new();
    let mut denied = BTreeSet::new();
    for value in unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
    {
        let (set, names) = match value.strip_prefix('~') {
            Some(rest) => (&mut denied, rest),
            None => (&mut allowed, value),
        };
        for name in names.split_whitespace() {
            expand(groups, name, set);
        }
    }
    allowed.difference(&denied).cloned().collect()
}

/// The unit's filter keeps io_uring: `@system-service` holds the three calls on this systemd,
/// and every system call a traced Atlas makes (start, requests, snapshot writes, SIGHUP,
/// SIGTERM) is in what the unit allows.
#[test]
fn the_unit_filter_allows_every_system_call_atlas_makes() {
    let groups = syscall_groups();
    let mut service = BTreeSet::new();
    expand(&groups, "@system-service", &mut service);
    for call in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
        assert!(service.contains(call), "@system-service lacks {call}");
    }
    let allowed = unit_allows(&groups);

    let dir = Scratch::new("strace");
    let trace = dir.0.join("trace");
    let state = dir.0.join("state");
    let config = dir.0.join("atlas.toml");
    std::fs::write(&config, "batch_size = 32\n").unwrap();
    let trace_s = trace.to_str().unwrap().to_string();
    Command::new("strace")
        .arg("-V")
        .output()
        .expect("strace (Debian package `strace`; bash tests/run.sh installs it)");
    let mut server = Server::start_wrapped(
        &["strace", "-f", "-qq", "-o", &trace_s],
        &["--cores", "2", "--config", config.to_str().unwrap()],
        &[("ATLAS_STATE_DIR", state.to_str().unwrap())],
    );
    let mut c = server.connect();
    assert_eq!(c.get("/health/detailed").status, 200);
    assert_eq!(c.get("/metrics").status, 200);
    let body = r#"{"user_id":"u-1","input":{"age":35,"horizon_years":20,"income_stability":4,"loss_tolerance":3,"experience":3}}"#;
    c.send(
        format!(
            "POST /ai/risk_assessment HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response(false).status, 200);
    drop(c);
    // The atlas process is strace's child: signal it, not strace.
    let pid = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", server.child.id()))
        .unwrap()
        .split_whitespace()
        .next()
        .expect("atlas runs under strace")
        .parse::<i32>()
        .unwrap();
    std::fs::write(&config, "batch_size = 16\n").unwrap();
    // SAFETY: kill(2) on the atlas process this test started.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = server.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(status.success(), "{:?}", server.stderr());
    assert!(state.join("shard-0.snap").exists() || state.join("shard-1.snap").exists());

    let text = std::fs::read_to_string(&trace).unwrap();
    let made: BTreeSet<String> = text
        .lines()
        .filter_map(|l| {
            let rest = l.split_once(' ')?.1.trim_start();
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (rest[name.len()..].starts_with('(') && !name.is_empty()).then_some(name)
        })
        .collect();
    assert!(made.contains("io_uring_setup"), "{made:?}");
    // execve is strace starting atlas; systemd starts it the same way (allowed by @default).
    let refused: Vec<&String> = made.iter().filter(|c| !allowed.contains(*c)).collect();
    assert!(
        refused.is_empty(),
        "atlas.service's SystemCallFilter would refuse {refused:?} (made: {made:?})"
    );
}

fn install(args: &[&str]) -> (bool, String) {
    let out = Command::new("bash")
        .arg(Path::new(REPO).join("systemd/install.sh"))
        .args(["--binary", ATLAS])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// install.sh into a temporary root: a dry run changes nothing; a real run installs every
/// file with its mode, creates the user, points the units at the prefix; a second run changes
/// nothing; an operator's edited env file is kept.
#[test]
fn install_sh_into_a_temporary_root_is_idempotent() {
    let dir = Scratch::new("install");
    let root = dir.0.join("root");
    let r = root.to_str().unwrap();
    let (ok, out) = install(&["--root", r, "--prefix", "/opt/atlas", "--dry-run"]);
    assert!(ok, "{out}");
    assert!(out.contains("would      install -D -m 0755"), "{out}");
    assert!(!root.exists(), "a dry run wrote files");

    let (ok, out) = install(&["--root", r, "--prefix", "/opt/atlas"]);
    assert!(ok, "{out}");
    for (path, m) in [
        ("opt/atlas/bin/atlas", 0o755),
        ("etc/systemd/system/atlas.service", 0o644),
        ("etc/systemd/system/atlas-model-endpoint.service", 0o644),
        ("etc/sysctl.d/99-atlas.conf", 0o644),
        ("etc/sysusers.d/atlas.conf", 0o644),
        ("etc/atlas", 0o750),
        ("etc/atlas/atlas.env", 0o640),
        ("etc/atlas/atlas.toml", 0o640),
        ("etc/atlas/model-endpoint.env", 0o640),
        ("etc/atlas/model-endpoint.toml", 0o640),
        ("opt/atlas/share/atlas/tuning/apply.sh", 0o755),
        ("opt/atlas/share/doc/atlas/README.md", 0o644),
    ] {
        assert_eq!(mode(&root.join(path)), m, "{path}");
    }
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("atlas:x:"), "{passwd}");
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/atlas.service")).unwrap();
    assert!(unit.contains("ExecStart=/opt/atlas/bin/atlas serve --config /etc/atlas/atlas.toml"));
    assert!(
        !unit.contains("/usr/local"),
        "every path follows the prefix"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/atlas/atlas.env")).unwrap(),
        std::fs::read_to_string(Path::new(REPO).join("systemd/atlas.env")).unwrap()
    );
    // The installed TOML file is valid configuration for the installed binary.
    let out = Command::new(root.join("opt/atlas/bin/atlas"))
        .args(["check-config", "--config"])
        .arg(root.join("etc/atlas/atlas.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The installed unit verifies with its binary where the unit says.
    let installed = dir.0.join("atlas.service");
    std::fs::write(
        &installed,
        unit.replace("/opt/atlas/bin/atlas", &format!("{r}/opt/atlas/bin/atlas")),
    )
    .unwrap();
    let out = systemd_analyze(&["verify", installed.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (ok, out) = install(&["--root", r, "--prefix", "/opt/atlas"]);
    assert!(ok, "{out}");
    assert!(out.contains("nothing to do: already installed"), "{out}");
    assert!(!out.contains("installed "), "{out}");

    // An edited env file is kept; the shipped one lands beside it.
    std::fs::write(root.join("etc/atlas/atlas.env"), "BATCH_SIZE=8\n").unwrap();
    let (ok, out) = install(&["--root", r, "--prefix", "/opt/atlas"]);
    assert!(ok, "{out}");
    assert!(out.contains("kept       /etc/atlas/atlas.env"), "{out}");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/atlas/atlas.env")).unwrap(),
        "BATCH_SIZE=8\n"
    );
    assert!(root.join("etc/atlas/atlas.env.dist").exists());

    let (ok, out) = install(&["--root", r, "--bogus"]);
    assert!(!ok && out.contains("unknown argument --bogus"), "{out}");
}
