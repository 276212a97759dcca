//! A retry storm: clients connecting again and again to a port where
//! nothing listens, as clients do when the backend they retry has died.
//! Each attempt is a real socket whose SYN the kernel answers with a reset
//! (sent, NO_SOCKET) that the connecting socket then receives (refused):
//! one reset sent and one received per attempt.  Run inside the
//! benchmark's network namespace, pinned to one CPU.

use std::{
    io::ErrorKind,
    net::{Ipv4Addr, SocketAddrV4, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

/// The closed port the retries target.
pub(crate) const RETRY_PORT: u16 = 9;

/// Connects until `duration` is over; returns the number of attempts.
/// Every attempt must be refused: anything else means the load is not
/// what it claims to be.
pub(crate) fn run(duration: Duration, cpu: Option<usize>) -> Result<u64> {
    if let Some(cpu) = cpu {
        crate::storm::pin_to_cpu(cpu)?;
    }
    let target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, RETRY_PORT);
    let start = Instant::now();
    let mut attempts = 0u64;
    while start.elapsed() < duration {
        // The clock is read once per batch: it is not free either.
        for _ in 0..64 {
            match TcpStream::connect(target) {
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => attempts += 1,
                Err(e) => bail!("connect to {target}: {e} (expected a refusal)"),
                Ok(_) => bail!("something listens on {target}"),
            }
        }
    }
    Ok(attempts)
}
