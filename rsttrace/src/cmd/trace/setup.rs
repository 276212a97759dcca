//! Start-up checks and the kernel facts the programs are loaded with.

use std::{collections::HashSet, os::unix::fs::MetadataExt};

use anyhow::{bail, Context as _, Result};

use crate::{
    classify::Cause,
    kernel::{btf::Btf, clock, layout, tracefs::Tracefs},
};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

pub fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

pub fn check_privileges() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    let caps = effective_caps();
    let has = |cap: u32| caps & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    bail!("rsttrace needs root (or CAP_BPF and CAP_PERFMON) to load its eBPF programs; run it with sudo")
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
    let rc = unsafe { libc::statfs(path.as_ptr(), &mut fs) };
    if rc != 0 || fs.f_type as i64 != NSFS_MAGIC {
        bail!(
            "--netns {arg}: not a namespace file (use /proc/<pid>/ns/net, /run/netns/<name> or an inode number)"
        );
    }
    u32::try_from(meta.ino()).with_context(|| format!("--netns {arg}: inode out of range"))
}

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
    pub facts: layout::KernelFacts,
    /// The raw BTF, for the loader.
    pub btf_bytes: Vec<u8>,
}

pub fn read_kernel() -> Result<Kernel> {
    let btf_bytes = std::fs::read("/sys/kernel/btf/vmlinux").map_err(|e| {
        anyhow::anyhow!(
            "this kernel exposes no BTF (/sys/kernel/btf/vmlinux: {e}); rsttrace needs Linux >= 5.5 built with CONFIG_DEBUG_INFO_BTF=y"
        )
    })?;
    let btf = Btf::parse(&btf_bytes).context("cannot parse /sys/kernel/btf/vmlinux")?;
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
    for d in &facts.degraded {
        log::warn!("{d}");
    }
    drop(btf);
    Ok(Kernel { facts, btf_bytes })
}
