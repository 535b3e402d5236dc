//! The measurement loop of `atlas-bench scale`. For each size: start Atlas (and the floor)
//! pinned to the first N server CPUs, fill Atlas's cache with every input of the hit
//! workload, then run each workload `--runs` times, alternating workloads run by run so slow
//! drifts of the machine hit all of them alike. Each run is a closed loop over a fixed
//! number of keep-alive connections for `--duration` seconds, driven in this process by the
//! `load` generator with one driver thread pinned to each client CPU.
//!
//! Must not depend on the table or plot formats beyond handing them `Row`s.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::load::{self, sys, LoadArgs};

use super::cpus::{self, format_list};
use super::server::{self, Kind, Server};
use super::svg::{self, Point, Series};
use super::table::{self, Row, RunFigures, Workload};
use super::Plan;

/// Why a scale run stopped.
pub enum Failure {
    /// A server did not start (exit status 2).
    Start(String),
    /// Something failed part way (exit status 1).
    Run(String),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Run(e.to_string())
    }
}

/// Each warm-up covers the hit workload's inputs this many times over (random draws; at
/// 16× the chance that an input is never drawn is about e^-16 each).
const WARM_COVERAGE: u64 = 16;
/// Seconds a request may take before it counts as a timeout.
const TIMEOUT_S: f64 = 10.0;

/// `atlas-bench load` flags for the cache-hit workload: `users` connections, one user id, a
/// uniform draw over `keyspace` inputs per operation.
pub fn hit_args(
    url: &str,
    operations: &str,
    keyspace: u64,
    users: u64,
    threads: usize,
    requests: Option<u64>,
    duration: f64,
) -> LoadArgs {
    LoadArgs {
        url: url.to_string(),
        path: None,
        operations: operations.to_string(),
        keyspace,
        distinct: true,
        user_inputs: 3,
        new_input_share: 0.0,
        zipf: 0.0,
        users,
        user_ids: Some(1),
        priority_mix: "normal=1".into(),
        requests,
        duration: Some(duration),
        rate: None,
        connections: users,
        threads,
        timeout: TIMEOUT_S,
        seed: 1,
        json: None,
        target_p95: 400.0,
        target_success: 99.0,
        target_hit_rate: 0.0,
        server_pid: None,
        quiet: true,
        miss_share: 0.0,
        timeline: None,
    }
}

/// `atlas-bench load` flags for `GET /health` over `users` connections.
fn health_args(url: &str, users: u64, threads: usize, duration: f64) -> LoadArgs {
    LoadArgs {
        path: Some("/health".into()),
        ..hit_args(url, "portfolio_analysis", 1, users, threads, None, duration)
    }
}

/// One run of `args` against `server`, its CPU time included.
fn measure(args: &LoadArgs, server: &mut Server, client: &[usize]) -> Result<RunFigures, Failure> {
    let cfg = load::validate(args).map_err(|e| Failure::Run(e.join("; ")))?;
    let pid = server.pid();
    let before = sys::process_cpu_time(pid);
    let m = load::measure(&cfg, client)?;
    let after = sys::process_cpu_time(pid);
    server.check_alive().map_err(Failure::Run)?;
    let secs = m.elapsed.as_secs_f64().max(1e-9);
    let all = m.stats.overall();
    Ok(RunFigures {
        rps: all.responses as f64 / secs,
        p50_ms: all.latency_ms(50.0),
        p99_ms: all.latency_ms(99.0),
        responses: all.responses,
        errors: all.attempted() - all.ok,
        hop_share: all.hop_share(),
        hit_rate: all.hit_rate(),
        server_cpu: match (before, after) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b).as_secs_f64() / secs),
            _ => None,
        },
        client_cpu: m.cpu.as_secs_f64() / secs,
        elapsed_s: secs,
    })
}

/// Fills Atlas's cache with every input of the hit workload; fails unless every request
/// got a 2xx answer.
fn warm(plan: &Plan, atlas: &mut Server, users: u64) -> Result<(), Failure> {
    let url = format!("http://{}", atlas.addr);
    // Operations with a weight above 0 (the mix was validated already).
    let ops = plan
        .operations
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.replace(' ', "").ends_with("=0"))
        .count()
        .max(1) as u64;
    let inputs = plan.keyspace * ops;
    let per_user = (inputs * WARM_COVERAGE).div_ceil(users).max(1);
    let args = hit_args(
        &url,
        &plan.operations,
        plan.keyspace,
        users,
        plan.client.len(),
        Some(per_user),
        60.0,
    );
    let cfg = load::validate(&args).map_err(|e| Failure::Run(e.join("; ")))?;
    let m = load::measure(&cfg, &plan.client)?;
    atlas.check_alive().map_err(Failure::Run)?;
    let all = m.stats.overall();
    if all.ok < all.attempted() {
        return Err(Failure::Run(format!(
            "warming the cache: {} of {} requests got no 2xx answer (statuses {:?}, transport \
             errors {:?} as connect/timeout/reset/closed/protocol)",
            all.attempted() - all.ok,
            all.attempted(),
            all.statuses,
            all.errors
        )));
    }
    Ok(())
}

