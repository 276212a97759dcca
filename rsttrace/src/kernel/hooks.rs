//! Which hooks this kernel offers, from its BTF: the tracepoints rsttrace
//! attaches to (and their signatures), and the functions that build
//! resets where the tracepoints miss them.  `capture` chooses among them
//! at start-up; `rsttrace doctor` shows them.

use rsttrace_common::config::{Config, ABSENT};

use super::{btf::Btf, layout::LayoutError, tracefs::EventFormat};

/// A BTF tracepoint: the argument types its programs read, by position.
pub struct TracepointSpec {
    pub system: &'static str,
    pub name: &'static str,
    pub args: &'static [&'static str],
    /// Without it rsttrace does not start.
    pub required: bool,
    pub purpose: &'static str,
}

pub const TRACEPOINTS: &[TracepointSpec] = &[
    TracepointSpec { system: "tcp", name: "tcp_send_reset", args: &["*sock", "*sk_buff"], required: true, purpose: "resets sent (every reset, with a reason, from Linux 6.10; before, only those of full sockets)" },
    TracepointSpec { system: "tcp", name: "tcp_receive_reset", args: &["*sock"], required: true, purpose: "resets received" },
    TracepointSpec { system: "sock", name: "inet_sock_set_state", args: &["*sock", "int", "int"], required: true, purpose: "socket owners (connect, listen), closes, listener history" },
    TracepointSpec { system: "tcp", name: "tcp_destroy_sock", args: &["*sock"], required: true, purpose: "socket lifetimes; owners of closed connections" },
    TracepointSpec { system: "sock", name: "inet_sk_error_report", args: &["*sock"], required: false, purpose: "the errno a socket gets (delivered_errno, --failures); Linux 5.14+" },
    TracepointSpec { system: "skb", name: "kfree_skb", args: &["*sk_buff", "*void", "enum skb_drop_reason"], required: false, purpose: "firewall verdicts (drop reasons, Linux 5.17+)" },
    TracepointSpec { system: "fib", name: "fib_table_lookup", args: &["unsigned int", "*flowi4"], required: false, purpose: "firewall verdicts: the IPv4 reply's route" },
    TracepointSpec { system: "fib6", name: "fib6_table_lookup", args: &["*net", "*fib6_result", "*fib6_table", "*flowi6"], required: false, purpose: "firewall verdicts: the IPv6 reply's route" },
    TracepointSpec { system: "net", name: "net_dev_queue", args: &["*sk_buff"], required: false, purpose: "firewall verdicts: the reply itself" },
    TracepointSpec { system: "icmp", name: "icmp_send", args: &["*sk_buff", "int", "int"], required: false, purpose: "firewall ICMP rejects (Linux 6.12, 6.1.130+)" },
    TracepointSpec { system: "net", name: "netif_receive_skb", args: &["*sk_buff"], required: false, purpose: "the receive path: TTLs of resets and handshakes (origin), ICMP errors (--failures), resets for no socket" },
];

/// A kernel function rsttrace hooks with fentry or a kprobe.
pub struct FunctionSpec {
    pub name: &'static str,
    /// The module it lives in when not built in.
    pub module: Option<&'static str>,
    pub purpose: &'static str,
}

pub const FUNCTIONS: &[FunctionSpec] = &[
    FunctionSpec {
        name: "tcp_v4_send_reset",
        module: None,
        purpose:
            "IPv4 resets in reply to segments, before Linux 6.10 (no socket, time-wait, listener)",
    },
    FunctionSpec {
        name: "tcp_v6_send_reset",
        module: None,
        purpose: "IPv6 resets in reply to segments, before Linux 6.10",
    },
    FunctionSpec {
        name: "tcp_send_active_reset",
        module: None,
        purpose: "resets the host starts itself (close, abort, timers), before Linux 6.10",
    },
    FunctionSpec {
        name: "nf_send_reset",
        module: Some("nf_reject_ipv4"),
        purpose: "firewall resets, IPv4 (exact)",
    },
    FunctionSpec {
        name: "nf_send_reset6",
        module: Some("nf_reject_ipv6"),
        purpose: "firewall resets, IPv6 (exact)",
    },
];

/// What the kernel's BTF says about the hooks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    /// `tcp_send_reset` carries a reason and fires for every reset
    /// (Linux >= 6.10).
    pub reset_reason: bool,
    /// Owners of accepted sockets via `syscalls:sys_exit_accept*`.
    pub accept: bool,
    pub error_report: bool,
    /// kfree_skb with drop reasons, route lookups and net_dev_queue.
    pub firewall_tracepoints: bool,
    pub icmp_send: bool,
    /// netif_receive_skb with the skb members the receive path reads.
    pub receive_path: bool,
    /// kfree_skb names NO_SOCKET drops (resets for no socket).
    pub no_socket_drops: bool,
    /// Each tracepoint's signature check, by name (Err: why not usable).
    pub tracepoints: Vec<(&'static str, Result<(), String>)>,
    /// Why the firewall tracepoints are off, if they are.
    pub firewall_off: Option<String>,
}

impl Hooks {
    pub fn tracepoint_ok(&self, name: &str) -> bool {
        self.tracepoints
            .iter()
            .any(|(n, r)| *n == name && r.is_ok())
    }
}

