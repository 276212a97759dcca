//! `rsttrace [OPTIONS]`: check the host, load and attach the programs, and
//! stream reports until interrupted.

use std::{
    collections::HashSet,
    io::{self, Write},
    os::unix::fs::MetadataExt,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use clap::ValueEnum as _;
use rsttrace_common::{
    config::{Control, MODE_AGGREGATE, MODE_AUTO, MODE_EVENTS},
    event::{
        COUNTER_AGGREGATED, COUNTER_AGG_OVERFLOW, COUNTER_EMITTED, COUNTER_FILTERED, COUNTER_LOST,
        COUNTER_SEEN,
    },
};
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    capture::{Capture, Counters, Options},
    classify::Cause,
    cli::{StormMode, TraceArgs},
    enrich::{
        listeners::{proc_listeners, ListenerHistory},
        owner::OwnerIndex,
    },
    kernel::{btf::Btf, clock, layout, tracefs::Tracefs},
    output::{Output, OutputError},
    pipeline::{Filter, Pipeline, Settings},
};

/// Most records handed over per read, so that signals and timers are
/// served during a storm.
const DRAIN_LIMIT: usize = 8192;
/// How soon to look again after reading something: catches records that
/// arrived without a wake-up (see the eBPF wake-up policy).
const RECHECK: Duration = Duration::from_millis(10);
/// Storm detector window.
const STORM_WINDOW: Duration = Duration::from_millis(100);

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

