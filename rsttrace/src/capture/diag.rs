//! The programs' rare diagnostics (see rsttrace-ebpf/src/diag.rs), shown
//! with `-v`: aya-log's ring buffer, drained when it has something.
//! Without `-v` the programs' log level is 0 and nothing is produced.

use aya::Ebpf;
use aya_log::EbpfLogger;

/// The programs' log level: warnings with `-v`, nothing without.
pub(crate) fn level(verbose: bool) -> u8 {
    // aya-log's levels: Error = 1, Warn = 2.
    if verbose {
        2
    } else {
        0
    }
}

pub(crate) struct Diagnostics {
    fd: tokio::io::unix::AsyncFd<EbpfLogger<&'static dyn log::Log>>,
}

impl Diagnostics {
    /// Takes the log buffer out of the loaded object (the ring-buffer
    /// object has one; the perf one does not).
    pub(crate) fn open(ebpf: &mut Ebpf) -> Option<Diagnostics> {
        let logger = match EbpfLogger::init(ebpf) {
            Ok(l) => l,
            Err(e) => {
                log::debug!("no diagnostics from the programs: {e}");
                return None;
            }
        };
        let fd = super::reader::register(logger).ok()?;
        Some(Diagnostics { fd })
    }

    /// Waits for diagnostics and logs them (never, without any).
    pub(crate) async fn next(this: &mut Option<Diagnostics>) {
        let Some(d) = this else {
            return std::future::pending().await;
        };
        if let Ok(mut guard) = d.fd.readable_mut().await {
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    }
}
