//! `rsttrace [OPTIONS]`: check the host, load and attach the programs, and
//! stream reports until interrupted.

mod run;
pub mod setup;
mod storm;
mod totals;

use std::{io, time::Duration};

use anyhow::{Context as _, Result};
use clap::ValueEnum as _;
use rsttrace_common::config::{Control, MODE_AGGREGATE, MODE_AUTO, MODE_EVENTS};

use crate::{
    capture::{plan::Want, Capture, Options},
    cli::{StormMode, TraceArgs},
    enrich::{
        listeners::{proc_listeners, ListenerHistory},
        owner::OwnerResolver,
        scanner::{scan_sockets, Scanner},
    },
    kernel::clock,
    model::conn::Task,
    output::{format_named, Output},
    pipeline::{filter::Filter, Pipeline, Settings},
};

/// Storm detector window.
const STORM_WINDOW: Duration = Duration::from_millis(100);

pub fn execute(args: TraceArgs) -> Result<()> {
    let filter = Filter {
        causes: setup::parse_causes(&args.causes)?,
        direction: args.direction.map(Into::into),
        port: args.port,
        pid: args.pid,
    };
    let netns = setup::parse_netns_list(&args.netns)?;
    let format = format_named(&args.format).context("unknown --format")?;
    setup::check_privileges()?;
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
        let names = std::mem::take(&mut kernel.facts.names);
        let kernel_notes = std::mem::take(&mut kernel.facts.degraded);
        let (hz, error_reports) = (names.hz, kernel.facts.hooks.error_report);
        let mut capture = start_capture(&args, kernel, buffer_bytes)?;
        let mut control = control(&args, hz);
        capture.set_control(control)?;
        for note in kernel_notes.iter().chain(capture.notes()) {
            log::warn!("{note}");
        }
        let mut pipeline = pipeline(names, format, &args, filter, error_reports)?;
        if control.mode != MODE_EVENTS {
            let anchor = clock::JiffiesAnchor::now(hz);
            if anchor.is_none() {
                log::warn!("cannot read /proc/timer_list: storm summaries carry the time they are printed");
            }
            pipeline.set_jiffies_anchor(anchor);
        }
        eprintln!(
            "rsttrace: tracing TCP resets (transport {}, {} sockets indexed, storm mode {}{}); Ctrl-C to stop",
            capture.transport().as_str(),
            pipeline.owners().indexed(),
            args.storm.to_possible_value().expect("a value").get_name(),
            netns_text(&netns),
        );
        let outcome = run::run(&mut capture, &mut pipeline, &args, &mut control).await;
        totals::finish(&mut capture, &mut pipeline, &mut control, outcome)
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
    format: &'static crate::output::FormatInfo,
    args: &TraceArgs,
    filter: Filter,
    error_reports: bool,
) -> Result<Pipeline<io::StdoutLock<'static>>> {
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
        Output::new(format, io::stdout().lock()),
        Settings {
            filter,
            failures: args.failures,
            hold: Duration::from_millis(20),
            error_reports,
        },
    ))
}
