//! Host items of the audit: kernel, io_uring, the CPUs Atlas would use, resource limits of the
//! process and of the installed unit, transparent huge pages, the frequency governor, and how
//! network interrupts are spread.

use std::path::Path;

use super::{format_cpu_list, parse_cpu_list, Finding, Host, Level, Needs};
use crate::runtime::sys::{human_bytes, memlock_per_shard, GLOMMIO_MIN_MEMLOCK};

/// The kernel Atlas needs (glommio's stated minimum).
pub const MIN_KERNEL: (u32, u32) = (5, 8);
/// Open files recommended for the unit (`LimitNOFILE=`).
pub const RECOMMENDED_NOFILE: u64 = 65_536;

/// `major.minor` of a kernel release string (`6.18.44-fc` → (6, 18)).
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Kernel release.
pub fn kernel(host: &Host, out: &mut Vec<Finding>) {
    let release = host
        .read("/proc/sys/kernel/osrelease")
        .unwrap_or_else(|| "(unknown)".into());
    let (min_major, min_minor) = MIN_KERNEL;
    let recommended = format!(">= {min_major}.{min_minor}");
    let f = match kernel_version(&release) {
        Some(v) if v >= MIN_KERNEL => Finding::new(Level::Ok, "kernel", release, recommended),
        Some(_) => Finding::new(Level::Fail, "kernel", release, recommended)
            .fix("upgrade the kernel")
            .note("glommio needs io_uring features of 5.8"),
        None => Finding::new(Level::Warn, "kernel", release, recommended)
            .fix("check `uname -r`")
            .note("version not recognised"),
    };
    out.push(f);
}

/// `kernel.io_uring_disabled`, and on a live host whether a ring can be created.
pub fn io_uring(host: &Host, out: &mut Vec<Finding>) {
    let item = "kernel.io_uring_disabled";
    let f = match host.read("/proc/sys/kernel/io_uring_disabled").as_deref() {
        None => Finding::new(Level::Ok, item, "(absent)", "0")
            .note("kernels before 6.6 cannot disable io_uring by sysctl"),
        Some("0") => Finding::new(Level::Ok, item, "0", "0"),
        Some("1") => Finding::new(Level::Warn, item, "1", "0")
            .fix("sysctl -w kernel.io_uring_disabled=0, or add the atlas user to the group in kernel.io_uring_group")
            .note("only members of kernel.io_uring_group may create rings"),
        Some(v) => Finding::new(Level::Fail, item, v, "0")
            .fix("sysctl -w kernel.io_uring_disabled=0")
            .note("io_uring is disabled: Atlas cannot start"),
    };
    out.push(f);
    if host.is_live() {
        let f = match ::io_uring::IoUring::new(4) {
            Ok(_) => Finding::new(Level::Ok, "io_uring_setup", "a ring was created", "works"),
            Err(e) => Finding::new(Level::Fail, "io_uring_setup", e.to_string(), "works")
                .fix("allow io_uring_setup/io_uring_enter/io_uring_register (seccomp, SystemCallFilter=, container profile)")
                .note("Atlas cannot start without io_uring"),
        };
        out.push(f);
    }
}

/// The CPUs the audited process may use and the shards Atlas would run on them; returns the
/// allowed CPUs.
pub fn cpus(host: &Host, needs: &Needs, out: &mut Vec<Finding>) -> Vec<usize> {
    let status = host
        .read(&format!("/proc/{}/status", host.pid))
        .unwrap_or_default();
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(parse_cpu_list)
        .unwrap_or_default();
    let recommended = "one shard per allowed CPU (restrict with CPUAffinity= or taskset)";
    if allowed.is_empty() {
        out.push(
            Finding::new(Level::Warn, "cpus", "(unknown)", recommended)
                .fix(format!("check /proc/{}/status", host.pid)),
        );
        return allowed;
    }
    let shards = needs.cores.unwrap_or(allowed.len());
    let current = format!(
        "shards={shards} on CPUs {} (affinity of process {})",
        format_cpu_list(&allowed),
        host.pid
    );
    let mut f = if shards > allowed.len() {
        Finding::new(Level::Fail, "cpus", current, recommended)
            .fix(format!("ATLAS_CORES={} or fewer", allowed.len()))
            .note("Atlas refuses more shards than allowed CPUs")
    } else {
        Finding::new(Level::Ok, "cpus", current, recommended)
    };
    let shared = smt_shared(host, &allowed);
    let isolated = host
        .read("/sys/devices/system/cpu/isolated")
        .and_then(|s| parse_cpu_list(&s))
        .unwrap_or_default();
    let mut notes = Vec::new();
    if shared > 0 {
        notes.push(format!(
            "{shared} allowed CPU(s) are SMT siblings of another allowed CPU"
        ));
    }
    if !isolated.is_empty() {
        notes.push(format!("isolated CPUs: {}", format_cpu_list(&isolated)));
    }
    if !notes.is_empty() {
        f = f.note(notes.join("; "));
    }
    out.push(f);
    allowed
}

