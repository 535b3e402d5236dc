//! The audit against fake `/proc` and `/sys` trees: a tuned host, an untuned one, and one
//! where Atlas cannot start.

use super::sysctl::{parse_conf, SYSCTLS};
use super::*;

/// A fake host tree in a temporary directory, removed when dropped.
struct Tree {
    root: PathBuf,
}

impl Tree {
    fn new(name: &str) -> Tree {
        let root = std::env::temp_dir().join(format!("atlas-tune-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Tree { root }
    }

    fn write(&self, path: &str, text: &str) -> &Self {
        let p = self.root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    fn host(&self) -> Host {
        Host::new(&self.root, None)
    }

    /// A 4-CPU host with every recommendation applied.
    fn tuned(name: &str) -> Tree {
        let t = Tree::new(name);
        t.write("/proc/sys/kernel/osrelease", "6.8.0-45-generic\n")
            .write("/proc/sys/kernel/io_uring_disabled", "0\n")
            .write(
                "/proc/self/status",
                "Name:\tatlas\nCpus_allowed_list:\t0-3\nCapEff:\t0000000000000000\n",
            )
            .write("/proc/self/limits", &limits(65536, 64 << 20))
            .write(
                "/sys/kernel/mm/transparent_hugepage/enabled",
                "always [madvise] never\n",
            )
            .write(
                "/sys/kernel/mm/transparent_hugepage/defrag",
                "always defer defer+madvise [madvise] never\n",
            );
        for s in SYSCTLS {
            let value = match s.persist {
                Some(v) => v.to_string(),
                None => match s.want {
                    sysctl::Want::AtLeast(n) | sysctl::Want::AtMost(n) => n.to_string(),
                    sysctl::Want::Span(_) => "32768\t60999".to_string(),
                },
            };
            t.write(&s.path(), &format!("{value}\n"));
        }
        for cpu in 0..4 {
            t.write(
                &format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"),
                "performance\n",
            );
        }
        // eth0 with two MSI interrupts spread over CPUs 0 and 1, four rx queues.
        t.write("/sys/class/net/eth0/device/msi_irqs/40", "msi\n")
            .write("/sys/class/net/eth0/device/msi_irqs/41", "msi\n")
            .write("/proc/irq/40/effective_affinity_list", "0\n")
            .write("/proc/irq/41/effective_affinity_list", "1\n");
        for q in 0..4 {
            t.write(
                &format!("/sys/class/net/eth0/queues/rx-{q}/rps_cpus"),
                "0\n",
            );
        }
        t.write("/sys/class/net/lo/mtu", "65536\n");
        t
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn limits(nofile: u64, memlock: u64) -> String {
    format!(
        "Limit                     Soft Limit           Hard Limit           Units     \n\
         Max open files            {nofile}                {nofile}                files     \n\
         Max locked memory         {memlock}             {memlock}             bytes     \n"
    )
}

fn needs() -> Needs {
    Needs::from_config(&crate::config::Config::default())
}

fn find<'a>(findings: &'a [Finding], item: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.item == item)
        .unwrap_or_else(|| panic!("no finding {item} in\n{}", render(findings)))
}

#[test]
fn a_tuned_host_is_all_ok() {
    let t = Tree::tuned("tuned");
    let findings = audit(&t.host(), &needs());
    let report = render(&findings);
    assert!(findings.iter().all(|f| f.level == Level::Ok), "{report}");
    assert_eq!(worst(&findings), Level::Ok);
    assert!(report.ends_with(&format!("summary: {} OK, 0 WARN, 0 FAIL\n", findings.len())));
    assert!(find(&findings, "cpus")
        .current
        .starts_with("shards=4 on CPUs 0-3"));
    assert_eq!(find(&findings, "irq eth0").current, "2 IRQ(s) on CPUs 0-1");
    // Not live: no io_uring probe.
    assert!(findings.iter().all(|f| f.item != "io_uring_setup"));
}

#[test]
fn an_untuned_host_warns_with_current_recommended_and_fix() {
    let t = Tree::tuned("untuned");
    t.write("/proc/sys/net/core/somaxconn", "128\n")
        .write("/proc/sys/vm/swappiness", "60\n")
        .write("/proc/self/limits", &limits(1024, 8 << 20))
        .write(
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "[always] madvise never\n",
        )
        .write(
            "/sys/devices/system/cpu/cpu2/cpufreq/scaling_governor",
            "powersave\n",
        )
        .write("/proc/irq/41/effective_affinity_list", "0\n");
    let findings = audit(&t.host(), &needs());
    let report = render(&findings);
    let somaxconn = find(&findings, "net.core.somaxconn");
    assert_eq!(somaxconn.level, Level::Warn);
    assert_eq!(somaxconn.current, "128");
    assert_eq!(somaxconn.recommended, ">= 8192");
    assert!(somaxconn
        .fix
        .as_deref()
        .unwrap()
        .starts_with("sysctl -w net.core.somaxconn=8192"));
    assert!(report.contains(
        "WARN  net.core.somaxconn               current: 128; recommended: >= 8192; fix: sysctl -w"
    ));
    for item in [
        "vm.swappiness",
        "RLIMIT_NOFILE (hard)",
        "transparent_hugepage/enabled",
        "cpufreq governor",
        "irq eth0",
    ] {
        assert_eq!(find(&findings, item).level, Level::Warn, "{item}\n{report}");
    }
    assert_eq!(
        find(&findings, "cpufreq governor").current,
        "powersave on CPUs 2"
    );
    assert_eq!(worst(&findings), Level::Warn, "warnings do not fail");
    // OK lines carry no fix.
    assert!(find(&findings, "kernel").fix.is_none());
}

#[test]
fn what_stops_atlas_fails() {
    let t = Tree::tuned("broken");
    t.write("/proc/sys/kernel/osrelease", "5.4.0-150-generic\n")
        .write("/proc/sys/kernel/io_uring_disabled", "2\n")
        .write("/proc/self/limits", &limits(65536, 64 * 1024));
    let findings = audit(
        &t.host(),
        &Needs {
            cores: Some(8),
            ..needs()
        },
    );
    for item in [
        "kernel",
        "kernel.io_uring_disabled",
        "RLIMIT_MEMLOCK",
        "cpus",
    ] {
        assert_eq!(find(&findings, item).level, Level::Fail, "{item}");
    }
    assert_eq!(worst(&findings), Level::Fail);
    assert_eq!(find(&findings, "RLIMIT_MEMLOCK").current, "64KiB");
}

#[test]
fn locked_memory_scales_with_shards_and_cap_ipc_lock_exempts() {
    let t = Tree::tuned("memlock");
    // 4 shards × (3 MiB + 128 KiB) = 12.5 MiB: 8 MiB runs unregistered.
    t.write("/proc/self/limits", &limits(65536, 8 << 20));
    let f = audit(&t.host(), &needs());
    let m = find(&f, "RLIMIT_MEMLOCK");
    assert_eq!(
        (m.level, m.recommended.as_str()),
        (Level::Warn, ">= 12800KiB (4 shards)")
    );
    assert!(m.fix.as_deref().unwrap().contains("ulimit -l 12800"));
    t.write(
        "/proc/self/status",
        "Cpus_allowed_list:\t0-3\nCapEff:\t000001ffffffffff\n",
    );
    let f = audit(&t.host(), &needs());
    assert_eq!(find(&f, "RLIMIT_MEMLOCK").level, Level::Ok);
}

#[test]
fn the_installed_unit_is_audited() {
    let t = Tree::tuned("unit");
    t.write(
        "/etc/systemd/system/atlas.service",
        "[Service]\nLimitNOFILE=65536\n# too small for 4 shards\nLimitMEMLOCK=8M\n",
    );
    let f = audit(&t.host(), &needs());
    assert_eq!(find(&f, "atlas.service LimitNOFILE").level, Level::Ok);
    assert_eq!(find(&f, "atlas.service LimitMEMLOCK").level, Level::Warn);
    t.write(
        "/etc/systemd/system/atlas.service",
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/systemd/atlas.service"
        ))
        .unwrap(),
    );
    let f = audit(&t.host(), &needs());
    assert_eq!(find(&f, "atlas.service LimitMEMLOCK").level, Level::Ok);
    assert_eq!(find(&f, "atlas.service LimitNOFILE").level, Level::Ok);
}

#[test]
fn a_single_queue_nic_wants_rps() {
    let t = Tree::tuned("rps");
    for q in 1..4 {
        std::fs::remove_dir_all(t.root.join(format!("sys/class/net/eth0/queues/rx-{q}"))).unwrap();
    }
    let f = audit(&t.host(), &needs());
    let rps = find(&f, "rps eth0");
    assert_eq!(rps.level, Level::Warn);
    assert!(rps.fix.as_deref().unwrap().starts_with("echo f > "));
    t.write("/sys/class/net/eth0/queues/rx-0/rps_cpus", "0000000f\n");
    assert_eq!(
        find(&audit(&t.host(), &needs()), "rps eth0").level,
        Level::Ok
    );
}

/// `tuning/99-atlas.conf` sets exactly the parameters the audit recommends persisting, to
/// the same values, and each of those values passes the audit.
#[test]
fn the_sysctl_drop_in_matches_the_audit() {
    let file = parse_conf(include_str!("../../tuning/99-atlas.conf"));
    let table: Vec<(String, String)> = SYSCTLS
        .iter()
        .filter_map(|s| s.persist.map(|v| (s.key.to_string(), v.to_string())))
        .collect();
    assert_eq!(file, table);
    for s in SYSCTLS {
        if let Some(v) = s.persist {
            assert_eq!(s.passes(v), Some(true), "{}", s.key);
        }
    }
}

#[test]
fn helpers_parse_what_the_kernel_prints() {
    assert_eq!(
        parse_cpu_list("0-3,8,10-11"),
        Some(vec![0, 1, 2, 3, 8, 10, 11])
    );
    assert_eq!(parse_cpu_list(""), Some(vec![]));
    assert_eq!(parse_cpu_list("3-1"), None);
    assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
    assert_eq!(host::kernel_version("6.18.44-fc-v769"), Some((6, 18)));
    assert_eq!(host::selected("always [madvise] never"), Some("madvise"));
    assert_eq!(host::parse_systemd_size("256M"), Some(256 << 20));
    assert_eq!(host::parse_systemd_size("infinity"), Some(u64::MAX));
    assert_eq!(host::parse_systemd_size("65536"), Some(65536));
    assert_eq!(
        host::parse_limit(&limits(10, 20), "Max locked memory"),
        Some((20, 20))
    );
    assert_eq!(
        parse_conf("# c\n-kernel.x = 1\nnet.a=2 3\n\n"),
        vec![
            ("kernel.x".to_string(), "1".to_string()),
            ("net.a".to_string(), "2 3".to_string())
        ]
    );
}
