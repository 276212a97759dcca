//! Per-CPU perf buffers for kernels without BPF ring buffers, opened here
//! rather than through aya: aya 0.14 asks the kernel to wake the reader on
//! every record (`wakeup_events = 1`), which under a reset storm costs
//! more than the rest of rsttrace.  These buffers wake the reader only
//! when a quarter fills (`watermark`); the programs wake it sooner through
//! a one-page buffer of its own, at most once per `--wakeup-ms` (the same
//! policy as the ring buffer's).

use std::{
    io,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd},
    ptr::NonNull,
    sync::atomic::{fence, Ordering},
};

use aya_obj::generated::{
    perf_event_attr, perf_event_header, perf_event_mmap_page, perf_event_sample_format,
    perf_event_type, perf_sw_ids, perf_type_id, PERF_EVENT_IOC_ENABLE, PERF_FLAG_FD_CLOEXEC,
};

/// When the kernel wakes the reader of a buffer.
#[derive(Debug, Clone, Copy)]
pub(super) enum Wakeup {
    /// Once this many bytes are waiting.
    Bytes(u32),
    /// On every record.
    EveryRecord,
}

/// One CPU's perf buffer, mapped.
pub(super) struct PerfRing {
    fd: OwnedFd,
    base: NonNull<u8>,
    mapped: usize,
    page: usize,
    size: usize,
    /// Reassembles a record that wraps around the end of the ring.
    scratch: Vec<u8>,
}

// SAFETY: the mapping is owned by this value and only touched through
// `&mut self`; moving it to another thread moves that ownership.
unsafe impl Send for PerfRing {}

impl AsRawFd for PerfRing {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for PerfRing {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl PerfRing {
    /// A BPF output event on `cpu` with `pages` (a power of two) of data.
    pub(super) fn open(cpu: u32, pages: usize, wakeup: Wakeup) -> io::Result<Self> {
        // SAFETY: an all-zero perf_event_attr is the documented default.
        let mut attr: perf_event_attr = unsafe { std::mem::zeroed() };
        attr.type_ = perf_type_id::PERF_TYPE_SOFTWARE as u32;
        attr.size = std::mem::size_of::<perf_event_attr>() as u32;
        attr.config = perf_sw_ids::PERF_COUNT_SW_BPF_OUTPUT as u64;
        attr.sample_type = perf_event_sample_format::PERF_SAMPLE_RAW as u64;
        attr.__bindgen_anon_1.sample_period = 1;
        match wakeup {
            Wakeup::Bytes(n) => {
                attr.set_watermark(1);
                attr.__bindgen_anon_2.wakeup_watermark = n;
            }
            Wakeup::EveryRecord => attr.__bindgen_anon_2.wakeup_events = 1,
        }
        // SAFETY: attr is a valid perf_event_attr of the size it declares.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const perf_event_attr,
                -1,
                cpu as libc::c_int,
                -1,
                PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new file descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        Self::map(fd, pages)
    }

    fn map(fd: OwnedFd, pages: usize) -> io::Result<Self> {
        let page = super::page_size();
        let mapped = page * (pages + 1);
        // SAFETY: mapping a perf event fd as the kernel documents: one
        // metadata page, then a power-of-two number of data pages.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        // SAFETY: an ioctl with no argument on our own perf event.
        if unsafe { libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_ENABLE as _, 0) } < 0 {
            let e = io::Error::last_os_error();
            // SAFETY: unmapping what was mapped above.
            unsafe { libc::munmap(ptr, mapped) };
            return Err(e);
        }
        Ok(PerfRing {
            fd,
            base,
            mapped,
            page,
            size: page * pages,
            scratch: vec![],
        })
    }

    fn meta(&self) -> *mut perf_event_mmap_page {
        self.base.as_ptr().cast()
    }

    /// Copies `out.len()` bytes of the ring starting at offset `at`.
    fn copy(&self, at: usize, out: &mut [u8]) {
        let start = at % self.size;
        let first = out.len().min(self.size - start);
        // SAFETY: both ranges lie inside the data area mapped above
        // (`start + first <= size`, the rest wraps to its beginning).
        unsafe {
            let data = self.base.as_ptr().add(self.page);
            std::ptr::copy_nonoverlapping(data.add(start), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(data, out.as_mut_ptr().add(first), out.len() - first);
        }
    }

    /// Hands every waiting sample to `f`; returns (samples, lost records
    /// the kernel reported).
    pub(super) fn drain(&mut self, f: &mut impl FnMut(&[u8])) -> (usize, u64) {
        let meta = self.meta();
        // SAFETY: the metadata page is mapped for as long as `self`; the
        // kernel writes data_head, we write data_tail.
        let head = unsafe { std::ptr::read_volatile(&(*meta).data_head) } as usize;
        fence(Ordering::Acquire);
        // SAFETY: as above.
        let mut tail = unsafe { std::ptr::read_volatile(&(*meta).data_tail) } as usize;
        let (mut samples, mut lost) = (0, 0);
        let mut scratch = std::mem::take(&mut self.scratch);
        while tail < head {
            let mut hdr = [0u8; std::mem::size_of::<perf_event_header>()];
            self.copy(tail, &mut hdr);
            let kind = u32::from_ne_bytes(hdr[0..4].try_into().expect("4 bytes"));
            let size = u16::from_ne_bytes(hdr[6..8].try_into().expect("2 bytes")) as usize;
            if size < hdr.len() {
                break;
            }
            let body = tail + hdr.len();
            if kind == perf_event_type::PERF_RECORD_SAMPLE as u32 {
                let mut len = [0u8; 4];
                self.copy(body, &mut len);
                scratch.resize(u32::from_ne_bytes(len) as usize, 0);
                self.copy(body + 4, &mut scratch);
                f(&scratch);
                samples += 1;
            } else if kind == perf_event_type::PERF_RECORD_LOST as u32 {
                let mut n = [0u8; 8];
                self.copy(body + 8, &mut n);
                lost += u64::from_ne_bytes(n);
            }
            tail += size;
        }
        self.scratch = scratch;
        fence(Ordering::Release);
        // SAFETY: as above; tells the kernel the space is free again.
        unsafe { std::ptr::write_volatile(&mut (*meta).data_tail, tail as u64) };
        (samples, lost)
    }
}

impl Drop for PerfRing {
    fn drop(&mut self) {
        // SAFETY: unmapping the region mapped in `map`, once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.mapped) };
    }
}

/// Puts perf event `fd` at index `cpu` of a BPF_MAP_TYPE_PERF_EVENT_ARRAY.
pub(super) fn set_map_entry(map: impl AsFd, cpu: u32, fd: RawFd) -> io::Result<()> {
    #[repr(C)]
    struct MapElemAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    let (key, value) = (cpu, fd as u32);
    let attr = MapElemAttr {
        map_fd: map.as_fd().as_raw_fd() as u32,
        _pad: 0,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        flags: 0,
    };
    // SAFETY: attr points at a key and a value that live across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_ELEM,
            &attr as *const MapElemAttr,
            std::mem::size_of::<MapElemAttr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
