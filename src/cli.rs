//! The command line: `atlas [serve]` and `atlas check-config`, their flags, logging set-up and
//! exit statuses (0 ok, 1 runtime failure, 2 invalid configuration or usage).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Flags};
use crate::runtime::{self, StartError};

/// Atlas: a thread-per-core inference gateway for financial AI operations.
#[derive(Debug, Parser)]
#[command(name = "atlas", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default when no subcommand is given).
    Serve(Common),
    /// Validate the configuration, print the effective settings (secrets redacted) and exit:
    /// 0 when valid, 2 when not.
    CheckConfig(Common),
}

/// Flags shared by the subcommands; each beats its environment variable and the file.
#[derive(Debug, Args, Clone, Default)]
struct Common {
    /// Address to listen on, IP:PORT (env ATLAS_LISTEN; port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Number of shards, one pinned executor per core (env ATLAS_CORES; default all).
    #[arg(long, value_name = "N")]
    cores: Option<String>,
    /// Optional TOML file; keys are the variable names in lower case without `ATLAS_`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl Common {
    fn merged(self, outer: Common) -> Flags {
        Flags {
            listen: self.listen.or(outer.listen),
            cores: self.cores.or(outer.cores),
            config_file: self.config.or(outer.config),
        }
    }
}

/// Runs the command line and returns the process exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let (check_only, flags) = match cli.command {
        None => (false, Common::default().merged(cli.common)),
        Some(Command::Serve(c)) => (false, c.merged(cli.common)),
        Some(Command::CheckConfig(c)) => (true, c.merged(cli.common)),
    };
    let (raw, mut errors) = config::gather(&flags, |name| std::env::var(name).ok());
    let built = config::build(&raw);
    if let Err(e) = &built {
        errors.extend(e.iter().cloned());
    }
    init_logging(built.as_ref().map(|c| c.log.as_str()).unwrap_or("info"));
    let config = match built {
        Ok(c) if errors.is_empty() => c,
        _ => {
            eprintln!("atlas: invalid configuration:");
            for e in &errors {
                eprintln!("  {e}");
            }
            return ExitCode::from(2);
        }
    };
    if check_only {
        print!("{}", config::render(&raw));
        return ExitCode::SUCCESS;
    }
    match runtime::serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartError::Config(msg)) => {
            eprintln!("atlas: invalid configuration:\n  {msg}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("atlas: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(filter: &str) {
    let _ = env_logger::Builder::new()
        .parse_filters(filter)
        .format_timestamp_millis()
        .target(env_logger::Target::Stderr)
        .try_init();
}
