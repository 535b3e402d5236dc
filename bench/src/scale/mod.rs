//! `atlas-bench scale`: how Atlas's throughput grows with cores. For each server size N it
//! starts `atlas serve` pinned to the first N of `--server-cores` (and, with `--floor`, the
//! floor server on the same CPUs), drives it from this process with the `load` generator
//! (one driver thread pinned to each of `--client-cores`), and reports requests/s, per core,
//! scaling efficiency, latency, hop share and errors for an AI cache-hit workload, Atlas's
//! `GET /health` and the floor's, as a table, JSON and an SVG plot.
//!
//! Layout:
//! - `cpus`: CPU lists, the default server/client split, the sizes to measure.
//! - `server`: the server child process: pinned, memlock raised, listening line, kill on drop.
//! - `run`: the measurement loop (warm the cache, alternate workloads run by run).
//! - `table`: per-run figures, medians, efficiency, the text table and JSON rows.
//! - `svg`: the plot.
//!
//! Built to run unchanged on a bare host with only `atlas`, `atlas-bench` and `atlas-floor`
//! copied there: no toolchain, no `taskset`, no network. Exit status 0 when every size was
//! measured; 2 for bad flags, a missing binary, CPUs outside this process's mask, or a
//! server that does not start; 1 when a run fails part way (a server dies, the cache warm-up
//! fails, an output cannot be written).

mod cpus;
mod run;
mod server;
mod svg;
mod table;

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::load::{self, sys};

/// `atlas-bench scale` flags.
#[derive(Args, Debug, Clone)]
pub struct ScaleArgs {
    /// The `atlas` binary. Default: `atlas` next to this executable, else
    /// `target/release/atlas`.
    #[arg(long, value_name = "PATH")]
    pub atlas: Option<PathBuf>,
    /// Also measure the floor server (`GET /health`, fixed response) on the same CPUs.
    #[arg(long)]
    pub floor: bool,
    /// The floor server binary. Default: `atlas-floor` next to this executable, else
    /// `target/release/atlas-floor`.
    #[arg(long, value_name = "PATH")]
    pub floor_bin: Option<PathBuf>,
    /// CPUs the server runs on, in order (`0-7`, `0,2,4-6`): size N uses the first N.
    /// Default: the first half of the CPUs this process may use.
    #[arg(long, value_name = "LIST")]
    pub server_cores: Option<String>,
    /// CPUs of the load generator, one driver thread pinned to each. Default: the rest of
    /// the CPUs this process may use (all of them on a one-CPU machine).
    #[arg(long, value_name = "LIST")]
    pub client_cores: Option<String>,
    /// Server sizes to measure, e.g. `1,2,4,8`. Default: powers of two up to the number of
    /// server CPUs, then that number.
    #[arg(long, value_name = "LIST")]
    pub cores: Option<String>,
    /// Closed-loop connections at every size. Default: 64 per server core.
    #[arg(long, value_name = "N")]
    pub connections: Option<u64>,
    /// Seconds per measured run.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub duration: f64,
    /// Runs per workload and size, alternating workloads; the table shows medians.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub runs: u32,
    /// Cache-hit workload: distinct inputs per operation, all cached before measuring. Enough
    /// that every shard owns about as many keys as the others (4096 over 8 shards: ±4 %).
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub keyspace: u64,
    /// Cache-hit workload: the operation mix, as for `atlas-bench load`.
    #[arg(long, value_name = "MIX", default_value = "portfolio_analysis")]
    pub operations: String,
    /// Write every figure (and every run) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the plot (requests/s and efficiency against cores) as SVG to this file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

/// A validated `scale` run.
pub struct Plan {
    atlas: PathBuf,
    floor: Option<PathBuf>,
    /// Server CPUs in order; size N runs on the first N.
    server: Vec<usize>,
    /// Load-generator CPUs, one driver thread each.
    client: Vec<usize>,
    /// Ascending server sizes.
    sizes: Vec<usize>,
    /// Fixed connection count, or `None` for 64 per server core.
    connections: Option<u64>,
    duration: f64,
    runs: u32,
    keyspace: u64,
    operations: String,
    json: Option<PathBuf>,
    svg: Option<PathBuf>,
    /// CPUs this process may use.
    allowed: Vec<usize>,
}

/// Connections per server core unless `--connections` says otherwise.
const CONNECTIONS_PER_CORE: u64 = 64;

impl Plan {
    /// Connections used at `size` server cores.
    fn connections_at(&self, size: usize) -> u64 {
        self.connections
            .unwrap_or(CONNECTIONS_PER_CORE * size as u64)
    }
}

/// Finds a binary: the flag's path, else `name` next to this executable, else
/// `target/release/name`.
fn locate(flag: &str, given: Option<&Path>, name: &str) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("{flag}: no file at {}", p.display()))
        };
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)));
    let fallback = Path::new("target/release").join(name);
    match beside {
        Some(b) if b.is_file() => Ok(b),
        _ if fallback.is_file() => Ok(fallback),
        b => Err(format!(
            "{flag}: no `{name}` next to this executable ({}) nor at {}; pass {flag} PATH",
            b.map_or("?".into(), |b| b.display().to_string()),
            fallback.display()
        )),
    }
}

