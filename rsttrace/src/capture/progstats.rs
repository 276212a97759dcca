//! Per-program kernel statistics.  A tracing program that would run while
//! the same program is already running on that CPU (a softirq reset
//! interrupting a process-context one) is skipped by the kernel and only
//! counted in `bpf_prog_info.recursion_misses`; rsttrace reports those as
//! lost events.

use std::os::fd::{AsFd, AsRawFd};

use aya::Ebpf;

use crate::kernel::layout::ProgInfoLayout;

pub(super) struct ProgStats {
    layout: Option<ProgInfoLayout>,
}

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

impl ProgStats {
    pub(super) fn new(layout: Option<ProgInfoLayout>) -> Self {
        ProgStats { layout }
    }

    /// Sum over all loaded programs (0 when the kernel does not count).
    pub(super) fn recursion_misses(&self, ebpf: &Ebpf) -> u64 {
        let Some(layout) = self.layout else {
            return 0;
        };
        let mut total = 0;
        let mut info = vec![0u8; layout.size as usize];
        for (_, prog) in ebpf.programs() {
            let Ok(fd) = prog.fd() else { continue };
            info.fill(0);
            let mut attr = InfoAttr {
                bpf_fd: fd.as_fd().as_raw_fd() as u32,
                info_len: layout.size,
                info: info.as_mut_ptr() as u64,
            };
            // SAFETY: attr points to a buffer of info_len bytes.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_OBJ_GET_INFO_BY_FD,
                    &mut attr as *mut InfoAttr,
                    std::mem::size_of::<InfoAttr>(),
                )
            };
            let at = layout.recursion_misses as usize;
            if rc == 0 && at + 8 <= info.len() {
                total += u64::from_ne_bytes(info[at..at + 8].try_into().expect("8 bytes"));
            }
        }
        total
    }
}
