//! The final report: a human table, the brief's `PERFORMANCE GOALS ASSESSMENT` block, and the
//! same figures as JSON. Pure functions of the merged statistics; no I/O but the writer given.
//!
//! Must not depend on sockets or the driver.

use std::io::{self, Write};
use std::time::Duration;

use serde_json::{json, Value};

use super::http::CacheState;
use super::stats::{ErrorKind, OpStats, ThreadStats};
use super::workload::Operation;

/// The goals the run is judged against.
#[derive(Clone, Copy, Debug)]
pub struct Targets {
    /// p95 latency must be below this, in milliseconds.
    pub p95_ms: f64,
    /// Success rate must be above this, in percent.
    pub success_pct: f64,
    /// Cache hit rate must be at least this, in percent; `None` when the run has no cache
    /// to judge (`--path`).
    pub hit_rate_pct: Option<f64>,
}

/// One goal's verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Goal {
    pub name: &'static str,
    pub target: String,
    pub actual: String,
    pub pass: bool,
}

impl Goal {
    /// `✅ P95 Response Time Goal (<400ms): 287ms PASS`
    pub fn line(&self) -> String {
        format!(
            "{} {} ({}): {} {}",
            if self.pass { "✅" } else { "❌" },
            self.name,
            self.target,
            self.actual,
            if self.pass { "PASS" } else { "FAIL" }
        )
    }
}

/// Judges `all` against `t`. A run without answers fails the latency goal; a run without
/// `X-Atlas-Cache` headers fails the hit-rate goal (judged only when `t` has a target).
pub fn assess(all: &OpStats, t: &Targets) -> Vec<Goal> {
    let p95 = (all.responses > 0).then(|| all.latency_ms(95.0));
    let success = all.success_rate() * 100.0;
    let hit = all.hit_rate().map(|h| h * 100.0);
    let mut goals = vec![
        Goal {
            name: "P95 Response Time Goal",
            target: format!("<{}ms", fmt_num(t.p95_ms)),
            actual: p95.map_or("no responses".into(), fmt_ms),
            pass: p95.is_some_and(|p| p < t.p95_ms),
        },
        Goal {
            name: "Success Rate Goal",
            target: format!(">{}%", fmt_num(t.success_pct)),
            actual: format!("{success:.2}%"),
            pass: all.attempted() > 0 && success > t.success_pct,
        },
    ];
    if let Some(target) = t.hit_rate_pct {
        goals.push(Goal {
            name: "Cache Hit Rate Goal",
            target: format!(">={}%", fmt_num(target)),
            actual: hit.map_or("no X-Atlas-Cache headers".into(), |h| format!("{h:.1}%")),
            pass: hit.is_some_and(|h| h >= target),
        });
    }
    goals
}

/// A latency with the precision that matters: `287ms`, `4.1ms`, `0.35ms`.
fn fmt_ms(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}ms")
    } else if x >= 1.0 {
        format!("{x:.1}ms")
    } else {
        format!("{x:.2}ms")
    }
}

