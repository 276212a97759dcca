//! `rsttrace [OPTIONS]`: check the host, load and attach the programs, and
//! stream reports until interrupted.

pub mod rawdump;
mod run;
mod service;
pub mod setup;
mod storm;
mod totals;

/// Most records handed over per read, so that signals and timers are
/// served during a storm.
const DRAIN_LIMIT: usize = 8192;

/// Why the event loop ended.
enum Stop {
    Signal,
    Done,
    OutputClosed,
}

use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use clap::ValueEnum as _;
use rsttrace_common::config::{Control, MODE_AGGREGATE, MODE_AUTO, MODE_EVENTS};

use self::service::Service;
use crate::{
    capture::{plan::Want, Capture, Options},
    cli::{StormMode, TraceArgs},
    config::{self, Rules},
    enrich::{
        listeners::{proc_listeners, ListenerHistory},
        owner::OwnerResolver,
        scanner::{scan_sockets, Scanner},
    },
    kernel::clock,
    metrics::server::parse_addr,
    model::conn::Task,
    output::{format_named, sink::Sink, Output},
    pipeline::{filter::Filter, Pipeline, Settings},
};

/// What a start would refuse, short of loading: where /proc is and
/// whether the output can be appended to (without creating it).
fn check(args: &TraceArgs, rules: usize) -> Result<()> {
    setup::set_proc_root(&args.proc_root)?;
    setup::check_output_writable(args.output.as_deref())?;
    eprintln!("rsttrace: the options are valid ({rules} suppression rules)");
    Ok(())
}

/// Storm summaries are counted in jiffies: their wall-clock times need
/// an anchor.
fn anchor_storm_times(pipeline: &mut Pipeline, hz: u32) {
    let anchor = clock::JiffiesAnchor::now(hz);
    if anchor.is_none() {
        log::warn!("cannot read /proc/timer_list: storm summaries carry the time they are printed");
    }
    pipeline.set_jiffies_anchor(anchor);
}

fn say_started(
    args: &TraceArgs,
    capture: &Capture,
    pipeline: &Pipeline,
    service: &Service,
    netns: &[u32],
) {
    eprintln!(
        "rsttrace: tracing TCP resets (transport {}, {} sockets indexed, storm mode {}{}{}); Ctrl-C to stop",
        capture.transport().as_str(),
        pipeline.sockets_indexed(),
        args.storm.to_possible_value().expect("a value").get_name(),
        netns_text(netns),
        service
            .metrics_addr()
            .map(|a| format!(", metrics on http://{a}/metrics"))
            .unwrap_or_default(),
    );
}

/// Storm detector window.
const STORM_WINDOW: Duration = Duration::from_millis(100);

/// `rsttrace [OPTIONS]`: checks the options (and stops there with
/// `--check`), reads the kernel, loads and attaches the programs, and
/// reports until a signal, `--count`, `--duration` or a closed output ends
/// the run; then prints the totals.
pub fn execute(args: TraceArgs) -> Result<()> {
    let filter = Filter {
        causes: setup::parse_causes(&args.causes)?,
        direction: args.direction.map(Into::into),
        port: args.port,
        pid: args.pid,
    };
    let rules = config::load(args.config.as_deref(), &args.suppress)?;
    let netns = setup::parse_netns_list(&args.netns)?;
    let format = format_named(&args.format).context("unknown --format")?;
    let metrics = args
        .metrics
        .as_deref()
        .map(parse_addr)
        .transpose()
        .map_err(|e| anyhow!("--metrics {e}"))?;
    if args.check {
        return check(&args, rules.rules.len());
    }
    setup::set_proc_root(&args.proc_root)?;
    setup::check_output(args.output.as_deref())?;
    let had = setup::check_privileges()?;
    setup::raise_memlock();
    let mut kernel = setup::read_kernel(args.btf.as_deref())?;
    let buffer_bytes = args.buffer_size as usize * 1024 * 1024;
    let config = &mut kernel.facts.config;
    config.netns_filter = netns;
    config.wakeup_interval_ns = args.wakeup_ms * 1_000_000;
    config.wakeup_bytes = (buffer_bytes / 4) as u64;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the event loop")?;
    runtime.block_on(async {
        let rule_names = rules.rules.iter().map(|r| r.name.clone()).collect();
        let service = Service::new(metrics, args.summary, rule_names)?;
        let names = std::mem::take(&mut kernel.facts.names);
        let kernel_notes = std::mem::take(&mut kernel.facts.degraded);
        let hz = names.hz;
        let mut capture = start_capture(&args, kernel, buffer_bytes)?;
        let error_reports = capture.error_reports();
        let mut control = control(&args, hz);
        capture.set_control(control)?;
        // Before any thread starts: capabilities are per thread.
        let attach_later = capture.attaches_later(control.mode != MODE_EVENTS);
        service::drop_capabilities(had, attach_later, || capture.maps_readable());
        for note in kernel_notes.iter().chain(capture.notes()) {
            log::warn!("{note}");
        }
        let output = Output::new(format, open_output(&args)?);
        let mut pipeline = pipeline(names, output, &args, filter, error_reports, rules)?;
        if control.mode != MODE_EVENTS {
            anchor_storm_times(&mut pipeline, hz);
        }
        say_started(&args, &capture, &pipeline, &service, &netns);
        let outcome = run::run(&mut capture, &mut pipeline, &args, &mut control, &service).await;
        totals::finish(&mut capture, &mut pipeline, &mut control, outcome)
    })
}

