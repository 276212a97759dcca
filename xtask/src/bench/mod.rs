//! `cargo xtask bench`: the loads users run (`load.rs`: short connections
//! and keep-alive requests to nginx, a retry storm, a raw SYN storm, a
//! bulk transfer), each measured with no tracer and with each tracer
//! variant (`variants.rs`), interleaved (`schedule.rs`), with the tracers'
//! in-kernel cost per program and map memory (`stats.rs`).  `report.rs`
//! writes the tables; docs/benchmark.md explains what each column measures.

mod guard;
mod load;
mod measure;
mod netns;
mod nginx;
mod report;
mod schedule;
mod stats;
mod summary;
pub(crate) mod throughput;
mod tracer;
mod variants;

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{bootstrap, cmd, root, status};
use load::Load;
use measure::Env;
use netns::Netns;
use schedule::Step;
use variants::{Choice, Variant};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Seconds of load per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds; each runs every variant once, each after a no-tracer run.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Only these variants (see `variants.rs`: short-rsttrace,
    /// keepalive-rsttrace, retry-rsttrace, retry-rsttrace-storm, rsttrace,
    /// rsttrace-storm, bpftrace, tcpdump, throughput-rsttrace, ...); the
    /// no-tracer baseline of each load chosen always runs.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// rsttrace's --transport for the rsttrace variants that do not set
    /// their own.
    #[arg(long, value_parser = ["auto", "ringbuf", "perf"])]
    transport: Option<String>,
    /// Seconds to measure rsttrace idle (0: not at all).
    #[arg(long, default_value_t = 10)]
    idle_seconds: u64,
    /// Also write the results to --out.
    #[arg(long)]
    record: bool,
    /// Where --record writes (relative to the workspace root).
    #[arg(long, default_value = "docs/benchmark.md")]
    out: std::path::PathBuf,
    /// Use this rsttrace binary; no setup, no build (`cargo xtask vm
    /// --bench` runs the bench this way inside a guest).
    #[arg(long, hide = true)]
    pub rsttrace: Option<std::path::PathBuf>,
    /// Print only the programs' run counts per unit of work (no ratios:
    /// `--rounds 0`), as the VM section of docs/benchmark.md shows them.
    #[arg(long, hide = true)]
    pub counts: bool,
}

pub(crate) use report::with_vm_counts;

/// The rsttrace rows whose program counts the VM section shows.
pub(crate) const COUNTED: &[&str] = &[
    "short-rsttrace",
    "keepalive-rsttrace",
    "retry-rsttrace",
    "rsttrace",
];

pub(crate) fn run(args: &Args) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark loads eBPF programs and sends raw packets: run it as root");
    }
    check_names(&args.only)?;
    let rsttrace = match &args.rsttrace {
        Some(path) => path.clone(),
        None => {
            bootstrap(true)?;
            status(cmd("cargo").args(["build", "--release", "--package", "rsttrace"]))?;
            root().join("target/release/rsttrace")
        }
    };
    let help = rsttrace_help(&rsttrace)?;
    let choice = Choice {
        only: &args.only,
        transport: args.transport.as_deref(),
    };
    let has_option = |o: &str| help.contains(o);
    let rounds = if args.counts { 0 } else { args.rounds };
    let plan: Vec<(Load, Vec<Variant>)> = Load::ALL
        .iter()
        .map(|&load| (load, variants::select(load, &choice, has_option)))
        .filter(|(_, vs)| !vs.is_empty())
        .collect();

    guard::catch_interrupts();
    let netns = Netns::new()?;
    let mut env = Env {
        netns: netns.0.clone(),
        rsttrace,
        seconds: args.seconds,
        url: None,
    };
    // One nginx for the loads that fetch pages, for the whole run.
    let nginx = plan
        .iter()
        .any(|(l, _)| l.needs_nginx())
        .then(|| {
            nginx::Nginx::start(
                &netns.0,
                root().join(format!("target/bench/nginx-{}", std::process::id())),
            )
        })
        .transpose()?;
    env.url = nginx.as_ref().map(nginx::Nginx::url);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")?
        .trim()
        .to_string();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "bench: {} s loads, {} rounds, kernel {kernel}, {cpus} CPUs; loads on CPU 0",
        args.seconds, args.rounds
    );
    let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let mut tables = vec![];
    for (load, variants) in &plan {
        eprintln!("bench: {}", load.title());
        tables.push((*load, run_table(&env, *load, variants, rounds)?));
    }
    let any_rsttrace = plan
        .iter()
        .any(|(_, vs)| vs.iter().any(Variant::is_rsttrace));
    let report = report::Report {
        command: format!("cargo xtask {command}"),
        tables,
        idle: idle(&env, any_rsttrace && !args.counts, args.idle_seconds)?,
        kernel,
        cpus,
        rounds,
        seconds: args.seconds,
    };
    drop(nginx);
    if args.counts {
        println!("{}", report::counts(&report));
        return Ok(());
    }
    println!("\n{}", report::render(&report));
    if args.record {
        let path = root().join(&args.out);
        let existing = std::fs::read_to_string(&path).unwrap_or_default();
        std::fs::write(&path, report::document(&report, &existing))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench: wrote {}", path.display());
    }
    Ok(())
}

