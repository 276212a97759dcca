//! The loads the benchmark measures, each what users run:
//!
//! - the raw SYN storm (`cargo xtask storm`): a port scan or SYN flood to a
//!   closed port, one reset sent per SYN;
//! - the retry storm (`cargo xtask retry`): real clients retrying a dead
//!   service, one reset sent and one received per attempt;
//! - short connections: nginx and `ab`, a new connection per request, no
//!   resets at all;
//! - keep-alive requests: nginx and `wrk` on 16 kept connections;
//! - a bulk transfer (`cargo xtask throughput`), in Gbit/s.
//!
//! Every load runs in the bench namespace, its generator pinned to CPU 0
//! (nginx to CPU 1); its units and the resets its kernel counted come
//! from the load itself and from the namespace's own counters.

use std::process::Command;

use anyhow::{bail, Context, Result};

use super::{
    netns::{counter, tcp_counters},
    throughput,
    tracer::pin,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Load {
    SynStorm,
    RetryStorm,
    ShortConns,
    KeepAlive,
    Throughput,
}

/// What one run of a load did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Work {
    /// Resets, attempts, connections or requests; bytes for throughput.
    pub units: u64,
    pub seconds: f64,
    /// The resets the namespace's kernel counted meanwhile: sent, plus
    /// the refused connects' where every reset is received (the retry
    /// storm).  The same scope as `reported()` compares them with.
    pub kernel_resets: u64,
}

/// What a load needs besides the namespace.
pub(super) struct Target<'a> {
    pub netns: &'a str,
    pub seconds: u64,
    /// nginx's URL, for the loads that fetch pages.
    pub url: Option<&'a str>,
}

impl Load {
    pub(super) const ALL: [Load; 5] = [
        Load::ShortConns,
        Load::KeepAlive,
        Load::RetryStorm,
        Load::SynStorm,
        Load::Throughput,
    ];

    pub(super) fn title(self) -> &'static str {
        match self {
            Load::SynStorm => "Raw SYN storm to a closed port",
            Load::RetryStorm => "Retry storm: real clients connecting to a dead service",
            Load::ShortConns => "Short connections: nginx and ab, a new connection per request",
            Load::KeepAlive => "Keep-alive requests: nginx and wrk, 16 kept connections",
            Load::Throughput => "Bulk transfer over loopback",
        }
    }

    /// What one unit of work is.
    pub(super) fn unit(self) -> &'static str {
        match self {
            Load::SynStorm => "reset",
            Load::RetryStorm => "attempt",
            Load::ShortConns => "connection",
            Load::KeepAlive => "request",
            Load::Throughput => "byte",
        }
    }

    pub(super) fn rate_unit(self) -> &'static str {
        match self {
            Load::SynStorm => "resets/s",
            Load::RetryStorm => "attempts/s",
            Load::ShortConns => "connections/s",
            Load::KeepAlive => "requests/s",
            Load::Throughput => "Gbit/s",
        }
    }

    /// What the tracer reported that `Work::kernel_resets` counts too.
    pub(super) fn reported(self, reported: u64, sent: u64) -> u64 {
        if self == Load::RetryStorm {
            reported
        } else {
            sent
        }
    }

    pub(super) fn needs_nginx(self) -> bool {
        matches!(self, Load::ShortConns | Load::KeepAlive)
    }

    /// Whether the load resets anything (the reported count matters).
    pub(super) fn resets(self) -> bool {
        matches!(self, Load::SynStorm | Load::RetryStorm)
    }

    pub(super) fn rate(self, w: &Work) -> f64 {
        match self {
            Load::Throughput => throughput::gbit_per_s(w.units, w.seconds),
            _ => w.units as f64 / w.seconds,
        }
    }

    pub(super) fn run(self, t: &Target) -> Result<Work> {
        let before = tcp_counters(t.netns)?;
        let (units, seconds) = match self {
            Load::SynStorm => xtask_load(t, "storm")?,
            Load::RetryStorm => xtask_load(t, "retry")?,
            Load::ShortConns => ab(t)?,
            Load::KeepAlive => wrk(t)?,
            Load::Throughput => throughput::run_in(t.netns, t.seconds)?,
        };
        let after = tcp_counters(t.netns)?;
        let delta = |name: &str| -> Result<u64> {
            Ok(counter(&after, name)?.saturating_sub(counter(&before, name)?))
        };
        // The retry storm receives every reset it sends (refused
        // connects: AttemptFails); the others are compared on what was
        // sent (a reset that reaches a closing socket has no counter).
        let kernel_resets = match self {
            Load::RetryStorm => delta("OutRsts")? + delta("AttemptFails")?,
            _ => delta("OutRsts")?,
        };
        Ok(Work {
            units,
            seconds,
            kernel_resets,
        })
    }
}

