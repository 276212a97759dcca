//! Every hook rsttrace may attach, in one table ([`HOOKS`]): what it is
//! for (its role), where it attaches, the program of each variant, the
//! module a function lives in, whether rsttrace needs it, and whether
//! storm mode pauses it.  `capture::plan` walks the table to choose this
//! kernel's hooks and `rsttrace doctor` prints it; adding a hook is a row
//! here plus its eBPF program.
//!
//! Also what the kernel's BTF says about the hooks: tracepoint signatures,
//! whether `tcp_send_reset` carries a reason, how many arguments the
//! hooked functions take.

use rsttrace_common::config::{Config, ABSENT};

use super::{btf::Btf, tracefs::EventFormat, LayoutError};

/// What a hook is for.  Each role is covered by one choice of its hooks'
/// variants (see `capture::plan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Resets this host sends.
    Sent,
    /// Resets this host receives.
    Received,
    /// Socket state changes: the owners of connect() and listen(), a
    /// listener's children, closes.
    States,
    /// Who accepted a connection.
    Accepts,
    /// The errno a socket gets (delivered_errno, --failures).
    Errors,
    /// The peer's TTL of each handshake (a received reset's origin).
    Handshakes,
    /// A received reset's own segment, where `tcp_reset(sk)` is not handed
    /// it (before 6.1): the receive path's functions keep its TTL.
    ResetSegments,
    /// Every packet received: TTLs and ICMP errors, where no function hook
    /// gives them.
    Packets,
    /// ICMP errors about this host's segments (--failures).
    Icmp,
    /// Packets the kernel drops: resets for no socket, netfilter drops.
    Drops,
    /// Netfilter's own reset and reject functions (exact).
    FirewallExact,
    /// Firewall replies matched from tracepoints (no kprobes).
    FirewallMatch,
}

/// How a program attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    /// BTF tracepoint (`tp_btf`): the kernel's BTF types the arguments.
    TpBtf,
    /// Raw tracepoint, for kernels without their own BTF (`--btf`).
    RawTp,
    /// Classic tracepoint (syscalls).
    Tracepoint,
    Fentry,
    Fexit,
    Kprobe,
}

impl Variant {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Variant::TpBtf => "tp_btf",
            Variant::RawTp => "raw_tp",
            Variant::Tracepoint => "tracepoint",
            Variant::Fentry => "fentry",
            Variant::Fexit => "fexit",
            Variant::Kprobe => "kprobe",
        }
    }

    /// Attached to a kernel function rather than a tracepoint.
    pub(crate) fn is_function(self) -> bool {
        matches!(self, Variant::Fentry | Variant::Fexit | Variant::Kprobe)
    }
}

/// One program on one hook.
#[derive(Debug)]
pub(crate) struct Hook {
    pub role: Role,
    /// `system:event` for tracepoints, the function's name otherwise.
    pub target: &'static str,
    pub variant: Variant,
    /// The eBPF program's name.
    pub program: &'static str,
    /// For BTF tracepoints: the argument types the program reads.
    pub args: &'static [&'static str],
    /// For fexit programs: the number of arguments the function must have
    /// (the return value follows them; each count is a program).
    pub arity: Option<usize>,
    /// The kernel module a function lives in when it is not built in.
    pub module: Option<&'static str>,
    /// rsttrace does not start without this role.
    pub required: bool,
    /// Storm mode takes it off while a storm lasts (it runs per packet).
    pub paused_in_storms: bool,
    pub purpose: &'static str,
}

impl Hook {
    const fn new(
        role: Role,
        target: &'static str,
        variant: Variant,
        program: &'static str,
        purpose: &'static str,
    ) -> Hook {
        Hook {
            role,
            target,
            variant,
            program,
            args: &[],
            arity: None,
            module: None,
            required: false,
            paused_in_storms: false,
            purpose,
        }
    }

    const fn args(mut self, args: &'static [&'static str]) -> Hook {
        self.args = args;
        self
    }

    const fn arity(mut self, n: usize) -> Hook {
        self.arity = Some(n);
        self
    }

    const fn required(mut self) -> Hook {
        self.required = true;
        self
    }

    const fn module(mut self, module: &'static str) -> Hook {
        self.module = Some(module);
        self
    }

    const fn paused_in_storms(mut self) -> Hook {
        self.paused_in_storms = true;
        self
    }

    /// The tracepoint's event name (`tcp_send_reset` of `tcp:tcp_send_reset`).
    pub(crate) fn event(&self) -> &'static str {
        self.target
            .split_once(':')
            .map_or(self.target, |(_, event)| event)
    }

    /// The tracepoint's system (`tcp`), empty for functions.
    pub(crate) fn system(&self) -> &'static str {
        self.target.split_once(':').map_or("", |(system, _)| system)
    }
}

