//! `atlas-bench load`: an HTTP load generator for Atlas's AI operations (or, with `--path`,
//! plain `GET`s of one path). `atlas-bench scale` drives it as a library through `validate`
//! and `measure`.
//!
//! Layout:
//! - `workload`: operation mix, keyspace with Zipf skew, user ids, priorities, request bytes;
//!   all deterministic from `--seed`.
//! - `http`: the response parser (httparse head, `Content-Length` body).
//! - `driver`: one epoll loop per thread over non-blocking sockets; closed and open loop.
//! - `stats`: per-operation HdrHistogram latency and counters, merged at the end.
//! - `report`: table, goals assessment, JSON.
//! - `sys`: epoll, RLIMIT_NOFILE, getrusage, `/proc/PID/stat`, CPU affinity.
//!
//! Why std threads with hand-rolled epoll rather than glommio executors: the generator has to
//! hold ten thousand connections while costing less CPU per request than the server, run on a
//! machine with nothing installed and no locked-memory allowance (io_uring needs one), and
//! measure its own schedule precisely. An edge-triggered epoll loop registers each socket
//! once (no per-request epoll_ctl), costs one write and usually one read per request, keeps a
//! connection's state in a plain struct (a few hundred bytes plus its buffers), and lets the
//! open loop compute every send time from the start instant instead of relying on a timer
//! wheel. A few such threads (`--threads`) drive thousands of connections; nothing is shared
//! between them while the run lasts.

mod driver;
mod http;
mod report;
mod stats;
pub(crate) mod sys;
mod workload;

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use driver::{Mode, Plan, Progress};
use report::{RunInfo, Targets};
pub(crate) use stats::ThreadStats;
use workload::{Repeat, Workload, Zipf, MAX_ZIPF_KEYSPACE};

/// `atlas-bench load` flags.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Target base URL (`http://HOST:PORT`); requests go to `POST /ai/{operation}`.
    #[arg(long)]
    pub url: String,
    /// Send `GET PATH` without a body instead of the AI operations (e.g. `/health`, to drive
    /// Atlas and the floor server with the same HTTP work). No cache-hit goal is judged.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["operations", "keyspace", "zipf", "user_ids", "priority_mix", "target_hit_rate", "distinct", "user_inputs", "new_input_share"])]
    pub path: Option<String>,
    /// Operation mix with weights, e.g. `portfolio_analysis=2,risk_assessment=1`.
    #[arg(
        long,
        default_value = "portfolio_analysis=1,budget_optimization=1,risk_assessment=1,cashflow_forecast=1"
    )]
    pub operations: String,
    /// Distinct inputs per operation.
    #[arg(long, default_value_t = 100)]
    pub keyspace: u64,
    /// Every request draws its operation and input anew from the mix and the keyspace (the
    /// all-distinct workload, for miss-path tests). Without it each user asks about its own
    /// few inputs again and again, as the brief's users do.
    #[arg(long, conflicts_with_all = ["user_inputs", "new_input_share"])]
    pub distinct: bool,
    /// Inputs (operation and input pairs) each user keeps asking about, the first most often.
    #[arg(long, default_value_t = 3)]
    pub user_inputs: u64,
    /// Fraction (0 to 1) of a user's requests about a new input instead of its own.
    #[arg(long, default_value_t = 0.05)]
    pub new_input_share: f64,
    /// Zipf exponent over the keyspace (0 = uniform; 1 = classic Zipf).
    #[arg(long, default_value_t = 0.0)]
    pub zipf: f64,
    /// Closed loop: virtual users, one connection each. Also the number of distinct user ids
    /// unless `--user-ids` is given.
    #[arg(long, default_value_t = 10)]
    pub users: u64,
    /// Distinct user ids (part of the cache key); virtual user `i` sends as `u-{i % N}`, the
    /// open loop draws one per request. Default: `--users`.
    #[arg(long)]
    pub user_ids: Option<u64>,
    /// Priority mix, e.g. `high=1,normal=8,low=1`.
    #[arg(long, default_value = "normal=1")]
    pub priority_mix: String,
    /// Closed loop: requests per virtual user.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Seconds: the bound of a closed-loop run, the length of an open-loop run.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Open loop: constant arrival rate in requests per second (selects the open loop).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop: connections to spread the requests over.
    #[arg(long, default_value_t = 256)]
    pub connections: u64,
    /// Driver threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Seconds before a request (connect included) counts as a timeout.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Seed for every generated body and draw.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the full report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Goal: p95 latency below this many milliseconds.
    #[arg(long, default_value_t = 400.0)]
    pub target_p95: f64,
    /// Goal: success rate above this percentage.
    #[arg(long, default_value_t = 99.0)]
    pub target_success: f64,
    /// Goal: cache hit rate at least this percentage.
    #[arg(long, default_value_t = 70.0)]
    pub target_hit_rate: f64,
    /// Also report the CPU time this server process used during the run.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Fraction (0 to 1) of requests sent with a user id no other request has, so they are
    /// cache misses that reach the model tier however long the run.
    #[arg(long, default_value_t = 0.0)]
    pub miss_share: f64,
    /// Write a per-second timeline as CSV to this file: second, responses, 2xx, failures by
    /// kind, p50 and p99 latency (ms) of the responses that ended in that second.
    #[arg(long)]
    pub timeline: Option<PathBuf>,
}