/// `400` for whole numbers, `2.5` otherwise.
fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// Run facts the report prints next to the statistics.
pub struct RunInfo {
    /// One line describing the model, e.g. `closed loop: 100 users x 10 requests`.
    pub model: String,
    pub url: String,
    pub threads: usize,
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
    /// The generator's own CPU time (user + system).
    pub cpu: Duration,
    /// The server's CPU time over the run, when `--server-pid` was given and readable.
    pub server_cpu: Option<Duration>,
    /// Whether latency is measured from the scheduled send time.
    pub open_loop: bool,
    /// The workload flags, echoed into the JSON.
    pub workload: Value,
    /// One line naming the workload, printed with the goals assessment.
    pub workload_line: String,
    /// `--path`: every request was `GET` of this path, so per-operation figures mean nothing.
    pub get_path: Option<String>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn op_json(s: &OpStats, elapsed: Duration) -> Value {
    let pct = |q: f64| ms(s.latency.value_at_percentile(q));
    let statuses: serde_json::Map<String, Value> = s
        .statuses
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let errors: serde_json::Map<String, Value> = ErrorKind::ALL
        .iter()
        .map(|k| (k.name().to_string(), json!(s.errors[*k as usize])))
        .collect();
    let cache: serde_json::Map<String, Value> = CacheState::ALL
        .iter()
        .map(|c| (c.name().to_string(), json!(s.cache[*c as usize])))
        .collect();
    json!({
        "attempted": s.attempted(),
        "responses": s.responses,
        "ok": s.ok,
        "errors_total": s.error_count(),
        "unsent": s.unsent,
        "success_rate": s.success_rate(),
        "throughput_rps": s.responses as f64 / elapsed.as_secs_f64().max(1e-9),
        "latency_ms": {
            "p50": pct(50.0), "p90": pct(90.0), "p95": pct(95.0), "p99": pct(99.0),
            "p99_9": pct(99.9), "max": ms(s.latency.max()), "min": ms(s.latency.min()),
            "mean": s.latency.mean() / 1000.0,
        },
        "service_ms": {
            "p50": ms(s.service.value_at_percentile(50.0)),
            "p99": ms(s.service.value_at_percentile(99.0)),
            "max": ms(s.service.max()),
        },
        "statuses": statuses,
        "errors": errors,
        "cache": cache,
        "hit_rate": s.hit_rate(),
        "routed": s.routed,
        "hops": s.hops,
        "hop_share": s.hop_share(),
        "mean_batch_size": s.mean_batch(),
        "bytes_in": s.bytes_in,
    })
}

/// The whole report as JSON.
pub fn to_json(stats: &ThreadStats, info: &RunInfo, goals: &[Goal]) -> Value {
    let all = stats.overall();
    let per_op: serde_json::Map<String, Value> = Operation::ALL
        .iter()
        .filter(|o| info.get_path.is_none() && stats.ops[o.index()].attempted() > 0)
        .map(|o| {
            (
                o.name().to_string(),
                op_json(&stats.ops[o.index()], info.elapsed),
            )
        })
        .collect();
    let requests = all.attempted().max(1) as f64;
    json!({
        "url": info.url,
        "path": info.get_path,
        "model": info.model,
        "open_loop": info.open_loop,
        "threads": info.threads,
        "workload": info.workload,
        "workload_line": info.workload_line,
        "elapsed_s": info.elapsed.as_secs_f64(),
        "connections_opened": stats.connects,
        "overall": op_json(&all, info.elapsed),
        "operations": per_op,
        "cpu": {
            "generator_s": info.cpu.as_secs_f64(),
            "generator_us_per_request": info.cpu.as_secs_f64() * 1e6 / requests,
            "server_s": info.server_cpu.map(|d| d.as_secs_f64()),
            "server_us_per_request": info.server_cpu.map(|d| d.as_secs_f64() * 1e6 / requests),
        },
        "goals": goals.iter().map(|g| json!({
            "name": g.name, "target": g.target, "actual": g.actual, "pass": g.pass,
        })).collect::<Vec<_>>(),
        "pass": goals.iter().all(|g| g.pass),
    })
}

/// The `--timeline` CSV: one row per second of the run (by completion time) with responses,
/// 2xx answers, failures by kind, and the p50 and p99 latency in milliseconds of the
/// responses that ended in it (empty when there were none).
pub fn timeline_csv(stats: &ThreadStats) -> String {
    let mut out = String::from("second,responses,ok");
    for k in ErrorKind::ALL {
        out.push_str(&format!(",err_{}", k.name()));
    }
    out.push_str(",p50_ms,p99_ms\n");
    for (second, s) in stats.timeline.iter().flatten().enumerate() {
        out.push_str(&format!("{second},{},{}", s.responses, s.ok));
        for n in s.errors {
            out.push_str(&format!(",{n}"));
        }
        if s.responses > 0 {
            out.push_str(&format!(
                ",{:.3},{:.3}\n",
                ms(s.latency.value_at_quantile(0.5)),
                ms(s.latency.value_at_quantile(0.99))
            ));
        } else {
            out.push_str(",,\n");
        }
    }
    out
}

fn opt_pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{:.1}", v * 100.0))
}

fn row(out: &mut impl Write, name: &str, s: &OpStats, elapsed: Duration) -> io::Result<()> {
    let l = |q: f64| s.latency_ms(q);
    writeln!(
        out,
        "{name:<20} {:>9} {:>7.2} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>6} {:>6} {:>7}",
        s.attempted(),
        s.success_rate() * 100.0,
        s.responses as f64 / elapsed.as_secs_f64().max(1e-9),
        l(50.0),
        l(90.0),
        l(95.0),
        l(99.0),
        l(99.9),
        ms(s.latency.max()),
        opt_pct(s.hit_rate()),
        s.mean_batch().map_or("-".into(), |b| format!("{b:.1}")),
        s.error_count() + s.unsent,
    )
}

