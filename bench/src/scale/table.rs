//! What `atlas-bench scale` measured and how it is summarised: one `Row` per workload and
//! server size holding every run, the medians over runs, scaling efficiency against the
//! workload's smallest size, the ratio to the floor server at the same size, and the text
//! table and JSON built from them.
//!
//! Pure functions of the figures; no I/O but the writer given. Must not depend on sockets,
//! processes or the load driver.

use std::io::{self, Write};

use serde_json::{json, Value};

use super::cpus::format_list;

/// What is measured at each size, a closed set, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Atlas: `POST /ai/{operation}` over a small, warmed keyspace: every answer a cache hit
    /// from the owner shard, after a hop when the connection landed on another shard.
    AtlasHit,
    /// Atlas: `GET /health`, the HTTP layer alone.
    AtlasHealth,
    /// The floor server: `GET /health` answered with fixed bytes.
    Floor,
}

impl Workload {
    /// Every workload, in table order.
    pub const ALL: [Workload; 3] = [Workload::AtlasHit, Workload::AtlasHealth, Workload::Floor];

    /// The name in the table, the JSON and the plot.
    pub fn name(self) -> &'static str {
        match self {
            Workload::AtlasHit => "atlas_hit",
            Workload::AtlasHealth => "atlas_health",
            Workload::Floor => "floor_health",
        }
    }

    /// What the workload sends, for the JSON and the plot's legend.
    pub fn describe(self) -> &'static str {
        match self {
            Workload::AtlasHit => "Atlas POST /ai (cache hit)",
            Workload::AtlasHealth => "Atlas GET /health",
            Workload::Floor => "floor GET /health",
        }
    }
}

/// One measured run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunFigures {
    /// Responses per second of wall time.
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Requests that got a response.
    pub responses: u64,
    /// Requests without a 2xx answer (transport errors and non-2xx statuses).
    pub errors: u64,
    /// Share of responses whose owner shard was not the accepting one (Atlas AI only).
    pub hop_share: Option<f64>,
    /// Share of `X-Atlas-Cache: hit` among responses that carried the header.
    pub hit_rate: Option<f64>,
    /// Server CPU time over wall time: how many cores it kept busy.
    pub server_cpu: Option<f64>,
    /// The load generator's CPU time over wall time.
    pub client_cpu: f64,
    pub elapsed_s: f64,
}

/// Every run of one workload at one server size.
#[derive(Clone, Debug)]
pub struct Row {
    pub workload: Workload,
    /// Server cores (shards).
    pub cores: usize,
    /// The CPUs the server was pinned to.
    pub cpus: Vec<usize>,
    /// Closed-loop connections.
    pub connections: u64,
    pub runs: Vec<RunFigures>,
}

/// A row's medians and the figures derived from other rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub rps: f64,
    pub rps_per_core: f64,
    /// `(rps(N)/N) / (rps(n0)/n0)` for the workload's smallest size n0 (usually 1, giving
    /// `rps(N) / (N × rps(1))`); `None` when that size served nothing.
    pub efficiency: Option<f64>,
    /// `rps / floor rps` at the same size, for Atlas rows when the floor was measured.
    pub vs_floor: Option<f64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub hop_share: Option<f64>,
    pub hit_rate: Option<f64>,
    pub server_cpu: Option<f64>,
    /// Server CPU time per response, µs (median over runs): the figure the client's speed
    /// does not set.
    pub cpu_us_per_req: Option<f64>,
    pub client_cpu: f64,
    /// Errors summed over every run.
    pub errors: u64,
}

/// The median of `values` (the mean of the middle two for an even count); `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

fn median_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    median(&values.flatten().collect::<Vec<_>>())
}

