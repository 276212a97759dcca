//! Start-up checks and the kernel facts the programs are loaded with.

use std::{collections::HashSet, os::unix::fs::MetadataExt, path::Path};

use anyhow::{bail, Context as _, Result};
use rsttrace_common::config::NETNS_FILTER;

use crate::{
    classify::Cause,
    kernel::{
        btf::Btf,
        caps::{self, Sets},
        clock,
        kallsyms::CallSites,
        layout,
        tracefs::Tracefs,
    },
};

/// Checks that this process may load and attach the programs.  A
/// missing capability is named, with what it is for, in one line.
pub fn check_privileges() -> Result<Sets> {
    let sets = Sets::current();
    if sets.can_trace() {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        // Root reads tracefs by owning it; anyone else needs to bypass
        // the directory's permissions.
        if !root && !sets.has(caps::CAP_DAC_READ_SEARCH) {
            bail!(missing(caps::CAP_DAC_READ_SEARCH));
        }
        for cap in [caps::CAP_SYS_PTRACE] {
            if !sets.has(cap) && !sets.has(caps::CAP_SYS_ADMIN) {
                log::warn!("without {}, rsttrace cannot {}", cap.name, cap.why);
            }
        }
        return Ok(sets);
    }
    if sets.effective == 0 {
        bail!("rsttrace needs root (or the capabilities CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH; see packaging/rsttrace.service) to load its eBPF programs; run it with sudo");
    }
    let lacking = [caps::CAP_BPF, caps::CAP_PERFMON]
        .into_iter()
        .find(|&c| !sets.has(c))
        .expect("can_trace is false, so one of the two is missing");
    bail!(missing(lacking))
}

fn missing(cap: caps::Cap) -> String {
    format!("missing capability {}: needed to {}", cap.name, cap.why)
}

/// `--proc`: where the host's /proc is (checked to be a procfs).
pub fn set_proc_root(root: &Path) -> Result<()> {
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    let path = std::ffi::CString::new(root.as_os_str().as_encoded_bytes())
        .context("--proc: path with a NUL byte")?;
    // SAFETY: a zeroed statfs buffer is valid; the path is NUL-terminated.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `fs` a valid statfs buffer.
    let rc = unsafe { libc::statfs(path.as_ptr(), &mut fs) };
    if rc != 0 || fs.f_type as i64 != PROC_SUPER_MAGIC {
        bail!("--proc {}: not a proc filesystem", root.display());
    }
    crate::enrich::procfs::set_root(root);
    Ok(())
}

/// `--output FILE`: can it be appended to?  Asked before loading
/// anything, so that a typo costs nothing.
pub fn check_output(path: Option<&Path>) -> Result<()> {
    if let Some(p) = path {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p)
            .with_context(|| format!("cannot open --output {}", p.display()))?;
    }
    Ok(())
}

/// `--output FILE` for `--check`: the file can be appended to, or, if it
/// does not exist yet, its directory lets this user create it.  Nothing
/// is created: the check may run as another user than the service.
pub fn check_output_writable(path: Option<&Path>) -> Result<()> {
    let Some(p) = path else {
        return Ok(());
    };
    if p.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(p)
            .with_context(|| format!("cannot open --output {}", p.display()))?;
        return Ok(());
    }
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .context("--output: path with a NUL byte")?;
    // SAFETY: `c` is NUL-terminated; access(2) only reads it.
    if !dir.is_dir() || unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        bail!(
            "cannot open --output {}: {}",
            p.display(),
            if dir.is_dir() {
                std::io::Error::last_os_error().to_string()
            } else {
                format!("no directory {}", dir.display())
            }
        );
    }
    Ok(())
}

