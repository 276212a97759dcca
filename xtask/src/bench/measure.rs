//! One measurement: a load (the reset storm or the bulk transfer) with or
//! without a tracer beside it, and what the tracer cost.

use std::{
    path::PathBuf,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{
    stats::{self, BpfUsage},
    throughput,
    tracer::{self, Running},
    variants::{Pin, Tracer, Variant},
};

/// What every measurement shares.
pub struct Env {
    /// The bench namespace's name (`ip netns`).
    pub netns: String,
    pub rsttrace: PathBuf,
    pub seconds: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// SYNs to a closed port: resets per second.
    Storm,
    /// A bulk transfer over loopback: Gbit/s.
    Throughput,
}

#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Resets per second, or Gbit/s.
    pub rate: f64,
    /// Resets the namespace sent (`TcpOutRsts`), or bytes transferred.
    pub count: u64,
    pub elapsed_s: f64,
    /// `None` for the baseline.
    pub tracer: Option<TracerUsage>,
}

#[derive(Clone, Debug, Default)]
pub struct TracerUsage {
    pub reported: u64,
    pub lost: u64,
    pub cpu_s: f64,
    pub max_rss_kib: u64,
    pub bpf: BpfUsage,
}

impl Load {
    pub fn unit(self) -> &'static str {
        match self {
            Load::Storm => "resets/s",
            Load::Throughput => "Gbit/s",
        }
    }

    fn run(self, env: &Env) -> Result<(u64, f64)> {
        match self {
            Load::Storm => storm(env),
            Load::Throughput => throughput::run_in(&env.netns, env.seconds),
        }
    }

    fn rate(self, count: u64, seconds: f64) -> f64 {
        match self {
            Load::Storm => count as f64 / seconds,
            Load::Throughput => throughput::gbit_per_s(count, seconds),
        }
    }
}

/// The load, with `variant`'s tracer running beside it (none: baseline).
pub fn measure(env: &Env, load: Load, variant: Option<&Variant>) -> Result<Sample> {
    let running = variant
        .map(|v| tracer::start(v, Some(&env.netns), &env.rsttrace))
        .transpose()?;
    let (count, elapsed_s) = load.run(env)?;
    let tracer = running.map(finish).transpose()?;
    Ok(Sample {
        rate: load.rate(count, elapsed_s),
        count,
        elapsed_s,
        tracer,
    })
}

/// Lets the tracer catch up, reads its BPF statistics while it still runs,
/// stops it.
fn finish(r: Running) -> Result<TracerUsage> {
    thread::sleep(Duration::from_millis(1500));
    let bpf = stats::usage(r.pid()).unwrap_or_else(|e| {
        eprintln!("  bench: no BPF statistics: {e:#}");
        BpfUsage::default()
    });
    let stopped = tracer::stop(r)?;
    Ok(TracerUsage {
        reported: stopped.tally.reported,
        lost: stopped.tally.lost,
        cpu_s: stopped.cpu_s,
        max_rss_kib: stopped.max_rss_kib,
        bpf,
    })
}

/// The storm on CPU 0; returns the namespace's resets and the seconds.
fn storm(env: &Env) -> Result<(u64, f64)> {
    let before = out_rsts(&env.netns)?;
    let started = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &env.netns])
        .arg(std::env::current_exe()?)
        .args(["storm", "--seconds", &env.seconds.to_string(), "--cpu", "0"])
        .output()
        .context("running the storm")?;
    let elapsed = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("storm failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((out_rsts(&env.netns)? - before, elapsed))
}

/// `TcpOutRsts` of the namespace.
fn out_rsts(netns: &str) -> Result<u64> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "cat", "/proc/net/snmp"])
        .output()?;
    parse_out_rsts(&String::from_utf8(out.stdout)?)
}

fn parse_out_rsts(snmp: &str) -> Result<u64> {
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (
        tcp.next().context("no Tcp: header")?,
        tcp.next().context("no Tcp: values")?,
    );
    let i = names
        .split_whitespace()
        .position(|n| n == "OutRsts")
        .context("no OutRsts")?;
    Ok(values
        .split_whitespace()
        .nth(i)
        .context("short Tcp: line")?
        .parse()?)
}

/// rsttrace's share of one CPU while nothing happens (host-wide, no
/// `--netns`: every reset on the host would wake it).
pub fn idle_cpu(rsttrace: &std::path::Path, seconds: u64) -> Result<f64> {
    let v = Variant {
        name: "idle",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_out_rsts() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Tcp: RtoAlgorithm RtoMin ActiveOpens OutRsts InCsumErrors\n\
                    Tcp: 1 200 3 4242 0\nUdp: InDatagrams\nUdp: 0\n";
        assert_eq!(parse_out_rsts(snmp).unwrap(), 4242);
        assert!(parse_out_rsts("Ip: x\n").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(Load::Storm.rate(1000, 2.0), 500.0);
        assert_eq!(Load::Throughput.rate(1_000_000_000, 8.0), 1.0);
    }
}