/// Scaling efficiency of `rps` on `cores` against `base_rps` on `base_cores`: 1.0 when
/// throughput per core holds. `None` when the base served nothing.
pub fn efficiency(rps: f64, cores: usize, base_rps: f64, base_cores: usize) -> Option<f64> {
    let base = base_rps / base_cores.max(1) as f64;
    (base > 0.0 && cores > 0).then(|| rps / cores as f64 / base)
}

/// Summaries of `rows`, in the same order.
pub fn summarise(rows: &[Row]) -> Vec<Summary> {
    let rps: Vec<f64> = rows
        .iter()
        .map(|r| median(&r.runs.iter().map(|f| f.rps).collect::<Vec<_>>()).unwrap_or(0.0))
        .collect();
    let smallest = |w: Workload| {
        rows.iter()
            .zip(&rps)
            .filter(|(r, _)| r.workload == w)
            .min_by_key(|(r, _)| r.cores)
            .map(|(r, &x)| (r.cores, x))
    };
    let floor_at = |cores: usize| {
        rows.iter()
            .zip(&rps)
            .find(|(r, _)| r.workload == Workload::Floor && r.cores == cores)
            .map(|(_, &x)| x)
    };
    rows.iter()
        .zip(&rps)
        .map(|(r, &rps)| Summary {
            rps,
            rps_per_core: rps / r.cores.max(1) as f64,
            efficiency: smallest(r.workload)
                .and_then(|(base_cores, base)| efficiency(rps, r.cores, base, base_cores)),
            vs_floor: match r.workload {
                Workload::Floor => None,
                _ => floor_at(r.cores).filter(|&f| f > 0.0).map(|f| rps / f),
            },
            p50_ms: median_of(r.runs.iter().map(|f| Some(f.p50_ms))).unwrap_or(0.0),
            p99_ms: median_of(r.runs.iter().map(|f| Some(f.p99_ms))).unwrap_or(0.0),
            hop_share: median_of(r.runs.iter().map(|f| f.hop_share)),
            hit_rate: median_of(r.runs.iter().map(|f| f.hit_rate)),
            server_cpu: median_of(r.runs.iter().map(|f| f.server_cpu)),
            cpu_us_per_req: median_of(r.runs.iter().map(cpu_us_per_req)),
            client_cpu: median_of(r.runs.iter().map(|f| Some(f.client_cpu))).unwrap_or(0.0),
            errors: r.runs.iter().map(|f| f.errors).sum(),
        })
        .collect()
}

/// Server CPU µs per response in one run (`None` without a CPU figure or a response).
pub fn cpu_us_per_req(f: &RunFigures) -> Option<f64> {
    f.server_cpu
        .filter(|_| f.rps > 0.0)
        .map(|cores| cores / f.rps * 1e6)
}

/// `1 234 567`: thousands separated by spaces, as in `bench/RESULTS.md`.
pub fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn opt(x: Option<f64>, f: impl Fn(f64) -> String) -> String {
    x.map_or_else(|| "-".to_string(), f)
}

/// Writes the table: one line per row, Atlas's rows next to the floor's at each size.
pub fn write_text(out: &mut impl Write, rows: &[Row], sums: &[Summary]) -> io::Result<()> {
    writeln!(
        out,
        "{:<13} {:>5} {:<8} {:>6} {:>11} {:>10} {:>5} {:>6} {:>8} {:>8} {:>6} {:>6} {:>7} {:>7} {:>7} {:>7}",
        "workload",
        "cores",
        "cpus",
        "conns",
        "req/s",
        "req/s/core",
        "eff",
        "/floor",
        "p50 ms",
        "p99 ms",
        "hop%",
        "hit%",
        "srv cpu",
        "us/req",
        "gen cpu",
        "errors"
    )?;
    for (r, s) in rows.iter().zip(sums) {
        writeln!(
            out,
            "{:<13} {:>5} {:<8} {:>6} {:>11} {:>10} {:>5} {:>6} {:>8.3} {:>8.3} {:>6} {:>6} {:>7} {:>7} {:>7.2} {:>7}",
            r.workload.name(),
            r.cores,
            format_list(&r.cpus),
            r.connections,
            thousands(s.rps),
            thousands(s.rps_per_core),
            opt(s.efficiency, |e| format!("{e:.2}")),
            opt(s.vs_floor, |v| format!("{v:.3}")),
            s.p50_ms,
            s.p99_ms,
            opt(s.hop_share, |h| format!("{:.1}", h * 100.0)),
            opt(s.hit_rate, |h| format!("{:.1}", h * 100.0)),
            opt(s.server_cpu, |c| format!("{c:.2}")),
            opt(s.cpu_us_per_req, |c| format!("{c:.1}")),
            s.client_cpu,
            s.errors,
        )?;
    }
    writeln!(
        out,
        "req/s, latency, hop%, hit%, cpu (cores kept busy) and us/req (server CPU µs per \
         response) are medians over runs; errors (no 2xx answer) are summed; eff = (req/s per core) / (req/s per core at the smallest size); \
         /floor = req/s / the floor's at the same size"
    )
}