/// `hop share: 50.0% (2 of 4 responses named both X-Atlas-Shard and X-Atlas-Owner)`.
fn hop_line(s: &OpStats) -> String {
    match s.hop_share() {
        Some(h) => format!(
            "hop share: {:.1}% ({} of {} responses named an owner shard other than the accepting one)",
            h * 100.0,
            s.hops,
            s.routed
        ),
        None => "hop share: - (no response named both X-Atlas-Shard and X-Atlas-Owner)".into(),
    }
}

/// Writes the human report.
pub fn write_text(
    out: &mut impl Write,
    stats: &ThreadStats,
    info: &RunInfo,
    goals: &[Goal],
) -> io::Result<()> {
    let all = stats.overall();
    writeln!(out)?;
    writeln!(
        out,
        "atlas-bench load → {}  ({}, {} threads, {:.2} s, {} connections opened)",
        info.url,
        info.model,
        info.threads,
        info.elapsed.as_secs_f64(),
        stats.connects
    )?;
    writeln!(
        out,
        "latency in ms{}",
        if info.open_loop {
            ", from each request's scheduled send time (coordinated omission corrected)"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "{:<20} {:>9} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>7}",
        "operation",
        "requests",
        "ok%",
        "rps",
        "p50",
        "p90",
        "p95",
        "p99",
        "p99.9",
        "max",
        "hit%",
        "batch",
        "errors"
    )?;
    match &info.get_path {
        Some(path) => row(out, &format!("GET {path}"), &all, info.elapsed)?,
        None => {
            for op in Operation::ALL {
                let s = &stats.ops[op.index()];
                if s.attempted() > 0 {
                    row(out, op.name(), s, info.elapsed)?;
                }
            }
            row(out, "all", &all, info.elapsed)?;
        }
    }
    writeln!(out)?;
    let statuses: Vec<String> = all
        .statuses
        .iter()
        .map(|(code, n)| format!("{code}: {n}"))
        .collect();
    writeln!(
        out,
        "status codes: {}",
        if statuses.is_empty() {
            "none".to_string()
        } else {
            statuses.join(", ")
        }
    )?;
    let errors: Vec<String> = ErrorKind::ALL
        .iter()
        .map(|k| format!("{} {}", k.name(), all.errors[*k as usize]))
        .collect();
    writeln!(out, "transport errors: {}", errors.join(", "))?;
    if info.open_loop {
        writeln!(
            out,
            "unsent (no free connection before the end): {}; service time (send → answer) p50 {:.2} ms, p99 {:.2} ms",
            all.unsent,
            ms(all.service.value_at_percentile(50.0)),
            ms(all.service.value_at_percentile(99.0)),
        )?;
    }
    let cache: Vec<String> = CacheState::ALL
        .iter()
        .map(|c| format!("{} {}", c.name(), all.cache[*c as usize]))
        .collect();
    writeln!(out, "X-Atlas-Cache: {}", cache.join(", "))?;
    writeln!(out, "{}", hop_line(&all))?;
    let requests = all.attempted().max(1) as f64;
    let mut cpu = format!(
        "generator CPU: {:.2} s ({:.1} µs/request)",
        info.cpu.as_secs_f64(),
        info.cpu.as_secs_f64() * 1e6 / requests
    );
    if let Some(s) = info.server_cpu {
        cpu.push_str(&format!(
            "; server CPU: {:.2} s ({:.1} µs/request); generator/server = {:.2}",
            s.as_secs_f64(),
            s.as_secs_f64() * 1e6 / requests,
            info.cpu.as_secs_f64() / s.as_secs_f64().max(1e-9)
        ));
    }
    writeln!(out, "{cpu}")?;
    writeln!(out)?;
    writeln!(out, "PERFORMANCE GOALS ASSESSMENT")?;
    writeln!(out, "workload: {}", info.workload_line)?;
    for g in goals {
        writeln!(out, "{}", g.line())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::http::Head;

    fn stats(ms_values: &[u64], cache: CacheState, status: u16) -> OpStats {
        let mut s = OpStats::new().unwrap();
        let head = Head {
            status,
            head_len: 1,
            body_len: 1,
            cache,
            batch_size: None,
            shard: Some(0),
            owner: Some(1),
            close: false,
        };
        for &v in ms_values {
            s.record_response(&head, v * 1000, v * 1000);
        }
        s
    }

    const TARGETS: Targets = Targets {
        p95_ms: 400.0,
        success_pct: 99.0,
        hit_rate_pct: Some(70.0),
    };

    #[test]
    fn a_fast_successful_cached_run_passes_every_goal() {
        let all: Vec<u64> = (1..=100).collect();
        let goals = assess(&stats(&all, CacheState::Hit, 200), &TARGETS);
        assert!(goals.iter().all(|g| g.pass), "{goals:?}");
        assert_eq!(
            goals[0].line(),
            "✅ P95 Response Time Goal (<400ms): 95ms PASS"
        );
        assert_eq!(goals[1].line(), "✅ Success Rate Goal (>99%): 100.00% PASS");
        assert_eq!(
            goals[2].line(),
            "✅ Cache Hit Rate Goal (>=70%): 100.0% PASS"
        );
    }

    #[test]
    fn each_goal_fails_on_its_own() {
        // Slow: p95 of 1..=1000 ms is 950 ms.
        let slow: Vec<u64> = (1..=1000).collect();
        let g = assess(&stats(&slow, CacheState::Hit, 200), &TARGETS);
        assert_eq!(
            g.iter().map(|g| g.pass).collect::<Vec<_>>(),
            [false, true, true]
        );
        assert!(g[0]
            .line()
            .starts_with("❌ P95 Response Time Goal (<400ms): 950ms FAIL"));

        // Two failures in a hundred: 98 % is not above 99 %.
        let mut s = stats(&[5; 98], CacheState::Hit, 200);
        s.record_error(ErrorKind::Reset);
        s.record_error(ErrorKind::Timeout);
        let g = assess(&s, &TARGETS);
        assert_eq!(
            g.iter().map(|g| g.pass).collect::<Vec<_>>(),
            [true, false, true]
        );

        // Misses only.
        let g = assess(&stats(&[5; 10], CacheState::Miss, 200), &TARGETS);
        assert_eq!(
            g.iter().map(|g| g.pass).collect::<Vec<_>>(),
            [true, true, false]
        );
        // No Atlas headers at all (another server): the hit-rate goal cannot pass.
        let g = assess(&stats(&[5; 10], CacheState::None, 200), &TARGETS);
        assert!(!g[2].pass);
        assert!(g[2].actual.contains("no X-Atlas-Cache"));
        // No answers at all.
        let mut none = OpStats::new().unwrap();
        none.record_error(ErrorKind::Connect);
        let g = assess(&none, &TARGETS);
        assert!(g.iter().all(|g| !g.pass));
    }

    #[test]
    fn the_json_report_carries_counts_percentiles_and_goals() {
        let mut t = ThreadStats::new().unwrap();
        t.ops[Operation::RiskAssessment.index()] = stats(&[10, 20, 30], CacheState::Hit, 200);
        let info = RunInfo {
            model: "closed".into(),
            url: "http://x".into(),
            threads: 1,
            elapsed: Duration::from_secs(1),
            cpu: Duration::from_millis(3),
            server_cpu: None,
            open_loop: false,
            workload: json!({}),
            workload_line: "users: each user asks about 3 inputs".into(),
            get_path: None,
        };
        let goals = assess(&t.overall(), &TARGETS);
        let v = to_json(&t, &info, &goals);
        assert_eq!(v["overall"]["responses"], 3);
        assert_eq!(v["overall"]["statuses"]["200"], 3);
        assert_eq!(v["operations"]["risk_assessment"]["cache"]["hit"], 3);
        assert!(v["operations"].get("portfolio_analysis").is_none());
        assert_eq!(v["pass"], true);
        assert!((v["overall"]["latency_ms"]["max"].as_f64().unwrap() - 30.0).abs() < 0.1);
        let mut text = Vec::new();
        write_text(&mut text, &t, &info, &goals).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("risk_assessment"));
        assert!(text.contains("PERFORMANCE GOALS ASSESSMENT"));
        // Every test response names shard 0 and owner 1: all of them hopped.
        assert_eq!(v["overall"]["hops"], 3);
        assert_eq!(v["overall"]["hop_share"], 1.0);
        assert!(
            text.contains("hop share: 100.0% (3 of 3 responses"),
            "{text}"
        );
    }
}
