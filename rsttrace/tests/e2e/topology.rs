//! Three hosts in a row: client — router — server.  Two veth pairs on two
//! subnets; the router forwards (`ip_forward` is set inside its namespace
//! only, a per-namespace setting) and has no default route; client and
//! server route everything through it.  Addresses are private to the
//! namespaces, so every topology uses the same ones.

use std::{
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use crate::harness::Netns;

pub(crate) const CLIENT: &str = "10.1.1.2";
/// The router's address on the client's subnet.
pub(crate) const ROUTER_C: &str = "10.1.1.1";
/// The router's address on the server's subnet.
pub(crate) const ROUTER_S: &str = "10.1.2.1";
pub(crate) const SERVER: &str = "10.1.2.2";
/// On the server's subnet, but no host has it: ARP goes unanswered.
pub(crate) const ABSENT: &str = "10.1.2.99";
/// No route leads there from the router.
pub(crate) const UNROUTED: &str = "10.99.0.1";

pub(crate) struct Routed {
    pub client: Netns,
    pub router: Netns,
    pub server: Netns,
}

/// A veth pair from `a` (`addr_a`/24) to `b` (`addr_b`/24); the pair goes
/// with its namespaces.
fn veth(a: &Netns, addr_a: &str, b: &Netns, addr_b: &str) {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let tag = std::process::id() % 10000;
    let (va, vb) = (format!("rto{n}a{tag}"), format!("rto{n}b{tag}"));
    let out = Command::new("ip")
        .args(["link", "add", &va, "netns", &a.name, "type", "veth"])
        .args(["peer", "name", &vb, "netns", &b.name])
        .output()
        .expect("ip link add");
    assert!(
        out.status.success(),
        "veth: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (ns, dev, addr) in [(a, &va, addr_a), (b, &vb, addr_b)] {
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", dev]);
        ns.ip(&["link", "set", dev, "up"]);
    }
}

impl Routed {
    pub(crate) fn new() -> Self {
        let (client, router, server) = (Netns::new(), Netns::new(), Netns::new());
        veth(&client, CLIENT, &router, ROUTER_C);
        veth(&router, ROUTER_S, &server, SERVER);
        router.sysctl("net.ipv4.ip_forward", "1");
        client.ip(&["route", "add", "default", "via", ROUTER_C]);
        server.ip(&["route", "add", "default", "via", ROUTER_S]);
        Routed {
            client,
            router,
            server,
        }
    }
}
