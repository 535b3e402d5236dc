//! `atlas tune --check` and `tuning/apply.sh` against a fake `/proc` and `/sys` tree: the audit
//! warns about an untuned host with the fix, `apply.sh` fixes what it may (a dry run changes
//! nothing, a second run changes nothing), the audit is then clean; a FAIL exits 1; the audit
//! runs on this live host too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use atlas::tune::sysctl::{Want, SYSCTLS};

const ATLAS: &str = env!("CARGO_BIN_EXE_atlas");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

struct Tree(PathBuf);

impl Tree {
    /// An untuned 2-CPU host: kernel defaults for every sysctl, THP always, powersave,
    /// one NIC with one receive queue.
    fn untuned(name: &str) -> Tree {
        let root =
            std::env::temp_dir().join(format!("atlas-tune-it-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let t = Tree(root);
        for (path, text) in [
            ("proc/sys/kernel/osrelease", "6.1.0-18-amd64"),
            ("proc/sys/kernel/io_uring_disabled", "0"),
            (
                "proc/self/status",
                "Cpus_allowed_list:\t0-1\nCapEff:\t0000000000000000",
            ),
            (
                "proc/self/limits",
                "Max open files            65536                65536                files\n\
                 Max locked memory         67108864             67108864             bytes",
            ),
            ("proc/sys/net/core/somaxconn", "4096"),
            ("proc/sys/net/ipv4/tcp_max_syn_backlog", "512"),
            ("proc/sys/net/core/netdev_max_backlog", "1000"),
            ("proc/sys/net/ipv4/tcp_syncookies", "1"),
            ("proc/sys/net/ipv4/tcp_tw_reuse", "2"),
            ("proc/sys/net/ipv4/tcp_fin_timeout", "60"),
            ("proc/sys/net/ipv4/ip_local_port_range", "32768\t60999"),
            ("proc/sys/net/core/busy_read", "0"),
            ("proc/sys/net/core/busy_poll", "0"),
            ("proc/sys/fs/nr_open", "1048576"),
            ("proc/sys/vm/swappiness", "60"),
            (
                "sys/kernel/mm/transparent_hugepage/enabled",
                "[always] madvise never",
            ),
            (
                "sys/kernel/mm/transparent_hugepage/defrag",
                "[always] defer defer+madvise madvise never",
            ),
            (
                "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
                "powersave",
            ),
            (
                "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor",
                "powersave",
            ),
            ("sys/class/net/eth0/device/msi_irqs/30", ""),
            ("proc/irq/30/smp_affinity_list", "0-1"),
            ("sys/class/net/eth0/queues/rx-0/rps_cpus", "0"),
        ] {
            t.write(path, text);
        }
        t
    }

    fn write(&self, path: &str, text: &str) {
        let p = self.0.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("{text}\n")).unwrap();
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.0.join(path))
            .unwrap()
            .trim()
            .to_string()
    }

