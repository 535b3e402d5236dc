//! Process lifecycle of the real binary: graceful drain on SIGTERM with requests in flight,
//! invalid configuration (exit 2, every bad variable named), `check-config`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::Server;

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let mut server = Server::start(&["--cores", "2"], &[("ATLAS_SHUTDOWN_GRACE_S", "10")]);
    // An idle keep-alive connection: closed promptly on shutdown.
    let mut idle = server.connect();
    assert_eq!(idle.get("/health").status, 200);
    // A request in flight: head sent, body only partly sent.
    let mut busy = server.connect();
    busy.send(b"GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhe");
    std::thread::sleep(Duration::from_millis(200));

    server.terminate();
    assert!(
        idle.closed_within(Duration::from_secs(3)),
        "idle connection closed on drain"
    );
    std::thread::sleep(Duration::from_millis(200));
    // The process is still draining: it waits for the in-flight request.
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );
    busy.send(b"llo");
    let r = busy.read_response(false);
    assert_eq!(r.status, 200, "in-flight request answered");
    assert_eq!(r.header("Connection"), Some("close"));

    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("exits after drain");
    assert_eq!(status.code(), Some(0));
    let log = server.stderr().join("\n");
    assert!(log.contains("draining"), "{log}");
}

#[test]
fn grace_period_bounds_the_drain() {
    let mut server = Server::start(&["--cores", "1"], &[("ATLAS_SHUTDOWN_GRACE_S", "1")]);
    let mut stuck = server.connect();
    stuck.send(b"GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nh");
    std::thread::sleep(Duration::from_millis(100));
    server.terminate();
    let status = server
        .wait_exit(Duration::from_secs(6))
        .expect("exits after the grace period");
    assert_eq!(status.code(), Some(0));
}

fn atlas(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atlas"));
    cmd.args(args);
    for k in ["ATLAS_LISTEN", "ATLAS_CORES", "BATCH_SIZE"] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run atlas")
}

#[test]
fn invalid_config_exits_2_naming_every_bad_variable() {
    let out = atlas(
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("ATLAS_CORES", "lots"),
            ("BATCH_SIZE", "0"),
            ("ALERT_ERROR_RATE", "7"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for name in ["ATLAS_CORES", "BATCH_SIZE", "ALERT_ERROR_RATE"] {
        assert!(err.contains(name), "{name} missing from: {err}");
    }
    assert!(out.stdout.is_empty(), "nothing announced");

    let out = atlas(&["serve", "--listen", "not-an-address"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ATLAS_LISTEN"));

    let out = atlas(
        &["serve", "--listen", "127.0.0.1:0", "--cores", "4096"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ATLAS_CORES"));

    let out = atlas(&["serve", "--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_config_prints_effective_settings_with_sources() {
    let dir = std::env::temp_dir().join(format!("atlas-cc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("atlas.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9000\"\nbatch_size = 8\nmax_connections = 99\n",
    )
    .unwrap();
    let out = atlas(
        &[
            "check-config",
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:9100",
        ],
        &[("BATCH_SIZE", "16")],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .to_string()
    };
    assert!(
        line("ATLAS_LISTEN").contains("127.0.0.1:9100") && line("ATLAS_LISTEN").contains("# flag")
    );
    assert!(line("BATCH_SIZE").contains("16") && line("BATCH_SIZE").contains("# environment"));
    assert!(
        line("ATLAS_MAX_CONNECTIONS").contains("99")
            && line("ATLAS_MAX_CONNECTIONS").contains("# file")
    );
    assert!(line("BATCH_TIMEOUT_MS").contains("# default"));

    // Each endpoint's protocol and model; a bad entry is an error naming the endpoint.
    let out = atlas(
        &["check-config"],
        &[(
            "ATLAS_ENDPOINTS",
            "risk=v2+http://10.0.0.7:8080/risk;version=3;ops=risk_assessment,old=http://10.0.0.8:9000",
        )],
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("# endpoint risk: open inference protocol v2, model risk version 3 at 10.0.0.7:8080, weight 1, timeout 5000 ms, max_batch 32, concurrency 1, ops risk_assessment\n"),
        "{text}"
    );
    assert!(text.contains("# endpoint old: atlas batch protocol (POST /v1/batch) at 10.0.0.8:9000"));
    let out = atlas(
        &["check-config"],
        &[("ATLAS_ENDPOINTS", "risk=v2+http://10.0.0.7:8080")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ATLAS_ENDPOINTS")
            && err.contains("risk: a v2 endpoint is v2+http://host:port/MODEL"),
        "{err}"
    );

    std::fs::write(&file, "no_such_key = 1\n").unwrap();
    let out = atlas(&["check-config", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key `no_such_key`"));
    std::fs::remove_dir_all(dir).unwrap();
}