fn run_json(f: &RunFigures) -> Value {
    json!({
        "rps": f.rps,
        "p50_ms": f.p50_ms,
        "p99_ms": f.p99_ms,
        "responses": f.responses,
        "errors": f.errors,
        "hop_share": f.hop_share,
        "hit_rate": f.hit_rate,
        "server_cpu_cores": f.server_cpu,
        "server_cpu_us_per_req": cpu_us_per_req(f),
        "client_cpu_cores": f.client_cpu,
        "elapsed_s": f.elapsed_s,
    })
}

/// The rows as JSON objects (summary figures plus every run).
pub fn rows_json(rows: &[Row], sums: &[Summary]) -> Value {
    Value::Array(
        rows.iter()
            .zip(sums)
            .map(|(r, s)| {
                json!({
                    "workload": r.workload.name(),
                    "describe": r.workload.describe(),
                    "cores": r.cores,
                    "cpus": format_list(&r.cpus),
                    "connections": r.connections,
                    "rps": s.rps,
                    "rps_per_core": s.rps_per_core,
                    "efficiency": s.efficiency,
                    "vs_floor": s.vs_floor,
                    "p50_ms": s.p50_ms,
                    "p99_ms": s.p99_ms,
                    "hop_share": s.hop_share,
                    "hit_rate": s.hit_rate,
                    "server_cpu_cores": s.server_cpu,
                    "server_cpu_us_per_req": s.cpu_us_per_req,
                    "client_cpu_cores": s.client_cpu,
                    "errors": s.errors,
                    "runs": r.runs.iter().map(run_json).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn run(rps: f64) -> RunFigures {
        RunFigures {
            rps,
            p50_ms: 1.0,
            p99_ms: 2.0,
            responses: rps as u64,
            errors: 0,
            hop_share: None,
            hit_rate: None,
            server_cpu: Some(1.0),
            client_cpu: 0.5,
            elapsed_s: 1.0,
        }
    }

    pub fn row(workload: Workload, cores: usize, rps: &[f64]) -> Row {
        Row {
            workload,
            cores,
            cpus: (0..cores).collect(),
            connections: 64 * cores as u64,
            runs: rps.iter().map(|&x| run(x)).collect(),
        }
    }

    #[test]
    fn the_median_is_the_middle_or_the_mean_of_the_middle_two() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
        // One outlier run does not move it.
        assert_eq!(median(&[100.0, 101.0, 1.0]), Some(100.0));
    }

    #[test]
    fn efficiency_is_throughput_per_core_against_the_smallest_size() {
        assert_eq!(efficiency(400.0, 4, 100.0, 1), Some(1.0));
        assert_eq!(efficiency(300.0, 4, 100.0, 1), Some(0.75));
        // Against a base of two cores: 50 per core there, 40 per core here.
        assert_eq!(efficiency(320.0, 8, 100.0, 2), Some(0.8));
        assert_eq!(efficiency(300.0, 4, 0.0, 1), None);
    }

    #[test]
    fn summaries_take_medians_sum_errors_and_compare_with_the_floor() {
        let mut rows = vec![
            row(Workload::AtlasHit, 1, &[90.0, 100.0, 110.0]),
            row(Workload::AtlasHealth, 1, &[200.0]),
            row(Workload::Floor, 1, &[250.0]),
            row(Workload::AtlasHit, 2, &[150.0, 160.0, 170.0]),
            row(Workload::AtlasHealth, 2, &[400.0]),
            row(Workload::Floor, 2, &[500.0]),
        ];
        rows[3].runs[0].errors = 2;
        rows[3].runs[2].errors = 1;
        rows[3].runs[1].hop_share = Some(0.5);
        let s = summarise(&rows);
        assert_eq!(s[0].rps, 100.0);
        assert_eq!(s[0].efficiency, Some(1.0));
        assert_eq!(s[0].vs_floor, Some(0.4));
        assert_eq!(s[3].rps, 160.0);
        assert_eq!(s[3].rps_per_core, 80.0);
        assert_eq!(s[3].efficiency, Some(0.8));
        assert_eq!(s[3].errors, 3);
        assert_eq!(
            s[3].hop_share,
            Some(0.5),
            "runs without a hop share are skipped"
        );
        assert_eq!(s[4].efficiency, Some(1.0));
        assert_eq!(s[4].vs_floor, Some(0.8));
        assert_eq!(s[5].vs_floor, None, "the floor is not compared with itself");
        // Without a floor row there is nothing to compare with.
        assert_eq!(summarise(&rows[..2])[1].vs_floor, None);
    }

    #[test]
    fn the_table_and_json_carry_every_row() {
        let rows = vec![
            row(Workload::AtlasHit, 1, &[12_345.0]),
            row(Workload::Floor, 1, &[20_000.0]),
        ];
        let s = summarise(&rows);
        let mut text = Vec::new();
        write_text(&mut text, &rows, &s).unwrap();
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("workload"));
        assert!(lines[1].starts_with("atlas_hit") && lines[1].contains("12 345"));
        assert!(lines[1].contains("0.617"), "{text}");
        assert!(lines[2].starts_with("floor_health") && lines[2].contains("20 000"));
        let v = rows_json(&rows, &s);
        assert_eq!(v[0]["workload"], "atlas_hit");
        assert_eq!(v[0]["cpus"], "0");
        assert_eq!(v[1]["runs"][0]["rps"], 20_000.0);
        assert_eq!(v[1]["vs_floor"], Value::Null);
    }

    #[test]
    fn cpu_per_request_is_busy_cores_over_throughput() {
        // One core busy at 50 000 req/s: 20 µs a request; the median over runs.
        let mut rows = vec![row(Workload::AtlasHit, 2, &[50_000.0, 40_000.0, 100_000.0])];
        assert_eq!(cpu_us_per_req(&rows[0].runs[0]), Some(20.0));
        assert_eq!(summarise(&rows)[0].cpu_us_per_req, Some(20.0));
        rows[0].runs[0].server_cpu = None;
        rows[0].runs[1].rps = 0.0;
        assert_eq!(cpu_us_per_req(&rows[0].runs[0]), None);
        assert_eq!(cpu_us_per_req(&rows[0].runs[1]), None);
        assert_eq!(summarise(&rows)[0].cpu_us_per_req, Some(10.0));
        let v = rows_json(&rows, &summarise(&rows));
        assert_eq!(v[0]["server_cpu_us_per_req"], 10.0);
        assert_eq!(v[0]["runs"][2]["server_cpu_us_per_req"], 10.0);
    }

    #[test]
    fn thousands_are_grouped_by_spaces() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1 000");
        assert_eq!(thousands(1_234_567.8), "1 234 568");
    }
}
