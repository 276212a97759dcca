//! The hooks for this kernel, chosen at start-up from the table in
//! `kernel::hooks` and from what the kernel offers.  An always-on tracer
//! should pay per event, not per packet:
//!
//! - where BPF trampolines work (fentry/fexit, nearly every production
//!   kernel), the functions that handle handshakes, resets and ICMP errors
//!   give TTLs and errors once per event, `inet_csk_accept` names who
//!   accepted a connection;
//! - elsewhere (this project's own 6.18 machines refuse trampolines), the
//!   per-packet receive hook and the accept syscalls stand in;
//! - sent resets: the `tcp_send_reset` tracepoint where it covers every
//!   reset (6.10+); before that, the functions that build resets with
//!   fentry, else kprobes, else (said plainly) the partial tracepoint;
//! - firewall resets and rejects: netfilter's own functions with kprobes
//!   (exact), drops from `kfree_skb`; without kprobes, replies matched
//!   from tracepoints (5.17+), paused in storms.
//!
//! BTF tracepoints and fentry need the kernel's own BTF; with `--btf` on
//! a kernel without it, raw tracepoints and kprobes stand in.

use aya::programs::tp_btf::BtfTracePointLinkId;
use rsttrace_common::config::{Config, ABSENT};

use super::{
    attach::{function_present, kprobes_supported, Attacher, HookState, Kind},
    CaptureError,
};
use crate::kernel::hooks::{hooks_of, Hook, Hooks, Role, Variant, HOOKS};

/// How resets the host sends are seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SentPath {
    /// `tcp_send_reset` with reasons, every reset (6.10+).
    Tracepoint,
    Fentry,
    Kprobe,
    /// `tcp_send_reset` without reasons: misses resets sent with no
    /// socket or from TIME_WAIT.
    PartialTracepoint,
}

/// Where the facts that are not resets themselves come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// BPF trampolines: function hooks, once per event.
    Functions,
    /// Tracepoints only: per-packet hooks stand in.
    Tracepoints,
}

/// What the plan needs to know besides the kernel's hooks.
pub(crate) struct Want {
    /// The kernel has its own BTF (tp_btf, fentry).
    pub kernel_btf: bool,
    /// Firewall hooks at all (not --no-firewall).
    pub firewall: bool,
    /// --failures: ICMP rejects and drops are reported too.
    pub failures: bool,
    /// The receive-path facts: origins, strays (not --no-path-check).
    pub path: bool,
    /// --stray-resets: report resets that arrive for no socket.
    pub stray: bool,
}

/// Where resets for no socket are seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strays {
    None,
    /// The functions that build resets, called for them.
    Builders,
    /// kfree_skb with reason NO_SOCKET.
    Drops,
}

/// Decisions that must be made before loading (they go into CONFIG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decisions {
    pub source: Source,
    /// Handshake and reset TTLs from function hooks.
    pub handshakes: bool,
    /// The reset's TTL from the receive path's functions (tcp_reset is
    /// not handed the segment).
    pub reset_segments: bool,
    /// The per-packet receive hook, and what it is for.
    pub packets: bool,
    pub packet_ttls: bool,
    pub packet_icmp: bool,
    /// ICMP errors from TCP's error handlers.
    pub icmp_functions: bool,
    /// Errnos from `sock_def_error_report` (no tracepoint before 5.14).
    pub error_function: bool,
    /// Firewall verdicts matched from tracepoints.
    pub firewall_tp: bool,
    /// Netfilter drops no exact hook saw, reported as drops.
    pub drops: bool,
    pub strays: Strays,
    pub kfree_skb: bool,
}