use Role::*;
use Variant::*;

const SOCK: &[&str] = &["*sock"];

/// Every hook, by role; within a role, the preferred variants first.
#[rustfmt::skip]
pub(crate) const HOOKS: &[Hook] = &[
    Hook::new(Sent, "tcp:tcp_send_reset", TpBtf, "tcp_send_reset", "resets sent (every reset, with a reason, from Linux 6.10; before, only those of full sockets)").args(&["*sock", "*sk_buff"]).required(),
    Hook::new(Sent, "tcp:tcp_send_reset", RawTp, "tcp_send_reset_raw", "resets sent, without the kernel's BTF").required(),
    Hook::new(Sent, "tcp_v4_send_reset", Fentry, "tcp_v4_send_reset_fentry", "IPv4 resets in reply to segments, before Linux 6.10 (no socket, time-wait, listener)").required(),
    Hook::new(Sent, "tcp_v6_send_reset", Fentry, "tcp_v6_send_reset_fentry", "IPv6 resets in reply to segments, before Linux 6.10").required(),
    Hook::new(Sent, "tcp_send_active_reset", Fentry, "tcp_send_active_reset_fentry", "resets the host starts itself (close, abort, timers), before Linux 6.10").required(),
    Hook::new(Sent, "tcp_v4_send_reset", Kprobe, "send_reset_kprobe", "IPv4 resets in reply to segments, before Linux 6.10, without BPF trampolines").required(),
    Hook::new(Sent, "tcp_v6_send_reset", Kprobe, "send_reset_kprobe", "IPv6 resets in reply to segments, before Linux 6.10, without BPF trampolines").required(),
    Hook::new(Sent, "tcp_send_active_reset", Kprobe, "active_reset_kprobe", "resets the host starts itself, before Linux 6.10, without BPF trampolines").required(),
    Hook::new(Received, "tcp_reset", Fentry, "tcp_reset_fentry", "resets received, with the reset segment itself (its TTL, without watching every packet)").required(),
    Hook::new(Received, "tcp:tcp_receive_reset", TpBtf, "tcp_receive_reset", "resets received").args(SOCK).required(),
    Hook::new(Received, "tcp:tcp_receive_reset", RawTp, "tcp_receive_reset_raw", "resets received, without the kernel's BTF").required(),
    Hook::new(States, "sock:inet_sock_set_state", TpBtf, "inet_sock_set_state", "socket owners (connect, listen), closes, listener history").args(&["*sock", "int", "int"]).required(),
    Hook::new(States, "sock:inet_sock_set_state", RawTp, "inet_sock_set_state_raw", "socket owners, without the kernel's BTF").required(),
    Hook::new(Accepts, "inet_csk_accept", Fexit, "inet_csk_accept_2", "owners of accepted sockets, once per accept (Linux 6.10+)").arity(2),
    Hook::new(Accepts, "inet_csk_accept", Fexit, "inet_csk_accept_4", "owners of accepted sockets, once per accept").arity(4),
    Hook::new(Accepts, "syscalls:sys_exit_accept4", Tracepoint, "sys_exit_accept4", "owners of accepted sockets (accept4), through the fd table"),
    Hook::new(Accepts, "syscalls:sys_exit_accept", Tracepoint, "sys_exit_accept", "owners of accepted sockets (accept), through the fd table"),
    Hook::new(Errors, "sock:inet_sk_error_report", TpBtf, "inet_sk_error_report", "the errno a socket gets (delivered_errno, --failures); Linux 5.14+").args(SOCK),
    Hook::new(Errors, "sock:inet_sk_error_report", RawTp, "inet_sk_error_report_raw", "the errno a socket gets, without the kernel's BTF"),
    Hook::new(Errors, "sock_def_error_report", Fentry, "sock_def_error_report", "the errno a socket gets, before Linux 5.14 (no tracepoint)"),
    Hook::new(Handshakes, "tcp_finish_connect", Fentry, "tcp_finish_connect", "the peer's TTL on connections this host opens (origin of received resets)"),
    Hook::new(Handshakes, "tcp_v4_syn_recv_sock", Fexit, "tcp_v4_syn_recv_sock_6", "the peer's TTL on connections this host accepts, IPv4").arity(6),
    Hook::new(Handshakes, "tcp_v4_syn_recv_sock", Fexit, "tcp_v4_syn_recv_sock_7", "the peer's TTL on connections this host accepts, IPv4").arity(7),
    Hook::new(Handshakes, "tcp_v6_syn_recv_sock", Fexit, "tcp_v6_syn_recv_sock_6", "the peer's TTL on connections this host accepts, IPv6").arity(6),
    Hook::new(Handshakes, "tcp_v6_syn_recv_sock", Fexit, "tcp_v6_syn_recv_sock_7", "the peer's TTL on connections this host accepts, IPv6").arity(7),
    Hook::new(ResetSegments, "tcp_rcv_state_process", Fentry, "tcp_rcv_state_process", "a received reset's TTL on sockets not established, where tcp_reset() is not handed the segment (5.10)"),
    Hook::new(ResetSegments, "tcp_validate_incoming", Fentry, "tcp_validate_incoming", "a received reset's TTL on established sockets (off the fast path), where tcp_reset() is not handed the segment (5.10)"),
    Hook::new(Packets, "net:netif_receive_skb", TpBtf, "netif_receive_skb", "every packet received, where BPF trampolines are missing: TTLs of resets and handshakes (origin), ICMP errors (--failures)").args(&["*sk_buff"]),
    Hook::new(Icmp, "tcp_v4_err", Fentry, "tcp_v4_err", "ICMP errors about this host's IPv4 segments (--failures)"),
    Hook::new(Icmp, "tcp_v6_err", Fentry, "tcp_v6_err", "ICMPv6 errors about this host's segments (--failures)"),
    Hook::new(Drops, "skb:kfree_skb", TpBtf, "kfree_skb", "dropped packets (drop reasons, Linux 5.17+): resets for no socket, firewall drops").args(&["*sk_buff", "*void", "enum skb_drop_reason"]),
    Hook::new(FirewallExact, "nf_send_reset", Kprobe, "nf_send_reset_kprobe", "firewall resets, IPv4 (exact)").module("nf_reject_ipv4"),
    Hook::new(FirewallExact, "nf_send_reset6", Kprobe, "nf_send_reset_kprobe", "firewall resets, IPv6 (exact)").module("nf_reject_ipv6"),
    Hook::new(FirewallExact, "nf_send_unreach", Kprobe, "nf_send_unreach_kprobe", "firewall ICMP rejects, IPv4 (exact; --failures)").module("nf_reject_ipv4"),
    Hook::new(FirewallExact, "nf_send_unreach6", Kprobe, "nf_send_unreach6_kprobe", "firewall ICMP rejects, IPv6 (exact; --failures)").module("nf_reject_ipv6"),
    Hook::new(FirewallMatch, "fib:fib_table_lookup", TpBtf, "fib_table_lookup", "firewall verdicts without kprobes: the IPv4 reply's route").args(&["unsigned int", "*flowi4"]).paused_in_storms(),
    Hook::new(FirewallMatch, "fib6:fib6_table_lookup", TpBtf, "fib6_table_lookup", "firewall verdicts without kprobes: the IPv6 reply's route").args(&["*net", "*fib6_result", "*fib6_table", "*flowi6"]).paused_in_storms(),
    Hook::new(FirewallMatch, "net:net_dev_queue", TpBtf, "net_dev_queue", "firewall verdicts without kprobes: the reply itself").args(&["*sk_buff"]).paused_in_storms(),
    Hook::new(FirewallMatch, "icmp:icmp_send", TpBtf, "icmp_send", "firewall ICMP rejects without kprobes (Linux 6.12, 6.1.130+); runs per ICMP error sent, so it stays in storms").args(&["*sk_buff", "int", "int"]),
];

