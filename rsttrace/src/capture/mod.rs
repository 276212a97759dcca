//! Loading and attaching the eBPF programs, and reading their records.
//!
//! Two objects are embedded, built from the same source: one streams
//! through a BPF ring buffer (Linux >= 5.8) whose programs wake the reader
//! in batches, the other through per-CPU perf buffers for older kernels.

mod progstats;

use std::{future::poll_fn, io, task::Poll, time::Duration};

use aya::{
    include_bytes_aligned,
    maps::{
        perf::{PerfEvent, PerfEventArray, PerfEventArrayBuffer},
        Array, MapData, MapType, PerCpuArray, PerCpuHashMap, RingBuf,
    },
    programs::{tp_btf::BtfTracePointLinkId, BtfTracePoint, ProgramError, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use rsttrace_common::{
    config::{Config, Control},
    event::{AggKey, AggValue, COUNTERS_LEN},
};
use thiserror::Error;
use tokio::io::{unix::AsyncFd, Interest};

use crate::kernel::layout::{Hooks, ProgInfoLayout, BTF_TRACEPOINTS, FIREWALL_TRACEPOINTS};

static RINGBUF_OBJECT: &[u8] =
    include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rsttrace-ringbuf.o"));
static PERF_OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rsttrace-perf.o"));

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportChoice {
    /// Ring buffer when the kernel has it (5.8+), else perf buffers.
    Auto,
    Ringbuf,
    Perf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Ringbuf,
    Perf,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Ringbuf => "ringbuf",
            Transport::Perf => "perf",
        }
    }
}

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("this rsttrace binary was built without its eBPF programs (AYA_BUILD_SKIP); rebuild it with scripts/bootstrap.sh run first")]
    NoObject,
    #[error("this kernel has no BPF ring buffer (Linux < 5.8); use --transport perf or auto")]
    NoRingbuf,
    #[error("cannot load the eBPF object: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("the kernel refused to {action} eBPF program {program}: {detail}")]
    Program {
        action: &'static str,
        program: &'static str,
        detail: String,
    },
    #[error("eBPF map {0} missing from the object")]
    MissingMap(&'static str),
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("cannot list online CPUs: {0}")]
    Cpus(io::Error),
    #[error("cannot open perf buffer: {0}")]
    PerfBuffer(#[from] aya::maps::perf::PerfBufferError),
    #[error("cannot watch the event buffer: {0}")]
    Poll(io::Error),
}

/// Turns a program load/attach failure into one readable line.
fn program_error(action: &'static str, program: &'static str, e: ProgramError) -> CaptureError {
    let detail = match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let last = log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            if io_error.raw_os_error() == Some(libc::EPERM) && log.trim().is_empty() {
                format!("{io_error} (rsttrace needs root, or CAP_BPF and CAP_PERFMON)")
            } else {
                log::debug!("verifier log for {program}:\n{log}");
                format!("{io_error}; verifier: {last} (run with -v for the full log)")
            }
        }
        other => other.to_string(),
    };
    CaptureError::Program {
        action,
        program,
        detail,
    }
}

pub struct Options {
    pub transport: TransportChoice,
    /// Ring buffer bytes, or per-CPU perf buffer bytes.
    pub buffer_bytes: usize,
    /// Attach the netfilter-reset hooks.
    pub firewall: bool,
}

/// Per-CPU counters summed (see `rsttrace_common::event::COUNTER_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub values: [u64; COUNTERS_LEN as usize],
    /// Invocations the kernel skipped because the same program was
    /// already running on that CPU (bpf_prog_info.recursion_misses).
    pub recursion_misses: u64,
}

enum Reader {
    Ring(AsyncFd<RingBuf<MapData>>),
    Perf(Vec<AsyncFd<PerfEventArrayBuffer<MapData>>>),
}

pub struct Capture {
    ebpf: Ebpf,
    reader: Reader,
    transport: Transport,
    counters: PerCpuArray<MapData, u64>,
    progstats: progstats::ProgStats,
    /// Perf buffer PERF_RECORD_LOST counts (also counted in-kernel).
    pub perf_lost: u64,
    scratch: Vec<u8>,
    /// Links of the attached firewall hooks; None when not loaded.
    firewall_links: Option<Vec<(&'static str, BtfTracePointLinkId)>>,
}

fn register<T: std::os::fd::AsRawFd>(inner: T) -> Result<AsyncFd<T>, CaptureError> {
    // SAFETY: `inner` owns its fd for as long as the AsyncFd lives.
    unsafe { AsyncFd::register_with_interest(inner, Interest::READABLE) }
        .map_err(|e| CaptureError::Poll(e.into_parts().1))
}

/// The BTF tracepoint program `name` in the object.
fn btf_program<'e>(
    ebpf: &'e mut Ebpf,
    name: &'static str,
    action: &'static str,
) -> Result<&'e mut BtfTracePoint, CaptureError> {
    ebpf.program_mut(name)
        .ok_or(CaptureError::MissingMap(name))?
        .try_into()
        .map_err(|e| program_error(action, name, e))
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, CaptureError> {
    ebpf.take_map(name).ok_or(CaptureError::MissingMap(name))
}