pub(crate) fn decide(hooks: &Hooks, want: &Want, source: Source) -> Decisions {
    let functions = source == Source::Functions && want.kernel_btf;
    let exact = kprobes_supported().is_ok();
    let has = |name| functions && hooks.function_args(name).is_some();
    // The peer's TTL per handshake, and the reset's own: handed to
    // tcp_reset() (6.1+), or kept by the receive path's functions before.
    let handshake_functions = has("tcp_finish_connect")
        && matches!(hooks.function_args("tcp_v4_syn_recv_sock"), Some(6 | 7))
        && hooks
            .function_args("tcp_v6_syn_recv_sock")
            .is_none_or(|n| Some(n) == hooks.function_args("tcp_v4_syn_recv_sock"));
    let reset_segment = hooks.function_args("tcp_reset").unwrap_or(0) >= 2;
    let reset_segments =
        !reset_segment && has("tcp_rcv_state_process") && has("tcp_validate_incoming");
    let ttl_functions = handshake_functions && (reset_segment || reset_segments);
    let icmp_functions = want.failures && has("tcp_v4_err");
    let receive = want.kernel_btf && hooks.receive_path;
    let packet_ttls = receive && want.path && !ttl_functions;
    let packet_icmp = receive && want.failures && !icmp_functions;
    let builders = !hooks.reset_reason && (functions || exact);
    let strays = match (want.path, builders) {
        (false, _) => Strays::None,
        (true, true) => Strays::Builders,
        (true, false) if want.kernel_btf && hooks.no_socket_drops => Strays::Drops,
        (true, false) => Strays::None,
    };
    let firewall_tp = want.firewall && want.kernel_btf && hooks.firewall_tracepoints && !exact;
    let drops = want.firewall && want.failures && exact && want.kernel_btf && hooks.netfilter_drops;
    Decisions {
        source,
        handshakes: want.path && ttl_functions,
        reset_segments: want.path && ttl_functions && !reset_segment,
        packets: packet_ttls || packet_icmp,
        packet_ttls,
        packet_icmp,
        icmp_functions,
        error_function: !hooks.error_report && has("sock_def_error_report"),
        firewall_tp,
        drops,
        strays,
        kfree_skb: firewall_tp || drops || strays == Strays::Drops,
    }
}

/// Writes the decisions into the programs' configuration.
pub(crate) fn configure(config: &mut Config, d: &Decisions, want: &Want) {
    config.want_firewall_tp = u8::from(d.firewall_tp);
    config.want_drops = u8::from(d.drops);
    config.want_icmp = u8::from(d.packet_icmp || d.icmp_functions);
    config.want_stray = u8::from(want.stray && d.strays != Strays::None);
    config.packet_ttls = u8::from(d.packet_ttls);
    if !d.kfree_skb {
        config.kfree_skb_has_reason = 0;
    }
    if d.strays != Strays::Drops {
        // Counted by the builders, or not at all: never twice.
        config.drop_reason_no_socket = ABSENT;
    }
}

