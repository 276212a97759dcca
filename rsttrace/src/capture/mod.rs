//! Loading and attaching the eBPF programs, and reading their records.
//!
//! Two objects are embedded, built from the same source: one streams
//! through a BPF ring buffer (Linux >= 5.8) whose programs wake the reader
//! in batches, the other through per-CPU perf buffers for older kernels.
//! Which programs are attached depends on the kernel (`plan`).

pub mod attach;
mod maps;
mod perf;
pub mod plan;
mod progstats;
mod reader;

use std::{io, time::Duration};

use aya::{
    include_bytes_aligned,
    maps::{MapData, MapType, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, ProgramError},
    Btf, Ebpf, EbpfLoader,
};
pub use maps::Counters;
use rsttrace_common::config::{Config, Control};
use thiserror::Error;

use self::{
    attach::{program, Attacher, HookStatus},
    plan::{Plan, Want, FIREWALL_TRACEPOINTS},
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
pub fn program_error(action: &'static str, program: &'static str, e: ProgramError) -> CaptureError {
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
                format!("{io_error} (rsttrace needs root, or CAP_BPF and CAP_PERFMON; fentry also needs a kernel that allows BPF trampolines)")
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

pub struct Options {
    pub transport: TransportChoice,
    /// Ring buffer bytes, or per-CPU perf buffer bytes.
    pub buffer_bytes: usize,
    pub want: Want,
}

pub struct Capture {
    ebpf: Ebpf,
    reader: Reader,
    transport: Transport,
    counters: PerCpuArray<MapData, u64>,
    progstats: progstats::ProgStats,
    plan: Plan,
    statuses: Vec<HookStatus>,
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
    pub fn start(
        mut config: Config,
        hooks: &Hooks,
        prog_info: Option<ProgInfoLayout>,
        opts: &Options,
        btf: &Btf,
    ) -> Result<Self, CaptureError> {
        let transport = choose_transport(opts.transport)?;
        let object = match transport {
            Transport::Ringbuf => RINGBUF_OBJECT,
            Transport::Perf => PERF_OBJECT,
        };
        if object.is_empty() {
            return Err(CaptureError::NoObject);
        }
        let decisions = plan::decide(hooks, &opts.want);
        config.want_firewall_tp = u8::from(decisions.firewall_tp);
        config.want_icmp = u8::from(decisions.path && opts.want.failures);
        config.want_stray = u8::from(decisions.path && opts.want.stray);
        if !decisions.kfree_skb {
            config.kfree_skb_has_reason = 0;
        }
        let mut loader = EbpfLoader::new();
        loader
            .btf(Some(btf))
            .override_global("CONFIG", &config, true);
        if transport == Transport::Ringbuf {
            // A power-of-two number of pages.
            let size = opts.buffer_bytes.max(page_size()).next_power_of_two();
            loader.map_max_entries("EVENTS", size as u32);
        }
        let mut ebpf = loader.load(object).map_err(CaptureError::Load)?;
        let mut a = Attacher {
            ebpf: &mut ebpf,
            btf,
            statuses: vec![],
            why_no_functions: None,
        };
        let plan = plan::attach(&mut a, hooks, &opts.want, decisions)?;
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
        };
        capture.set_firewall(true)?;
        Ok(capture)
    }

    /// What each hook came to, and the plain-words notes for this kernel.
    pub fn statuses(&self) -> &[HookStatus] {
        &self.statuses
    }

    pub fn notes(&self) -> &[String] {
        &self.plan.notes
    }

    pub fn sent_path(&self) -> plan::SentPath {
        self.plan.sent
    }

    /// Whether fentry programs load here (BPF trampolines), trying one
    /// that is not in use (for `rsttrace doctor`).
    pub fn probe_fentry(&mut self, btf: &Btf) -> Result<(), String> {
        let prog: &mut aya::programs::FEntry =
            program(&mut self.ebpf, "tcp_send_active_reset_fentry").map_err(|e| e.to_string())?;
        if prog.fd().is_ok() {
            return Ok(());
        }
        prog.load("tcp_send_active_reset", btf)
            .map_err(|e| program_error("load", "tcp_send_active_reset_fentry", e).to_string())
    }

    /// Attaches netfilter reset hooks whose module has loaded since
    /// start-up (called once a second).
    pub fn retry_waiting(&mut self, btf: &Btf) {
        if self.plan.waiting.is_empty() {
            return;
        }
        let mut a = Attacher {
            ebpf: &mut self.ebpf,
            btf,
            statuses: vec![],
            why_no_functions: None,
        };
        for f in plan::retry_waiting(&mut a, &mut self.plan.waiting) {
            log::info!("{f} hooked: firewall resets are exact now");
            if let Some(s) = self.statuses.iter_mut().find(|s| s.target == f) {
                s.state = attach::HookState::Attached;
            }
        }
    }

    /// Each hook's state in one word, for the metrics: `attached`,
    /// `paused` (a firewall hook storm mode took off), `waiting` (for its
    /// module) or `off`.
    pub fn hook_states(&self) -> Vec<(String, &'static str, &'static str)> {
        let paused = self.plan.firewall_links.as_ref().is_some_and(Vec::is_empty);
        self.statuses
            .iter()
            .map(|s| {
                let state = match &s.state {
                    attach::HookState::Attached
                        if paused && FIREWALL_TRACEPOINTS.contains(&s.target.as_str()) =>
                    {
                        "paused"
                    }
                    attach::HookState::Attached => "attached",
                    attach::HookState::Waiting(_) => "waiting",
                    attach::HookState::Off(_) => "off",
                };
                (s.target.clone(), s.kind.as_str(), state)
            })
            .collect()
    }

    /// Whether programs may be attached after start-up (and so the
    /// capabilities for it kept): netfilter hooks waiting for their
    /// module, or firewall hooks that storm modes take off and put back.
    pub fn attaches_later(&self, storm_modes: bool) -> bool {
        !self.plan.waiting.is_empty() || (storm_modes && self.has_firewall())
    }

    /// Whether the firewall tracepoints are loaded (so that they can be
    /// attached).
    pub fn has_firewall(&self) -> bool {
        self.plan.firewall_links.is_some()
    }

    /// Attaches or detaches the firewall tracepoints.  They run on every
    /// dropped packet, route lookup and packet sent, so storm mode takes
    /// them off while a storm lasts.
    pub fn set_firewall(&mut self, on: bool) -> Result<(), CaptureError> {
        let Some(links) = self.plan.firewall_links.as_mut() else {
            return Ok(());
        };
        if on != links.is_empty() {
            return Ok(());
        }
        if on {
            for name in FIREWALL_TRACEPOINTS {
                let prog: &mut BtfTracePoint = program(&mut self.ebpf, name)?;
                let link = prog
                    .attach()
                    .map_err(|e| program_error("attach", name, e))?;
                links.push((name, link));
            }
        } else {
            for (name, link) in links.drain(..) {
                let prog: &mut BtfTracePoint = program(&mut self.ebpf, name)?;
                prog.detach(link)
                    .map_err(|e| program_error("detach", name, e))?;
            }
        }
        Ok(())
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    pub async fn ready(&mut self, recheck: Option<Duration>) -> io::Result<()> {
        self.reader.ready(recheck).await
    }

    pub fn drain(&mut self, limit: usize, f: &mut impl FnMut(&[u8])) -> usize {
        self.reader.drain(limit, f)
    }

    /// Records the perf buffers reported lost (also counted in-kernel).
    pub fn perf_lost(&self) -> u64 {
        self.reader.perf_lost()
    }

    pub fn counters(&mut self) -> Counters {
        Counters {
            values: maps::sum_counters(&self.counters),
            recursion_misses: self.progstats.recursion_misses(&self.ebpf),
        }
    }

    pub fn set_control(&mut self, control: Control) -> Result<(), CaptureError> {
        maps::set_control(&mut self.ebpf, control)
    }

    pub fn take_aggregates(
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

pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}