/// A validated run: the plan the drivers execute plus what the report needs.
pub(crate) struct Config {
    plan: Plan,
    url: String,
    targets: Targets,
    json: Option<PathBuf>,
    timeline: Option<PathBuf>,
    server_pid: Option<u32>,
    quiet: bool,
    workload_json: serde_json::Value,
}

/// Splits `http://host[:port][/]` into the address to connect to and the `Host` header.
fn parse_url(url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url: `{url}` must start with http:// (no TLS)"))?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(format!(
            "--url: `{url}` must be http://HOST:PORT without a path"
        ));
    }
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("--url: cannot resolve `{authority}`: {e}"))?
        .next()
        .ok_or_else(|| format!("--url: `{authority}` resolves to no address"))?;
    Ok((addr, authority.to_string()))
}

/// Checks every flag at once; the errors name the flag they are about.
pub(crate) fn validate(a: &LoadArgs) -> Result<Config, Vec<String>> {
    let mut errs = Vec::new();
    if let Some(path) = &a.path {
        if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
            errs.push(format!(
                "--path: `{path}` must start with / and hold no spaces or control characters"
            ));
        }
    }
    let target = parse_url(&a.url).map_err(|e| errs.push(e)).ok();
    let operations = workload::parse_operations(&a.operations)
        .map_err(|e| errs.push(e.0))
        .ok();
    let priorities = workload::parse_priorities(&a.priority_mix)
        .map_err(|e| errs.push(e.0))
        .ok();
    if a.keyspace == 0 {
        errs.push("--keyspace: must be at least 1".into());
    }
    if !(a.zipf.is_finite() && a.zipf >= 0.0) {
        errs.push("--zipf: must be a number >= 0".into());
    } else if a.zipf > 0.0 && a.keyspace > MAX_ZIPF_KEYSPACE {
        errs.push(format!(
            "--keyspace: at most {MAX_ZIPF_KEYSPACE} with --zipf > 0"
        ));
    }
    if a.users == 0 {
        errs.push("--users: must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&a.miss_share) {
        errs.push("--miss-share: must be a fraction from 0 to 1".into());
    }
    if a.user_inputs == 0 {
        errs.push("--user-inputs: must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&a.new_input_share) {
        errs.push("--new-input-share: must be a fraction from 0 to 1".into());
    }
    if a.user_ids == Some(0) {
        errs.push("--user-ids: must be at least 1".into());
    }
    if a.threads == 0 || a.threads > 256 {
        errs.push("--threads: must be 1..=256".into());
    }
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        errs.push("--timeout: must be a positive number of seconds".into());
    }
    let duration = match a.duration {
        Some(d) if d.is_finite() && d > 0.0 => Some(Duration::from_secs_f64(d)),
        Some(_) => {
            errs.push("--duration: must be a positive number of seconds".into());
            None
        }
        None => None,
    };
    let mode = match a.rate {
        Some(rate) => {
            if !(rate.is_finite() && rate > 0.0) {
                errs.push("--rate: must be a positive number of requests per second".into());
            }
            if a.duration.is_none() {
                errs.push("--duration: required with --rate (open loop)".into());
            }
            if a.requests.is_some() {
                errs.push(
                    "--requests: closed loop only; the open loop sends --rate × --duration".into(),
                );
            }
            if a.connections == 0 {
                errs.push("--connections: must be at least 1".into());
            }
            Mode::Open {
                rate,
                connections: a.connections,
            }
        }
        None => {
            if a.requests.is_none() && a.duration.is_none() {
                errs.push("--requests or --duration: the closed loop needs a bound".into());
            }
            if a.requests == Some(0) {
                errs.push("--requests: must be at least 1".into());
            }
            Mode::Closed {
                users: a.users,
                requests: a.requests,
            }
        }
    };
    for (name, v) in [
        ("--target-p95", a.target_p95),
        ("--target-success", a.target_success),
        ("--target-hit-rate", a.target_hit_rate),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            errs.push(format!("{name}: must be a number >= 0"));
        }
    }
    let (Some((addr, host)), Some(operations), Some(priorities), true) =
        (target, operations, priorities, errs.is_empty())
    else {
        return Err(errs);
    };
    let user_ids = a.user_ids.unwrap_or(a.users);
    let workload_json = match &a.path {
        Some(path) => json!({
            "path": path,
            "users": a.users,
            "requests_per_user": a.requests,
            "rate": a.rate,
            "connections": a.rate.map(|_| a.connections),
            "duration_s": a.duration,
            "timeout_s": a.timeout,
        }),
        None => json!({
        "operations": operations.shares().iter()
            .map(|(o, s)| (o.name().to_string(), json!(s)))
            .collect::<serde_json::Map<_, _>>(),
        "priorities": a.priority_mix,
        "keyspace": a.keyspace,
        "zipf": a.zipf,
        "users": a.users,
        "user_ids": user_ids,
        "requests_per_user": a.requests,
        "rate": a.rate,
        "connections": a.rate.map(|_| a.connections),
        "duration_s": a.duration,
        "timeout_s": a.timeout,
        "seed": a.seed,
        "miss_share": a.miss_share,
        "kind": if a.distinct { "distinct" } else { "users" },
        "user_inputs": (!a.distinct).then_some(a.user_inputs),
        "new_input_share": (!a.distinct).then_some(a.new_input_share),
        }),
    };
    Ok(Config {
        plan: Plan {
            addr,
            workload: Workload {
                seed: a.seed,
                operations,
                priorities,
                keys: Zipf::new(a.keyspace, a.zipf),
                user_ids,
                host,
                get_path: a.path.clone(),
                miss_share: a.miss_share,
                repeat: (!a.distinct).then(|| Repeat::new(a.user_inputs, a.new_input_share)),
            },
            mode,
            duration,
            timeout: Duration::from_secs_f64(a.timeout),
            threads: a.threads,
            timeline: a.timeline.is_some(),
        },
        url: a.url.clone(),
        targets: Targets {
            p95_ms: a.target_p95,
            success_pct: a.target_success,
            hit_rate_pct: a.path.is_none().then_some(a.target_hit_rate),
        },
        json: a.json.clone(),
        timeline: a.timeline.clone(),
        server_pid: a.server_pid,
        quiet: a.quiet,
        workload_json,
    })
}