/// Checks that an output file's directory exists, so a long run does not end in a failed
/// write.
fn check_output(flag: &str, path: Option<&Path>, errs: &mut Vec<String>) {
    let Some(p) = path else { return };
    let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
    if dir.is_some_and(|d| !d.is_dir()) || p.is_dir() {
        errs.push(format!(
            "{flag}: cannot write {} (no such directory, or a directory)",
            p.display()
        ));
    }
}

/// Checks every flag at once against this process's CPUs (`allowed`).
fn validate(a: &ScaleArgs, allowed: Vec<usize>) -> Result<Plan, Vec<String>> {
    let mut errs = Vec::new();
    let atlas = locate("--atlas", a.atlas.as_deref(), "atlas")
        .map_err(|e| errs.push(e))
        .ok();
    let floor = if a.floor {
        locate("--floor-bin", a.floor_bin.as_deref(), "atlas-floor")
            .map_err(|e| errs.push(e))
            .ok()
    } else {
        if a.floor_bin.is_some() {
            errs.push("--floor-bin: given without --floor".into());
        }
        None
    };
    let (default_server, default_client) = cpus::default_split(&allowed);
    let mut list = |flag: &str, given: &Option<String>, default: Vec<usize>| -> Vec<usize> {
        let Some(s) = given else { return default };
        match cpus::parse_list(flag, s)
            .and_then(|l| cpus::check_allowed(flag, &l, &allowed).map(|()| l))
        {
            Ok(l) => l,
            Err(e) => {
                errs.push(e);
                Vec::new()
            }
        }
    };
    let server = list("--server-cores", &a.server_cores, default_server);
    let client = list("--client-cores", &a.client_cores, default_client);
    let sizes = match &a.cores {
        _ if server.is_empty() => Vec::new(),
        Some(s) => cpus::parse_sizes(s, server.len())
            .map_err(|e| errs.push(e))
            .unwrap_or_default(),
        None => cpus::default_sizes(server.len()),
    };
    if a.connections == Some(0) {
        errs.push("--connections: must be at least 1".into());
    }
    if !(a.duration.is_finite() && a.duration > 0.0) {
        errs.push("--duration: must be a positive number of seconds".into());
    }
    if a.runs == 0 {
        errs.push("--runs: must be at least 1".into());
    }
    // The hit workload's flags are `atlas-bench load`'s: let it judge them.
    let probe = run::hit_args(
        "http://127.0.0.1:1",
        &a.operations,
        a.keyspace,
        1,
        1,
        None,
        1.0,
    );
    if let Err(e) = load::validate(&probe) {
        errs.extend(e);
    }
    check_output("--json", a.json.as_deref(), &mut errs);
    check_output("--svg", a.svg.as_deref(), &mut errs);
    let (Some(atlas), true) = (atlas, errs.is_empty()) else {
        return Err(errs);
    };
    Ok(Plan {
        atlas,
        floor,
        server,
        client,
        sizes,
        connections: a.connections,
        duration: a.duration,
        runs: a.runs,
        keyspace: a.keyspace,
        operations: a.operations.clone(),
        json: a.json.clone(),
        svg: a.svg.clone(),
        allowed,
    })
}