    fn root(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tune(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(ATLAS)
        .arg("tune")
        .args(args)
        .env_remove("ATLAS_CORES")
        .env_remove("ATLAS_IO_MEMORY_BYTES")
        .env_remove("ATLAS_MAX_CONNECTIONS")
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn apply(root: &str, args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(Path::new(REPO).join("tuning/apply.sh"))
        .args(["--root", root])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

fn line<'a>(report: &'a str, item: &str) -> &'a str {
    report
        .lines()
        .find(|l| {
            l.get(6..)
                .is_some_and(|r| r.starts_with(&format!("{item} ")))
        })
        .unwrap_or_else(|| panic!("no line for {item} in\n{report}"))
}

#[test]
fn audit_apply_audit_on_a_fake_host() {
    let t = Tree::untuned("cycle");
    let (code, report) = tune(&["--check", "--root", t.root()]);
    assert_eq!(code, Some(0), "warnings only: {report}");
    assert_eq!(
        line(&report, "net.core.somaxconn"),
        "WARN  net.core.somaxconn               current: 4096; recommended: >= 8192; fix: \
         sysctl -w net.core.somaxconn=8192 (persist: tuning/apply.sh installs \
         tuning/99-atlas.conf) (caps each shard's accept queue (ATLAS_LISTEN_BACKLOG); a burst \
         of new connections beyond it is dropped and retried after 1 s)"
    );
    for item in [
        "vm.swappiness",
        "transparent_hugepage/enabled",
        "cpufreq governor",
        "rps eth0",
    ] {
        assert!(line(&report, item).starts_with("WARN "), "{item}: {report}");
    }
    assert!(line(&report, "net.ipv4.tcp_tw_reuse").starts_with("OK "));
    assert!(
        report.ends_with("summary: 12 OK, 9 WARN, 0 FAIL\n"),
        "{report}"
    );

    // A dry run changes nothing and lists what it would do.
    let dry = apply(t.root(), &["--dry-run", "--governor", "--rps"]);
    assert!(
        dry.contains("would      echo '8192' > /proc/sys/net/core/somaxconn"),
        "{dry}"
    );
    assert_eq!(t.read("proc/sys/net/core/somaxconn"), "4096");
    assert!(!t.0.join("etc/sysctl.d/99-atlas.conf").exists());

    let applied = apply(t.root(), &["--governor", "--rps"]);
    assert!(
        applied.contains("done       11 change(s) made"),
        "{applied}"
    );
    assert_eq!(t.read("proc/sys/net/core/somaxconn"), "8192");
    assert_eq!(t.read("proc/sys/vm/swappiness"), "10");
    assert_eq!(
        t.read("proc/sys/net/ipv4/tcp_tw_reuse"),
        "2",
        "already passes: kept"
    );
    assert_eq!(
        t.read("sys/kernel/mm/transparent_hugepage/enabled"),
        "madvise"
    );
    assert_eq!(
        t.read("sys/devices/system/cpu/cpu1/cpufreq/scaling_governor"),
        "performance"
    );
    assert_eq!(
        std::fs::read(t.0.join("etc/sysctl.d/99-atlas.conf")).unwrap(),
        std::fs::read(Path::new(REPO).join("tuning/99-atlas.conf")).unwrap()
    );
    let again = apply(t.root(), &["--governor", "--rps"]);
    assert!(again.contains("done       0 change(s) made"), "{again}");

    let (code, report) = tune(&["--check", "--root", t.root()]);
    assert_eq!(code, Some(0));
    let warns: Vec<&str> = report.lines().filter(|l| l.starts_with("WARN")).collect();
    // RPS is set to every CPU of the machine running the test, which may not be the two
    // CPUs of the fake host; nothing else is left.
    assert!(warns.iter().all(|l| l.contains("rps eth0")), "{report}");
}

#[test]
fn a_fail_exits_1_and_bad_usage_2() {
    let t = Tree::untuned("fail");
    t.write("proc/sys/kernel/io_uring_disabled", "2");
    let (code, report) = tune(&["--check", "--root", t.root()]);
    assert_eq!(code, Some(1), "{report}");
    assert!(line(&report, "kernel.io_uring_disabled").starts_with("FAIL  "));
    // More shards than CPUs.
    let (code, report) = tune(&["--check", "--root", t.root(), "--cores", "4"]);
    assert_eq!(code, Some(1));
    assert!(line(&report, "cpus").starts_with("FAIL  "), "{report}");
    let (code, out) = tune(&[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("--check"));
}

/// The audit of this machine: it runs, probes io_uring live, and sums up.
#[test]
fn the_live_host_is_audited() {
    let (code, report) = tune(&["--check"]);
    assert!(matches!(code, Some(0 | 1)), "{report}");
    assert!(
        line(&report, "io_uring_setup").starts_with("OK "),
        "{report}"
    );
    assert!(report.lines().last().unwrap().starts_with("summary: "));
    let pid = std::process::id().to_string();
    let (_, report) = tune(&["--check", "--pid", &pid]);
    assert!(line(&report, "cpus").contains(&format!("affinity of process {pid}")));
}

/// apply.sh raises `min` parameters and lowers `max` ones, exactly as the audit compares them.
#[test]
fn apply_sh_compares_like_the_audit() {
    let script = std::fs::read_to_string(Path::new(REPO).join("tuning/apply.sh")).unwrap();
    for s in SYSCTLS.iter().filter(|s| s.persist.is_some()) {
        let case = script
            .lines()
            .find(|l| l.contains(s.key) && l.trim_end().ends_with(";;"))
            .unwrap_or_else(|| panic!("apply.sh has no direction for {}", s.key));
        let want = match s.want {
            Want::AtLeast(_) => "echo min",
            Want::AtMost(_) => "echo max",
            Want::Span(_) => "echo exact",
        };
        assert!(case.contains(want), "{}: {case}", s.key);
    }
}
