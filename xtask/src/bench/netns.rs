//! The bench's own network namespace: every load runs inside it, so its
//! traffic stays there and its kernel counters (`/proc/net/snmp`) count
//! nothing else.

use std::{os::fd::AsRawFd, process::Command};

use anyhow::{bail, Context, Result};

use crate::status;

/// The bench's network namespace, deleted when dropped.
pub(super) struct Netns(pub String);

impl Netns {
    pub(super) fn new() -> Result<Self> {
        remove_stale_namespaces();
        let name = format!("rsttrace-bench-{}", std::process::id());
        status(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns(name);
        status(Command::new("ip").args(["-n", &ns.0, "link", "set", "lo", "up"]))?;
        Ok(ns)
    }
}

/// Namespaces of bench runs that ended without cleaning up (a second Ctrl-C).
fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for name in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
        let Some(pid) = name.strip_prefix("rsttrace-bench-") else {
            continue;
        };
        if !std::path::Path::new("/proc").join(pid).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Runs `f` on a thread of its own that has joined namespace `name`.
pub(super) fn in_netns<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let path = format!("/run/netns/{name}");
    let ns = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
    std::thread::spawn(move || -> Result<T> {
        // SAFETY: setns(2) on an open namespace fd; it changes only this
        // thread's network namespace, which ends with the thread.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns {path}: {}", std::io::Error::last_os_error());
        }
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
}

/// The namespace's TCP counters (`Tcp:` lines of /proc/net/snmp) by name.
pub(super) fn tcp_counters(netns: &str) -> Result<Vec<(String, u64)>> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "cat", "/proc/net/snmp"])
        .output()?;
    parse_tcp_counters(&String::from_utf8(out.stdout)?)
}

fn parse_tcp_counters(snmp: &str) -> Result<Vec<(String, u64)>> {
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (
        tcp.next().context("no Tcp: header")?,
        tcp.next().context("no Tcp: values")?,
    );
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .skip(1)
        // MaxConn is -1: the file's counters are signed.
        .map(|(n, v)| {
            let v: i64 = v.parse().with_context(|| format!("Tcp: {n} {v}"))?;
            Ok((n.to_string(), v.max(0) as u64))
        })
        .collect()
}

/// One counter of [`tcp_counters`].
pub(super) fn counter(counters: &[(String, u64)], name: &str) -> Result<u64> {
    counters
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .with_context(|| format!("no Tcp counter {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tcp_counters() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Tcp: RtoAlgorithm RtoMin MaxConn ActiveOpens AttemptFails OutRsts InCsumErrors\n\
                    Tcp: 1 200 -1 3 17 4242 0\nUdp: InDatagrams\nUdp: 0\n";
        let c = parse_tcp_counters(snmp).unwrap();
        assert_eq!(counter(&c, "OutRsts").unwrap(), 4242);
        assert_eq!(counter(&c, "AttemptFails").unwrap(), 17);
        assert!(counter(&c, "Nope").is_err());
        assert!(parse_tcp_counters("Ip: x\n").is_err());
    }
}
