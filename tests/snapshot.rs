//! Warm restart with the real binary: entries written on SIGTERM come back as hits after a
//! restart (even with another shard count), a corrupt snapshot starts cold, and a state
//! directory that cannot be written is logged without failing start or shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Client, Response, Server};

fn post(c: &mut Client, user: &str) -> Response {
    let body = format!(
        r#"{{"user_id":"{user}","input":{{"age":33,"horizon_years":10,"income_stability":3,"loss_tolerance":2,"experience":4}}}}"#
    );
    c.send(
        format!(
            "POST /ai/risk_assessment HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    c.read_response(false)
}

fn state_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("atlas-state-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn start(dir: &Path, cores: &str) -> Server {
    Server::start(
        &["--cores", cores],
        &[("ATLAS_STATE_DIR", dir.to_str().unwrap())],
    )
}

fn stop(mut server: Server) -> Vec<String> {
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(100));
    server.stderr()
}

#[test]
fn entries_survive_a_restart_even_with_another_shard_count() {
    let dir = state_dir("restart");
    let server = start(&dir, "2");
    let mut c = server.connect();
    let users: Vec<String> = (0..12).map(|i| format!("warm-{i}")).collect();
    let first: Vec<Response> = users.iter().map(|u| post(&mut c, u)).collect();
    assert!(first
        .iter()
        .all(|r| r.header("X-Atlas-Cache") == Some("miss")));
    drop(c);
    let log = stop(server);
    assert!(
        log.iter().any(|l| l.contains("snapshot: shard")),
        "{log:#?}"
    );
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 2, "one file per shard");

    let server = start(&dir, "1");
    let mut c = server.connect();
    for (u, before) in users.iter().zip(&first) {
        let r = post(&mut c, u);
        assert_eq!(r.header("X-Atlas-Cache"), Some("hit"), "{u}");
        assert_eq!(r.body, before.body);
    }
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "loaded snapshots are removed"
    );
    drop(c);
    stop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupt_snapshot_starts_cold() {
    let dir = state_dir("corrupt");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("shard-0.snap"), b"this is not a snapshot").unwrap();
    let server = start(&dir, "1");
    let r = post(&mut server.connect(), "cold-1");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Atlas-Cache"), Some("miss"));
    assert!(dir.join("shard-0.snap.corrupt").exists());
    let log = stop(server);
    assert!(log.iter().any(|l| l.contains("ignoring")), "{log:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unwritable_state_dir_is_logged_and_nothing_fails() {
    // Not even root can create directories under /proc.
    let dir = Path::new("/proc/atlas-cannot-exist");
    let server = start(dir, "1");
    assert_eq!(post(&mut server.connect(), "ro-1").status, 200);
    let log = stop(server);
    assert!(
        log.iter()
            .any(|l| l.contains("could not write its snapshot")),
        "{log:#?}"
    );
}