/// The outcome of a run, for the caller and the tests.
pub struct Outcome {
    /// Merged statistics (the binary prints them; tests inspect them).
    #[cfg_attr(not(test), allow(dead_code))]
    pub stats: ThreadStats,
    /// Wall time of the run.
    #[cfg_attr(not(test), allow(dead_code))]
    pub elapsed: Duration,
    /// Every goal passed.
    pub pass: bool,
}

/// Runs `atlas-bench load`; returns the process exit status (0 all goals met, 1 a goal
/// failed or the run could not happen, 2 bad flags).
pub fn main(args: &LoadArgs) -> i32 {
    let cfg = match validate(args) {
        Ok(c) => c,
        Err(errs) => {
            for e in errs {
                eprintln!("atlas-bench load: {e}");
            }
            return 2;
        }
    };
    match run(&cfg, &mut std::io::stdout().lock()) {
        Ok(outcome) if outcome.pass => 0,
        Ok(_) => 1,
        Err(e) => {
            eprintln!("atlas-bench load: {e}");
            1
        }
    }
}

fn describe(plan: &Plan) -> String {
    match plan.mode {
        Mode::Closed { users, requests } => {
            let mut s = format!("closed loop: {users} users");
            if let Some(r) = requests {
                let _ = write!(s, " × {r} requests");
            }
            if let Some(d) = plan.duration {
                let _ = write!(s, ", bound {:.1} s", d.as_secs_f64());
            }
            s
        }
        Mode::Open { rate, connections } => format!(
            "open loop: {rate} req/s for {:.1} s over {connections} connections",
            plan.duration.unwrap_or_default().as_secs_f64()
        ),
    }
}

/// What one run measured, for `run` and for `atlas-bench scale`.
pub(crate) struct Measured {
    /// Every driver thread's statistics, merged.
    pub stats: ThreadStats,
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
    /// The generator's own CPU time over the run (user + system).
    pub cpu: Duration,
}