/// Checks a BTF tracepoint's signature; returns its argument types.
pub fn check_tracepoint(btf: &Btf, name: &str, want: &[&str]) -> Result<Vec<String>, LayoutError> {
    let args = btf
        .tracepoint_args(name)
        .ok_or_else(|| LayoutError::MissingTracepoint(name.to_string()))?;
    if args.len() < want.len() || want.iter().zip(&args).any(|(w, f)| w != f) {
        return Err(LayoutError::UnexpectedSignature {
            name: name.to_string(),
            found: args.join(", "),
            expected: want.join(", "),
        });
    }
    Ok(args)
}

/// Checks every tracepoint and fills the config flags that depend on them.
pub fn detect(
    btf: &Btf,
    config: &mut Config,
    accept_exit: Option<&EventFormat>,
    degraded: &mut Vec<String>,
) -> Result<Hooks, LayoutError> {
    let mut hooks = Hooks::default();
    for tp in TRACEPOINTS {
        match check_tracepoint(btf, tp.name, tp.args) {
            Ok(args) => {
                if tp.name == "tcp_send_reset" {
                    hooks.reset_reason = args.get(2).is_some_and(|a| a == "enum sk_rst_reason");
                }
                hooks.tracepoints.push((tp.name, Ok(())));
            }
            Err(e) if tp.required => return Err(e),
            Err(e) => hooks.tracepoints.push((tp.name, Err(e.to_string()))),
        }
    }
    config.send_reset_has_reason = u8::from(hooks.reset_reason);
    hooks.error_report =
        hooks.tracepoint_ok("inet_sk_error_report") && config.offsets.sk_protocol != ABSENT;
    if !hooks.error_report {
        degraded.push(
            "delivered errnos are not reported (delivered_errno is null; --failures sees only \
             firewall verdicts): this kernel has no sock:inet_sk_error_report tracepoint \
             (it arrived in Linux 5.14)"
                .into(),
        );
    }
    drop_reasons(btf, config, &mut hooks);
    firewall(config, &mut hooks);
    hooks.icmp_send = hooks.firewall_tracepoints && hooks.tracepoint_ok("icmp_send");
    hooks.receive_path = hooks.tracepoint_ok("netif_receive_skb")
        && config.offsets.skb_data != ABSENT
        && config.offsets.skb_protocol != ABSENT;
    // bpf_get_socket_cookie() for tracing programs came with this function.
    config.socket_cookie_helper = u8::from(btf.has_func("bpf_get_socket_ptr_cookie"));
    accept(config, accept_exit, &mut hooks, degraded);
    Ok(hooks)
}

/// kfree_skb's drop reasons (Linux 5.17+): NETFILTER_DROP for firewall
/// verdicts, NO_SOCKET for resets that find no socket.
fn drop_reasons(btf: &Btf, config: &mut Config, hooks: &mut Hooks) {
    if !hooks.tracepoint_ok("kfree_skb") {
        return;
    }
    let Some(reasons) = btf.enum_values("skb_drop_reason") else {
        return;
    };
    config.kfree_skb_has_reason = 1;
    for (name, value) in reasons {
        match name {
            "SKB_DROP_REASON_NETFILTER_DROP" => config.drop_reason_netfilter = value as u32,
            "SKB_DROP_REASON_NO_SOCKET" => config.drop_reason_no_socket = value as u32,
            _ => {}
        }
    }
    hooks.no_socket_drops = config.drop_reason_no_socket != ABSENT;
}

/// Firewall verdicts from tracepoints need kfree_skb's NETFILTER_DROP,
/// the route lookup tracepoints and their flow members, and net_dev_queue.
fn firewall(config: &Config, hooks: &mut Hooks) {
    let flows = [config.offsets.flowi4_proto, config.offsets.flowi6_proto]
        .iter()
        .all(|&o| o != ABSENT);
    let missing: Vec<&str> = [
        "kfree_skb",
        "fib_table_lookup",
        "fib6_table_lookup",
        "net_dev_queue",
    ]
    .into_iter()
    .filter(|n| !hooks.tracepoint_ok(n))
    .collect();
    hooks.firewall_off = if config.kfree_skb_has_reason == 0 {
        Some("kfree_skb gives no drop reason before Linux 5.17".to_string())
    } else if !missing.is_empty() {
        Some(format!(
            "this kernel lacks the tracepoints {}",
            missing.join(", ")
        ))
    } else if config.drop_reason_netfilter == ABSENT {
        Some("this kernel's drop reasons have no NETFILTER_DROP (Linux 5.18+)".into())
    } else if !flows {
        Some("the route lookup flows are not in this kernel's BTF".into())
    } else {
        None
    };
    hooks.firewall_tracepoints = hooks.firewall_off.is_none();
}

/// Owners of accepted sockets need the fd-table walk and the syscall record.
fn accept(
    config: &mut Config,
    accept_exit: Option<&EventFormat>,
    hooks: &mut Hooks,
    degraded: &mut Vec<String>,
) {
    let o = &config.offsets;
    let fd_walk = [o.task_files, o.files_fdt, o.fdtable_max_fds, o.fdtable_fd]
        .iter()
        .all(|&o| o != ABSENT);
    match accept_exit.and_then(|f| f.fields.get("ret")) {
        Some(ret) if fd_walk && ret.size == 8 => {
            config.accept_ret_offset = ret.offset;
            hooks.accept = true;
        }
        _ => degraded.push(
            "accept() owner registration off (no syscalls:sys_exit_accept4 or fd table in BTF): \
             accepted sockets resolve through /proc instead"
                .into(),
        ),
    }
}