/// How many allowed CPUs have an SMT sibling that is also allowed (counting one per pair).
fn smt_shared(host: &Host, allowed: &[usize]) -> usize {
    allowed
        .iter()
        .filter(|&&cpu| {
            host.read(&format!(
                "/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"
            ))
            .and_then(|s| parse_cpu_list(&s))
            .is_some_and(|sib| sib.iter().any(|&s| s < cpu && allowed.contains(&s)))
        })
        .count()
}

/// A limit from `/proc/PID/limits`: (soft, hard), `u64::MAX` for unlimited.
pub fn parse_limit(limits: &str, name: &str) -> Option<(u64, u64)> {
    let line = limits.lines().find(|l| l.starts_with(name))?;
    let mut fields = line[name.len()..].split_whitespace();
    let value = |v: &str| {
        if v == "unlimited" {
            Some(u64::MAX)
        } else {
            v.parse().ok()
        }
    };
    Some((value(fields.next()?)?, value(fields.next()?)?))
}

/// Whether the audited process holds CAP_IPC_LOCK (exempt from RLIMIT_MEMLOCK).
fn has_ipc_lock(host: &Host) -> bool {
    host.read(&format!("/proc/{}/status", host.pid))
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << 14) != 0)
}

fn show(n: u64) -> String {
    if n == u64::MAX {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

/// Open files and locked memory of the audited process.
pub fn limits(host: &Host, needs: &Needs, shards: usize, out: &mut Vec<Finding>) {
    let shards = needs.cores.unwrap_or(shards).max(1);
    let Some(text) = host.read(&format!("/proc/{}/limits", host.pid)) else {
        out.push(
            Finding::new(
                Level::Warn,
                "limits",
                "(unreadable)",
                "RLIMIT_NOFILE and RLIMIT_MEMLOCK",
            )
            .fix(format!("check /proc/{}/limits", host.pid)),
        );
        return;
    };
    let want_files = (needs.max_connections as u64 + 1024).max(RECOMMENDED_NOFILE);
    if let Some((_, hard)) = parse_limit(&text, "Max open files") {
        // Atlas raises the soft limit to the hard one itself.
        let level = if hard >= needs.max_connections as u64 + 1024 {
            Level::Ok
        } else {
            Level::Warn
        };
        out.push(
            Finding::new(
                level,
                "RLIMIT_NOFILE (hard)",
                show(hard),
                format!(">= {want_files}"),
            )
            .fix(format!(
                "LimitNOFILE={want_files} in the unit, or `ulimit -n {want_files}`"
            ))
            .note(format!(
                "one descriptor per client connection; ATLAS_MAX_CONNECTIONS={}",
                needs.max_connections
            )),
        );
    }
    let need = memlock_per_shard(needs.io_memory_bytes) * shards as u64;
    if let Some((soft, _)) = parse_limit(&text, "Max locked memory") {
        let recommended = format!(">= {} ({shards} shards)", human_bytes(need));
        let f = if has_ipc_lock(host) {
            Finding::new(Level::Ok, "RLIMIT_MEMLOCK", human_bytes(soft), recommended)
                .note("exempt: the process holds CAP_IPC_LOCK")
        } else {
            let level = if soft < GLOMMIO_MIN_MEMLOCK {
                Level::Fail
            } else if soft < need {
                Level::Warn
            } else {
                Level::Ok
            };
            let f =
                Finding::new(level, "RLIMIT_MEMLOCK", human_bytes(soft), recommended).fix(format!(
                    "LimitMEMLOCK={} in the unit, or `ulimit -l {}`",
                    human_bytes(need).replace("iB", ""),
                    need.div_ceil(1024)
                ));
            match level {
                Level::Fail => f.note("below 512 KiB glommio refuses to start"),
                Level::Warn => f.note("io_uring buffers would run unregistered (slower)"),
                Level::Ok => f,
            }
        };
        out.push(f);
    }
}

/// A systemd size (`256M`, `65536`, `infinity`) in bytes or units.
pub fn parse_systemd_size(v: &str) -> Option<u64> {
    let v = v.trim();
    if v == "infinity" {
        return Some(u64::MAX);
    }
    let (num, mult) = match v.chars().last()? {
        'K' => (&v[..v.len() - 1], 1u64 << 10),
        'M' => (&v[..v.len() - 1], 1 << 20),
        'G' => (&v[..v.len() - 1], 1 << 30),
        'T' => (&v[..v.len() - 1], 1 << 40),
        _ => (v, 1),
    };
    // `soft:hard` takes the soft value.
    let num = num.split(':').next()?;
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// The last value of `key=` in a unit file.
fn unit_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .rev()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().to_string())
}

/// The limits the installed unit (`/etc/systemd/system/atlas.service`) sets.
pub fn unit(host: &Host, needs: &Needs, shards: usize, out: &mut Vec<Finding>) {
    let path = "/etc/systemd/system/atlas.service";
    let Some(text) = host.read(path) else {
        return;
    };
    let shards = needs.cores.unwrap_or(shards).max(1);
    let need = memlock_per_shard(needs.io_memory_bytes) * shards as u64;
    let memlock = unit_value(&text, "LimitMEMLOCK");
    let level = match memlock.as_deref().and_then(parse_systemd_size) {
        Some(v) if v >= need => Level::Ok,
        Some(v) if v >= GLOMMIO_MIN_MEMLOCK => Level::Warn,
        _ => Level::Fail,
    };
    out.push(
        Finding::new(
            level,
            "atlas.service LimitMEMLOCK",
            memlock.unwrap_or_else(|| "(unset: 8M default)".into()),
            format!(">= {} ({shards} shards)", human_bytes(need)),
        )
        .fix(format!("edit {path}, then systemctl daemon-reload")),
    );
    let want_files = needs.max_connections as u64 + 1024;
    let nofile = unit_value(&text, "LimitNOFILE");
    let level = match nofile.as_deref().and_then(parse_systemd_size) {
        Some(v) if v >= want_files => Level::Ok,
        _ => Level::Warn,
    };
    out.push(
        Finding::new(
            level,
            "atlas.service LimitNOFILE",
            nofile.unwrap_or_else(|| "(unset)".into()),
            format!(">= {}", want_files.max(RECOMMENDED_NOFILE)),
        )
        .fix(format!("edit {path}, then systemctl daemon-reload")),
    );
}

/// The bracketed choice of a sysfs selector (`always [madvise] never` → `madvise`).
pub fn selected(s: &str) -> Option<&str> {
    let start = s.find('[')?;
    let end = s[start..].find(']')? + start;
    Some(&s[start + 1..end])
}

/// Transparent huge pages: `madvise` (or `never`) and no synchronous defragmentation.
pub fn transparent_hugepages(host: &Host, out: &mut Vec<Finding>) {
    let base = "/sys/kernel/mm/transparent_hugepage";
    for (file, good, fix_to, why) in [
        (
            "enabled",
            &["madvise", "never"][..],
            "madvise",
            "with `always`, page faults may stop a shard to compact memory (latency spikes)",
        ),
        (
            "defrag",
            &["madvise", "defer", "defer+madvise", "never"][..],
            "defer+madvise",
            "`always` compacts synchronously on the faulting (shard) thread",
        ),
    ] {
        let item = format!("transparent_hugepage/{file}");
        let Some(raw) = host.read(&format!("{base}/{file}")) else {
            out.push(Finding::new(Level::Ok, item, "(absent)", fix_to).note("no THP support"));
            continue;
        };
        let current = selected(&raw).unwrap_or(&raw).to_string();
        let level = if good.contains(&current.as_str()) {
            Level::Ok
        } else {
            Level::Warn
        };
        let mut f = Finding::new(level, item, current, good.join(" or "))
            .fix(format!("echo {fix_to} > {base}/{file} (tuning/apply.sh)"));
        if level != Level::Ok {
            f = f.note(why);
        }
        out.push(f);
    }
}

/// The frequency governor of the allowed CPUs.
pub fn governor(host: &Host, cpus: &[usize], out: &mut Vec<Finding>) {
    let mut other: Vec<(usize, String)> = Vec::new();
    let mut seen = 0;
    for &cpu in cpus {
        if let Some(g) = host.read(&format!(
            "/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"
        )) {
            seen += 1;
            if g != "performance" {
                other.push((cpu, g));
            }
        }
    }
    let item = "cpufreq governor";
    if seen == 0 {
        out.push(
            Finding::new(Level::Ok, item, "(no cpufreq)", "performance")
                .note("fixed frequency or a virtual machine: nothing to set"),
        );
    } else if other.is_empty() {
        out.push(Finding::new(
            Level::Ok,
            item,
            format!("performance on {seen} CPUs"),
            "performance",
        ));
    } else {
        let cpus: Vec<usize> = other.iter().map(|(c, _)| *c).collect();
        out.push(
            Finding::new(
                Level::Warn,
                item,
                format!("{} on CPUs {}", other[0].1, format_cpu_list(&cpus)),
                "performance",
            )
            .fix("cpupower frequency-set -g performance (tuning/apply.sh --governor)")
            .note("a shard that idles between bursts is slow to ramp up"),
        );
    }
}

/// Interrupt spread of each physical network interface, and RPS where it has fewer receive
/// queues than Atlas has CPUs.
pub fn interrupts(host: &Host, cpus: &[usize], out: &mut Vec<Finding>) {
    let nics: Vec<String> = host
        .list("/sys/class/net")
        .into_iter()
        .filter(|n| n != "lo" && host.path(&format!("/sys/class/net/{n}/device")).exists())
        .collect();
    if nics.is_empty() {
        out.push(
            Finding::new(Level::Ok, "network interrupts", "(no NIC found)", "spread")
                .note("no interface with a device under /sys/class/net"),
        );
        return;
    }
    let irqbalance = running(host, "irqbalance");
    for nic in nics {
        let irqs = nic_irqs(host, &nic);
        let mut irq_cpus: Vec<usize> = irqs
            .iter()
            .filter_map(|irq| {
                host.read(&format!("/proc/irq/{irq}/effective_affinity_list"))
                    .or_else(|| host.read(&format!("/proc/irq/{irq}/smp_affinity_list")))
                    .and_then(|s| parse_cpu_list(&s))
            })
            .flatten()
            .collect();
        irq_cpus.sort_unstable();
        irq_cpus.dedup();
        let item = format!("irq {nic}");
        let current = format!(
            "{} IRQ(s) on CPUs {}{}",
            irqs.len(),
            format_cpu_list(&irq_cpus),
            if irqbalance {
                ", irqbalance running"
            } else {
                ""
            }
        );
        let recommended = "spread over several CPUs";
        let f = if irqs.len() >= 2 && irq_cpus.len() == 1 && cpus.len() > 1 {
            Finding::new(Level::Warn, item, current, recommended)
                .fix("systemctl start irqbalance, or echo CPU > /proc/irq/N/smp_affinity_list per queue")
                .note("one CPU takes every network interrupt")
        } else {
            let mut f = Finding::new(Level::Ok, item, current, recommended);
            if irq_cpus.iter().any(|c| cpus.contains(c)) {
                f = f.note("shared with shard CPUs: fine when Atlas uses every core; with CPUAffinity= keep IRQs on the others");
            }
            f
        };
        out.push(f);
        rps(host, &nic, cpus, out);
    }
}

/// RPS: with fewer receive queues than Atlas CPUs, spread receive processing in software.
fn rps(host: &Host, nic: &str, cpus: &[usize], out: &mut Vec<Finding>) {
    let queues: Vec<String> = host
        .list(&format!("/sys/class/net/{nic}/queues"))
        .into_iter()
        .filter(|q| q.starts_with("rx-"))
        .collect();
    if queues.is_empty() {
        return;
    }
    let on = queues.iter().any(|q| {
        host.read(&format!("/sys/class/net/{nic}/queues/{q}/rps_cpus"))
            .is_some_and(|m| m.chars().any(|c| c.is_ascii_hexdigit() && c != '0'))
    });
    let mask = cpus
        .iter()
        .fold(0u128, |m, &c| if c < 128 { m | (1u128 << c) } else { m });
    let item = format!("rps {nic}");
    let current = format!(
        "{} rx queue(s), RPS {}",
        queues.len(),
        if on { "on" } else { "off" }
    );
    let level = if queues.len() < cpus.len() && !on {
        Level::Warn
    } else {
        Level::Ok
    };
    let mut f = Finding::new(
        level,
        item,
        current,
        "RPS over the shard CPUs when rx queues < CPUs",
    )
    .fix(format!(
        "echo {mask:x} > /sys/class/net/{nic}/queues/rx-N/rps_cpus for each queue (tuning/apply.sh --rps)"
    ));
    if level == Level::Warn {
        f = f.note("one core does all receive processing for this interface");
    }
    out.push(f);
}

/// The MSI interrupts of a NIC's device (or of its parent, for virtio).
fn nic_irqs(host: &Host, nic: &str) -> Vec<String> {
    let device = host.path(&format!("/sys/class/net/{nic}/device"));
    let real = std::fs::canonicalize(&device).unwrap_or(device);
    for dir in [Some(real.as_path()), real.parent()].into_iter().flatten() {
        let irqs = list_dir(&dir.join("msi_irqs"));
        if !irqs.is_empty() {
            return irqs;
        }
    }
    Vec::new()
}

fn list_dir(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort_by_key(|n| n.parse::<u64>().unwrap_or(u64::MAX));
    names
}

/// Whether a process named `comm` runs on the host.
fn running(host: &Host, comm: &str) -> bool {
    host.list("/proc")
        .iter()
        .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        .any(|p| host.read(&format!("/proc/{p}/comm")).as_deref() == Some(comm))
}
