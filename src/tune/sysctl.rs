//! The kernel parameters Atlas cares about: what each does for Atlas, the value recommended
//! and whether `tuning/99-atlas.conf` sets it (a test keeps the file and this table equal).

use super::{Finding, Host, Level};

/// What a parameter should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// At least this.
    AtLeast(u64),
    /// At most this.
    AtMost(u64),
    /// Two numbers (`ip_local_port_range`) at least this far apart.
    Span(u64),
}

/// One kernel parameter.
#[derive(Debug, Clone, Copy)]
pub struct Sysctl {
    /// The name (`net.core.somaxconn`).
    pub key: &'static str,
    /// What passes.
    pub want: Want,
    /// The value `tuning/99-atlas.conf` sets (`None`: the file leaves it alone).
    pub persist: Option<&'static str>,
    /// What it does for Atlas.
    pub why: &'static str,
}

/// Every parameter audited, in report order.
pub const SYSCTLS: &[Sysctl] = &[
    Sysctl {
        key: "net.core.somaxconn",
        want: Want::AtLeast(8192),
        persist: Some("8192"),
        why: "caps each shard's accept queue (ATLAS_LISTEN_BACKLOG); a burst of new connections beyond it is dropped and retried after 1 s",
    },
    Sysctl {
        key: "net.ipv4.tcp_max_syn_backlog",
        want: Want::AtLeast(8192),
        persist: Some("8192"),
        why: "half-open connections queued during a connection burst",
    },
    Sysctl {
        key: "net.core.netdev_max_backlog",
        want: Want::AtLeast(16384),
        persist: Some("16384"),
        why: "packets queued per CPU between the NIC and the TCP stack under bursts",
    },
    Sysctl {
        key: "net.ipv4.tcp_syncookies",
        want: Want::AtLeast(1),
        persist: None,
        why: "keeps accepting when the SYN queue overflows",
    },
    Sysctl {
        key: "net.ipv4.tcp_tw_reuse",
        want: Want::AtLeast(1),
        persist: Some("1"),
        why: "lets reconnections to model endpoints and Redis reuse TIME-WAIT ports",
    },
    Sysctl {
        key: "net.ipv4.tcp_fin_timeout",
        want: Want::AtMost(15),
        persist: Some("15"),
        why: "frees closed client connections' FIN-WAIT-2 state sooner",
    },
    Sysctl {
        key: "net.ipv4.ip_local_port_range",
        want: Want::Span(28_000),
        persist: None,
        why: "ephemeral ports for Atlas's outbound connections (pooled, so the default range suffices)",
    },
    Sysctl {
        key: "net.core.busy_read",
        want: Want::AtMost(0),
        persist: None,
        why: "socket busy polling spins in the kernel on the shard's own core; measure before enabling",
    },
    Sysctl {
        key: "net.core.busy_poll",
        want: Want::AtMost(0),
        persist: None,
        why: "as busy_read, for poll/epoll",
    },
    Sysctl {
        key: "fs.nr_open",
        want: Want::AtLeast(1_048_576),
        persist: None,
        why: "ceiling of LimitNOFILE; one descriptor per client connection",
    },
    Sysctl {
        key: "vm.swappiness",
        want: Want::AtMost(10),
        persist: Some("10"),
        why: "the L1 cache is resident memory; a swapped-out entry turns a hit into a page fault",
    },
];

impl Sysctl {
    /// `/proc/sys/...` for this key.
    pub fn path(&self) -> String {
        format!("/proc/sys/{}", self.key.replace('.', "/"))
    }

    /// The recommendation as shown in the report.
    pub fn recommended(&self) -> String {
        match self.want {
            Want::AtLeast(n) => format!(">= {n}"),
            Want::AtMost(n) => format!("<= {n}"),
            Want::Span(n) => format!("a range of >= {n} ports"),
        }
    }

    /// The value a fix sets: the drop-in's, else the bound.
    fn target(&self) -> String {
        match (self.persist, self.want) {
            (Some(v), _) => v.to_string(),
            (None, Want::AtLeast(n) | Want::AtMost(n)) => n.to_string(),
            (None, Want::Span(_)) => "10240 65535".to_string(),
        }
    }

    /// Whether `value` (the file's text) passes.
    pub fn passes(&self, value: &str) -> Option<bool> {
        let nums: Vec<u64> = value
            .split_whitespace()
            .map(|n| n.parse().ok())
            .collect::<Option<_>>()?;
        match (self.want, nums.as_slice()) {
            (Want::AtLeast(n), [v]) => Some(*v >= n),
            (Want::AtMost(n), [v]) => Some(*v <= n),
            (Want::Span(n), [lo, hi]) => Some(hi.saturating_sub(*lo) >= n),
            _ => None,
        }
    }

    /// Audits this parameter on `host`.
    pub fn check(&self, host: &Host) -> Finding {
        let Some(raw) = host.read(&self.path()) else {
            return Finding::new(Level::Ok, self.key, "(absent)", self.recommended())
                .note("not present on this kernel");
        };
        let current = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        let level = match self.passes(&current) {
            Some(true) => Level::Ok,
            Some(false) => Level::Warn,
            None => Level::Warn,
        };
        let target = self.target();
        let target = if target.contains(' ') {
            format!("\"{target}\"")
        } else {
            target
        };
        let mut f = Finding::new(level, self.key, current, self.recommended()).fix(format!(
            "sysctl -w {}={target}{}",
            self.key,
            if self.persist.is_some() {
                " (persist: tuning/apply.sh installs tuning/99-atlas.conf)"
            } else {
                ""
            }
        ));
        if level != Level::Ok {
            f = f.note(self.why);
        }
        f
    }
}

/// Audits every parameter in [`SYSCTLS`].
pub fn check_all(host: &Host, out: &mut Vec<Finding>) {
    out.extend(SYSCTLS.iter().map(|s| s.check(host)));
}

/// The `key = value` lines of a sysctl.d file (comments and blank lines skipped; a leading
/// `-`, "ignore failure", is dropped).
pub fn parse_conf(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().trim_start_matches('-').to_string(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect()
}