fn check_names(only: &[String]) -> Result<()> {
    for name in only {
        if !variants::names().any(|n| n == name) {
            let known: Vec<_> = variants::names().collect();
            bail!("no variant {name:?}; there are {}", known.join(", "));
        }
    }
    Ok(())
}

/// What `rsttrace --help` says: which options this build has.
fn rsttrace_help(rsttrace: &std::path::Path) -> Result<String> {
    let out = Command::new(rsttrace)
        .arg("--help")
        .output()
        .with_context(|| format!("running {} --help", rsttrace.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every step of the schedule, then the figures per variant.
fn run_table(env: &Env, load: Load, variants: &[Variant], rounds: usize) -> Result<summary::Table> {
    let plan = schedule::schedule(variants.len(), rounds);
    let mut samples = Vec::with_capacity(plan.len());
    for &(round, step) in &plan {
        let v = match step {
            Step::Baseline => None,
            Step::Variant(k) => Some(&variants[k]),
        };
        let name = v.map_or("none", |v| v.name);
        let sample = measure::measure(env, load, v);
        guard::check()?;
        let sample = sample.with_context(|| format!("measuring {name}"))?;
        eprintln!("{}", report::progress(round, name, load, &sample));
        if step == Step::Baseline {
            warn_if_moved(&samples, &plan, &sample);
        }
        samples.push(sample);
    }
    let steps: Vec<Step> = plan.into_iter().map(|(_, s)| s).collect();
    let mut table = summary::collect(variants, &steps, samples);
    costs(env, load, &mut table)?;
    Ok(table)
}

/// One more run of each variant with BPF run-time statistics on, for the
/// in-kernel cost (the rounds run without: the statistics slow programs).
fn costs(env: &Env, load: Load, table: &mut summary::Table) -> Result<()> {
    let _stats = guard::BpfStats::enable()?;
    for r in &mut table.runs {
        let sample = measure::measure(env, load, Some(&r.variant));
        guard::check()?;
        let sample =
            sample.with_context(|| format!("measuring {} with BPF statistics", r.variant.name))?;
        eprintln!(
            "{} (BPF statistics on)",
            report::progress(0, r.variant.name, load, &sample)
        );
        r.costed.push(sample);
    }
    Ok(())
}

/// The machine is busy if a baseline moved much since the previous one.
fn warn_if_moved(samples: &[measure::Sample], plan: &[(usize, Step)], now: &measure::Sample) {
    let previous = plan[..samples.len()]
        .iter()
        .rposition(|(_, s)| *s == Step::Baseline)
        .map(|j| samples[j].rate);
    if let Some(before) = previous {
        let change = (now.rate - before) / before;
        if change.abs() > 0.1 {
            eprintln!(
                "  bench: warning: no-tracer rate moved {:+.0}% since the last one; the machine is busy",
                change * 100.0
            );
        }
    }
}

/// rsttrace's CPU use while nothing happens, when rsttrace was measured.
fn idle(env: &Env, measured: bool, seconds: u64) -> Result<Option<(f64, u64)>> {
    if seconds == 0 || !measured {
        return Ok(None);
    }
    let share = measure::idle_cpu(&env.rsttrace, seconds);
    guard::check()?;
    Ok(Some((share?, seconds)))
}