/// Kernels older than 5.11 charge BPF maps to RLIMIT_MEMLOCK: lift it
/// where allowed.  Newer kernels charge the memory cgroup instead, so a
/// refusal (no CAP_SYS_RESOURCE) only matters on old kernels, where the
/// loader then says which map did not fit.
pub fn raise_memlock() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid rlimit struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        log::debug!(
            "cannot raise RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// `--netns`: an inode number or a namespace file.
pub fn parse_netns(arg: &str) -> Result<u32> {
    if let Ok(n) = arg.parse::<u32>() {
        return Ok(n);
    }
    let meta = std::fs::metadata(arg).with_context(|| {
        format!("--netns {arg}: not an inode number or a readable namespace file")
    })?;
    // Namespace files live on nsfs; any other file's inode would match
    // nothing, silently.
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    let path = std::ffi::CString::new(arg).context("--netns: path with a NUL byte")?;
    // SAFETY: a zeroed statfs buffer is valid; the path is NUL-terminated.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `fs` a valid statfs buffer.
    let rc = unsafe { libc::statfs(path.as_ptr(), &mut fs) };
    if rc != 0 || fs.f_type as i64 != NSFS_MAGIC {
        bail!(
            "--netns {arg}: not a namespace file (use /proc/<pid>/ns/net, /run/netns/<name> or an inode number)"
        );
    }
    u32::try_from(meta.ino()).with_context(|| format!("--netns {arg}: inode out of range"))
}

/// `--cause`: the cause ids to report, or `None` (no `--cause`) for
/// every cause.  An unknown id is an error naming it.
pub fn parse_causes(ids: &[String]) -> Result<Option<HashSet<Cause>>> {
    if ids.is_empty() {
        return Ok(None);
    }
    ids.iter()
        .map(|id| {
            Cause::from_id(id)
                .with_context(|| format!("--cause {id}: unknown cause id (see `rsttrace causes`)"))
        })
        .collect::<Result<HashSet<_>>>()
        .map(Some)
}

/// Everything read from the running kernel before loading.
pub struct Kernel {
    /// What the programs need (offsets, enum values and features, in
    /// `facts.config`), which hooks this kernel has, and the names
    /// userspace decodes with (reasons, states, HZ).
    pub facts: layout::KernelFacts,
    /// The raw BTF, for the loader.
    pub btf_bytes: Vec<u8>,
    /// The kernel has its own BTF (BTF tracepoints and fentry work).
    pub kernel_btf: bool,
}

/// Where the kernel exposes its own BTF (CONFIG_DEBUG_INFO_BTF).
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// The kernel's BTF, or the file `--btf` names for kernels without it.
pub fn read_btf(path: Option<&Path>) -> Result<(Vec<u8>, bool)> {
    let kernel_btf = Path::new(VMLINUX).exists();
    let path = match path {
        Some(p) => p,
        None if kernel_btf => Path::new(VMLINUX),
        None => bail!(
            "this kernel exposes no BTF ({VMLINUX} is missing): give rsttrace one for it with \
             --btf PATH (BTFHub ships them for distribution kernels), or use a kernel built \
             with CONFIG_DEBUG_INFO_BTF=y"
        ),
    };
    let bytes =
        std::fs::read(path).with_context(|| format!("--btf {}: cannot read", path.display()))?;
    Ok((bytes, kernel_btf))
}

/// Reads the running kernel before loading: its BTF (or `--btf`), the
/// reset tracepoints and record formats in tracefs, HZ, the call sites
/// for stack inference (/proc/kallsyms) and the clock.  Fails, saying
/// what is missing, without BTF or without the reset tracepoints.
pub fn read_kernel(btf_path: Option<&Path>) -> Result<Kernel> {
    let (btf_bytes, kernel_btf) = read_btf(btf_path)?;
    let what = btf_path.map_or(VMLINUX.to_string(), |p| p.display().to_string());
    let btf = Btf::parse(&btf_bytes).with_context(|| format!("cannot parse BTF from {what}"))?;
    let tracefs = Tracefs::locate_or_mount()?;
    for (system, event) in [("tcp", "tcp_send_reset"), ("tcp", "tcp_receive_reset")] {
        if !tracefs.has_event(system, event) {
            bail!(
                "tracepoint {system}:{event} not found in {}: this kernel is older than 4.15 or built without it",
                tracefs.root().display()
            );
        }
    }
    let accept_fmt = tracefs.format("syscalls", "sys_exit_accept4").ok();
    let send_fmt = tracefs.format("tcp", "tcp_send_reset").ok();
    let mut facts = layout::resolve(&btf, accept_fmt.as_ref(), send_fmt.as_ref())?;
    let (hz, hz_source) = clock::kernel_hz();
    facts.names.hz = hz;
    log::info!("kernel HZ {hz} ({hz_source})");
    facts.names.callsites = CallSites::load();
    facts.config.want_stack = u8::from(facts.names.callsites.is_some());
    let boot_clock = aya::util::KernelVersion::current()
        .map_or(true, |v| v >= aya::util::KernelVersion::new(5, 8, 0));
    facts.config.boot_clock = u8::from(boot_clock);
    clock::set_boot_clock(boot_clock);
    drop(btf);
    Ok(Kernel {
        facts,
        btf_bytes,
        kernel_btf,
    })
}

/// `--netns`: up to four namespaces (inode numbers or namespace files).
pub fn parse_netns_list(args: &[String]) -> Result<[u32; NETNS_FILTER]> {
    if args.len() > NETNS_FILTER {
        bail!("--netns: at most {NETNS_FILTER} namespaces");
    }
    let mut out = [0; NETNS_FILTER];
    for (slot, a) in out.iter_mut().zip(args) {
        *slot = parse_netns(a)?;
    }
    Ok(out)
}
