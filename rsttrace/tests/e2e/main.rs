//! Privileged end-to-end tests: the real rsttrace binary, the real eBPF
//! programs, real resets in network namespaces the tests create and
//! remove.  Run as root (`cargo xtask test`).

mod harness;
mod kernel;
mod peer;
mod raw;
mod real;
mod sockets;
mod topology;

mod causes;
mod containers;
mod contract;
mod doctor;
mod edges;
mod fields;
mod firewall;
mod options;
mod origin;
mod privilege;
mod resets;
mod service_image;
mod service_metrics;
mod service_output;
mod service_pods;
mod service_rules;
mod storm;

/// Entry point of peer processes (see `harness::Peer`); a no-op when run
/// as a test.
#[test]
fn peer_entry() {
    if std::env::var_os("RSTTRACE_PEER").is_some() {
        peer::main();
    }
}
