//! `atlas-bench`: Atlas's benchmark tool. `atlas-bench load` drives an Atlas server with a
//! configurable AI-operation workload (closed or open loop) and reports latency percentiles,
//! throughput, errors, cache hit rate, hop share and batch sizes against the brief's goals.
//! `atlas-bench scale` starts Atlas (and the floor server) pinned to 1, 2, 4, … cores and
//! drives each size with the `load` generator to measure how throughput scales.
//!
//! This file only parses the command line and dispatches; each subcommand lives in its own
//! module (`load/`, `scale/`).

mod load;
mod scale;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "atlas-bench",
    version,
    about = "Atlas load generator and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Send an AI-operation workload to a server and report latency, throughput, errors,
    /// cache hit rate and batch sizes; exit 1 when a goal fails.
    Load(load::LoadArgs),
    /// Start Atlas (and with --floor the floor server) pinned to 1, 2, 4, … cores, drive each
    /// size from pinned client cores, and report requests/s, efficiency, latency and hop
    /// share as a table, JSON and SVG.
    Scale(scale::ScaleArgs),
}

fn main() {
    let cli = Cli::parse();
    let code = match &cli.command {
        Command::Load(args) => load::main(args),
        Command::Scale(args) => scale::main(args),
    };
    std::process::exit(code);
}
