//! Resource exhaustion with the real binary: a descriptor limit reached while serving, a
//! flood of unique keys against a small cache budget, a snapshot directory that is read-only
//! or full, and SIGKILL while a snapshot is being written. (`tests/snapshot.rs` covers a
//! state directory that cannot be created and a corrupt snapshot; these extend it.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Client, Response, Server};

fn risk_request(user: &str) -> Vec<u8> {
    let body = format!(
        r#"{{"user_id":"{user}","input":{{"age":29,"horizon_years":30,"income_stability":5,"loss_tolerance":4,"experience":2}}}}"#
    );
    format!(
        "POST /ai/risk_assessment HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn post(c: &mut Client, user: &str) -> Response {
    c.send(&risk_request(user));
    c.read_response(false)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Sum of the samples of `metric` whose labels contain every one of `labels`.
fn metric(server: &Server, name: &str, labels: &[&str]) -> f64 {
    let text = String::from_utf8(server.connect().get("/metrics").body).unwrap();
    text.lines()
        .filter(|l| {
            l.split(['{', ' ']).next() == Some(name) && labels.iter().all(|x| l.contains(x))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sets the soft open-file limit of `pid` (its hard limit unchanged); returns the old soft
/// limit.
fn set_nofile(pid: u32, limit: u64) -> u64 {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit on our own child, reading into a struct we own.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut old,
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let new = libc::rlimit {
        rlim_cur: limit,
        rlim_max: old.rlim_max,
    };
    // SAFETY: as above, with a valid new value.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &new,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    old.rlim_cur
}

/// Whether a response arrives on `c` within `limit`.
fn answered_within(c: &mut Client, limit: Duration) -> Option<Response> {
    c.stream().set_read_timeout(Some(limit)).unwrap();
    let r = c.try_read_response(false);
    c.stream()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    r
}

/// "Nothing lost": with the descriptor limit reached, accepts fail (logged) but the shard
/// keeps serving its existing connections, and every connection the kernel queued meanwhile
/// is accepted and answered once descriptors free up: each of the 8 late clients gets
/// exactly one answer.
#[test]
fn a_low_descriptor_limit_fails_accepts_and_recovers() {
    let server = Server::start(&["--cores", "1"], &[]);
    let pid = server.child.id();
    let mut existing: Vec<Client> = (0..3).map(|_| server.connect()).collect();
    for (i, c) in existing.iter_mut().enumerate() {
        assert_eq!(post(c, &format!("fd-existing-{i}")).status, 200);
    }
    // Room for exactly two more connections: the limit caps descriptor numbers, so count
    // the free numbers below it.
    let open: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let limit = (1..)
        .find(|&l| (0..l).filter(|fd| !open.contains(fd)).count() == 2)
        .unwrap();
    let before = set_nofile(pid, limit);
    let mut late: Vec<Option<Client>> = (0..8)
        .map(|i| {
            let mut c = Client::connect(server.addr);
            c.send(&risk_request(&format!("fd-late-{i}")));
            Some(c)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Existing connections keep being served.
    for (i, c) in existing.iter_mut().enumerate() {
        assert_eq!(post(c, &format!("fd-existing-again-{i}")).status, 200);
    }
    // Which late clients got in: at most two (all of them stay open for now).
    let mut served = Vec::new();
    for (i, slot) in late.iter_mut().enumerate() {
        if let Some(r) = answered_within(slot.as_mut().unwrap(), Duration::from_millis(150)) {
            assert_eq!(r.status, 200);
            served.push(i);
        }
    }
    assert!(
        served.len() <= 2,
        "at most two fit under the limit: {served:?}"
    );
    for &i in &served {
        late[i] = None; // closes it
    }
    let served = served.len();
    let log = server.stderr();
    assert!(
        log.iter().any(|l| l.contains("accept failed")),
        "accept failures are logged: {log:#?}"
    );
    // Free descriptors: the queued connections are accepted and answered, in time; each
    // client closes once answered, making room for the next.
    drop(existing);
    let start = Instant::now();
    let mut recovered = 0;
    for slot in late.iter_mut().filter(|s| s.is_some()) {
        let r = answered_within(slot.as_mut().unwrap(), Duration::from_secs(5))
            .expect("answered after recovery");
        assert_eq!(r.status, 200);
        recovered += 1;
        *slot = None;
    }
    assert_eq!(served + recovered, 8, "every late client answered once");
    assert!(recovered >= 6, "the rest had waited in the backlog");
    eprintln!(
        "{recovered} queued connections served {:?} after recovery",
        start.elapsed()
    );
    set_nofile(pid, before);
    assert_eq!(post(&mut server.connect(), "fd-after").status, 200);
}

/// "Nothing lost": a flood of unique keys with a 2 MiB cache is answered in full (requests
/// sent = requests counted), the cache stays within its budget by evicting, and the resident
/// memory stays within the budget plus a fixed overhead (README, "Memory") instead of growing
/// with the keys: a second flood of new keys does not raise it further.
#[test]
fn a_flood_of_unique_keys_stays_within_the_cache_budget() {
    const BUDGET: u64 = 2 * 1024 * 1024;
    let server = Server::start(&["--cores", "1"], &[("ATLAS_CACHE_MAX_BYTES", "2097152")]);
    let pid = server.child.id();
    // Four clients, each pipelining its keys eight at a time.
    let flood = |round: usize, n: usize| {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let addr = server.addr;
                std::thread::spawn(move || {
                    let mut c = Client::connect(addr);
                    let keys: Vec<usize> = (t..n).step_by(4).collect();
                    for group in keys.chunks(8) {
                        let burst: Vec<u8> = group
                            .iter()
                            .flat_map(|j| {
                                risk_request(&format!("flood-{round}-{j}-{}", "x".repeat(200)))
                            })
                            .collect();
                        c.send(&burst);
                        for _ in group {
                            assert_eq!(c.read_response(false).status, 200);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    };
    flood(0, 400);
    let rss_start = rss_kib(pid);
    flood(1, 8000);
    let rss_one = rss_kib(pid);
    flood(2, 8000);
    let rss_two = rss_kib(pid);
    let requests = metric(&server, "ai_optimized_requests_total", &[]);
    let bytes = metric(&server, "ai_cache_bytes", &[]);
    let evictions = metric(&server, "ai_cache_operations_total", &["result=\"evict\""]);
    eprintln!(
        "RSS {rss_start} KiB after warm-up, {rss_one} KiB after 8000 keys, {rss_two} KiB after \
         16000; cache {bytes} bytes, {evictions} evictions"
    );
    assert_eq!(requests, 16_400.0, "every request counted once");
    assert!(bytes <= BUDGET as f64, "cache within budget: {bytes}");
    assert!(evictions > 10_000.0, "{evictions}");
    // Within the budget plus 8 MiB of allocator slack above the warmed-up process...
    assert!(
        rss_one <= rss_start + BUDGET / 1024 + 8 * 1024,
        "{rss_start} → {rss_one} KiB"
    );
    // ... and flat: twice the keys, no more memory.
    assert!(
        rss_two <= rss_one + 2 * 1024,
        "{rss_one} → {rss_two} KiB after a second flood"
    );
}

fn state_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("atlas-exhaust-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn with_state(dir: &Path) -> [(&'static str, String); 1] {
    [("ATLAS_STATE_DIR", dir.to_str().unwrap().to_string())]
}

fn start_in(dir: &Path, configure: impl FnOnce(&mut std::process::Command)) -> Server {
    let env = with_state(dir);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_with(&["--cores", "1"], &env, configure)
}

fn stop(mut server: Server) -> Vec<String> {
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(100));
    server.stderr()
}

/// Runs the child as `nobody` when the tests run as root (root writes anywhere), so that a
/// directory without write permission is read-only for it.
fn unprivileged(cmd: &mut std::process::Command) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // `nobody` must be able to reach the binary: a checkout under a private directory
        // (`mktemp -d` makes it 0700) is opened to others for search (x) only.
        use std::os::unix::fs::PermissionsExt;
        let exe = Path::new(env!("CARGO_BIN_EXE_atlas"));
        for dir in exe.ancestors().skip(1) {
            if let Ok(meta) = std::fs::metadata(dir) {
                let mode = meta.permissions().mode();
                if mode & 0o001 == 0 {
                    let _ = std::fs::set_permissions(
                        dir,
                        std::fs::Permissions::from_mode(mode | 0o001),
                    );
                }
            }
        }
        cmd.uid(65534).gid(65534);
    }
}

/// "Nothing lost": with a read-only state directory the service starts and answers every
/// request, logs that it cannot use or write snapshots, and exits cleanly; a snapshot left
/// there from earlier is not loaded (it could not be removed, so loading it would bring the
/// same entries back at every start): no entry is served after its invalidation, even
/// across restarts.
#[test]
fn a_read_only_snapshot_dir_is_logged_and_service_continues() {
    let dir = state_dir("ro");
    // A clean shutdown leaves a valid snapshot of one entry.
    let server = start_in(&dir, |_| {});
    assert_eq!(
        post(&mut server.connect(), "ro-old").header("X-Atlas-Cache"),
        Some("miss")
    );
    stop(server);
    assert!(dir.join("shard-0.snap").exists());

    let mut perms = std::fs::metadata(&dir).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
    std::fs::set_permissions(&dir, perms.clone()).unwrap();
    // The file must stay readable for the unprivileged server.
    let server = start_in(&dir, unprivileged);
    let mut c = server.connect();
    let r = post(&mut c, "ro-old");
    assert_eq!(
        (r.status, r.header("X-Atlas-Cache")),
        (200, Some("miss")),
        "not loaded"
    );
    for i in 0..5 {
        assert_eq!(post(&mut c, &format!("ro-{i}")).status, 200);
    }
    // Invalidate the user's results; the snapshot on disk still holds the old entry.
    let body = r#"{"user_id":"ro-old"}"#;
    c.send(
        format!(
            "POST /ai/cache/invalidate HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response(false).status, 200);
    drop(c);
    let log = stop(server);
    assert!(
        log.iter().any(|l| l.contains("not using")),
        "the unremovable snapshot is named: {log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("could not write its snapshot")),
        "{log:#?}"
    );
    // Another start from the same read-only directory: the invalidated entry stays gone.
    let server = start_in(&dir, unprivileged);
    let r = post(&mut server.connect(), "ro-old");
    assert_eq!(
        r.header("X-Atlas-Cache"),
        Some("miss"),
        "not back after invalidation"
    );
    stop(server);
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&dir, perms).unwrap();
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["shard-0.snap".to_string()],
        "nothing else was written"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// "Nothing lost": a full disk (writes fail with ENOSPC; emulated by making the snapshot's
/// temporary file a link to `/dev/full`) fails the snapshot, which is logged; every request
/// was answered, the exit is clean, no partial file is left, and the next start is cold.
#[test]
fn a_full_disk_fails_the_snapshot_and_leaves_no_partial_file() {
    let dir = state_dir("full");
    std::os::unix::fs::symlink("/dev/full", dir.join("shard-0.snap.tmp")).unwrap();
    let server = start_in(&dir, |_| {});
    let mut c = server.connect();
    for i in 0..5 {
        assert_eq!(post(&mut c, &format!("full-{i}")).status, 200);
    }
    drop(c);
    let log = stop(server);
    assert!(
        log.iter()
            .any(|l| l.contains("could not write its snapshot") && l.contains("space")),
        "{log:#?}"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing left");
    let server = start_in(&dir, |_| {});
    let r = post(&mut server.connect(), "full-0");
    assert_eq!(r.header("X-Atlas-Cache"), Some("miss"));
    stop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A portfolio input of about 400 KB (10 holdings × 4000 closes): its key is that large, so
/// a few dozen cached results make a snapshot of tens of MB that takes a while to write.
fn big_portfolio(user: &str) -> Vec<u8> {
    let mut holdings = Vec::new();
    for h in 0..10 {
        let prices: Vec<String> = (0..4000)
            .map(|t| {
                format!(
                    "{:.4}",
                    100.0 + h as f64 + ((t * (h + 3)) % 97) as f64 * 0.37
                )
            })
            .collect();
        holdings.push(format!(
            r#"{{"symbol":"S{h}","weight":0.1,"prices":[{}]}}"#,
            prices.join(",")
        ));
    }
    let body = format!(
        r#"{{"user_id":"{user}","input":{{"holdings":[{}]}}}}"#,
        holdings.join(",")
    );
    format!(
        "POST /ai/portfolio_analysis HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// "Nothing lost": SIGKILL in the middle of writing a snapshot leaves the previous state (no
/// complete `shard-0.snap`, a torn `*.tmp` that is never read); the next start serves no
/// entry from the torn file (every request is a fresh miss), and even the torn bytes put in
/// place of a snapshot are refused whole (renamed `.corrupt`, cold start).
#[test]
fn sigkill_while_a_snapshot_is_written_never_loads_a_torn_file() {
    let dir = state_dir("kill");
    let env = [
        ("ATLAS_STATE_DIR", dir.to_str().unwrap()),
        ("ATLAS_MAX_BODY_BYTES", "4194304"),
    ];
    let mut server = Server::start(&["--cores", "1"], &env);
    let mut c = server.connect();
    let mut bodies = Vec::new();
    for i in 0..40 {
        c.send(&big_portfolio(&format!("kill-{i}")));
        let r = c.read_response(false);
        assert_eq!(r.status, 200);
        bodies.push(r.body);
    }
    drop(c);
    let tmp = dir.join("shard-0.snap.tmp");
    server.terminate();
    // Kill as soon as the temporary file has data in it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let torn = loop {
        if let Ok(m) = std::fs::metadata(&tmp) {
            if m.len() > 0 {
                server.child.kill().unwrap();
                break true;
            }
        }
        if dir.join("shard-0.snap").exists() {
            server.child.kill().unwrap();
            break false;
        }
        assert!(Instant::now() < deadline, "no snapshot was started");
        std::thread::sleep(Duration::from_micros(200));
    };
    let _ = server.child.wait();
    let complete = dir.join("shard-0.snap").exists();
    eprintln!(
        "killed {} the rename: tmp {:?} bytes, complete file {complete}",
        if torn { "before" } else { "after" },
        std::fs::metadata(&tmp).map(|m| m.len()).ok()
    );
    // Restart: a complete file is served exactly; without one nothing comes back.
    let server = Server::start(&["--cores", "1"], &env);
    let mut c = server.connect();
    for (i, body) in bodies.iter().enumerate().step_by(8) {
        c.send(&big_portfolio(&format!("kill-{i}")));
        let r = c.read_response(false);
        assert_eq!(r.status, 200);
        assert_eq!(&r.body, body, "never a torn body");
        let want = if complete { "hit" } else { "miss" };
        assert_eq!(r.header("X-Atlas-Cache"), Some(want), "entry {i}");
    }
    drop(c);
    drop(server);
    // The torn bytes in place of a snapshot are refused whole (if the kill came after the
    // last byte, they are a complete snapshot and load exactly).
    if let Ok(bytes) = std::fs::read(&tmp) {
        if !bytes.is_empty() {
            std::fs::write(dir.join("shard-0.snap"), &bytes).unwrap();
            let server = Server::start(&["--cores", "1"], &env);
            let mut c = server.connect();
            c.send(&big_portfolio("kill-0"));
            let r = c.read_response(false);
            assert_eq!(r.body, bodies[0], "never a torn body");
            let corrupt = dir.join("shard-0.snap.corrupt").exists();
            eprintln!(
                "torn bytes as a snapshot: {:?}, corrupt {corrupt}",
                r.header("X-Atlas-Cache")
            );
            assert!(
                corrupt == (r.header("X-Atlas-Cache") == Some("miss")),
                "refused whole or loaded whole"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