/// The hooks of one role in one variant.
pub(crate) fn hooks_of(role: Role, variant: Variant) -> impl Iterator<Item = &'static Hook> {
    HOOKS
        .iter()
        .filter(move |h| h.role == role && h.variant == variant)
}

/// The BTF tracepoints of the table, each once.
pub(crate) fn tracepoints() -> impl Iterator<Item = &'static Hook> {
    HOOKS.iter().filter(|h| h.variant == TpBtf)
}

/// What the kernel's BTF says about the hooks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    /// `tcp_send_reset` carries a reason and fires for every reset
    /// (Linux >= 6.10).
    pub reset_reason: bool,
    /// Owners of accepted sockets via `syscalls:sys_exit_accept*`.
    pub accept: bool,
    /// The `inet_sk_error_report` tracepoint (Linux 5.14+).
    pub error_report: bool,
    /// kfree_skb with drop reasons, route lookups and net_dev_queue.
    pub firewall_tracepoints: bool,
    pub icmp_send: bool,
    /// netif_receive_skb with the skb members the receive path reads.
    pub receive_path: bool,
    /// kfree_skb names NO_SOCKET drops (resets for no socket).
    pub no_socket_drops: bool,
    /// kfree_skb names NETFILTER_DROP drops.
    pub netfilter_drops: bool,
    /// Each BTF tracepoint's signature check, by event name (Err: why
    /// not usable).
    pub tracepoints: Vec<(&'static str, Result<(), String>)>,
    /// Why the firewall tracepoints are off, if they are.
    pub firewall_off: Option<String>,
    /// The table's kernel functions that BTF names, with their number of
    /// arguments.
    pub functions: Vec<(&'static str, usize)>,
}

impl Hooks {
    pub fn tracepoint_ok(&self, name: &str) -> bool {
        self.tracepoints
            .iter()
            .any(|(n, r)| *n == name && r.is_ok())
    }

    /// How many arguments BTF gives function `name` (None: not in BTF).
    pub fn function_args(&self, name: &str) -> Option<usize> {
        self.functions
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, n)| n)
    }
}