impl Capture {
    /// Loads the programs with `config`, attaches them, and opens the
    /// event buffer.  Dropping the Capture detaches everything.
    pub fn start(
        config: &Config,
        hooks: Hooks,
        prog_info: Option<ProgInfoLayout>,
        opts: &Options,
        btf: &Btf,
    ) -> Result<Self, CaptureError> {
        let ringbuf_ok = aya::sys::is_map_supported(MapType::RingBuf).unwrap_or(false);
        let transport = match opts.transport {
            TransportChoice::Auto if ringbuf_ok => Transport::Ringbuf,
            TransportChoice::Auto | TransportChoice::Perf => Transport::Perf,
            TransportChoice::Ringbuf if ringbuf_ok => Transport::Ringbuf,
            TransportChoice::Ringbuf => return Err(CaptureError::NoRingbuf),
        };
        let object = match transport {
            Transport::Ringbuf => RINGBUF_OBJECT,
            Transport::Perf => PERF_OBJECT,
        };
        if object.is_empty() {
            return Err(CaptureError::NoObject);
        }
        let page = page_size();
        let mut loader = EbpfLoader::new();
        loader
            .btf(Some(btf))
            .override_global("CONFIG", config, true);
        if transport == Transport::Ringbuf {
            // A power-of-two number of pages.
            let size = opts.buffer_bytes.max(page).next_power_of_two();
            loader.map_max_entries("EVENTS", size as u32);
        }
        let mut ebpf = loader.load(object).map_err(CaptureError::Load)?;

        for &(name, _, required) in BTF_TRACEPOINTS {
            let wanted = required || (name == "inet_sk_error_report" && hooks.error_report);
            if !wanted {
                continue;
            }
            let prog = btf_program(&mut ebpf, name, "load")?;
            prog.load(name, btf)
                .map_err(|e| program_error("load", name, e))?;
            prog.attach()
                .map_err(|e| program_error("attach", name, e))?;
        }
        let mut firewall_links = None;
        if hooks.firewall && opts.firewall {
            for &(name, _) in FIREWALL_TRACEPOINTS {
                btf_program(&mut ebpf, name, "load")?
                    .load(name, btf)
                    .map_err(|e| program_error("load", name, e))?;
            }
            firewall_links = Some(vec![]);
        }
        if hooks.accept {
            for name in ["sys_exit_accept4", "sys_exit_accept"] {
                let prog: &mut TracePoint = ebpf
                    .program_mut(name)
                    .ok_or(CaptureError::MissingMap(name))?
                    .try_into()
                    .map_err(|e| program_error("load", name, e))?;
                prog.load().map_err(|e| program_error("load", name, e))?;
                prog.attach("syscalls", name)
                    .map_err(|e| program_error("attach", name, e))?;
            }
        }

        let reader = match transport {
            Transport::Ringbuf => {
                let ring = RingBuf::try_from(take_map(&mut ebpf, "EVENTS")?).map_err(|source| {
                    CaptureError::Map {
                        name: "EVENTS",
                        source,
                    }
                })?;
                Reader::Ring(register(ring)?)
            }
            Transport::Perf => {
                let mut array =
                    PerfEventArray::try_from(take_map(&mut ebpf, "EVENTS")?).map_err(|source| {
                        CaptureError::Map {
                            name: "EVENTS",
                            source,
                        }
                    })?;
                let pages = (opts.buffer_bytes / page).max(1).next_power_of_two();
                let cpus = aya::util::online_cpus().map_err(|(_, e)| CaptureError::Cpus(e))?;
                let mut bufs = Vec::with_capacity(cpus.len());
                for cpu in cpus {
                    bufs.push(register(array.open(cpu, Some(pages))?)?);
                }
                Reader::Perf(bufs)
            }
        };
        let counters =
            PerCpuArray::try_from(take_map(&mut ebpf, "COUNTERS")?).map_err(|source| {
                CaptureError::Map {
                    name: "COUNTERS",
                    source,
                }
            })?;
        let progstats = progstats::ProgStats::new(prog_info);
        let mut capture = Capture {
            ebpf,
            reader,
            transport,
            counters,
            progstats,
            perf_lost: 0,
            scratch: vec![0; 1024],
            firewall_links,
        };
        capture.set_firewall(true)?;
        Ok(capture)
    }

    /// Whether the firewall hooks are loaded (so that they can be
    /// attached).
    pub fn has_firewall(&self) -> bool {
        self.firewall_links.is_some()
    }