/// One of xtask's own loads (`storm`, `retry`) in the namespace, pinned to
/// CPU 0; it prints its count.
fn xtask_load(t: &Target, task: &str) -> Result<(u64, f64)> {
    let started = std::time::Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", t.netns])
        .arg(std::env::current_exe()?)
        .args([task, "--seconds", &t.seconds.to_string(), "--cpu", "0"])
        .output()
        .with_context(|| format!("running the {task} load"))?;
    let elapsed = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{task} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let count = text
        .trim()
        .parse()
        .with_context(|| format!("{task} printed {text:?}"))?;
    Ok((count, elapsed))
}

/// A command in the namespace, pinned to CPU 0; its stdout.
fn generator(t: &Target, program: &str, args: &[&str]) -> Result<String> {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", t.netns, program]).args(args);
    pin(&mut c, 0);
    let out = c.output().with_context(|| {
        format!("running {program} (scripts/bootstrap.sh --with-bench installs it)")
    })?;
    if !out.status.success() {
        bail!(
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn url<'a>(t: &'a Target) -> Result<&'a str> {
    t.url.context("this load needs nginx")
}

/// `ab` (HTTP/1.0, no keep-alive): a new connection per request, for the
/// load's seconds or a million requests (ab keeps 32 bytes per request it
/// may make: a larger -n does not fit a small guest's memory).
fn ab(t: &Target) -> Result<(u64, f64)> {
    let secs = t.seconds.to_string();
    let out = generator(
        t,
        "ab",
        &["-q", "-c", "16", "-t", &secs, "-n", "1000000", url(t)?],
    )?;
    parse_ab(&out)
}

fn parse_ab(out: &str) -> Result<(u64, f64)> {
    let field = |name: &str| -> Result<&str> {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .with_context(|| format!("ab printed no {name:?}: {out}"))
    };
    let failed: u64 = field("Failed requests:")?.parse()?;
    if failed != 0 {
        bail!("ab: {failed} requests failed");
    }
    Ok((
        field("Complete requests:")?.parse()?,
        field("Time taken for tests:")?.parse()?,
    ))
}

/// `wrk`: 16 connections kept alive, one thread.
fn wrk(t: &Target) -> Result<(u64, f64)> {
    let secs = format!("{}s", t.seconds);
    let out = generator(t, "wrk", &["-t1", "-c16", "-d", &secs, url(t)?])?;
    parse_wrk(&out)
}

/// "  123456 requests in 5.00s, 40.2MB read"; a "Socket errors" line
/// means connections failed, which this load must not do.
fn parse_wrk(out: &str) -> Result<(u64, f64)> {
    if let Some(errors) = out.lines().find(|l| l.contains("Socket errors")) {
        bail!("wrk: {}", errors.trim());
    }
    let line = out
        .lines()
        .find(|l| l.contains(" requests in "))
        .with_context(|| format!("wrk printed no request count: {out}"))?;
    let mut words = line.split_whitespace();
    let requests = words.next().context("wrk line")?.parse()?;
    let duration = words.nth(2).context("wrk line")?.trim_end_matches(',');
    let seconds = if let Some(m) = duration.strip_suffix('m') {
        m.parse::<f64>()? * 60.0
    } else if let Some(ms) = duration.strip_suffix("ms") {
        ms.parse::<f64>()? / 1000.0
    } else {
        duration.trim_end_matches('s').parse()?
    };
    Ok((requests, seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ab() {
        let out = "Server Software:        nginx/1.22.1\nConcurrency Level:      16\n\
                   Time taken for tests:   5.000 seconds\nComplete requests:      94367\n\
                   Failed requests:        0\nRequests per second:    18873.21 [#/sec] (mean)\n";
        assert_eq!(parse_ab(out).unwrap(), (94367, 5.0));
        assert!(
            parse_ab(&out.replace("Failed requests:        0", "Failed requests:        3"))
                .is_err()
        );
        assert!(parse_ab("nothing").is_err());
    }

    #[test]
    fn reads_wrk() {
        let out = "Running 5s test @ http://127.0.0.1:8080/\n  1 threads and 16 connections\n\
                   \x20 412345 requests in 5.00s, 120.1MB read\nRequests/sec:  82469.00\n";
        assert_eq!(parse_wrk(out).unwrap(), (412345, 5.0));
        let errors = format!("{out}  Socket errors: connect 0, read 3, write 0, timeout 0\n");
        assert!(parse_wrk(&errors).is_err());
        assert!(parse_wrk("nothing").is_err());
    }

    #[test]
    fn rates() {
        let w = Work {
            units: 1000,
            seconds: 2.0,
            kernel_resets: 0,
        };
        assert_eq!(Load::SynStorm.rate(&w), 500.0);
        let bytes = Work {
            units: 1_000_000_000,
            seconds: 8.0,
            kernel_resets: 0,
        };
        assert_eq!(Load::Throughput.rate(&bytes), 1.0);
    }
}
