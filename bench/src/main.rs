//! `atlas-bench`: Atlas's benchmark tool. `atlas-bench load` drives an Atlas server with a
//! configurable AI-operation workload (closed or open loop) and reports latency percentiles,
//! throughput, errors, cache hit rate and batch sizes against the brief's goals.
//!
//! This file only parses the command line and dispatches; each subcommand lives in its own
//! module (`load/`).

mod load;

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
}

fn main() {
    let cli = Cli::parse();
    let code = match &cli.command {
        Command::Load(args) => load::main(args),
    };
    std::process::exit(code);
}