fn start(kind: Kind, binary: &std::path::Path, cpus: &[usize]) -> Result<Server, Failure> {
    let s = Server::start(kind, binary, cpus).map_err(|e| Failure::Start(e.0))?;
    if s.shards != cpus.len() {
        return Err(Failure::Start(format!(
            "{} reported {} shards on CPUs {}; expected {} (is ATLAS_CORES or a config file \
             forcing a count?)",
            kind.name(),
            s.shards,
            format_list(cpus),
            cpus.len()
        )));
    }
    Ok(s)
}

/// Measures every size; returns one row per workload and size.
fn measure_all(plan: &Plan) -> Result<Vec<Row>, Failure> {
    let mut rows = Vec::new();
    for &size in &plan.sizes {
        let cpus = &plan.server[..size];
        let conns = plan.connections_at(size);
        let mut atlas = start(Kind::Atlas, &plan.atlas, cpus)?;
        let mut floor = match &plan.floor {
            Some(bin) => Some(start(Kind::Floor, bin, cpus)?),
            None => None,
        };
        eprintln!(
            "scale: {size} server cores (CPUs {}), {conns} connections: atlas on {}{}",
            format_list(cpus),
            atlas.addr,
            floor
                .as_ref()
                .map_or(String::new(), |f| format!(", floor on {}", f.addr))
        );
        warm(plan, &mut atlas, conns.min(256))?;
        let mut workloads = vec![Workload::AtlasHit, Workload::AtlasHealth];
        if floor.is_some() {
            workloads.push(Workload::Floor);
        }
        let mut found: Vec<Row> = workloads
            .iter()
            .map(|&w| Row {
                workload: w,
                cores: size,
                cpus: cpus.to_vec(),
                connections: conns,
                runs: Vec::new(),
            })
            .collect();
        let threads = plan.client.len();
        for r in 1..=plan.runs {
            for row in &mut found {
                let (args, server) = match (row.workload, floor.as_mut()) {
                    (Workload::AtlasHit, _) => (
                        hit_args(
                            &format!("http://{}", atlas.addr),
                            &plan.operations,
                            plan.keyspace,
                            conns,
                            threads,
                            None,
                            plan.duration,
                        ),
                        &mut atlas,
                    ),
                    (Workload::AtlasHealth, _) => (
                        health_args(
                            &format!("http://{}", atlas.addr),
                            conns,
                            threads,
                            plan.duration,
                        ),
                        &mut atlas,
                    ),
                    (Workload::Floor, Some(f)) => (
                        health_args(&format!("http://{}", f.addr), conns, threads, plan.duration),
                        f,
                    ),
                    (Workload::Floor, None) => continue,
                };
                let f = measure(&args, server, &plan.client)?;
                eprintln!(
                    "scale: {size} cores, {} run {r}/{}: {} req/s, p99 {:.3} ms, hop {}, errors {}",
                    row.workload.name(),
                    plan.runs,
                    table::thousands(f.rps),
                    f.p99_ms,
                    f.hop_share
                        .map_or("-".into(), |h| format!("{:.1}%", h * 100.0)),
                    f.errors
                );
                row.runs.push(f);
            }
        }
        rows.extend(found);
        // Both servers are killed here, before the next size starts.
    }
    Ok(rows)
}

/// The CPUs sharing a physical core with `cpu` (itself included), from sysfs.
fn siblings(cpu: usize) -> Option<Vec<usize>> {
    let path = format!("/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list");
    cpus::parse_list("siblings", std::fs::read_to_string(path).ok()?.trim()).ok()
}

/// Server CPUs that share a physical core (SMT siblings) with a load-generator CPU.
fn shared_cores(plan: &Plan) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for &s in &plan.server {
        for sib in siblings(s).unwrap_or_default() {
            if sib != s && plan.client.contains(&sib) {
                pairs.push((s, sib));
            }
        }
    }
    pairs
}

/// What the report says about the host.
fn host_facts(plan: &Plan) -> serde_json::Value {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| cpus::parse_list("online", s.trim()).ok())
        .map(|l| l.len());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let smt: serde_json::Map<String, serde_json::Value> = plan
        .allowed
        .iter()
        .filter_map(|&c| siblings(c).map(|s| (c.to_string(), json!(format_list(&s)))))
        .collect();
    json!({
        "online_cpus": online,
        "allowed_cpus": format_list(&plan.allowed),
        "kernel": kernel,
        "memlock_bytes": server::memlock_limit(),
        "thread_siblings": smt,
        "server_client_smt_pairs": shared_cores(plan),
    })
}