/// Runs `cfg`'s plan: driver thread `t` pinned to `cpus[t % cpus.len()]` (unpinned when
/// `cpus` is empty), progress on stderr unless `--quiet`. The caller has raised the
/// open-file limit.
pub(crate) fn measure(cfg: &Config, cpus: &[usize]) -> std::io::Result<Measured> {
    let plan = &cfg.plan;
    let cpu0 = sys::own_cpu_time();
    let progress: Vec<Progress> = (0..plan.threads).map(|_| Progress::default()).collect();
    let start = Instant::now();
    let results: Vec<std::io::Result<ThreadStats>> = std::thread::scope(|s| {
        let handles: Vec<_> = progress
            .iter()
            .enumerate()
            .map(|(t, p)| {
                let pin = (!cpus.is_empty()).then(|| cpus[t % cpus.len()]);
                s.spawn(move || {
                    if let Some(cpu) = pin {
                        sys::pin_current_thread(cpu)?;
                    }
                    driver::run(plan, t, start, p)
                })
            })
            .collect();
        report_progress(&handles, &progress, start, cfg.quiet);
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a driver thread panicked")))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    let cpu = sys::own_cpu_time().saturating_sub(cpu0);
    let mut stats = ThreadStats::new().map_err(|e| std::io::Error::other(e.to_string()))?;
    for r in results {
        stats.merge(&r?);
    }
    Ok(Measured {
        stats,
        elapsed,
        cpu,
    })
}

fn run(cfg: &Config, out: &mut impl Write) -> std::io::Result<Outcome> {
    let plan = &cfg.plan;
    let conns = match plan.mode {
        Mode::Closed { users, .. } => users,
        Mode::Open { connections, .. } => connections,
    };
    let limit = sys::raise_nofile_limit()?;
    if conns + 64 > limit {
        eprintln!(
            "atlas-bench load: warning: {conns} connections but the open-file limit is {limit}; \
             raise the hard limit (ulimit -Hn) or expect connect errors"
        );
    }
    let server_cpu0 = cfg.server_pid.and_then(sys::process_cpu_time);
    let Measured {
        stats,
        elapsed,
        cpu,
    } = measure(cfg, &[])?;
    let server_cpu = match (cfg.server_pid.and_then(sys::process_cpu_time), server_cpu0) {
        (Some(b), Some(a)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let info = RunInfo {
        model: describe(plan),
        url: cfg.url.clone(),
        threads: plan.threads,
        elapsed,
        cpu,
        server_cpu,
        open_loop: matches!(plan.mode, Mode::Open { .. }),
        workload: cfg.workload_json.clone(),
        workload_line: match &plan.workload.get_path {
            Some(path) => format!("GET {path}"),
            None => plan.workload.describe(),
        },
        get_path: plan.workload.get_path.clone(),
    };
    let goals = report::assess(&stats.overall(), &cfg.targets);
    report::write_text(out, &stats, &info, &goals)?;
    if let Some(path) = &cfg.json {
        let v = report::to_json(&stats, &info, &goals);
        let text = serde_json::to_string_pretty(&v).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n").map_err(|e| {
            std::io::Error::new(e.kind(), format!("--json {}: {e}", path.display()))
        })?;
    }
    if let Some(path) = &cfg.timeline {
        std::fs::write(path, report::timeline_csv(&stats)).map_err(|e| {
            std::io::Error::new(e.kind(), format!("--timeline {}: {e}", path.display()))
        })?;
    }
    let pass = goals.iter().all(|g| g.pass);
    Ok(Outcome {
        stats,
        elapsed,
        pass,
    })
}

/// Prints live progress to stderr once a second until every driver has finished: one
/// rewritten line on a terminal, plain lines otherwise.
fn report_progress<T>(
    handles: &[std::thread::ScopedJoinHandle<'_, T>],
    progress: &[Progress],
    start: Instant,
    quiet: bool,
) {
    let tty = std::io::stderr().is_terminal();
    let mut last = (0u64, start);
    let mut next = start + Duration::from_secs(1);
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        let now = Instant::now();
        if quiet || now < next {
            continue;
        }
        next += Duration::from_secs(1);
        let (mut done, mut errors) = (0, 0);
        for p in progress {
            done += p.responses.load(std::sync::atomic::Ordering::Relaxed);
            errors += p.errors.load(std::sync::atomic::Ordering::Relaxed);
        }
        let rps = (done - last.0.min(done)) as f64 / now.duration_since(last.1).as_secs_f64();
        last = (done, now);
        let line = format!(
            "[{:>6.1}s] responses {done}  errors {errors}  {rps:.0} req/s",
            now.duration_since(start).as_secs_f64()
        );
        let mut err = std::io::stderr().lock();
        let _ = if tty {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
    }
    if tty && !quiet {
        let _ = writeln!(std::io::stderr());
    }
}

#[cfg(test)]
mod tests;
