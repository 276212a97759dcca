//! Ordinary traffic: a TCP bulk transfer over loopback (one connection,
//! 1 MiB writes) for a fixed time, counted in bytes the server received.
//! `cargo xtask throughput` runs it (inside the bench namespace); the bench
//! measures it with and without a tracer, for the cost rsttrace adds to the
//! normal send and receive paths.

use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

const CHUNK: usize = 1 << 20;

/// Sends for `duration`; returns the bytes received and the seconds from
/// the first write to the server reading the end of the stream.
pub(crate) fn load(duration: Duration) -> Result<(u64, f64)> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind")?;
    let addr = listener.local_addr()?;
    let server = thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        drain(&mut s)
    });
    let start = Instant::now();
    let mut client = TcpStream::connect(addr).context("connect")?;
    let buf = vec![0x5a; CHUNK];
    while start.elapsed() < duration {
        client.write_all(&buf).context("write")?;
    }
    client.shutdown(Shutdown::Write)?;
    let bytes = server.join().expect("server thread").context("server")?;
    Ok((bytes, start.elapsed().as_secs_f64()))
}

fn drain(s: &mut TcpStream) -> std::io::Result<u64> {
    let mut buf = vec![0; CHUNK];
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

pub(crate) fn gbit_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 * 8.0 / seconds / 1e9
}

/// What `cargo xtask throughput` prints.
pub(crate) fn line(bytes: u64, seconds: f64) -> String {
    format!(
        "{:.3} Gbit/s ({bytes} bytes in {seconds:.3} s)",
        gbit_per_s(bytes, seconds)
    )
}

/// Bytes and seconds back from `line`.
fn parse_line(line: &str) -> Option<(u64, f64)> {
    let (_, rest) = line.split_once('(')?;
    let mut words = rest.split_whitespace();
    let bytes = words.next()?.parse().ok()?;
    let seconds = words.nth(2)?.parse().ok()?;
    Some((bytes, seconds))
}

/// Runs the load in namespace `netns`, in a process of its own.
pub(crate) fn run_in(netns: &str, seconds: u64) -> Result<(u64, f64)> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(std::env::current_exe()?)
        .args(["throughput", "--seconds", &seconds.to_string()])
        .output()
        .context("running the throughput load")?;
    if !out.status.success() {
        bail!(
            "throughput load failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    parse_line(text.trim()).with_context(|| format!("throughput load printed {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_round_trips() {
        let l = line(12_500_000_000, 5.0);
        assert_eq!(l, "20.000 Gbit/s (12500000000 bytes in 5.000 s)");
        assert_eq!(parse_line(&l), Some((12_500_000_000, 5.0)));
        assert_eq!(parse_line("garbage"), None);
    }

    #[test]
    fn transfers_over_loopback() {
        let (bytes, seconds) = load(Duration::from_millis(50)).unwrap();
        assert!(bytes >= CHUNK as u64, "{bytes}");
        assert!(seconds >= 0.05);
    }
}
