//! Running one tracer: start it, count what it prints as its users would
//! read it (rsttrace's stdout through a pipe, bpftrace's and tcpdump's
//! lines), stop it with SIGINT and take its peak RSS.

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, ChildStderr, ChildStdout, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{
    guard,
    variants::{Pin, Tracer, Variant},
};

/// What a tracer printed, counted as it streams.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub reported: u64,
    /// Of those, the resets this host sent.
    pub sent: u64,
    pub lost: u64,
    /// Of those, records rsttrace rendered but the reader of its output
    /// did not take in time (`"why":"output_stalled"`): the benchmark's
    /// own reader falling behind, not the kernel's buffer.
    pub lost_output: u64,
    ready: bool,
}

pub(super) struct Running {
    child: Option<Child>,
    tally: Arc<Mutex<Tally>>,
    readers: Vec<thread::JoinHandle<()>>,
}

pub(super) struct Stopped {
    pub tally: Tally,
    pub max_rss_kib: u64,
}

const BPFTRACE: &str =
    r#"tracepoint:tcp:tcp_send_reset { printf("%d %s %d\n", pid, comm, args->state); }"#;

/// The tracer's command line.  `netns` is the bench namespace's name
/// (rsttrace gets `--netns /run/netns/NAME`, tcpdump runs inside it);
/// `None` traces the whole host.
fn command(v: &Variant, netns: Option<&str>, rsttrace: &Path) -> Command {
    let mut c = match v.tracer {
        Tracer::Rsttrace(_) => {
            let mut c = Command::new(rsttrace);
            c.args(&v.args);
            if let Some(ns) = netns {
                c.arg("--netns").arg(format!("/run/netns/{ns}"));
            }
            c
        }
        Tracer::Bpftrace => {
            let mut c = Command::new("bpftrace");
            c.args(["-e", BPFTRACE]);
            c
        }
        Tracer::Tcpdump => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", netns.unwrap_or("")]);
            c.args([
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
    if v.pin == Pin::Cpu1 {
        pin(&mut c, 1);
    }
    c
}

fn pin_this_thread(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; pid 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

pub(super) fn pin(cmd: &mut Command, cpu: usize) {
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

/// Starts the tracer and returns once it has attached.
pub(super) fn start(v: &Variant, netns: Option<&str>, rsttrace: &Path) -> Result<Running> {
    let mut c = command(v, netns, rsttrace);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().with_context(|| format!("cannot start {c:?}"))?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let json = v.is_rsttrace();
    // The reader of the output is the tracer's consumer: pinned with it,
    // so that a pinned tracer's work stays off the storm's CPU.
    let cpu = (v.pin == Pin::Cpu1).then_some(1);
    let readers = vec![
        read_stdout(
            child.stdout.take().expect("stdout"),
            json,
            cpu,
            tally.clone(),
        ),
        read_stderr(child.stderr.take().expect("stderr"), tally.clone()),
    ];
    let mut running = Running {
        child: Some(child),
        tally,
        readers,
    };
    running
        .wait_ready()
        .with_context(|| format!("{c:?} did not start"))?;
    // Let it settle (bpftrace attaches after printing).
    thread::sleep(Duration::from_millis(500));
    Ok(running)
}

fn read_stdout(
    out: ChildStdout,
    json: bool,
    cpu: Option<usize>,
    t: Arc<Mutex<Tally>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        if let Some(cpu) = cpu {
            pin_this_thread(cpu);
        }
        let mut r = BufReader::with_capacity(1 << 20, out);
        let mut line = String::new();
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            let mut t = t.lock().unwrap();
            if json {
                count_json(&line, &mut t);
            } else {
                count_line(&line, &mut t);
            }
            line.clear();
        }
    })
}

fn read_stderr(err: ChildStderr, t: Arc<Mutex<Tally>>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
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
    })
}

/// rsttrace's JSON records: resets, storm summaries (counts), losses.
pub(super) fn count_json(line: &str, t: &mut Tally) {
    let number = |key: &str| -> u64 {
        line.find(key)
            .map(|i| &line[i + key.len()..])
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let sent = line.contains("\"direction\":\"sent\"");
    let n = if line.contains("\"event\":\"reset\"") {
        1
    } else if line.contains("\"event\":\"suppressed\"") {
        number("\"count\":")
    } else {
        0
    };
    t.reported += n;
    if sent {
        t.sent += n;
    } else if line.contains("\"event\":\"lost\"") {
        let n = number("\"count\":");
        t.lost += n;
        if line.contains("\"why\":\"output_stalled\"") {
            t.lost_output += n;
        }
    }
}

/// bpftrace's and tcpdump's lines: one per reset, bar bpftrace's own.
fn count_line(line: &str, t: &mut Tally) {
    if line.starts_with("Attaching") {
        t.ready = true;
    } else if let Some(rest) = line.strip_prefix("Lost ") {
        t.lost += rest
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
    } else {
        // Every line is a reset this host sent: bpftrace's program is on
        // tcp_send_reset, and tcpdump on lo sees each reset once.
        t.reported += 1;
        t.sent += 1;
    }
}

impl Running {
    pub(super) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.tally.lock().unwrap().ready {
            guard::check()?;
            let child = self.child.as_mut().expect("running");
            if Instant::now() > deadline || child.try_wait()?.is_some() {
                bail!("not ready");
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

/// SIGINT, then reap with rusage (for the peak RSS).
pub(super) fn stop(mut r: Running) -> Result<Stopped> {
    let pid = r.pid() as i32;
    // SAFETY: signalling and reaping our own child.
    let (status, usage) = unsafe {
        libc::kill(pid, libc::SIGINT);
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::wait4(pid, &mut status, 0, &mut usage);
        (status, usage)
    };
    // Reaped: nothing left for `Drop` to kill.
    r.child = None;
    for h in r.readers.drain(..) {
        let _ = h.join();
    }
    if !libc::WIFEXITED(status) && !libc::WIFSIGNALED(status) {
        bail!("tracer ended oddly ({status})");
    }
    Ok(Stopped {
        tally: std::mem::take(&mut *r.tally.lock().unwrap()),
        max_rss_kib: usage.ru_maxrss as u64,
    })
}

impl Drop for Running {
    /// A tracer left running by an error or an interrupt.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rsttrace_records() {
        let mut t = Tally::default();
        count_json(
            r#"{"time":"x","event":"reset","direction":"sent","cause":"no_listener"}"#,
            &mut t,
        );
        count_json(
            r#"{"time":"x","event":"suppressed","direction":"received","count":1234,"first_time":"y"}"#,
            &mut t,
        );
        count_json(
            r#"{"time":"x","event":"lost","count":7,"why":"buffer_full"}"#,
            &mut t,
        );
        count_json(
            r#"{"time":"x","event":"lost","count":3,"why":"output_stalled"}"#,
            &mut t,
        );
        assert_eq!(
            (t.reported, t.sent, t.lost, t.lost_output),
            (1235, 1, 10, 3)
        );
    }

    #[test]
    fn counts_other_tracers_lines() {
        let mut t = Tally::default();
        for line in [
            "Attaching 1 probe...\n",
            "1 x 7\n",
            "Lost 12 events\n",
            "2 y 7\n",
        ] {
            count_line(line, &mut t);
        }
        assert_eq!((t.reported, t.sent, t.lost, t.ready), (2, 2, 12, true));
    }
}