/// Dev-only (see `rawdump`): replays the first `limit` records of a raw
/// dump through the pipeline a real run builds from `args`, in their
/// batches and at their pace, rendering to standard output; returns the
/// records written.
pub fn replay(path: &std::path::Path, args: &TraceArgs, limit: usize) -> Result<u64> {
    let batches = rawdump::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let filter = Filter {
        causes: setup::parse_causes(&args.causes)?,
        direction: args.direction.map(Into::into),
        port: args.port,
        pid: args.pid,
    };
    let mut kernel = setup::read_kernel(args.btf.as_deref())?;
    let names = std::mem::take(&mut kernel.facts.names);
    let format = format_named(&args.format).context("unknown --format")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the event loop")?;
    runtime.block_on(async {
        let output = Output::new(format, open_output(args)?);
        let error_reports = kernel.facts.hooks.error_report;
        let rules = config::load(args.config.as_deref(), &args.suppress)?;
        let mut pipeline = pipeline(names, output, args, filter, error_reports, rules)?;
        let mut left = limit;
        let began = std::time::Instant::now();
        for batch in &batches {
            std::thread::sleep(batch.at.saturating_sub(began.elapsed()));
            for record in batch.records.iter().take(left) {
                pipeline.handle(record);
            }
            left = left.saturating_sub(batch.records.len());
            let _ = pipeline.end_batch();
            // Paced like a real run: the writer keeps up, nothing is dropped.
            pipeline.settle_output();
            if left == 0 {
                break;
            }
        }
        pipeline.release(true);
        let _ = pipeline.flush();
        let totals = pipeline.finish_output(Duration::from_secs(5));
        Ok(totals.written)
    })
}

fn open_output(args: &TraceArgs) -> Result<Sink> {
    let path = args.output.as_deref();
    Sink::open(path).with_context(|| match path {
        Some(p) => format!("cannot open --output {}", p.display()),
        None => "cannot start the output thread".into(),
    })
}

fn start_capture(args: &TraceArgs, kernel: setup::Kernel, buffer_bytes: usize) -> Result<Capture> {
    let aya_btf = aya::Btf::parse(&kernel.btf_bytes, aya::Endianness::default())
        .context("cannot parse the kernel's BTF for the loader")?;
    drop(kernel.btf_bytes);
    let facts = kernel.facts;
    let capture = Capture::start(
        facts.config,
        &facts.hooks,
        facts.prog_info,
        &Options {
            transport: args.transport,
            buffer_bytes,
            storm_keys: args.storm_keys,
            diagnostics: args.verbose > 0,
            want: Want {
                kernel_btf: kernel.kernel_btf,
                firewall: !args.no_firewall,
                failures: args.failures,
                path: !args.no_path_check,
                stray: args.stray_resets,
            },
        },
        &aya_btf,
    )?;
    drop(aya_btf);
    // The loader's copy of the kernel BTF is the biggest allocation
    // rsttrace makes; hand it back rather than keep it resident.
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
    Ok(capture)
}

fn netns_text(netns: &[u32]) -> String {
    let set: Vec<String> = netns
        .iter()
        .filter(|&&n| n != 0)
        .map(u32::to_string)
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!(", netns {}", set.join(","))
    }
}

fn control(args: &TraceArgs, hz: u32) -> Control {
    let ms = STORM_WINDOW.as_millis() as u64;
    Control {
        mode: match args.storm {
            StormMode::Off => MODE_EVENTS,
            StormMode::Auto => MODE_AUTO,
            StormMode::Always => MODE_AGGREGATE,
        },
        storm_threshold: (u64::from(args.storm_threshold) * ms / 1000).max(1) as u32,
        storm_window_jiffies: (u64::from(hz) * ms / 1000).max(1),
        epoch: 0,
        _pad: 0,
    }
}

/// Sockets that predate the programs are indexed after attaching, so that
/// none falls between the scan and the hooks.
fn pipeline(
    names: crate::kernel::names::KernelNames,
    output: Output,
    args: &TraceArgs,
    filter: Filter,
    error_reports: bool,
    rules: Rules,
) -> Result<Pipeline> {
    let index = scan_sockets();
    let mut history = ListenerHistory::default();
    for l in proc_listeners() {
        let owner = index.get(&l.inode).map(|o| Task {
            pid: o.pid,
            comm: o.comm,
        });
        history.seed(&l, owner);
    }
    let scanner = Scanner::start().context("cannot start the scanner thread")?;
    let owners = OwnerResolver::new(Some(scanner), index);
    Ok(Pipeline::new(
        names,
        owners,
        history,
        output,
        Settings {
            filter,
            failures: args.failures,
            // Long enough for a record's partner to cross the buffer in a
            // later batch (wake-ups every --wakeup-ms, slower under load or
            // emulation); short enough not to be noticed.
            hold: Duration::from_millis(50),
            error_reports,
            rules,
            summary: args.summary.is_some(),
            count: args.count,
        },
    ))
}