/// Checks a BTF tracepoint's signature; returns its argument types.
pub(crate) fn check_tracepoint(
    btf: &Btf,
    name: &str,
    want: &[&str],
) -> Result<Vec<String>, LayoutError> {
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

/// Checks every tracepoint and function and fills the config flags that
/// depend on them.
pub(crate) fn detect(
    btf: &Btf,
    config: &mut Config,
    accept_exit: Option<&EventFormat>,
    degraded: &mut Vec<String>,
) -> Result<Hooks, LayoutError> {
    let mut hooks = Hooks::default();
    for tp in tracepoints() {
        match check_tracepoint(btf, tp.event(), tp.args) {
            Ok(args) => {
                if tp.event() == "tcp_send_reset" {
                    hooks.reset_reason = args.get(2).is_some_and(|a| a == "enum sk_rst_reason");
                }
                hooks.tracepoints.push((tp.event(), Ok(())));
            }
            Err(e) if tp.required => return Err(e),
            Err(e) => hooks.tracepoints.push((tp.event(), Err(e.to_string()))),
        }
    }
    functions(btf, config, &mut hooks);
    config.send_reset_has_reason = u8::from(hooks.reset_reason);
    hooks.error_report =
        hooks.tracepoint_ok("inet_sk_error_report") && config.offsets.sk_protocol != ABSENT;
    drop_reasons(btf, config, &mut hooks);
    firewall(config, &mut hooks);
    hooks.icmp_send = hooks.firewall_tracepoints && hooks.tracepoint_ok("icmp_send");
    hooks.receive_path = hooks.tracepoint_ok("netif_receive_skb")
        && config.offsets.skb_data != ABSENT
        && config.offsets.skb_protocol != ABSENT;
    // bpf_get_socket_cookie() for tracing programs came with this function.
    config.socket_cookie_helper = u8::from(btf.has_func("bpf_get_socket_ptr_cookie"));
    config.task_btf = u8::from(btf.has_func("bpf_get_current_task_btf"));
    accept(config, accept_exit, &mut hooks, degraded);
    Ok(hooks)
}

/// The functions of the table that BTF names, with their argument counts
/// (which fexit program loads, whether `tcp_reset` hands over the segment).
fn functions(btf: &Btf, config: &mut Config, hooks: &mut Hooks) {
    for h in HOOKS.iter().filter(|h| h.variant.is_function()) {
        if hooks.function_args(h.target).is_none() {
            if let Some(args) = btf.func_args(h.target) {
                hooks.functions.push((h.target, args.len()));
            }
        }
    }
    config.tcp_reset_has_skb = u8::from(hooks.function_args("tcp_reset").unwrap_or(0) >= 2);
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
    hooks.netfilter_drops = config.drop_reason_netfilter != ABSENT;
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

/// Owners of accepted sockets through the syscalls need the fd-table walk
/// and the syscall record.
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
        _ if hooks.function_args("inet_csk_accept").is_some() => {}
        _ => degraded.push(
            "accept() owner registration off (no syscalls:sys_exit_accept4 or fd table in BTF): \
             accepted sockets resolve through /proc instead"
                .into(),
        ),
    }
}