fn check_privileges() -> Result<()> {
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
fn parse_netns(arg: &str) -> Result<u32> {
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
    // SAFETY: a valid path and a statfs buffer.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(path.as_ptr(), &mut fs) };
    if rc != 0 || fs.f_type as i64 != NSFS_MAGIC {
        bail!(
            "--netns {arg}: not a namespace file (use /proc/<pid>/ns/net, /run/netns/<name> or an inode number)"
        );
    }
    u32::try_from(meta.ino()).with_context(|| format!("--netns {arg}: inode out of range"))
}

fn parse_causes(ids: &[String]) -> Result<Option<HashSet<Cause>>> {
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

pub fn execute(args: TraceArgs) -> Result<()> {
    let filter = Filter {
        causes: parse_causes(&args.causes)?,
        direction: args.direction.map(Into::into),
        port: args.port,
        pid: args.pid,
    };
    let netns = args.netns.as_deref().map(parse_netns).transpose()?;
    check_privileges()?;

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
    let buffer_bytes = args.buffer_size as usize * 1024 * 1024;
    facts.config.netns_filter = netns.unwrap_or(0);
    facts.config.wakeup_interval_ns = args.wakeup_ms * 1_000_000;
    facts.config.wakeup_bytes = (buffer_bytes / 4) as u64;

    let aya_btf = aya::Btf::parse(&btf_bytes, aya::Endianness::default())
        .context("cannot parse /sys/kernel/btf/vmlinux for the loader")?;
    drop(btf);
    drop(btf_bytes);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the event loop")?;
    runtime.block_on(async {
        let mut capture = Capture::start(
            &facts.config,
            facts.hooks,
            facts.prog_info,
            &Options {
                transport: args.transport,
                buffer_bytes,
                firewall: !args.no_firewall,
            },
            &aya_btf,
        )?;
        drop(aya_btf);
        // The loader's copy of the kernel BTF is the biggest allocation
        // rsttrace makes; hand it back rather than keep it resident.
        // SAFETY: malloc_trim has no preconditions.
        unsafe { libc::malloc_trim(0) };
        let threshold = (u64::from(args.storm_threshold) * STORM_WINDOW.as_millis() as u64 / 1000).max(1);
        let window_jiffies = (u64::from(facts.names.hz) * STORM_WINDOW.as_millis() as u64 / 1000).max(1);
        let mut control = Control {
            mode: match args.storm {
                StormMode::Off => MODE_EVENTS,
                StormMode::Auto => MODE_AUTO,
                StormMode::Always => MODE_AGGREGATE,
            },
            storm_threshold: threshold as u32,
            storm_window_jiffies: window_jiffies,
            epoch: 0,
            _pad: 0,
        };
        capture.set_control(control)?;

        // Sockets that predate the programs: indexed after attaching, so
        // that none falls between the scan and the hooks.
        let mut owners = OwnerIndex::new(Duration::from_secs(1));
        owners.scan();
        let mut history = ListenerHistory::default();
        for l in proc_listeners() {
            let owner = owners.peek(l.inode).map(|o| (o.pid, o.comm.as_str()));
            history.seed(&l, owner);
        }
        let stdout = io::stdout().lock();
        let mut pipeline = Pipeline::new(
            facts.names.clone(),
            owners,
            history,
            Output::new(args.format, stdout),
            Settings {
                filter,
                failures: args.failures,
                hold: Duration::from_millis(20),
            },
        );
        if control.mode != MODE_EVENTS {
            let anchor = clock::JiffiesAnchor::now(facts.names.hz);
            if anchor.is_none() {
                log::warn!("cannot read /proc/timer_list: storm summaries carry the time they are printed");
            }
            pipeline.set_jiffies_anchor(anchor);
        }
        eprintln!(
            "rsttrace: tracing TCP resets (transport {}, {} sockets indexed, storm mode {}{}); Ctrl-C to stop",
            capture.transport().as_str(),
            pipeline.owner_count(),
            args.storm.to_possible_value().expect("a value").get_name(),
            netns.map(|n| format!(", netns {n}")).unwrap_or_default(),
        );
        let outcome = run(&mut capture, &mut pipeline, &args, &mut control).await;
        finish(&mut capture, &mut pipeline, &mut control, outcome)
    })
}

enum Stop {
    Signal,
    Done,
    OutputClosed,
}

async fn run<W: Write>(
    capture: &mut Capture,
    pipeline: &mut Pipeline<W>,
    args: &TraceArgs,
    control: &mut Control,
) -> Result<Stop> {
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let summary_every = Duration::from_secs(args.summary_interval.max(1));
    let mut last_summary = Instant::now();
    let deadline = args
        .duration
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut recheck: Option<Duration> = None;
    let mut reported_lost = 0u64;
    // Storm modes take the firewall hooks off while a storm lasts.
    let mut storm_check = tokio::time::interval(STORM_CHECK);
    storm_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watch_storms = control.mode != MODE_EVENTS && capture.has_firewall();
    let mut storm = StormWatch::new(args.storm_threshold);
    loop {
        tokio::select! {
            r = capture.ready(recheck) => {
                r.context("waiting for events")?;
                let n = capture.drain(DRAIN_LIMIT, &mut |bytes| pipeline.handle(bytes));
                if let Err(OutputError::Closed) = pipeline.end_batch() {
                    return Ok(Stop::OutputClosed);
                }
                recheck = if n >= DRAIN_LIMIT {
                    Some(Duration::ZERO)
                } else if n > 0 || pipeline.has_pending() {
                    Some(RECHECK)
                } else {
                    None
                };
            }
            _ = sigint.recv() => return Ok(Stop::Signal),
            _ = sigterm.recv() => return Ok(Stop::Signal),
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => return Ok(Stop::Done),
            _ = storm_check.tick(), if watch_storms => {
                let seen = capture.counters().values[COUNTER_SEEN as usize];
                match storm.update(seen) {
                    Some(true) => {
                        capture.set_firewall(false)?;
                        log::warn!("reset storm: firewall-reset detection paused until it ends (its hooks run on every dropped packet)");
                    }
                    Some(false) => {
                        capture.set_firewall(true)?;
                        log::warn!("reset storm over: firewall-reset detection resumed");
                    }
                    None => {}
                }
            }
            _ = tick.tick() => {
                pipeline.tick();
                let counters = capture.counters();
                let lost = lost_total(&counters, capture);
                if lost > reported_lost {
                    let delta = lost - reported_lost;
                    log::warn!("{delta} resets lost: the kernel could not hand them over (raise --buffer-size or use --storm auto)");
                    pipeline.on_lost(delta, "buffer_full");
                    reported_lost = lost;
                }
                if control.mode != MODE_EVENTS && last_summary.elapsed() >= summary_every {
                    last_summary = Instant::now();
                    drain_aggregates(capture, pipeline, control)?;
                }
                if let Err(OutputError::Closed) = pipeline.flush() {
                    return Ok(Stop::OutputClosed);
                }
            }
        }
        if pipeline.closed {
            return Ok(Stop::OutputClosed);
        }
        if args.count.is_some_and(|c| pipeline.stats.resets >= c) {
            return Ok(Stop::Done);
        }
    }
}

/// How often storm modes look at the reset rate.
const STORM_CHECK: Duration = Duration::from_millis(200);
/// Calm checks before a storm counts as over.
const CALM_CHECKS: u32 = 10;

/// Tells when a storm starts (`Some(true)`) and ends (`Some(false)`),
/// from the kernel's count of resets seen.
struct StormWatch {
    per_check: u64,
    last_seen: Option<u64>,
    storming: bool,
    calm: u32,
}

impl StormWatch {
    fn new(per_sec: u32) -> Self {
        StormWatch {
            per_check: (u64::from(per_sec) * STORM_CHECK.as_millis() as u64 / 1000).max(1),
            last_seen: None,
            storming: false,
            calm: 0,
        }
    }

    fn update(&mut self, seen: u64) -> Option<bool> {
        let delta = seen.saturating_sub(self.last_seen.replace(seen)?);
        if delta >= self.per_check {
            self.calm = 0;
            if !self.storming {
                self.storming = true;
                return Some(true);
            }
        } else if self.storming {
            self.calm += 1;
            if self.calm >= CALM_CHECKS {
                self.storming = false;
                return Some(false);
            }
        }
        None
    }
}

fn lost_total(c: &Counters, capture: &Capture) -> u64 {
    // Perf buffers also report their losses to the reader; the kernel
    // counter covers them, so take the larger rather than the sum.
    c.values[COUNTER_LOST as usize].max(capture.perf_lost) + c.recursion_misses
}

/// Switches the programs to the other epoch and reports the old one.
fn drain_aggregates<W: Write>(
    capture: &mut Capture,
    pipeline: &mut Pipeline<W>,
    control: &mut Control,
) -> Result<()> {
    let old = control.epoch as u8;
    control.epoch ^= 1;
    capture.set_control(*control)?;
    let entries = capture.take_aggregates(old)?;
    pipeline.on_aggregates(&entries);
    Ok(())
}

fn finish<W: Write>(
    capture: &mut Capture,
    pipeline: &mut Pipeline<W>,
    control: &mut Control,
    outcome: Result<Stop>,
) -> Result<()> {
    let stop = outcome?;
    if let Some(e) = pipeline.write_error.take() {
        bail!("cannot write to standard output: {e}");
    }
    if matches!(stop, Stop::OutputClosed) {
        // `rsttrace | head`: the reader has what it wanted.
        return Ok(());
    }
    // Stop producing, hand over what is buffered, then report.
    while capture.drain(DRAIN_LIMIT, &mut |bytes| pipeline.handle(bytes)) >= DRAIN_LIMIT {}
    pipeline.release_due(true);
    if control.mode != MODE_EVENTS {
        drain_aggregates(capture, pipeline, control)?;
        drain_aggregates(capture, pipeline, control)?;
    }
    let counters = capture.counters();
    let lost = lost_total(&counters, capture);
    let v = &counters.values;
    let s = pipeline.stats;
    if pipeline.flush().is_err() {
        return Ok(());
    }
    let storm = if s.suppressed_records > 0 || control.mode != MODE_EVENTS {
        format!(
            ", {} counted in {} storm summaries",
            s.suppressed_resets, s.suppressed_records
        )
    } else {
        String::new()
    };
    let failures = if s.failures > 0 {
        format!(", {} connection failures", s.failures)
    } else {
        String::new()
    };
    let undecodable = if s.decode_errors > 0 {
        format!(", {} undecodable records", s.decode_errors)
    } else {
        String::new()
    };
    let keyless = match v[COUNTER_AGG_OVERFLOW as usize] {
        0 => String::new(),
        n => format!(" ({n} counted without a key: aggregation table full)"),
    };
    eprintln!(
        "rsttrace: {} resets reported ({} sent, {} received){storm}{failures}, {lost} lost{undecodable}; \
         kernel: {} resets seen, {} aggregated{keyless}, {} outside --netns, {} records sent",
        s.resets,
        s.sent,
        s.received,
        v[COUNTER_SEEN as usize],
        v[COUNTER_AGGREGATED as usize],
        v[COUNTER_FILTERED as usize],
        v[COUNTER_EMITTED as usize],
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storm_watch_pauses_and_resumes() {
        // 5000/s = 1000 per 200 ms check.
        let mut w = StormWatch::new(5000);
        assert_eq!(w.update(0), None, "the first reading is a baseline");
        assert_eq!(w.update(500), None);
        assert_eq!(w.update(5000), Some(true));
        assert_eq!(w.update(9000), None, "still storming");
        for i in 0..CALM_CHECKS - 1 {
            assert_eq!(w.update(9000 + u64::from(i)), None);
        }
        assert_eq!(w.update(9100), Some(false));
        assert_eq!(w.update(9200), None);
    }
}
