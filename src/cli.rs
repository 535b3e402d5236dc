//! The command line: `atlas [serve]`, `atlas check-config`, `atlas model-endpoint`,
//! `atlas status` and `atlas tune --check`, their flags, logging set-up and exit statuses
//! (0 ok, 1 runtime failure or a failed audit, 2 invalid configuration or usage).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use std::time::Duration;

use crate::app::Role;
use crate::config::{self, Flags};
use crate::modelserver::ModelOptions;
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
    CheckConfig(CheckConfigArgs),
    /// Serve the built-in models over Atlas's batch protocol (`POST /v1/batch`,
    /// `GET /v1/info`, `GET /health`), so the model tier can run on other machines.
    ModelEndpoint(ModelEndpointArgs),
    /// Print a summary of a running Atlas's /health/detailed; exit 0 when healthy, 1 when
    /// not (status not ok, a critical alert, or a health score under 50), 2 when unreachable.
    Status {
        /// Base URL of the instance.
        #[arg(long, default_value = "http://127.0.0.1:8083")]
        url: String,
    },
    /// Audit this host for Atlas (kernel, io_uring, CPUs, limits, sysctls, transparent huge
    /// pages, governor, interrupts): one OK/WARN/FAIL line per item with the current and
    /// recommended values and the fix; exit 1 when any item FAILs. Read-only.
    Tune(TuneArgs),
    /// Print the GraphQL schema of `/graphql` (SDL) and exit.
    GraphqlSchema,
}

/// Flags of `atlas check-config`.
#[derive(Debug, Args, Clone)]
struct CheckConfigArgs {
    /// `table`: `NAME = value  # source` per setting; `env`: an environment file (every
    /// setting with its meaning and default, set ones uncommented), as systemd/atlas.env.
    #[arg(long, value_name = "FORMAT", default_value = "table")]
    format: ConfigFormat,
    #[command(flatten)]
    common: Common,
}

/// How `check-config` prints the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ConfigFormat {
    /// One `NAME = value  # source` line per setting.
    Table,
    /// A systemd `EnvironmentFile=`.
    Env,
}

/// Flags of `atlas tune`.
#[derive(Debug, Args, Clone)]
struct TuneArgs {
    /// Run the audit (required: `atlas tune` changes nothing; tuning/apply.sh does).
    #[arg(long)]
    check: bool,
    /// Read /proc, /sys and /etc under this directory instead of the live host (an image or a
    /// test tree); the live io_uring probe runs only with `/`.
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Audit the limits and CPUs of this process (a running `atlas serve`) instead of this
    /// one's (what an Atlas started from this shell would get).
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
    /// The configuration whose needs are audited (shard count, io memory, connections).
    #[command(flatten)]
    common: Common,
}

/// Flags of `atlas model-endpoint`.
#[derive(Debug, Args, Clone)]
struct ModelEndpointArgs {
    /// Address to listen on, IP:PORT (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
    listen: String,
    /// Number of shards (default: all allowed CPUs).
    #[arg(long, value_name = "N")]
    cores: Option<String>,
    /// Optional TOML file with the common settings (timeouts, limits, log level).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Name reported as `endpoint_id`.
    #[arg(long, default_value = "model-endpoint")]
    id: String,
    /// Inference-latency emulation for load tests: added latency per call, ms.
    #[arg(long, value_name = "MS", default_value_t = 0.0)]
    latency_ms: f64,
    /// Inference-latency emulation: added latency per input, ms.
    #[arg(long, value_name = "MS", default_value_t = 0.0)]
    per_item_ms: f64,
    /// Inference-latency emulation: up to this much random extra latency per call, ms.
    #[arg(long, value_name = "MS", default_value_t = 0.0)]
    jitter_ms: f64,
    /// Inference-latency emulation: calls the emulated accelerator runs at once per shard;
    /// further calls wait their turn, as on a GPU.
    #[arg(long, value_name = "N", default_value_t = 1)]
    concurrency: usize,
    /// Fault injection for tests: fraction of calls answered 500.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0)]
    fail_rate: f64,
    /// Fault injection for tests: fraction of calls never answered.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0)]
    hang_rate: f64,
    /// Most inputs accepted in one call (larger calls are refused with 413).
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_batch: usize,
}