    /// Attaches or detaches the firewall hooks.  They run on every dropped
    /// packet and route lookup, so storm mode takes them off while a storm
    /// lasts.
    pub fn set_firewall(&mut self, on: bool) -> Result<(), CaptureError> {
        let Some(links) = self.firewall_links.as_mut() else {
            return Ok(());
        };
        let attached = !links.is_empty();
        if on == attached {
            return Ok(());
        }
        if on {
            for &(name, _) in FIREWALL_TRACEPOINTS {
                let prog = btf_program(&mut self.ebpf, name, "attach")?;
                links.push((
                    name,
                    prog.attach()
                        .map_err(|e| program_error("attach", name, e))?,
                ));
            }
        } else {
            for (name, link) in links.drain(..) {
                let prog = btf_program(&mut self.ebpf, name, "detach")?;
                prog.detach(link)
                    .map_err(|e| program_error("detach", name, e))?;
            }
        }
        Ok(())
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Waits until the kernel signals records, or `recheck` passes.
    /// Cancel-safe: nothing is consumed here.
    pub async fn ready(&mut self, recheck: Option<Duration>) -> io::Result<()> {
        let wait = async {
            match &mut self.reader {
                Reader::Ring(fd) => {
                    let mut guard = fd.readable_mut().await?;
                    guard.clear_ready();
                }
                Reader::Perf(fds) => {
                    poll_fn(|cx| {
                        let mut any = false;
                        for fd in fds.iter_mut() {
                            match fd.poll_read_ready_mut(cx) {
                                Poll::Ready(Ok(mut guard)) => {
                                    guard.clear_ready();
                                    any = true;
                                }
                                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                                Poll::Pending => {}
                            }
                        }
                        if any {
                            Poll::Ready(Ok(()))
                        } else {
                            Poll::Pending
                        }
                    })
                    .await?;
                }
            }
            Ok::<(), io::Error>(())
        };
        match recheck {
            Some(d) => match tokio::time::timeout(d, wait).await {
                Ok(r) => r,
                Err(_elapsed) => Ok(()),
            },
            None => wait.await,
        }
    }

    /// Hands up to `limit` waiting records to `f`.  Returns how many were
    /// read; `limit` means more may be waiting.
    pub fn drain(&mut self, limit: usize, f: &mut impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        match &mut self.reader {
            Reader::Ring(fd) => {
                let ring = fd.get_mut();
                while n < limit {
                    let Some(item) = ring.next() else { break };
                    f(&item);
                    n += 1;
                }
            }
            Reader::Perf(fds) => {
                let scratch = &mut self.scratch;
                let mut lost = 0;
                for fd in fds.iter_mut() {
                    fd.get_mut().for_each(|event| match event {
                        PerfEvent::Sample { head, tail } => {
                            n += 1;
                            if tail.is_empty() {
                                f(head);
                            } else {
                                // The sample wraps around the ring: join it.
                                let len = head.len() + tail.len();
                                if scratch.len() < len {
                                    scratch.resize(len, 0);
                                }
                                scratch[..head.len()].copy_from_slice(head);
                                scratch[head.len()..len].copy_from_slice(tail);
                                f(&scratch[..len]);
                            }
                        }
                        PerfEvent::Lost { count } => lost += count,
                    });
                }
                self.perf_lost += lost;
            }
        }
        n
    }

    pub fn counters(&mut self) -> Counters {
        let mut out = Counters::default();
        for (i, slot) in out.values.iter_mut().enumerate() {
            if let Ok(per_cpu) = self.counters.get(&(i as u32), 0) {
                *slot = per_cpu.iter().sum();
            }
        }
        out.recursion_misses = self.progstats.recursion_misses(&self.ebpf);
        out
    }

    pub fn set_control(&mut self, control: Control) -> Result<(), CaptureError> {
        let map = self
            .ebpf
            .map_mut("CONTROL")
            .ok_or(CaptureError::MissingMap("CONTROL"))?;
        let mut array: Array<&mut MapData, Control> =
            Array::try_from(map).map_err(|source| CaptureError::Map {
                name: "CONTROL",
                source,
            })?;
        array
            .set(0, control, 0)
            .map_err(|source| CaptureError::Map {
                name: "CONTROL",
                source,
            })
    }

    /// Removes and returns the aggregation entries of `epoch`, summed over
    /// CPUs (the programs count into the other epoch meanwhile).
    pub fn take_aggregates(&mut self, epoch: u8) -> Result<Vec<(AggKey, AggValue)>, CaptureError> {
        let map = self
            .ebpf
            .map_mut("AGG")
            .ok_or(CaptureError::MissingMap("AGG"))?;
        let mut agg: PerCpuHashMap<&mut MapData, AggKey, AggValue> =
            PerCpuHashMap::try_from(map).map_err(|source| CaptureError::Map {
                name: "AGG",
                source,
            })?;
        let keys: Vec<AggKey> = agg
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.epoch == epoch)
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Ok(values) = agg.get(&key, 0) {
                let mut total = AggValue::default();
                for v in values.iter().filter(|v| v.count > 0) {
                    if total.count == 0 {
                        total = *v;
                    } else {
                        total.count += v.count;
                        total.first_jiffies = total.first_jiffies.min(v.first_jiffies);
                        total.last_jiffies = total.last_jiffies.max(v.last_jiffies);
                    }
                }
                if total.count > 0 {
                    out.push((key, total));
                }
            }
            let _ = agg.remove(&key);
        }
        Ok(out)
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}
