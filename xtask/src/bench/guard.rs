//! The benchmark changes one host setting, `kernel.bpf_stats_enabled`
//! (BPF programs' run time statistics), and puts it back however the run
//! ends: normally, on an error (the guard's `Drop`), or on Ctrl-C / SIGTERM
//! (the handler only raises a flag; the run stops at the next check and
//! unwinds through the guard).  A second Ctrl-C restores the setting from
//! the handler itself and exits at once, leaving the bench namespace to the
//! next run to delete.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::SeqCst};

use anyhow::{bail, Context, Result};

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
const SYSCTL_C: &std::ffi::CStr = c"/proc/sys/kernel/bpf_stats_enabled";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The value to restore (an ASCII digit), or -1 when nothing is changed.
static SAVED: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_: libc::c_int) {
    let msg: &[u8] = if INTERRUPTED.swap(true, SeqCst) {
        restore_from_handler();
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) }
    } else {
        b"\nbench: interrupted, cleaning up (again to quit at once)\n"
    };
    // SAFETY: write(2) is async-signal-safe; msg is a static buffer.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

/// Only async-signal-safe calls: open, write, close.
fn restore_from_handler() {
    let saved = SAVED.load(SeqCst);
    if saved < 0 {
        return;
    }
    let byte = saved as u8;
    // SAFETY: a NUL-terminated path and a one-byte buffer on the stack.
    unsafe {
        let fd = libc::open(SYSCTL_C.as_ptr(), libc::O_WRONLY);
        if fd >= 0 {
            libc::write(fd, (&byte as *const u8).cast(), 1);
            libc::close(fd);
        }
    }
}

/// From now on Ctrl-C and SIGTERM end the run through `check`.
pub(super) fn catch_interrupts() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    // SAFETY: installing a handler that only touches atomics and makes
    // async-signal-safe calls.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

/// Fails once the run was interrupted.
pub(super) fn check() -> Result<()> {
    if INTERRUPTED.load(SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// `kernel.bpf_stats_enabled=1` while it lives; the old value afterwards.
pub(super) struct BpfStats {
    old: String,
}

impl BpfStats {
    pub(super) fn enable() -> Result<Self> {
        let old = std::fs::read_to_string(SYSCTL)
            .with_context(|| format!("reading {SYSCTL}"))?
            .trim()
            .to_string();
        let digit = match old.as_bytes() {
            [d] if d.is_ascii_digit() => *d,
            _ => bail!("{SYSCTL} holds {old:?}"),
        };
        SAVED.store(i32::from(digit), SeqCst);
        let guard = BpfStats { old };
        std::fs::write(SYSCTL, "1").with_context(|| format!("writing {SYSCTL}"))?;
        Ok(guard)
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        match std::fs::write(SYSCTL, &self.old) {
            Ok(()) => SAVED.store(-1, SeqCst),
            Err(e) => eprintln!("bench: cannot restore {SYSCTL} to {}: {e}", self.old),
        }
    }
}
