//! `atlas-bench scale` end to end on one core against the real `atlas` and `atlas-floor`,
//! its refusals of bad input (exit 2, quickly), and the floor server's CPU placement.
//! Each test lasts a few seconds at most.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{atlas_bin, bench_bin, Running};
use serde_json::Value;

fn floor_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_atlas-floor"))
}

#[test]
fn a_one_core_scale_run_measures_every_workload_and_writes_json_and_svg() {
    let cpu = common::allowed_cpus()[0].to_string();
    let dir = std::env::temp_dir().join(format!("atlas-bench-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, svg) = (dir.join("scale.json"), dir.join("scale.svg"));
    let out = Command::new(bench_bin())
        .arg("scale")
        .arg("--atlas")
        .arg(atlas_bin())
        .arg("--floor")
        .arg("--floor-bin")
        .arg(floor_bin())
        .args([
            "--cores",
            "1",
            "--server-cores",
            &cpu,
            "--client-cores",
            &cpu,
        ])
        .args(["--duration", "0.5", "--runs", "1", "--keyspace", "4"])
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = v["rows"].as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["workload"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["atlas_hit", "atlas_health", "floor_health"],
        "{stdout}"
    );
    for r in rows {
        assert_eq!(r["cores"], 1);
        assert_eq!(r["cpus"], cpu.as_str());
        assert_eq!(r["connections"], 64);
        assert_eq!(r["runs"].as_array().unwrap().len(), 1);
        assert!(r["rps"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
        assert_eq!(r["efficiency"], 1.0, "one size is its own base");
    }
    // The cache was warmed: every measured request hit, and one shard means no hop.
    assert_eq!(rows[0]["hit_rate"], 1.0, "{stdout}");
    assert_eq!(rows[0]["hop_share"], 0.0);
    assert_eq!(rows[1]["hop_share"], Value::Null, "/health names no owner");
    assert!(rows[0]["vs_floor"].as_f64().unwrap() > 0.0);
    assert_eq!(v["config"]["sizes"], serde_json::json!([1]));
    // The table lists the same rows.
    for name in names {
        assert!(
            stdout.lines().any(|l| l.starts_with(name)),
            "{name} in\n{stdout}"
        );
    }
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.trim_end().ends_with("</svg>"));
    assert!(plot.contains("class=\"atlas_hit\"") && plot.contains("class=\"floor_health\""));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `atlas-bench scale ARGS`, which must exit 2 within 10 s; returns its stderr.
fn refused(args: &[&str]) -> String {
    let start = Instant::now();
    let out = Command::new(bench_bin())
        .arg("scale")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{args:?} took {:?}",
        start.elapsed()
    );
    stderr
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let atlas = atlas_bin();
    let atlas = atlas.to_str().unwrap();
    let beyond = (common::allowed_cpus().last().unwrap() + 1).to_string();
    let e = refused(&["--atlas", "/nonexistent/atlas", "--duration", "1"]);
    assert!(e.contains("--atlas: no file at /nonexistent/atlas"), "{e}");
    let e = refused(&["--atlas", atlas, "--server-cores", &beyond]);
    assert!(
        e.contains(&format!("--server-cores: CPU {beyond} is not available")),
        "{e}"
    );
    let e = refused(&["--atlas", atlas, "--client-cores", "0-"]);
    assert!(e.contains("--client-cores"), "{e}");
    // A binary that exits at once instead of serving: its failure is reported.
    let e = refused(&["--atlas", "/bin/false", "--cores", "1", "--duration", "1"]);
    assert!(
        e.contains("atlas on CPUs") && e.contains("did not start"),
        "{e}"
    );
}

#[test]
fn the_floor_server_runs_one_executor_per_cpu_of_its_mask() {
    let cpu = *common::allowed_cpus().last().unwrap();
    let mut cmd = Command::new(floor_bin());
    cmd.arg("127.0.0.1:0");
    // SAFETY: sched_setaffinity on a stack cpu_set_t between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let floor = Running::start(cmd);
    assert_eq!(floor.shards, 1, "{}", floor.line);
    let (status, _) = common::get(floor.addr, "/health");
    assert_eq!(status, 200);
    // Every thread of the process stays on that CPU.
    let tasks = std::fs::read_dir(format!("/proc/{}/task", floor.child.id())).unwrap();
    for t in tasks {
        let status = std::fs::read_to_string(t.unwrap().path().join("status")).unwrap();
        let list = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_string();
        assert_eq!(list, cpu.to_string());
    }
    // More cores than the mask allows is refused.
    let out = Command::new(floor_bin())
        .args(["127.0.0.1:0", "4096"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CORES must be"));
}
