//! Linux capabilities: which ones rsttrace uses, which this process has,
//! and giving up those it no longer needs once its programs are attached.

/// A capability rsttrace uses, and what for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub name: &'static str,
    pub bit: u32,
    pub why: &'static str,
    /// Needed to start at all (else only some features are lost).
    pub required: bool,
}

pub(crate) const CAP_DAC_READ_SEARCH: Cap = Cap {
    name: "CAP_DAC_READ_SEARCH",
    bit: 2,
    why: "read tracefs (tracepoint formats) and other processes' /proc entries",
    required: false,
};
pub(crate) const CAP_SYS_PTRACE: Cap = Cap {
    name: "CAP_SYS_PTRACE",
    bit: 19,
    why: "find the owners of sockets older than rsttrace in /proc/<pid>/fd",
    required: false,
};
pub(crate) const CAP_SYS_ADMIN: Cap = Cap {
    name: "CAP_SYS_ADMIN",
    bit: 21,
    why: "mount tracefs when it is not mounted; stands in for CAP_BPF and CAP_PERFMON on kernels older than 5.8",
    required: false,
};
pub(crate) const CAP_SYS_RESOURCE: Cap = Cap {
    name: "CAP_SYS_RESOURCE",
    bit: 24,
    why: "raise RLIMIT_MEMLOCK for BPF maps on kernels older than 5.11",
    required: false,
};
pub(crate) const CAP_SYSLOG: Cap = Cap {
    name: "CAP_SYSLOG",
    bit: 34,
    why: "read kernel addresses in /proc/kallsyms (call-path inference on kernels without reset reasons)",
    required: false,
};
pub(crate) const CAP_PERFMON: Cap = Cap {
    name: "CAP_PERFMON",
    bit: 38,
    why: "attach tracing programs and read kernel memory from them",
    required: true,
};
pub(crate) const CAP_BPF: Cap = Cap {
    name: "CAP_BPF",
    bit: 39,
    why: "load eBPF programs and create their maps",
    required: true,
};

/// Every capability rsttrace uses.
pub(crate) const ALL: [Cap; 7] = [
    CAP_BPF,
    CAP_PERFMON,
    CAP_SYS_PTRACE,
    CAP_DAC_READ_SEARCH,
    CAP_SYSLOG,
    CAP_SYS_ADMIN,
    CAP_SYS_RESOURCE,
];

/// The capability sets of this process, from /proc/self/status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sets {
    pub effective: u64,
    pub permitted: u64,
}

impl Sets {
    pub fn current() -> Sets {
        let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or(0)
        };
        Sets {
            effective: field("CapEff:"),
            permitted: field("CapPrm:"),
        }
    }

    pub fn has(&self, cap: Cap) -> bool {
        self.effective & (1 << cap.bit) != 0
    }

    /// Can load and attach the programs: CAP_BPF and CAP_PERFMON, or
    /// CAP_SYS_ADMIN (which implies both).
    pub fn can_trace(&self) -> bool {
        self.has(CAP_SYS_ADMIN) || (self.has(CAP_BPF) && self.has(CAP_PERFMON))
    }

    /// The capabilities rsttrace uses that this process lacks.
    pub fn missing(&self) -> Vec<Cap> {
        ALL.into_iter().filter(|&c| !self.has(c)).collect()
    }
}

fn mask(caps: &[Cap]) -> u64 {
    caps.iter().fold(0, |m, c| m | (1 << c.bit))
}

/// Keeps only `keep` in the effective, permitted and inheritable sets
/// (and the bounding set, so they cannot come back).
pub(crate) fn drop_all_but(keep: &[Cap]) -> std::io::Result<()> {
    let keep = mask(keep);
    for bit in 0..64 {
        if keep & (1 << bit) == 0 {
            // SAFETY: PR_CAPBSET_DROP with a capability number; EINVAL for
            // numbers past the kernel's last capability, and EPERM without
            // CAP_SETPCAP, leave the bounding set as it is: the permitted
            // set below is what bounds this process.
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, bit as libc::c_ulong, 0, 0, 0) };
        }
    }
    set(keep, keep)
}

/// Lowers the effective set to `effective` while keeping `permitted`, so
/// that a capability can be tried without and raised again.
pub(crate) fn set_effective(effective: &[Cap], permitted: &[Cap]) -> std::io::Result<()> {
    set(mask(effective), mask(permitted))
}

fn set(effective: u64, permitted: u64) -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        Data {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: 0,
        },
        Data {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: 0,
        },
    ];
    // SAFETY: capset with a version-3 header and two data structs, as
    // capset(2) documents.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
