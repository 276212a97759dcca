//! `cargo xtask bench`: a reset storm (see `storm.rs`) measured with no
//! tracer and with each tracer, side by side in one run.
//!
//! The storm runs in a network namespace of its own on CPU 0; tracers run
//! on CPU 1 and read every event as their users would (rsttrace's stdout
//! through a pipe, bpftrace's and tcpdump's output lines).  Rounds
//! interleave the variants so that drift in the machine hits all of them;
//! the table shows medians.  Rates come from the kernel's own count of
//! resets sent (`TcpOutRsts` of the namespace).

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{bootstrap, cmd, root, status};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds of storm per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds; each runs every variant once, interleaved.  Medians reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Only these variants (none, rsttrace, rsttrace-storm, bpftrace, tcpdump).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also write the results to docs/benchmark.md.
    #[arg(long)]
    record: bool,
}

#[derive(Clone)]
enum Tracer {
    None,
    Rsttrace(Vec<&'static str>),
    Bpftrace,
    Tcpdump,
}

struct Variant {
    name: &'static str,
    what: &'static str,
    tracer: Tracer,
}

fn variants() -> Vec<Variant> {
    vec![
        Variant {
            name: "none",
            what: "no tracer",
            tracer: Tracer::None,
        },
        Variant {
            name: "rsttrace",
            what: "rsttrace --format json (per event), stdout through a pipe",
            tracer: Tracer::Rsttrace(vec!["--format", "json"]),
        },
        Variant {
            name: "rsttrace-storm",
            what: "rsttrace --format json --storm auto, stdout through a pipe",
            tracer: Tracer::Rsttrace(vec!["--format", "json", "--storm", "auto"]),
        },
        Variant {
            name: "bpftrace",
            what: "bpftrace one-liner printing each tcp_send_reset",
            tracer: Tracer::Bpftrace,
        },
        Variant {
            name: "tcpdump",
            what: "tcpdump -i lo -n -l 'tcp[tcpflags] & tcp-rst != 0'",
            tracer: Tracer::Tcpdump,
        },
    ]
}

#[derive(Clone, Copy, Default, Debug)]
struct Measurement {
    rate: f64,
    kernel_resets: u64,
    reported: u64,
    lost: u64,
    cpu_s: f64,
    max_rss_kib: u64,
}

/// `TcpOutRsts` of the namespace.
fn out_rsts(netns: &str) -> Result<u64> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "cat", "/proc/net/snmp"])
        .output()?;
    let text = String::from_utf8(out.stdout)?;
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
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

/// What a tracer printed, counted as it streams.
#[derive(Default)]
struct Tally {
    reported: u64,
    lost: u64,
    ready: bool,
}

fn count_json(line: &str, t: &mut Tally) {
    let number = |key: &str| -> u64 {
        line.find(key)
            .map(|i| &line[i + key.len()..])
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    if line.contains("\"event\":\"reset\"") {
        t.reported += 1;
    } else if line.contains("\"event\":\"suppressed\"") {
        t.reported += number("\"count\":");
    } else if line.contains("\"event\":\"lost\"") {
        t.lost += number("\"count\":");
    }
}

struct Running {
    child: Child,
    tally: Arc<Mutex<Tally>>,
    readers: Vec<thread::JoinHandle<()>>,
}

fn pin(cmd: &mut Command, cpu: usize) {
    // SAFETY: sched_setaffinity is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            Ok(())
        });
    }
}

