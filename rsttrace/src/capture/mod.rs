//! Loading and attaching the eBPF programs, and reading their records.
//!
//! Two objects are embedded, built from the same source: one streams
//! through a BPF ring buffer (Linux >= 5.8) whose programs wake the reader
//! in batches, the other through per-CPU perf buffers for older kernels.
//! Which programs are attached depends on the kernel (`plan`).

pub(crate) mod attach;
pub(crate) mod diag;
mod hooks;
mod maps;
mod perf;
pub(crate) mod plan;
mod progstats;
mod reader;

use std::{io, time::Duration};

use aya::{
    include_bytes_aligned,
    maps::{MapData, MapType, PerCpuArray, RingBuf},
    programs::ProgramError,
    Btf, Ebpf, EbpfLoader,
};
pub(crate) use maps::Counters;
use rsttrace_common::config::{Config, Control};
use thiserror::Error;

use self::{
    attach::{Attacher, HookStatus},
    plan::{Plan, Source, Want},
    reader::Reader,
};
use crate::kernel::{hooks::Hooks, layout::ProgInfoLayout};

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
pub(crate) enum Transport {
    Ringbuf,
    Perf,
}

impl Transport {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Transport::Ringbuf => "ringbuf",
            Transport::Perf => "perf",
        }
    }
}

#[derive(Debug, Error)]
pub(crate) enum CaptureError {
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
    /// A function hook would not load: BPF trampolines do not work here
    /// (the capture starts again with tracepoints).
    #[error("BPF trampolines (fentry/fexit) do not work here: {0}")]
    Functions(String),
    #[error("eBPF map or program {0} missing from the object")]
    MissingMap(&'static str),
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("cannot list online CPUs: {0}")]
    Cpus(io::Error),
    #[error("cannot open perf buffers: {0}")]
    Perf(io::Error),
    #[error("cannot watch the event buffer: {0}")]
    Poll(io::Error),
}

/// Turns a program load/attach failure into one readable line.
pub(crate) fn program_error(
    action: &'static str,
    program: &'static str,
    e: ProgramError,
) -> CaptureError {
    let detail = match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            // The verifier ends with its statistics; the reason is the
            // line before them.
            let last = log
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| {
                    !l.is_empty()
                        && !l.starts_with("processed ")
                        && !l.starts_with("verification time")
                        && !l.starts_with("stack depth")
                })
                .unwrap_or("");
            if io_error.raw_os_error() == Some(libc::EPERM) && log.trim().is_empty() {
                if crate::kernel::caps::Sets::current().can_trace() {
                    // The privileges are there: the kernel itself refuses.
                    format!("{io_error} (this kernel refuses it even with CAP_BPF and CAP_PERFMON: no BPF trampolines for fentry/fexit)")
                } else {
                    format!("{io_error} (rsttrace needs root, or CAP_BPF and CAP_PERFMON)")
                }
            } else {
                log::debug!("verifier log for {program}:\n{log}");
                format!("{io_error}; verifier: {last} (run with -vv for the full log)")
            }
        }
        other => {
            let mut s = other.to_string();
            let mut src = std::error::Error::source(&other);
            while let Some(e) = src {
                s = format!("{s}: {e}");
                src = e.source();
            }
            s
        }
    };
    CaptureError::Program {
        action,
        program,
        detail,
    }
}

pub(crate) struct Options {
    pub transport: TransportChoice,
    /// Ring buffer bytes, or per-CPU perf buffer bytes.
    pub buffer_bytes: usize,
    pub want: Want,
    /// Distinct storm keys the kernel keeps per CPU.
    pub storm_keys: u32,
    /// Read the programs' diagnostics (-v).
    pub diagnostics: bool,
}

pub(crate) struct Capture {
    ebpf: Ebpf,
    reader: Reader,
    transport: Transport,
    counters: PerCpuArray<MapData, u64>,
    progstats: progstats::ProgStats,
    plan: Plan,
    statuses: Vec<HookStatus>,
    diagnostics: Option<diag::Diagnostics>,
}

fn choose_transport(choice: TransportChoice) -> Result<Transport, CaptureError> {
    let ringbuf_ok = aya::sys::is_map_supported(MapType::RingBuf).unwrap_or(false);
    Ok(match choice {
        TransportChoice::Auto if ringbuf_ok => Transport::Ringbuf,
        TransportChoice::Auto | TransportChoice::Perf => Transport::Perf,
        TransportChoice::Ringbuf if ringbuf_ok => Transport::Ringbuf,
        TransportChoice::Ringbuf => return Err(CaptureError::NoRingbuf),
    })
}

