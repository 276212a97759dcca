//! What the running kernel offers, as the tests expect it: from its
//! version and its build configuration, never from rsttrace itself.  A
//! test that asked rsttrace what to expect (its doctor) could not catch
//! rsttrace misjudging its kernel.
//!
//! The facts below are the project's matrix (docs/kernels.md): Debian's
//! 5.10, 6.1 and 6.12 cloud kernels under qemu, and this project's own
//! 6.18 machines, whose kernel is locked down and refuses BPF trampolines.

use std::{process::Command, sync::OnceLock};

pub(crate) struct Kernel {
    pub release: String,
    /// (major, minor)
    pub version: (u32, u32),
    config: String,
}

/// The running kernel, read once.
pub(crate) fn kernel() -> &'static Kernel {
    static KERNEL: OnceLock<Kernel> = OnceLock::new();
    KERNEL.get_or_init(|| {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .expect("/proc/sys/kernel/osrelease")
            .trim()
            .to_string();
        let version = parse_version(&release)
            .unwrap_or_else(|| panic!("cannot read a version from {release:?}"));
        Kernel {
            config: config(&release),
            release,
            version,
        }
    })
}

fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The kernel's build configuration: /boot/config-<release> (Debian, and
/// the VM guests), else /proc/config.gz.
fn config(release: &str) -> String {
    if let Ok(c) = std::fs::read_to_string(format!("/boot/config-{release}")) {
        return c;
    }
    let out = Command::new("zcat")
        .arg("/proc/config.gz")
        .output()
        .expect("zcat (gzip)");
    assert!(
        out.status.success(),
        "no /boot/config-{release} and no /proc/config.gz: the tests cannot know what this \
         kernel offers"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Kernel {
    fn at_least(&self, major: u32, minor: u32) -> bool {
        self.version >= (major, minor)
    }

    /// `CONFIG_<name>=y`.
    fn has(&self, name: &str) -> bool {
        self.config
            .lines()
            .any(|l| l.strip_prefix(&format!("CONFIG_{name}=")) == Some("y"))
    }

    /// BPF trampolines (fentry/fexit) load: direct ftrace calls, and no
    /// lockdown forced at build time (this project's 6.18 machines force
    /// integrity lockdown, and their kernel refuses fentry with EPERM).
    pub(crate) fn trampolines(&self) -> bool {
        self.has("DYNAMIC_FTRACE_WITH_DIRECT_CALLS")
            && !self.has("LOCK_DOWN_KERNEL_FORCE_INTEGRITY")
            && !self.has("LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY")
    }

    pub(crate) fn kprobes(&self) -> bool {
        self.has("KPROBES")
    }

    /// `tcp_send_reset` carries a reason (6.10+).
    pub(crate) fn reset_reasons(&self) -> bool {
        self.at_least(6, 10)
    }

    /// The errno a socket gets is reported: the inet_sk_error_report
    /// tracepoint (5.14+), or the function under it where trampolines work.
    pub(crate) fn error_reports(&self) -> bool {
        self.at_least(5, 14) || self.trampolines()
    }

    /// kfree_skb carries drop reasons (NETFILTER_DROP, NO_SOCKET): 5.17+.
    pub(crate) fn drop_reasons(&self) -> bool {
        self.at_least(5, 17)
    }

    /// Resets for no socket are seen: where kfree_skb names them, or where
    /// rsttrace hooks the functions that build resets (before 6.10), which
    /// are called for them too.
    pub(crate) fn strays(&self) -> bool {
        self.drop_reasons() || (!self.reset_reasons() && (self.trampolines() || self.kprobes()))
    }

    /// Netfilter's ICMP rejects are seen: exactly with kprobes, else
    /// matched from tracepoints with drop reasons.
    pub(crate) fn firewall_rejects(&self) -> bool {
        self.kprobes() || self.drop_reasons()
    }

    /// The per-packet receive hook is used: no trampolines to take the
    /// same facts per event.
    pub(crate) fn per_packet_hooks(&self) -> bool {
        !self.trampolines()
    }

    /// Which of rsttrace's kernel ranges (`rsttrace causes`) this is.
    pub(crate) fn range(&self) -> &'static str {
        if self.at_least(6, 12) {
            "6.12+"
        } else if self.at_least(6, 10) {
            "6.10-6.11"
        } else {
            "5.8-6.9"
        }
    }

    /// The way resets sent are seen (doctor's `sent_resets`).
    pub(crate) fn sent_path(&self) -> &'static str {
        if self.reset_reasons() {
            "tracepoint"
        } else if self.trampolines() {
            "fentry"
        } else if self.kprobes() {
            "kprobe"
        } else {
            "partial_tracepoint"
        }
    }
}

#[test]
fn versions_parse() {
    assert_eq!(parse_version("6.18.44-fc-v657"), Some((6, 18)));
    assert_eq!(parse_version("5.10.0-46-cloud-amd64"), Some((5, 10)));
    assert_eq!(parse_version("garbage"), None);
}
