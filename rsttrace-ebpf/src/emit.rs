//! Getting records to userspace: the transport (ring buffer or perf buffer,
//! chosen at build time), the per-CPU counters, and storm aggregation.

use aya_ebpf::{
    helpers::bpf_get_smp_processor_id,
    macros::map,
    maps::{Array, PerCpuArray, PerCpuHashMap},
};
use rsttrace_common::{
    config::{Control, MODE_AGGREGATE, MODE_AUTO},
    event::{
        AggKey, AggValue, EventHeader, ResetEvent, COUNTERS_LEN, COUNTER_AGGREGATED,
        COUNTER_AGG_OVERFLOW, COUNTER_EMITTED, COUNTER_LOST, KIND_RESET_RECEIVED,
    },
};

use crate::kmem::conf;

#[inline(always)]
pub(crate) fn header(kind: u8, now_ns: u64) -> EventHeader {
    EventHeader {
        kind,
        _pad0: 0,
        _pad1: 0,
        // SAFETY: no arguments; the current CPU's number.
        cpu: unsafe { bpf_get_smp_processor_id() },
        ts_ns: now_ns,
    }
}

#[cfg(all(feature = "ringbuf", feature = "perf"))]
compile_error!("build with exactly one of the features `ringbuf` and `perf`");

/// The event stream.  Its size is set by the daemon (`--buffer-size`).
#[cfg(feature = "ringbuf")]
#[map]
static EVENTS: aya_ebpf::maps::RingBuf = aya_ebpf::maps::RingBuf::with_byte_size(4 << 20, 0);

#[cfg(feature = "perf")]
#[map]
static EVENTS: aya_ebpf::maps::PerfEventArray<u8> = aya_ebpf::maps::PerfEventArray::new(0);

/// Perf buffers whose only purpose is waking the reader: EVENTS wakes it
/// when a quarter fills, this one at most once per `wakeup_interval_ns`.
#[cfg(feature = "perf")]
#[map]
static WAKE: aya_ebpf::maps::PerfEventArray<u8> = aya_ebpf::maps::PerfEventArray::new(0);

/// Per-CPU counters, indexed by the `COUNTER_*` constants.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

/// Runtime switches from the daemon (element 0).
#[map]
static CONTROL: Array<Control> = Array::with_max_entries(1, 0);

/// Time of the last forced wake-up of the reader (element 0).  Shared by
/// all CPUs without atomics: a lost race only costs one extra wake-up.
#[map]
static LAST_WAKE: Array<u64> = Array::with_max_entries(1, 0);

/// Per-CPU storm detector: resets seen in the current window.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct StormWindow {
    start_jiffies: u64,
    count: u64,
}

#[map]
static STORM: PerCpuArray<StormWindow> = PerCpuArray::with_max_entries(1, 0);

/// Resets counted instead of emitted, per key and CPU (rsttrace sizes it
/// from --storm-keys at load).
#[map]
static AGG: PerCpuHashMap<AggKey, AggValue> = PerCpuHashMap::with_max_entries(16384, 0);

#[inline(always)]
pub(crate) fn count(index: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot: nothing else writes it while this
        // program runs on this CPU (the kernel does not nest a program
        // with itself, and a lost race between programs costs one count).
        unsafe { *c += 1 };
    }
}

/// Sends one record.  Counts it as emitted or, when the buffer is full, lost.
#[inline(always)]
pub(crate) fn emit<C: aya_ebpf::EbpfContext, T>(_ctx: &C, record: &T, now_ns: u64) {
    #[cfg(feature = "ringbuf")]
    {
        let flags = wakeup_flags(now_ns);
        match EVENTS.output::<T>(record, flags) {
            Ok(()) => count(COUNTER_EMITTED),
            Err(_) => count(COUNTER_LOST),
        }
    }
    #[cfg(feature = "perf")]
    {
        // The kernel also reports these losses to the reader
        // (PERF_RECORD_LOST); the daemon uses this counter, not both.
        if perf_output(_ctx, core::ptr::addr_of!(EVENTS).cast(), record) == 0 {
            count(COUNTER_EMITTED);
        } else {
            count(COUNTER_LOST);
        }
        if wake_due(now_ns) {
            let _ = perf_output(_ctx, core::ptr::addr_of!(WAKE).cast(), &0u64);
        }
    }
}

