//! Privileged end-to-end tests: the real rsttrace binary, the real eBPF
//! programs, real resets in network namespaces the tests create and
//! remove.  Run as root (`cargo xtask test`).

mod harness;
mod peer;
mod sockets;

mod edges;
mod resets;

/// Entry point of peer processes (see `harness::Peer`); a no-op when run
/// as a test.
#[test]
fn peer_entry() {
    if let Ok(spec) = std::env::var("RSTTRACE_PEER") {
        peer::main(&spec);
    }
}