/// Runs `atlas-bench scale`; returns the exit status.
pub fn main(args: &ScaleArgs) -> i32 {
    let allowed = match sys::allowed_cpus() {
        Ok(a) if !a.is_empty() => a,
        Ok(_) => {
            eprintln!("atlas-bench scale: this process may run on no CPU");
            return 1;
        }
        Err(e) => {
            eprintln!("atlas-bench scale: cannot read the CPU affinity mask: {e}");
            return 1;
        }
    };
    let plan = match validate(args, allowed) {
        Ok(p) => p,
        Err(errs) => {
            for e in errs {
                eprintln!("atlas-bench scale: {e}");
            }
            return 2;
        }
    };
    let mut out = std::io::stdout().lock();
    match run::run(&plan, &mut out) {
        Ok(()) => 0,
        Err(run::Failure::Start(e)) => {
            let _ = out.flush();
            eprintln!("atlas-bench scale: {e}");
            2
        }
        Err(run::Failure::Run(e)) => {
            let _ = out.flush();
            eprintln!("atlas-bench scale: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct TestCli {
        #[command(flatten)]
        args: ScaleArgs,
    }

    fn parse(argv: &[&str]) -> ScaleArgs {
        let mut all = vec!["scale"];
        all.extend_from_slice(argv);
        TestCli::try_parse_from(all).unwrap().args
    }

    #[test]
    fn bad_flags_are_all_reported_at_once_by_name() {
        let a = parse(&[
            "--atlas",
            "/nonexistent/atlas",
            "--server-cores",
            "0-3",
            "--client-cores",
            "x",
            "--duration",
            "0",
            "--runs",
            "0",
            "--keyspace",
            "0",
            "--operations",
            "nope",
            "--json",
            "/nonexistent/dir/scale.json",
            "--floor-bin",
            "./atlas-floor",
        ]);
        let errs = validate(&a, vec![0, 1]).err().unwrap().join("\n");
        for want in [
            "--atlas: no file at /nonexistent/atlas",
            "--server-cores: CPU 2 is not available to this process (it may run on 0-1)",
            "--client-cores: `x`",
            "--duration",
            "--runs",
            "--keyspace",
            "--operations",
            "--json: cannot write /nonexistent/dir/scale.json",
            "--floor-bin: given without --floor",
        ] {
            assert!(errs.contains(want), "{want} missing from\n{errs}");
        }
    }

    #[test]
    fn defaults_split_the_cpus_and_measure_powers_of_two() {
        // /bin/sh stands in for a binary that exists.
        let a = parse(&["--atlas", "/bin/sh"]);
        let plan = validate(&a, (0..16).collect()).unwrap();
        assert_eq!(plan.server, (0..8).collect::<Vec<_>>());
        assert_eq!(plan.client, (8..16).collect::<Vec<_>>());
        assert_eq!(plan.sizes, [1, 2, 4, 8]);
        assert_eq!(plan.connections_at(1), 64);
        assert_eq!(plan.connections_at(8), 512);
        assert!(plan.floor.is_none());

        let a = parse(&[
            "--atlas",
            "/bin/sh",
            "--server-cores",
            "4-6",
            "--cores",
            "3,1",
            "--connections",
            "10",
        ]);
        let plan = validate(&a, (0..8).collect()).unwrap();
        assert_eq!(plan.server, [4, 5, 6]);
        assert_eq!(plan.sizes, [1, 3]);
        assert_eq!(plan.connections_at(3), 10);
        let a = parse(&[
            "--atlas",
            "/bin/sh",
            "--server-cores",
            "0-1",
            "--cores",
            "4",
        ]);
        let errs = validate(&a, (0..8).collect()).err().unwrap();
        assert!(errs[0].contains("--cores: 4 is outside 1..=2"), "{errs:?}");
    }
}
