//! What running as a service adds to the event loop: the metrics
//! endpoint, the periodic summary, and giving up capabilities once the
//! programs are attached.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context as _, Result};
use rsttrace_common::event::{COUNTER_SEEN, COUNTER_STRAY};

use crate::{
    capture::Capture,
    kernel::caps::{self, Cap, Sets},
    metrics::{
        exposition::{render, Snapshot},
        server::{serve, Server},
    },
    pipeline::Pipeline,
};

pub(super) struct Service {
    server: Option<Server>,
    /// --summary period.
    pub summary: Option<Duration>,
    rule_names: Vec<String>,
    kernel: String,
}

impl Service {
    pub(super) fn new(
        metrics: Option<SocketAddr>,
        summary: Option<u64>,
        rule_names: Vec<String>,
    ) -> Result<Self> {
        let server = match metrics {
            Some(addr) => Some(
                Server::bind(addr)
                    .with_context(|| format!("--metrics: cannot listen on {addr}"))?,
            ),
            None => None,
        };
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Ok(Service {
            server,
            summary: summary.map(Duration::from_secs),
            rule_names,
            kernel,
        })
    }

    pub(super) fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// The next scrape (never, without --metrics).
    pub(super) async fn scrape(&self) -> Option<tokio::net::TcpStream> {
        match &self.server {
            Some(s) => s.accept().await.ok(),
            None => std::future::pending().await,
        }
    }

    /// Answers a scrape with the counts as they are now; the reply is
    /// written by a task of its own.
    pub(super) fn answer(
        &self,
        client: tokio::net::TcpStream,
        capture: &mut Capture,
        pipeline: &mut Pipeline,
    ) {
        let counters = capture.counters().values;
        let (kernel_seen, strays) = (
            counters[COUNTER_SEEN as usize],
            counters[COUNTER_STRAY as usize],
        );
        let unwritten = pipeline.sink().dropped();
        let body = render(&Snapshot {
            tally: pipeline.tally(),
            rule_names: self.rule_names.iter().map(String::as_str).collect(),
            kernel: &self.kernel,
            transport: capture.transport().as_str(),
            hooks: capture.hook_states(),
            filtered: pipeline.stats().filtered,
            kernel_seen,
            strays,
            unwritten,
        });
        tokio::spawn(serve(client, body));
    }
}

/// Gives up every capability the rest of the run does not need: reading
/// other processes' /proc entries (owners, containers) always; attaching
/// programs only if some may be attached later; and reading the
/// programs' maps where this kernel asks for it (before Linux 6.5, with
/// unprivileged BPF disabled, every bpf(2) call needs CAP_BPF, even on a
/// map already open): `maps_readable` tries one without.  Capabilities
/// are per thread: call this before starting any thread.
pub(super) fn drop_capabilities(
    had: Sets,
    attach_later: bool,
    maps_readable: impl FnOnce() -> bool,
) {
    let attach: Vec<Cap> = if had.has(caps::CAP_BPF) && had.has(caps::CAP_PERFMON) {
        vec![caps::CAP_BPF, caps::CAP_PERFMON]
    } else {
        vec![caps::CAP_SYS_ADMIN]
    };
    let mut keep: Vec<Cap> = vec![caps::CAP_SYS_PTRACE, caps::CAP_DAC_READ_SEARCH];
    if attach_later {
        keep.extend(&attach);
    } else {
        let all: Vec<Cap> = keep.iter().chain(&attach).copied().collect();
        let without = caps::set_effective(&keep, &all).is_ok() && maps_readable();
        if !without {
            keep.push(attach[0]);
        }
    }
    keep.retain(|&c| had.has(c));
    match caps::drop_all_but(&keep) {
        Ok(()) => log::info!(
            "programs attached; capabilities kept: {}",
            keep.iter().map(|c| c.name).collect::<Vec<_>>().join(" ")
        ),
        Err(e) => log::warn!("cannot drop capabilities after attaching: {e}"),
    }
}