/// Runs the whole measurement and writes the table to `out`, then the JSON and SVG files.
pub fn run(plan: &Plan, out: &mut impl Write) -> Result<(), Failure> {
    let nofile = sys::raise_nofile_limit()?;
    let most = plan
        .sizes
        .iter()
        .map(|&s| plan.connections_at(s))
        .max()
        .unwrap_or(0);
    if most + 64 > nofile {
        eprintln!(
            "atlas-bench scale: warning: up to {most} connections but the open-file limit is \
             {nofile}; raise the hard limit (ulimit -Hn) or expect connect errors"
        );
    }
    let overlap: Vec<usize> = plan
        .client
        .iter()
        .copied()
        .filter(|c| plan.server.contains(c))
        .collect();
    if !overlap.is_empty() {
        eprintln!(
            "atlas-bench scale: warning: server and load generator share CPUs {}; the figures \
             measure both together",
            format_list(&overlap)
        );
    }
    let smt = shared_cores(plan);
    if !smt.is_empty() {
        let pairs: Vec<String> = smt.iter().map(|(s, c)| format!("{s}/{c}")).collect();
        eprintln!(
            "atlas-bench scale: warning: server and load-generator CPUs share physical cores \
             (SMT siblings server/client: {}); pick lists from different cores to measure \
             the server alone",
            pairs.join(" ")
        );
    }
    // Keep this process's own threads (progress, pipe readers) off the server's CPUs.
    if let Err(e) = sys::set_affinity(0, &plan.client) {
        eprintln!("atlas-bench scale: warning: cannot pin to the client CPUs: {e}");
    }
    let host = host_facts(plan);
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rows = measure_all(plan)?;
    let sums = table::summarise(&rows);

    let conns = match plan.connections {
        Some(n) => format!("{n} connections"),
        None => format!(
            "{} connections per server core",
            super::CONNECTIONS_PER_CORE
        ),
    };
    let setting = format!(
        "server CPUs {}, load generator CPUs {} (a pinned driver thread on each), {conns}, {} s × {} runs",
        format_list(&plan.server),
        format_list(&plan.client),
        plan.duration,
        plan.runs
    );
    writeln!(out)?;
    writeln!(
        out,
        "atlas-bench scale: {}; kernel {}, {} CPUs online, this process may use {}",
        setting,
        host["kernel"].as_str().unwrap_or("?"),
        host["online_cpus"],
        host["allowed_cpus"].as_str().unwrap_or("?"),
    )?;
    writeln!(
        out,
        "cache-hit workload: POST /ai/{{{}}} over {} inputs per operation, warmed first",
        plan.operations, plan.keyspace
    )?;
    if !smt.is_empty() {
        writeln!(
            out,
            "note: {} server CPU(s) share a physical core with a load-generator CPU",
            smt.len()
        )?;
    }
    table::write_text(out, &rows, &sums)?;
    out.flush()?;

    if let Some(path) = &plan.json {
        let v = json!({
            "tool": "atlas-bench scale",
            "version": env!("CARGO_PKG_VERSION"),
            "started_unix_s": started,
            "host": host,
            "config": {
                "atlas": plan.atlas.display().to_string(),
                "floor": plan.floor.as_ref().map(|p| p.display().to_string()),
                "server_cpus": format_list(&plan.server),
                "client_cpus": format_list(&plan.client),
                "sizes": plan.sizes,
                "connections": plan.connections,
                "connections_per_core": plan.connections.is_none().then_some(super::CONNECTIONS_PER_CORE),
                "duration_s": plan.duration,
                "runs": plan.runs,
                "keyspace": plan.keyspace,
                "operations": plan.operations,
            },
            "rows": table::rows_json(&rows, &sums),
        });
        let text = serde_json::to_string_pretty(&v).map_err(io::Error::other)?;
        std::fs::write(path, text + "\n")
            .map_err(|e| Failure::Run(format!("--json {}: {e}", path.display())))?;
    }
    if let Some(path) = &plan.svg {
        let series: Vec<Series> = Workload::ALL
            .iter()
            .map(|&w| Series {
                workload: w,
                points: rows
                    .iter()
                    .zip(&sums)
                    .filter(|(r, _)| r.workload == w)
                    .map(|(r, s)| Point {
                        cores: r.cores,
                        rps: s.rps,
                        efficiency: s.efficiency,
                    })
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        let subtitle = format!(
            "{setting}; kernel {}",
            host["kernel"].as_str().unwrap_or("?")
        );
        std::fs::write(path, svg::render(&series, &subtitle))
            .map_err(|e| Failure::Run(format!("--svg {}: {e}", path.display())))?;
    }
    Ok(())
}