fn start_tracer(tracer: &Tracer, netns: &str, rsttrace: &PathBuf) -> Result<Option<Running>> {
    let mut c = match tracer {
        Tracer::None => return Ok(None),
        Tracer::Rsttrace(args) => {
            let mut c = Command::new(rsttrace);
            c.args(args);
            c
        }
        Tracer::Bpftrace => {
            let mut c = Command::new("bpftrace");
            c.args(["-e", r#"tracepoint:tcp:tcp_send_reset { printf("%d %s %d\n", pid, comm, args->state); }"#]);
            c
        }
        Tracer::Tcpdump => {
            let mut c = Command::new("ip");
            c.args([
                "netns",
                "exec",
                netns,
                "tcpdump",
                "-i",
                "lo",
                "-n",
                "-l",
                "tcp[tcpflags] & tcp-rst != 0",
            ]);
            c
        }
    };
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    pin(&mut c, 1);
    let mut child = c.spawn().with_context(|| format!("cannot start {c:?}"))?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let json = matches!(tracer, Tracer::Rsttrace(_));
    let stdout = child.stdout.take().expect("stdout");
    let t = tally.clone();
    let out_reader = thread::spawn(move || {
        let mut r = BufReader::with_capacity(1 << 20, stdout);
        let mut line = String::new();
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            let mut t = t.lock().unwrap();
            if json {
                count_json(&line, &mut t);
            } else if line.starts_with("Attaching") {
                t.ready = true;
            } else if let Some(rest) = line.strip_prefix("Lost ") {
                t.lost += rest
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
            } else {
                t.reported += 1;
            }
            line.clear();
        }
    });
    let stderr = child.stderr.take().expect("stderr");
    let t = tally.clone();
    let err_reader = thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut t = t.lock().unwrap();
            if line.contains("tracing TCP resets")
                || line.contains("listening on")
                || line.starts_with("Attaching")
            {
                t.ready = true;
            }
            // tcpdump: "N packets dropped by kernel"
            if let Some(n) = line.strip_suffix(" packets dropped by kernel") {
                t.lost += n.trim().parse().unwrap_or(0);
            }
            if line.contains("error") {
                eprintln!("  {line}");
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !tally.lock().unwrap().ready {
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            let _ = child.kill();
            bail!("tracer {c:?} did not start");
        }
        thread::sleep(Duration::from_millis(20));
    }
    // Let it settle (bpftrace attaches after printing).
    thread::sleep(Duration::from_millis(500));
    Ok(Some(Running {
        child,
        tally,
        readers: vec![out_reader, err_reader],
    }))
}

/// SIGINT, then reap with rusage.
fn stop_tracer(r: Running) -> Result<(Tally, f64, u64)> {
    let pid = r.child.id() as i32;
    // SAFETY: signalling and reaping our own child.
    let (status, usage) = unsafe {
        libc::kill(pid, libc::SIGINT);
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::wait4(pid, &mut status, 0, &mut usage);
        (status, usage)
    };
    for h in r.readers {
        let _ = h.join();
    }
    let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu_s = cpu(usage.ru_utime) + cpu(usage.ru_stime);
    let tally = std::mem::take(&mut *r.tally.lock().unwrap());
    if !libc::WIFEXITED(status) && !libc::WIFSIGNALED(status) {
        bail!("tracer ended oddly ({status})");
    }
    Ok((tally, cpu_s, usage.ru_maxrss as u64))
}

fn measure(v: &Variant, netns: &str, rsttrace: &PathBuf, seconds: u64) -> Result<Measurement> {
    let running = start_tracer(&v.tracer, netns, rsttrace)?;
    let before = out_rsts(netns)?;
    let started = Instant::now();
    let storm = Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(std::env::current_exe()?)
        .args(["storm", "--seconds", &seconds.to_string(), "--cpu", "0"])
        .output()
        .context("running the storm")?;
    let elapsed = started.elapsed().as_secs_f64();
    if !storm.status.success() {
        bail!("storm failed: {}", String::from_utf8_lossy(&storm.stderr));
    }
    let after = out_rsts(netns)?;
    let mut m = Measurement {
        kernel_resets: after - before,
        rate: (after - before) as f64 / elapsed,
        ..Measurement::default()
    };
    if let Some(r) = running {
        // Let the tracer catch up before stopping it.
        thread::sleep(Duration::from_millis(1500));
        let (tally, cpu_s, rss) = stop_tracer(r)?;
        m.reported = tally.reported;
        m.lost = tally.lost;
        m.cpu_s = cpu_s;
        m.max_rss_kib = rss;
    }
    Ok(m)
}

/// rsttrace's CPU use while nothing happens.
fn idle_cpu(rsttrace: &PathBuf, seconds: u64) -> Result<f64> {
    let running = start_tracer(&Tracer::Rsttrace(vec!["--format", "json"]), "", rsttrace)?
        .context("rsttrace did not start")?;
    let start = Instant::now();
    // SAFETY: reading our child's /proc stat is plain file access.
    let ticks = |pid: u32| -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let t = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (t(11) + t(12)) / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
    };
    let pid = running.child.id();
    let t0 = ticks(pid);
    thread::sleep(Duration::from_secs(seconds));
    let t1 = ticks(pid);
    let wall = start.elapsed().as_secs_f64();
    stop_tracer(running)?;
    Ok((t1 - t0) / wall)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

struct Netns(String);

impl Netns {
    fn new() -> Result<Self> {
        let name = format!("rsttrace-bench-{}", std::process::id());
        status(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns(name);
        status(Command::new("ip").args(["-n", &ns.0, "link", "set", "lo", "up"]))?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

pub fn run(args: &Args) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark loads eBPF programs and sends raw packets: run it as root");
    }
    bootstrap(true)?;
    status(cmd("cargo").args(["build", "--release", "--package", "rsttrace"]))?;
    let rsttrace = root().join("target/release/rsttrace");
    let all = variants();
    let chosen: Vec<&Variant> = all
        .iter()
        .filter(|v| args.only.is_empty() || args.only.iter().any(|o| o == v.name))
        .collect();
    let netns = Netns::new()?;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")?
        .trim()
        .to_string();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "bench: {} s storms, {} rounds, kernel {kernel}, {cpus} CPUs; storm on CPU 0, tracers on CPU 1",
        args.seconds, args.rounds
    );

    let mut results: Vec<Vec<Measurement>> = vec![vec![]; chosen.len()];
    for round in 0..args.rounds {
        for (i, v) in chosen.iter().enumerate() {
            let m = measure(v, &netns.0, &rsttrace, args.seconds)
                .with_context(|| format!("measuring {}", v.name))?;
            eprintln!(
                "  round {} {:<15} {:>9.0} resets/s  reported {}/{}  lost {}  cpu {:.2}s  rss {} KiB",
                round + 1,
                v.name,
                m.rate,
                m.reported,
                m.kernel_resets,
                m.lost,
                m.cpu_s,
                m.max_rss_kib
            );
            results[i].push(m);
        }
    }
    let idle = if chosen
        .iter()
        .any(|v| matches!(v.tracer, Tracer::Rsttrace(_)))
    {
        Some(idle_cpu(&rsttrace, 10)?)
    } else {
        None
    };

    let base = chosen
        .iter()
        .position(|v| matches!(v.tracer, Tracer::None))
        .map(|i| median(results[i].iter().map(|m| m.rate).collect()));
    let mut table = String::from(
        "| tracer | resets/s | vs no tracer | reported / kernel count | lost | CPU per event | peak RSS |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (v, ms) in chosen.iter().zip(&results) {
        let rate = median(ms.iter().map(|m| m.rate).collect());
        let ratio = base.map_or("-".to_string(), |b| format!("{:.2}", rate / b));
        let (reported, counted, lost, cpu_per_event, rss) = if matches!(v.tracer, Tracer::None) {
            (
                "-".into(),
                String::new(),
                "-".into(),
                "-".into(),
                "-".into(),
            )
        } else {
            let reported: u64 = ms.iter().map(|m| m.reported).sum();
            let kernel: u64 = ms.iter().map(|m| m.kernel_resets).sum();
            let lost: u64 = ms.iter().map(|m| m.lost).sum();
            let cpu: f64 = ms.iter().map(|m| m.cpu_s).sum();
            let rss = ms.iter().map(|m| m.max_rss_kib).max().unwrap_or(0);
            (
                format!("{reported} / {kernel}"),
                format!(" ({:.4})", reported as f64 / kernel.max(1) as f64),
                lost.to_string(),
                format!("{:.2} µs", cpu * 1e6 / reported.max(1) as f64),
                format!("{:.1} MiB", rss as f64 / 1024.0),
            )
        };
        table.push_str(&format!(
            "| {} | {:.0} | {} | {}{} | {} | {} | {} |\n",
            v.what, rate, ratio, reported, counted, lost, cpu_per_event, rss
        ));
    }
    let idle_line = idle.map_or(String::new(), |c| {
        format!(
            "\nrsttrace idle (no resets, 10 s): {:.3}% of one CPU.\n",
            c * 100.0
        )
    });
    let header = format!(
        "Kernel {kernel}, {cpus} CPUs. {} rounds of {} s storms, medians; columns other than the rate sum all rounds. \
         Storm: raw-socket SYNs to a closed port on loopback in a namespace of its own, on CPU 0; tracers on CPU 1.\n\n",
        args.rounds, args.seconds
    );
    println!("\n{header}{table}{idle_line}");
    if args.record {
        let path = root().join("docs/benchmark.md");
        let mut f = std::fs::File::create(&path)?;
        write!(
            f,
            "# Benchmark\n\n<!-- Written by `cargo xtask bench --record`; rerun it to refresh. -->\n\n\
             Reproduce (as root): `cargo xtask bench` (add `--record` to rewrite this file).\n\n\
             What it measures: a reset storm (`cargo xtask storm`: raw-socket SYNs to a closed \
             loopback port, each answered by the kernel with a reset) run side by side with no \
             tracer and with each tracer. Resets/s come from the namespace's `TcpOutRsts`; \
             \"reported\" is what the tracer's output accounts for (for rsttrace: reset records plus \
             the counts in storm summaries); CPU and peak RSS are the tracer process's own \
             (rusage), the in-kernel cost shows in the rate.\n\n{header}{table}{idle_line}"
        )?;
        eprintln!("bench: wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rsttrace_records() {
        let mut t = Tally::default();
        count_json(
            r#"{"time":"x","event":"reset","cause":"no_listener"}"#,
            &mut t,
        );
        count_json(
            r#"{"time":"x","event":"suppressed","count":1234,"first_time":"y"}"#,
            &mut t,
        );
        count_json(
            r#"{"time":"x","event":"lost","count":7,"why":"buffer_full"}"#,
            &mut t,
        );
        assert_eq!((t.reported, t.lost), (1235, 7));
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
