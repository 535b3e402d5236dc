//! `atlas tune --check`: an audit of the host Atlas runs on, in the spirit of Redpanda's
//! `rpk tune` and Seastar's `perftune.py`, but read-only. One line per item, OK / WARN / FAIL,
//! with the current value, the recommended one and the command that fixes it; exit status 1
//! when any item FAILs (Atlas would not start or would run without its io_uring buffers).
//!
//! Everything is read from files under a root directory (`/` on a live host), so the audit
//! is tested against a fake `/proc` and `/sys` tree. The one live probe, creating an io_uring,
//! runs only when the root is `/`.
//!
//! Layout: this file (findings, rendering, what Atlas needs), [`sysctl`] (the kernel
//! parameters, shared with `tuning/99-atlas.conf`), [`host`] (kernel, io_uring, limits, THP,
//! governor, interrupts, CPUs). Must not depend on the runtime.

pub mod host;
pub mod sysctl;

use std::fmt;
use std::path::{Path, PathBuf};

/// How an item fares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// As recommended.
    Ok,
    /// Works, but slower or less robust than it could be.
    Warn,
    /// Atlas will not start, or will run degraded.
    Fail,
}

impl Level {
    /// `OK`, `WARN` or `FAIL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// One audited item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How it fares.
    pub level: Level,
    /// What was checked (`net.core.somaxconn`, `RLIMIT_MEMLOCK`, ...).
    pub item: String,
    /// The value found.
    pub current: String,
    /// The value recommended.
    pub recommended: String,
    /// The command that fixes it (only for WARN and FAIL).
    pub fix: Option<String>,
    /// Why it matters, or what was assumed.
    pub note: Option<String>,
}

impl Finding {
    /// A finding without a fix or note.
    pub fn new(
        level: Level,
        item: impl Into<String>,
        current: impl Into<String>,
        recommended: impl Into<String>,
    ) -> Self {
        Finding {
            level,
            item: item.into(),
            current: current.into(),
            recommended: recommended.into(),
            fix: None,
            note: None,
        }
    }

    /// Adds the fix, kept only when the item is not OK.
    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        if self.level != Level::Ok {
            self.fix = Some(fix.into());
        }
        self
    }

    /// Adds a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<4}  {:<32} current: {}; recommended: {}",
            self.level.as_str(),
            self.item,
            self.current,
            self.recommended
        )?;
        if let Some(fix) = &self.fix {
            write!(f, "; fix: {fix}")?;
        }
        if let Some(note) = &self.note {
            write!(f, " ({note})")?;
        }
        Ok(())
    }
}

/// The host as files under a root directory.
#[derive(Debug, Clone)]
pub struct Host {
    /// `/` on a live host; a fake tree in tests.
    pub root: PathBuf,
    /// The process whose limits and CPUs are audited (`self`: the audit's own, i.e. what an
    /// `atlas serve` started from the same shell would get).
    pub pid: String,
}

impl Host {
    /// The live host, auditing process `pid` (or `self`).
    pub fn new(root: impl Into<PathBuf>, pid: Option<u32>) -> Self {
        Host {
            root: root.into(),
            pid: pid.map_or_else(|| "self".to_string(), |p| p.to_string()),
        }
    }

    /// Whether this is the running host (live probes allowed).
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// `path` (absolute, as on the host) under the root.
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// The trimmed contents of `path`, if it can be read.
    pub fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.path(path))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// The names in directory `path`, sorted (empty when it cannot be read).
    pub fn list(&self, path: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(path))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// What Atlas needs from the host, from its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    /// `ATLAS_CORES` (`None`: every allowed CPU).
    pub cores: Option<usize>,
    /// `ATLAS_IO_MEMORY_BYTES`.
    pub io_memory_bytes: usize,
    /// `ATLAS_MAX_CONNECTIONS`.
    pub max_connections: usize,
}

impl Needs {
    /// From a validated configuration.
    pub fn from_config(c: &crate::config::Config) -> Self {
        Needs {
            cores: c.cores,
            io_memory_bytes: c.io_memory_bytes,
            max_connections: c.max_connections,
        }
    }
}

/// Audits `host` for `needs`: every item, in a fixed order.
pub fn audit(host: &Host, needs: &Needs) -> Vec<Finding> {
    let mut out = Vec::new();
    host::kernel(host, &mut out);
    host::io_uring(host, &mut out);
    let cpus = host::cpus(host, needs, &mut out);
    host::limits(host, needs, cpus.len(), &mut out);
    host::unit(host, needs, cpus.len(), &mut out);
    sysctl::check_all(host, &mut out);
    host::transparent_hugepages(host, &mut out);
    host::governor(host, &cpus, &mut out);
    host::interrupts(host, &cpus, &mut out);
    out
}

/// The report: one line per finding and a summary line.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        out.push_str(&f.to_string());
        out.push('\n');
    }
    let count = |l: Level| findings.iter().filter(|f| f.level == l).count();
    out.push_str(&format!(
        "summary: {} OK, {} WARN, {} FAIL\n",
        count(Level::Ok),
        count(Level::Warn),
        count(Level::Fail)
    ));
    out
}

/// The worst level found (`Ok` for none).
pub fn worst(findings: &[Finding]) -> Level {
    findings.iter().map(|f| f.level).max().unwrap_or(Level::Ok)
}

/// Parses a CPU list (`0-3,8,10-11`) as the kernel prints it.
pub fn parse_cpu_list(s: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if b < a || b - a > 65_536 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.trim().parse().ok()?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

/// Formats CPUs as a compact list (`0-3,8`).
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        parts.push(if end == start {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    if parts.is_empty() {
        "(none)".to_string()
    } else {
        parts.join(",")
    }
}

#[cfg(test)]
mod tests;
