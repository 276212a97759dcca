//! Reading the event stream: the BPF ring buffer, or per-CPU perf buffers
//! with a wake-up buffer beside them (see `perf.rs`).

use std::{future::poll_fn, io, task::Poll, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::io::{unix::AsyncFd, Interest};

use super::{
    perf::{set_map_entry, PerfRing, Wakeup},
    CaptureError,
};

pub(super) enum Reader {
    Ring(AsyncFd<RingBuf<MapData>>),
    Perf {
        events: Vec<AsyncFd<PerfRing>>,
        /// The programs write here when the reader is due a wake-up.
        wake: Vec<AsyncFd<PerfRing>>,
        /// Records the kernel reported lost (also counted in-kernel).
        lost: u64,
    },
}

pub(super) fn register<T: std::os::fd::AsRawFd>(inner: T) -> Result<AsyncFd<T>, CaptureError> {
    // SAFETY: `inner` owns its fd for as long as the AsyncFd lives.
    unsafe { AsyncFd::register_with_interest(inner, Interest::READABLE) }
        .map_err(|e| CaptureError::Poll(e.into_parts().1))
}

/// Opens the per-CPU buffers and puts them into the EVENTS and WAKE maps.
pub(super) fn perf(
    events_map: &MapData,
    wake_map: &MapData,
    buffer_bytes: usize,
) -> Result<Reader, CaptureError> {
    let page = super::page_size();
    let pages = (buffer_bytes / page).max(1).next_power_of_two();
    let watermark = (pages * page / 4) as u32;
    let cpus = aya::util::online_cpus().map_err(|(_, e)| CaptureError::Cpus(e))?;
    let (mut events, mut wake) = (vec![], vec![]);
    for cpu in cpus {
        let ring =
            PerfRing::open(cpu, pages, Wakeup::Bytes(watermark)).map_err(CaptureError::Perf)?;
        set_map_entry(events_map.fd(), cpu, ring.as_raw()).map_err(CaptureError::Perf)?;
        events.push(register(ring)?);
        let w = PerfRing::open(cpu, 1, Wakeup::EveryRecord).map_err(CaptureError::Perf)?;
        set_map_entry(wake_map.fd(), cpu, w.as_raw()).map_err(CaptureError::Perf)?;
        wake.push(register(w)?);
    }
    Ok(Reader::Perf {
        events,
        wake,
        lost: 0,
    })
}

impl PerfRing {
    fn as_raw(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(self)
    }
}

impl Reader {
    /// Waits until the kernel signals records, or `recheck` passes.
    /// Cancel-safe: nothing is consumed here.
    pub(super) async fn ready(&mut self, recheck: Option<Duration>) -> io::Result<()> {
        let wait = async {
            match self {
                Reader::Ring(fd) => {
                    let mut guard = fd.readable_mut().await?;
                    guard.clear_ready();
                }
                Reader::Perf { events, wake, .. } => {
                    poll_fn(|cx| poll_perf(cx, events, wake)).await?;
                }
            }
            Ok::<(), io::Error>(())
        };
        match recheck {
            Some(d) => match tokio::time::timeout(d, wait).await {
                Ok(r) => r,
                Err(_elapsed) => Ok(()),
            },
            None => wait.await,
        }
    }

    /// Hands up to `limit` waiting records to `f`; returns how many were
    /// read (`limit`: more may be waiting).
    pub(super) fn drain(&mut self, limit: usize, f: &mut impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        match self {
            Reader::Ring(fd) => {
                let ring = fd.get_mut();
                while n < limit {
                    let Some(item) = ring.next() else { break };
                    f(&item);
                    n += 1;
                }
            }
            Reader::Perf { events, wake, lost } => {
                for w in wake.iter_mut() {
                    w.get_mut().drain(&mut |_| {});
                }
                for ring in events.iter_mut() {
                    let (samples, dropped) = ring.get_mut().drain(f);
                    n += samples;
                    *lost += dropped;
                }
            }
        }
        n
    }

    /// Records the perf buffers reported lost (0 for the ring buffer).
    pub(super) fn perf_lost(&self) -> u64 {
        match self {
            Reader::Perf { lost, .. } => *lost,
            Reader::Ring(_) => 0,
        }
    }
}

/// Ready when a wake-up buffer says so, or when a data buffer crossed its
/// watermark.
fn poll_perf(
    cx: &mut std::task::Context<'_>,
    events: &mut [AsyncFd<PerfRing>],
    wake: &mut [AsyncFd<PerfRing>],
) -> Poll<io::Result<()>> {
    let mut any = false;
    for fd in wake.iter_mut().chain(events.iter_mut()) {
        match fd.poll_read_ready_mut(cx) {
            Poll::Ready(Ok(mut guard)) => {
                guard.clear_ready();
                any = true;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
    }
    if any {
        Poll::Ready(Ok(()))
    } else {
        Poll::Pending
    }
}