/// Loads the object for `transport` with `config`, the maps sized for it.
fn load_object(
    config: &Config,
    opts: &Options,
    btf: &Btf,
    transport: Transport,
) -> Result<Ebpf, CaptureError> {
    let object = match transport {
        Transport::Ringbuf => RINGBUF_OBJECT,
        Transport::Perf => PERF_OBJECT,
    };
    if object.is_empty() {
        return Err(CaptureError::NoObject);
    }
    let log_level = diag::level(opts.diagnostics);
    let mut loader = EbpfLoader::new();
    loader
        .btf(Some(btf))
        .override_global("CONFIG", config, true)
        .override_global(aya_log::LEVEL, &log_level, false)
        .map_max_entries("AGG", opts.storm_keys);
    if transport == Transport::Ringbuf {
        // A power-of-two number of pages.
        let size = opts.buffer_bytes.max(page_size()).next_power_of_two();
        loader.map_max_entries("EVENTS", size as u32);
    }
    loader.load(object).map_err(CaptureError::Load)
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, CaptureError> {
    ebpf.take_map(name).ok_or(CaptureError::MissingMap(name))
}

fn open_reader(
    ebpf: &mut Ebpf,
    transport: Transport,
    opts: &Options,
) -> Result<Reader, CaptureError> {
    Ok(match transport {
        Transport::Ringbuf => {
            let ring = RingBuf::try_from(take_map(ebpf, "EVENTS")?).map_err(|source| {
                CaptureError::Map {
                    name: "EVENTS",
                    source,
                }
            })?;
            Reader::Ring(reader::register(ring)?)
        }
        Transport::Perf => {
            let (
                Some(aya::maps::Map::PerfEventArray(events)),
                Some(aya::maps::Map::PerfEventArray(wake)),
            ) = (ebpf.map("EVENTS"), ebpf.map("WAKE"))
            else {
                return Err(CaptureError::MissingMap("EVENTS"));
            };
            reader::perf(events, wake, opts.buffer_bytes)?
        }
    })
}

impl Capture {
    /// Loads the programs with `config`, attaches the ones this kernel
    /// offers, and opens the event buffer.  Dropping the Capture detaches
    /// everything.
    ///
    /// Function hooks are tried first where the kernel has its own BTF;
    /// if one does not load (a kernel that refuses BPF trampolines), the
    /// object is loaded again for tracepoints alone: the choice changes
    /// what the programs are configured with, so it is made before load.
    pub(crate) fn start(
        config: Config,
        hooks: &Hooks,
        prog_info: Option<ProgInfoLayout>,
        opts: &Options,
        btf: &Btf,
    ) -> Result<Self, CaptureError> {
        let transport = choose_transport(opts.transport)?;
        let first = if opts.want.kernel_btf {
            Source::Functions
        } else {
            Source::Tracepoints
        };
        match Self::load(config, hooks, prog_info, opts, btf, transport, first, None) {
            Err(CaptureError::Functions(why)) => {
                log::debug!("function hooks unavailable: {why}");
                let why = Some(why);
                Self::load(
                    config,
                    hooks,
                    prog_info,
                    opts,
                    btf,
                    transport,
                    Source::Tracepoints,
                    why,
                )
            }
            r => r,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn load(
        mut config: Config,
        hooks: &Hooks,
        prog_info: Option<ProgInfoLayout>,
        opts: &Options,
        btf: &Btf,
        transport: Transport,
        source: Source,
        why_no_functions: Option<String>,
    ) -> Result<Self, CaptureError> {
        let decisions = plan::decide(hooks, &opts.want, source);
        plan::configure(&mut config, &decisions, &opts.want);
        let mut ebpf = load_object(&config, opts, btf, transport)?;
        // Before the programs load: the log buffer's fd is in them.
        let diagnostics = opts
            .diagnostics
            .then(|| diag::Diagnostics::open(&mut ebpf))
            .flatten();
        let mut a = Attacher {
            ebpf: &mut ebpf,
            btf,
            statuses: vec![],
            why_no_functions: why_no_functions.clone(),
        };
        let mut plan = plan::attach(&mut a, hooks, &opts.want, decisions)?;
        if let Some(why) = why_no_functions {
            plan.notes.push(format!(
                "BPF trampolines (fentry/fexit) do not work on this kernel ({why}): per-packet \
                 tracepoints stand in for the per-event function hooks"
            ));
        }
        let statuses = std::mem::take(&mut a.statuses);
        let reader = open_reader(&mut ebpf, transport, opts)?;
        let counters =
            PerCpuArray::try_from(take_map(&mut ebpf, "COUNTERS")?).map_err(|source| {
                CaptureError::Map {
                    name: "COUNTERS",
                    source,
                }
            })?;
        let mut capture = Capture {
            ebpf,
            reader,
            transport,
            counters,
            progstats: progstats::ProgStats::new(prog_info),
            plan,
            statuses,
            diagnostics,
        };
        capture.set_firewall(true)?;
        Ok(capture)
    }

    /// The programs' diagnostics, for the event loop to wait on.
    pub(crate) fn take_diagnostics(&mut self) -> Option<diag::Diagnostics> {
        self.diagnostics.take()
    }

    pub(crate) fn transport(&self) -> Transport {
        self.transport
    }

    pub(crate) async fn ready(&mut self, recheck: Option<Duration>) -> io::Result<()> {
        self.reader.ready(recheck).await
    }

    pub(crate) fn drain(&mut self, limit: usize, f: &mut impl FnMut(&[u8])) -> usize {
        self.reader.drain(limit, f)
    }

    /// Records the perf buffers reported lost (also counted in-kernel).
    pub(crate) fn perf_lost(&self) -> u64 {
        self.reader.perf_lost()
    }

    /// Whether the maps can be read with this thread's capabilities now
    /// (see `cmd::trace::service::drop_capabilities`).
    pub(crate) fn maps_readable(&self) -> bool {
        self.counters.get(&0, 0).is_ok()
    }

    pub(crate) fn counters(&mut self) -> Counters {
        Counters {
            values: maps::sum_counters(&self.counters),
            recursion_misses: self.progstats.recursion_misses(&self.ebpf),
        }
    }

    pub(crate) fn set_control(&mut self, control: Control) -> Result<(), CaptureError> {
        maps::set_control(&mut self.ebpf, control)
    }

    pub(crate) fn take_aggregates(
        &mut self,
        epoch: u8,
    ) -> Result<
        Vec<(
            rsttrace_common::event::AggKey,
            rsttrace_common::event::AggValue,
        )>,
        CaptureError,
    > {
        maps::take_aggregates(&mut self.ebpf, epoch)
    }
}

pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}