#[cfg(feature = "perf")]
#[inline(always)]
fn perf_output<C: aya_ebpf::EbpfContext, T>(ctx: &C, map: *const u8, record: &T) -> i64 {
    use aya_ebpf::{bindings::BPF_F_CURRENT_CPU, helpers::bpf_perf_event_output};
    // SAFETY: `record` is a plain #[repr(C)] value of the size passed;
    // `map` is one of this object's perf event arrays.
    unsafe {
        bpf_perf_event_output(
            ctx.as_ptr(),
            map as *mut core::ffi::c_void,
            BPF_F_CURRENT_CPU,
            record as *const T as *mut core::ffi::c_void,
            core::mem::size_of::<T>() as u64,
        )
    }
}

/// Whether the reader should be woken now: at most once per
/// `wakeup_interval_ns`, so that at low rates every record wakes it at
/// once and under a storm wake-ups drop to a few hundred a second.
#[inline(always)]
fn wake_due(now_ns: u64) -> bool {
    let Some(last) = LAST_WAKE.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: a pointer into the map value; all CPUs share it without
    // atomics on purpose (a lost race costs one extra wake-up).
    let last = unsafe { &mut *last };
    if now_ns.wrapping_sub(*last) >= conf!(wakeup_interval_ns) {
        *last = now_ns;
        true
    } else {
        false
    }
}

/// Wake the reader when due (see `wake_due`) or as soon as
/// `wakeup_bytes` are waiting; otherwise let records accumulate.  The
/// daemon re-checks the buffer shortly after every non-empty read, which
/// picks up records that arrived without a wake-up.
#[cfg(feature = "ringbuf")]
#[inline(always)]
fn wakeup_flags(now_ns: u64) -> u64 {
    use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
    if wake_due(now_ns) || EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= conf!(wakeup_bytes) {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Decides whether this reset is emitted (true) or counted in the
/// aggregation table (false), per the daemon's mode.
#[inline(always)]
pub(crate) fn should_emit(jiffies: u64) -> bool {
    let Some(control) = CONTROL.get(0) else {
        return true;
    };
    match control.mode {
        MODE_AGGREGATE => false,
        MODE_AUTO => {
            let Some(w) = STORM.get_ptr_mut(0) else {
                return true;
            };
            // SAFETY: a per-CPU slot, see `count`.
            let w = unsafe { &mut *w };
            if jiffies.wrapping_sub(w.start_jiffies) >= control.storm_window_jiffies {
                w.start_jiffies = jiffies;
                w.count = 0;
            }
            w.count += 1;
            w.count <= control.storm_threshold as u64
        }
        _ => true,
    }
}

/// Counts a reset under its aggregation key.  A full table still counts
/// the reset (`COUNTER_AGG_OVERFLOW`) so that totals add up.
#[inline(always)]
pub(crate) fn aggregate<C: aya_ebpf::EbpfContext>(
    ctx: &C,
    kind: u8,
    ev: &ResetEvent,
    jiffies: u64,
) {
    count(COUNTER_AGGREGATED);
    let epoch = match CONTROL.get(0) {
        Some(c) => c.epoch as u8,
        None => 0,
    };
    let key = AggKey {
        epoch,
        kind,
        state: ev.state,
        // FIN, SYN, RST, ACK: the bits the cause depends on.
        tcp_flags: ev.seg.tcp_flags & 0x17,
        reason: ev.reason,
        netns: ev.netns,
        port: if kind == KIND_RESET_RECEIVED {
            ev.ends.remote_port
        } else {
            ev.ends.local_port
        },
        family: ev.ends.family,
        owner_tgid: ev.owner.tgid,
        has_payload: u8::from(ev.seg.payload_len > 0),
        _pad0: 0,
        _pad1: 0,
    };
    if let Some(v) = AGG.get_ptr_mut(key) {
        // SAFETY: a per-CPU map value, see `count`.
        let v = unsafe { &mut *v };
        v.count += 1;
        v.last_jiffies = jiffies;
        return;
    }
    let (example_addr, example_port) = if kind == KIND_RESET_RECEIVED {
        (ev.ends.local_addr, ev.ends.local_port)
    } else {
        (ev.ends.remote_addr, ev.ends.remote_port)
    };
    let value = AggValue {
        count: 1,
        first_jiffies: jiffies,
        last_jiffies: jiffies,
        remote_addr: example_addr,
        remote_port: example_port,
        _pad0: 0,
        _pad1: 0,
        owner_comm: ev.owner.comm,
    };
    if AGG.insert(key, value, 0).is_err() {
        count(COUNTER_AGG_OVERFLOW);
        crate::diag::say(ctx, crate::diag::Diag::AggFull);
    }
}
