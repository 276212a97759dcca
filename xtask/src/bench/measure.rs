//! One measurement: a load with or without a tracer beside it, and what
//! the tracer cost.

use std::{
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use anyhow::Result;

use super::{
    load::{Load, Target, Work},
    stats::{self, BpfUsage},
    tracer::{self, Running},
    variants::{Pin, Tracer, Variant},
};

/// What every measurement shares.
pub(super) struct Env {
    /// The bench namespace's name (`ip netns`).
    pub netns: String,
    pub rsttrace: PathBuf,
    pub seconds: u64,
    /// nginx's URL once it runs (the loads that fetch pages).
    pub url: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub(super) struct Sample {
    /// Units of work per second, or Gbit/s.
    pub rate: f64,
    pub work: Work,
    /// `None` for the baseline.
    pub tracer: Option<TracerUsage>,
}

#[derive(Clone, Debug, Default)]
pub(super) struct TracerUsage {
    pub reported: u64,
    /// Of those, the resets sent.
    pub sent: u64,
    pub lost: u64,
    /// Of those, lost because the benchmark's reader of the output fell
    /// behind (see `Tally::lost_output`).
    pub lost_output: u64,
    pub cpu_s: f64,
    pub max_rss_kib: u64,
    /// What the tracer's programs did during the load itself.
    pub bpf: BpfUsage,
}

impl Env {
    fn target(&self) -> Target<'_> {
        Target {
            netns: &self.netns,
            seconds: self.seconds,
            url: self.url.as_deref(),
        }
    }
}

/// The load, with `variant`'s tracer running beside it (none: baseline).
pub(super) fn measure(env: &Env, load: Load, variant: Option<&Variant>) -> Result<Sample> {
    let running = variant
        .map(|v| tracer::start(v, Some(&env.netns), &env.rsttrace))
        .transpose()?;
    let before = running.as_ref().map(|r| snapshot(r.pid()));
    let cpu_before = running.as_ref().map_or(0.0, |r| cpu_seconds(r.pid()));
    let work = load.run(&env.target())?;
    let bpf = running
        .as_ref()
        .zip(before)
        .map(|(r, before)| stats::usage(&before, &snapshot(r.pid())));
    let tracer = running
        .map(|r| finish(r, bpf.unwrap_or_default(), cpu_before))
        .transpose()?;
    Ok(Sample {
        rate: load.rate(&work),
        work,
        tracer,
    })
}

fn snapshot(pid: u32) -> stats::Snapshot {
    stats::snapshot(pid).unwrap_or_else(|e| {
        eprintln!("  bench: no BPF statistics: {e:#}");
        stats::Snapshot::default()
    })
}

/// Lets the tracer catch up with its output, then stops it.  Its CPU
/// time is what it used from just before the load until it caught up:
/// start-up (loading and verifying programs, reading BTF and kallsyms)
/// and shutdown are not per-record costs.
fn finish(r: Running, bpf: BpfUsage, cpu_before: f64) -> Result<TracerUsage> {
    thread::sleep(Duration::from_millis(1500));
    let cpu_s = cpu_seconds(r.pid()) - cpu_before;
    let stopped = tracer::stop(r)?;
    Ok(TracerUsage {
        reported: stopped.tally.reported,
        sent: stopped.tally.sent,
        lost: stopped.tally.lost,
        lost_output: stopped.tally.lost_output,
        cpu_s,
        max_rss_kib: stopped.max_rss_kib,
        bpf,
    })
}

/// rsttrace's share of one CPU while nothing happens (host-wide, no
/// `--netns`: every reset on the host would wake it).
pub(super) fn idle_cpu(rsttrace: &std::path::Path, seconds: u64) -> Result<f64> {
    let v = Variant {
        name: "idle",
        load: Load::SynStorm,
        tracer: Tracer::Rsttrace(&[]),
        args: vec!["--format".into(), "json".into()],
        pin: Pin::Cpu1,
        what: String::new(),
    };
    let running = tracer::start(&v, None, rsttrace)?;
    let pid = running.pid();
    let start = Instant::now();
    let t0 = cpu_seconds(pid);
    thread::sleep(Duration::from_secs(seconds));
    let t1 = cpu_seconds(pid);
    let wall = start.elapsed().as_secs_f64();
    tracer::stop(running)?;
    Ok((t1 - t0) / wall)
}

/// User + system time of a process so far, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (field(11) + field(12)) / hz
}
