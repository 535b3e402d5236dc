//! Host facts and prerequisites checked before any executor starts: the CPUs this process may
//! use, io_uring availability, locked-memory and file-descriptor limits, the kernel release.
//!
//! Every failure here is turned into a plain sentence that names the fix, because a glommio
//! executor that cannot set up its rings otherwise dies with an opaque error.

use std::fmt;

/// Facts about the host, logged once at start.
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// CPUs this process is allowed to run on (sched_getaffinity), sorted.
    pub cpus: Vec<usize>,
    /// RLIMIT_MEMLOCK soft limit in bytes (`u64::MAX` when unlimited).
    pub memlock: u64,
    /// Whether the process may lock memory beyond the limit (CAP_IPC_LOCK, e.g. root).
    pub ipc_lock: bool,
    /// RLIMIT_NOFILE soft limit after raising it to the hard limit.
    pub nofile: u64,
    /// net.core.somaxconn.
    pub somaxconn: Option<u32>,
}

impl fmt::Display for HostFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kernel={} cpus={:?} memlock={} ipc_lock={} nofile={} somaxconn={}",
            self.kernel,
            self.cpus,
            human_bytes(self.memlock),
            self.ipc_lock,
            self.nofile,
            self.somaxconn.map_or("?".to_string(), |s| s.to_string()),
        )
    }
}

/// Formats a byte count as `N KiB`/`N MiB`, or `unlimited`.
pub fn human_bytes(n: u64) -> String {
    if n == u64::MAX || n == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{}MiB", n >> 20)
    } else if n >= 1 << 10 {
        format!("{}KiB", n >> 10)
    } else {
        format!("{n}B")
    }
}

/// Reads the host facts and raises the open-file soft limit to the hard limit (Atlas holds one
/// descriptor per client connection; the brief's 10 000 users need more than the usual 1024).
pub fn probe() -> HostFacts {
    let nofile = raise_nofile();
    HostFacts {
        kernel: kernel_release(),
        cpus: allowed_cpus(),
        memlock: rlimit(libc::RLIMIT_MEMLOCK),
        ipc_lock: has_ipc_lock(),
        nofile,
        somaxconn: std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok()),
    }
}

/// The CPUs this process may run on, honouring `taskset`, cgroup cpusets and systemd's
/// `CPUAffinity=` (glommio's `CpuSet::online()` does not).
pub fn allowed_cpus() -> Vec<usize> {
    let mut cpus: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    cpus.sort_unstable();
    cpus
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

fn rlimit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other memory is touched.
    if unsafe { libc::getrlimit(resource, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        0
    }
}

fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

fn has_ipc_lock() -> bool {
    // CapEff in /proc/self/status; CAP_IPC_LOCK is bit 14.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << 14) != 0)
}

/// Locked memory one shard needs: glommio registers its io buffer with three rings (main,
/// poll, latency) and each registration is charged to RLIMIT_MEMLOCK, plus some ring
/// overhead. Measured without CAP_IPC_LOCK (`setpriv --inh-caps=-ipc_lock`, one shard, 1 MiB
/// io memory): a 3072 KiB limit fails the poll ring's registration, 3200 KiB is enough.
pub fn memlock_per_shard(io_memory: usize) -> u64 {
    3 * (io_memory.max(65_536) as u64) + 128 * 1024
}

/// glommio refuses to start an executor below this RLIMIT_MEMLOCK.
pub const GLOMMIO_MIN_MEMLOCK: u64 = 512 * 1024;

/// A prerequisite that is not met, with the fix.
#[derive(Debug, thiserror::Error)]
pub enum Prerequisite {
    /// io_uring_setup failed.
    #[error(
        "io_uring is not available ({0}). Atlas needs Linux 5.8 or newer with io_uring enabled: \
         check `sysctl kernel.io_uring_disabled` (must be 0) and that no seccomp profile \
         (container runtime, systemd SystemCallFilter) blocks io_uring_setup"
    )]
    IoUring(std::io::Error),
    /// The memlock limit is below glommio's floor.
    #[error(
        "locked-memory limit is {have}, below the {need} an executor needs. Raise it: \
         `ulimit -l {need_kib}` in the shell, or `LimitMEMLOCK=` in the systemd unit \
         (see tuning/README.md)"
    )]
    MemLock {
        have: String,
        need: String,
        need_kib: u64,
    },
}

/// Checks that io_uring works and locked memory suffices, before executors start.
pub fn check(facts: &HostFacts) -> Result<(), Prerequisite> {
    if let Err(e) = io_uring::IoUring::new(4) {
        return Err(Prerequisite::IoUring(e));
    }
    if !facts.ipc_lock && facts.memlock < GLOMMIO_MIN_MEMLOCK {
        return Err(Prerequisite::MemLock {
            have: human_bytes(facts.memlock),
            need: human_bytes(GLOMMIO_MIN_MEMLOCK),
            need_kib: GLOMMIO_MIN_MEMLOCK / 1024,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_finds_cpus_and_io_uring() {
        let facts = probe();
        assert!(!facts.cpus.is_empty());
        assert!(check(&facts).is_ok(), "{facts}");
    }

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(3 << 20), "3MiB");
        assert_eq!(human_bytes(8192 * 1024), "8MiB");
        assert_eq!(human_bytes(1536), "1KiB");
        assert_eq!(human_bytes(u64::MAX), "unlimited");
    }
}