impl ModelEndpointArgs {
    /// The emulation settings, or every problem with them.
    fn options(&self) -> Result<ModelOptions, Vec<String>> {
        let mut errors = Vec::new();
        let mut ms = |name: &str, v: f64| {
            if v.is_finite() && (0.0..=3_600_000.0).contains(&v) {
                Duration::from_secs_f64(v / 1000.0)
            } else {
                errors.push(format!("--{name}: expected milliseconds from 0 to 3600000"));
                Duration::ZERO
            }
        };
        let latency = ms("latency-ms", self.latency_ms);
        let per_item = ms("per-item-ms", self.per_item_ms);
        let jitter = ms("jitter-ms", self.jitter_ms);
        for (name, v) in [("fail-rate", self.fail_rate), ("hang-rate", self.hang_rate)] {
            if !(0.0..=1.0).contains(&v) {
                errors.push(format!("--{name}: expected a fraction from 0 to 1"));
            }
        }
        if self.concurrency == 0 || self.concurrency > 4096 {
            errors.push("--concurrency: expected 1 to 4096".to_string());
        }
        if self.max_batch == 0 || self.max_batch > crate::modelserver::MAX_BATCH {
            errors.push(format!(
                "--max-batch: expected 1 to {}",
                crate::modelserver::MAX_BATCH
            ));
        }
        if self.id.is_empty() || self.id.len() > 64 {
            errors.push("--id: expected 1 to 64 characters".to_string());
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ModelOptions {
            id: self.id.clone(),
            latency,
            per_item,
            jitter,
            concurrency: self.concurrency,
            fail_rate: self.fail_rate,
            hang_rate: self.hang_rate,
            max_batch: self.max_batch,
        })
    }
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
    if let Some(Command::Status { url }) = &cli.command {
        return crate::status::run(url);
    }
    if let Some(Command::Tune(t)) = &cli.command {
        return tune(t.clone(), cli.common.clone());
    }
    if let Some(Command::GraphqlSchema) = &cli.command {
        print!("{}", crate::app::graphql::sdl());
        return ExitCode::SUCCESS;
    }
    let mut role = Role::Gateway;
    let mut role_errors = Vec::new();
    let mut check_only = None;
    let flags = match cli.command {
        None => Common::default().merged(cli.common),
        Some(Command::Serve(c)) => c.merged(cli.common),
        Some(Command::CheckConfig(c)) => {
            check_only = Some(c.format);
            c.common.merged(cli.common)
        }
        Some(Command::ModelEndpoint(m)) => {
            match m.options() {
                Ok(opts) => role = Role::ModelEndpoint(opts),
                Err(e) => role_errors = e,
            }
            let common = Common {
                listen: Some(m.listen),
                cores: m.cores,
                config: m.config,
            };
            common.merged(cli.common)
        }
        Some(Command::Status { .. }) | Some(Command::Tune(_)) | Some(Command::GraphqlSchema) => {
            return ExitCode::from(2)
        }
    };
    let (raw, mut errors) = config::gather(&flags, |name| std::env::var(name).ok());
    let built = config::build(&raw);
    if let Err(e) = &built {
        errors.extend(e.iter().cloned());
    }
    init_logging(built.as_ref().map(|c| c.log.as_str()).unwrap_or("info"));
    let config = match built {
        Ok(c) if errors.is_empty() && role_errors.is_empty() => c,
        _ => {
            eprintln!("atlas: invalid configuration:");
            for e in &errors {
                eprintln!("  {e}");
            }
            for e in &role_errors {
                eprintln!("  {e}");
            }
            return ExitCode::from(2);
        }
    };
    match check_only {
        Some(ConfigFormat::Table) => {
            print!("{}", config::render(&raw));
            for e in &config.endpoints {
                println!("# endpoint {}", e.describe());
            }
            return ExitCode::SUCCESS;
        }
        Some(ConfigFormat::Env) => {
            print!("{}", config::render_env(&raw));
            return ExitCode::SUCCESS;
        }
        None => {}
    }
    let serve = runtime::serve(config, flags, &raw, |config, bound| {
        crate::app::launch::Launcher::new(config, role, bound)
    });
    match serve {
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

/// `atlas tune --check`: audits the host against the configuration's needs.
fn tune(args: TuneArgs, outer: Common) -> ExitCode {
    if !args.check {
        eprintln!(
            "atlas tune: nothing to do without --check (the audit is read-only; \
             tuning/apply.sh changes the host)"
        );
        return ExitCode::from(2);
    }
    let flags = args.common.merged(outer);
    let (raw, mut errors) = config::gather(&flags, |name| std::env::var(name).ok());
    let config = match config::build(&raw) {
        Ok(c) if errors.is_empty() => c,
        built => {
            if let Err(e) = built {
                errors.extend(e);
            }
            eprintln!("atlas: invalid configuration:");
            for e in &errors {
                eprintln!("  {e}");
            }
            return ExitCode::from(2);
        }
    };
    let host = crate::tune::Host::new(args.root, args.pid);
    let findings = crate::tune::audit(&host, &crate::tune::Needs::from_config(&config));
    print!("{}", crate::tune::render(&findings));
    match crate::tune::worst(&findings) {
        crate::tune::Level::Fail => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}

fn init_logging(filter: &str) {
    crate::logging::init(filter);
}