/// Everything attached, and what was left out.
pub(crate) struct Plan {
    pub sent: SentPath,
    /// Firewall tracepoint links (paused during storms); None when not
    /// loaded.
    pub firewall_links: Option<Vec<(&'static str, BtfTracePointLinkId)>>,
    /// Netfilter functions waiting for their module.
    pub waiting: Vec<&'static str>,
    /// Plain-words notes on what this kernel does not let rsttrace see.
    pub notes: Vec<String>,
    /// Errnos are reported (by the tracepoint or the function).
    pub error_reports: bool,
}

/// Attaches the plan.  In `Source::Functions`, a function hook that does
/// not load fails the whole attempt with `CaptureError::Functions`: the
/// caller loads again for tracepoints.
pub(crate) fn attach(
    a: &mut Attacher,
    hooks: &Hooks,
    want: &Want,
    d: Decisions,
) -> Result<Plan, CaptureError> {
    let mut plan = Plan {
        sent: sent(a, hooks, want, d)?,
        firewall_links: None,
        waiting: vec![],
        notes: vec![],
        error_reports: false,
    };
    received(a, want, d)?;
    tracepoint(a, want, Role::States)?;
    accepts(a, hooks, d, &mut plan)?;
    errors(a, hooks, want, d, &mut plan)?;
    if d.handshakes {
        functions(a, Role::Handshakes, hooks)?;
    }
    if d.reset_segments {
        functions(a, Role::ResetSegments, hooks)?;
    }
    if d.icmp_functions {
        functions(a, Role::Icmp, hooks)?;
    }
    sent_notes(a, &mut plan);
    if want.firewall {
        firewall(a, hooks, want, d, &mut plan)?;
    }
    receive_path(a, want, d, &mut plan);
    Ok(plan)
}

/// A role's tracepoint: BTF-typed where the kernel has BTF, raw otherwise.
fn tracepoint(a: &mut Attacher, want: &Want, role: Role) -> Result<(), CaptureError> {
    let variant = if want.kernel_btf {
        Variant::TpBtf
    } else {
        Variant::RawTp
    };
    for h in hooks_of(role, variant) {
        if variant == Variant::TpBtf {
            a.btf_tp(h.program, h.event(), true)?;
        } else {
            a.raw_tp(h.program, h.event())?;
        }
    }
    Ok(())
}

/// Every fentry/fexit hook of `role` that BTF names; a failure to load
/// one means trampolines do not work here.
fn functions(a: &mut Attacher, role: Role, hooks: &Hooks) -> Result<(), CaptureError> {
    for variant in [Variant::Fentry, Variant::Fexit] {
        for h in hooks_of(role, variant) {
            let args = hooks.function_args(h.target);
            if args.is_none() {
                a.note(
                    h.target,
                    kind(variant),
                    HookState::Off("not in this kernel's BTF".into()),
                );
                continue;
            }
            if h.arity.is_some_and(|n| Some(n) != args) {
                // The program for another number of arguments.
                continue;
            }
            let r = if variant == Variant::Fentry {
                a.fentry(h.program, h.target)
            } else {
                a.fexit(h.program, h.target)
            };
            match r {
                Ok(()) => a.note(h.target, kind(variant), HookState::Attached),
                Err(e) => return Err(CaptureError::Functions(e.to_string())),
            }
        }
    }
    Ok(())
}

fn kind(v: Variant) -> Kind {
    match v {
        Variant::TpBtf => Kind::BtfTracepoint,
        Variant::RawTp => Kind::RawTracepoint,
        Variant::Tracepoint => Kind::Tracepoint,
        Variant::Fentry => Kind::Fentry,
        Variant::Fexit => Kind::Fexit,
        Variant::Kprobe => Kind::Kprobe,
    }
}

/// Received resets: `tcp_reset()` itself where trampolines work (it hands
/// over the reset segment), else its tracepoint.
fn received(a: &mut Attacher, want: &Want, d: Decisions) -> Result<(), CaptureError> {
    if d.source == Source::Functions {
        return functions_of(a, Role::Received);
    }
    tracepoint(a, want, Role::Received)
}

/// The fentry hooks of a role that must all load.
fn functions_of(a: &mut Attacher, role: Role) -> Result<(), CaptureError> {
    for h in hooks_of(role, Variant::Fentry) {
        a.fentry(h.program, h.target)
            .map_err(|e| CaptureError::Functions(e.to_string()))?;
        a.note(h.target, Kind::Fentry, HookState::Attached);
    }
    Ok(())
}

fn accepts(
    a: &mut Attacher,
    hooks: &Hooks,
    d: Decisions,
    plan: &mut Plan,
) -> Result<(), CaptureError> {
    let fexit = matches!(hooks.function_args("inet_csk_accept"), Some(2 | 4));
    if d.source == Source::Functions && fexit {
        return functions(a, Role::Accepts, hooks);
    }
    if hooks.accept {
        for h in hooks_of(Role::Accepts, Variant::Tracepoint) {
            a.tracepoint(h.program, h.system())?;
        }
    } else {
        plan.notes.push(
            "accept() owner registration off (no syscalls:sys_exit_accept4 or fd table in \
             BTF): accepted sockets resolve through /proc instead"
                .into(),
        );
    }
    Ok(())
}

fn errors(
    a: &mut Attacher,
    hooks: &Hooks,
    want: &Want,
    d: Decisions,
    plan: &mut Plan,
) -> Result<(), CaptureError> {
    if hooks.error_report {
        tracepoint(a, want, Role::Errors)?;
        plan.error_reports = true;
    } else if d.error_function {
        functions_of(a, Role::Errors)?;
        plan.error_reports = true;
    } else {
        plan.notes.push(
            "delivered errnos are not reported (delivered_errno is null; --failures sees only \
             firewall verdicts): this kernel has no sock:inet_sk_error_report tracepoint \
             (it arrived in Linux 5.14), and sock_def_error_report cannot be hooked here"
                .into(),
        );
    }
    Ok(())
}

fn receive_path(a: &mut Attacher, want: &Want, d: Decisions, plan: &mut Plan) {
    if d.packets {
        // Optional: without it only origins and ICMP details are missing.
        let h = hooks_of(Role::Packets, Variant::TpBtf)
            .next()
            .expect("in the table");
        if let Err(e) = a.btf_tp(h.program, h.event(), true) {
            plan.notes.push(format!(
                "the origin of received resets (rst_ttl, peer_ttl) and ICMP details are not \
                 reported: {e}"
            ));
        }
    } else if want.path && !d.handshakes {
        plan.notes.push(
            "the origin of received resets (rst_ttl, peer_ttl) is not reported: it needs BPF \
             trampolines or net:netif_receive_skb, and the kernel's BTF"
                .into(),
        );
    }
    if d.kfree_skb && !d.firewall_tp {
        // Not paused in storms: it runs per drop, not per packet.
        let h = hooks_of(Role::Drops, Variant::TpBtf)
            .next()
            .expect("in the table");
        if let Err(e) = a.btf_tp(h.program, h.event(), true) {
            plan.notes.push(format!(
                "resets for no socket and firewall drops are not seen: {e}"
            ));
        }
    }
    if want.stray && d.strays == Strays::None {
        plan.notes.push(
            "--stray-resets: resets for no socket cannot be seen here (they need the functions \
             that build resets, or kfree_skb drop reasons, Linux 5.17+)"
                .into(),
        );
    }
}

/// Notes the reset-building functions as hooked (by fentry or kprobes),
/// and the tracepoint as left alone.
fn builders_hooked(a: &mut Attacher, variant: Variant) {
    for h in hooks_of(Role::Sent, variant) {
        a.note(h.target, kind(variant), HookState::Attached);
    }
    a.note(
        "tcp_send_reset",
        Kind::BtfTracepoint,
        HookState::Off(format!(
            "the functions are hooked instead ({})",
            variant.as_str()
        )),
    );
}

fn builders(a: &mut Attacher, variant: Variant) -> Result<(), String> {
    for h in hooks_of(Role::Sent, variant) {
        let r = if variant == Variant::Fentry {
            a.fentry(h.program, h.target)
        } else {
            a.kprobe(h.program, h.target)
        };
        r.map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn sent(
    a: &mut Attacher,
    hooks: &Hooks,
    want: &Want,
    d: Decisions,
) -> Result<SentPath, CaptureError> {
    if hooks.reset_reason {
        tracepoint(a, want, Role::Sent)?;
        return Ok(SentPath::Tracepoint);
    }
    if d.source == Source::Functions {
        builders(a, Variant::Fentry).map_err(CaptureError::Functions)?;
        builders_hooked(a, Variant::Fentry);
        return Ok(SentPath::Fentry);
    }
    let kprobe = kprobes_supported().and_then(|()| builders(a, Variant::Kprobe));
    if kprobe.is_ok() {
        builders_hooked(a, Variant::Kprobe);
        return Ok(SentPath::Kprobe);
    }
    let why = format!(
        "fentry: {}; kprobes: {}",
        a.why_no_functions
            .clone()
            .unwrap_or_else(|| "not tried".into()),
        kprobe.err().unwrap_or_default()
    );
    for h in hooks_of(Role::Sent, Variant::Kprobe) {
        a.note(h.target, Kind::Kprobe, HookState::Off(why.clone()));
    }
    a.why_no_functions = Some(why);
    tracepoint(a, want, Role::Sent)?;
    Ok(SentPath::PartialTracepoint)
}

fn sent_notes(a: &Attacher, plan: &mut Plan) {
    match plan.sent {
        SentPath::PartialTracepoint => plan.notes.push(format!(
            "resets sent without a socket (closed ports) or from TIME_WAIT are not reported: \
             this kernel's tcp_send_reset misses them (Linux < 6.10), and the functions that \
             build resets cannot be hooked ({})",
            a.why_no_functions.clone().unwrap_or_default()
        )),
        SentPath::Fentry | SentPath::Kprobe => plan.notes.push(
            "this kernel gives no reset reasons (Linux < 6.10): causes are inferred from the \
             segment, socket state and call path (cause_source \"inferred\")"
                .into(),
        ),
        SentPath::Tracepoint => {}
    }
}

/// The hooks storm mode pauses when firewall replies are matched from
/// tracepoints: the per-packet ones of the table, and kfree_skb with them.
pub(crate) fn pausable() -> impl Iterator<Item = &'static Hook> {
    HOOKS
        .iter()
        .filter(|h| h.paused_in_storms)
        .chain(hooks_of(Role::Drops, Variant::TpBtf))
}

fn firewall(
    a: &mut Attacher,
    hooks: &Hooks,
    want: &Want,
    d: Decisions,
    plan: &mut Plan,
) -> Result<(), CaptureError> {
    let exact = kprobes_supported();
    match &exact {
        Ok(()) => exact_firewall(a, want, plan),
        Err(why) => {
            let instead = if hooks.firewall_off.is_none() && want.kernel_btf {
                "; tracepoints match firewall resets instead"
            } else {
                ""
            };
            for h in hooks_of(Role::FirewallExact, Variant::Kprobe) {
                a.note(
                    h.target,
                    Kind::Kprobe,
                    HookState::Off(format!("{why}{instead}")),
                );
            }
        }
    }
    match (&hooks.firewall_off, want.kernel_btf) {
        (Some(why), _) => {
            if let Err(no_kprobes) = &exact {
                plan.notes.push(format!(
                    "firewall resets are not reported: {why}, and {no_kprobes}"
                ));
            } else if want.failures {
                plan.notes
                    .push(format!("firewall drops are not reported: {why}"));
            }
        }
        (None, false) => plan
            .notes
            .push("firewall verdicts from tracepoints need the kernel's BTF".into()),
        (None, true) if d.firewall_tp => matched_firewall(a, hooks, plan),
        (None, true) => {}
    }
    Ok(())
}

/// Netfilter's reset functions (and, with --failures, its ICMP reject
/// functions), each attached now or as soon as its module loads.
fn exact_firewall(a: &mut Attacher, want: &Want, plan: &mut Plan) {
    for h in hooks_of(Role::FirewallExact, Variant::Kprobe) {
        if h.program.contains("unreach") && !want.failures {
            continue;
        }
        if function_present(h.target) {
            let r = a.kprobe(h.program, h.target);
            let state = r.map_or_else(|e| HookState::Off(e.to_string()), |()| HookState::Attached);
            a.note(h.target, Kind::Kprobe, state);
        } else {
            let module = h.module.unwrap_or("?");
            a.note(
                h.target,
                Kind::Kprobe,
                HookState::Waiting(format!("module {module} not loaded yet")),
            );
            plan.waiting.push(h.target);
        }
    }
}

/// The tracepoints that match firewall replies: loaded, and attached (and
/// paused in storms) by `Capture::set_firewall`.
fn matched_firewall(a: &mut Attacher, hooks: &Hooks, plan: &mut Plan) {
    let loaded = pausable().try_for_each(|h| a.btf_tp(h.program, h.event(), false).map(drop));
    match loaded {
        Ok(()) => plan.firewall_links = Some(vec![]),
        Err(e) => plan
            .notes
            .push(format!("firewall verdicts from tracepoints are off: {e}")),
    }
    if hooks.icmp_send && plan.firewall_links.is_some() {
        let _ = a.btf_tp("icmp_send", "icmp_send", true);
    }
}

/// The program of a netfilter function of the table.
fn exact_program(function: &str) -> Option<&'static str> {
    hooks_of(Role::FirewallExact, Variant::Kprobe)
        .find(|h| h.target == function)
        .map(|h| h.program)
}

/// Attaches netfilter functions whose module has loaded since; returns
/// the ones attached.
pub(crate) fn retry_waiting(
    a: &mut Attacher,
    waiting: &mut Vec<&'static str>,
) -> Vec<&'static str> {
    let mut done = vec![];
    waiting.retain(|&f| {
        if !function_present(f) {
            return true;
        }
        let Some(program) = exact_program(f) else {
            return false;
        };
        match a.kprobe(program, f) {
            Ok(()) => {
                done.push(f);
                false
            }
            Err(e) => {
                log::warn!("cannot hook {f}: {e}");
                false
            }
        }
    });
    done
}
