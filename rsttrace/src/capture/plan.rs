//! The hooks for this kernel, chosen at start-up from what it offers:
//!
//! - sent resets: the `tcp_send_reset` tracepoint where it covers every
//!   reset (6.10+); before that, the functions that build resets with
//!   fentry, else kprobes, else (said plainly) the partial tracepoint;
//! - received resets, owners, delivered errnos: tracepoints;
//! - firewall resets: netfilter's `nf_send_reset{,6}` with kprobes
//!   (exact); verdicts from tracepoints (5.17+) where kprobes are missing
//!   or `--failures` asks for ICMP rejects and drops.
//!
//! BTF tracepoints and fentry need the kernel's own BTF; with `--btf` on
//! a kernel without it, raw tracepoints and kprobes stand in.

use aya::programs::tp_btf::BtfTracePointLinkId;

use super::{
    attach::{function_present, kprobes_supported, Attacher, HookState, Kind},
    CaptureError,
};
use crate::kernel::hooks::Hooks;

/// How resets the host sends are seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentPath {
    /// `tcp_send_reset` with reasons, every reset (6.10+).
    Tracepoint,
    Fentry,
    Kprobe,
    /// `tcp_send_reset` without reasons: misses resets sent with no
    /// socket or from TIME_WAIT.
    PartialTracepoint,
}

/// What the plan needs to know besides the kernel's hooks.
pub struct Want {
    /// The kernel has its own BTF (tp_btf, fentry).
    pub kernel_btf: bool,
    /// Firewall hooks at all (not --no-firewall).
    pub firewall: bool,
    /// --failures: ICMP rejects and drops are reported too.
    pub failures: bool,
    /// The receive-path hook (not --no-path-check).
    pub path: bool,
    /// --stray-resets: report resets that arrive for no socket.
    pub stray: bool,
}

/// Decisions that must be made before loading (they go into CONFIG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decisions {
    /// Firewall verdicts from tracepoints.
    pub firewall_tp: bool,
    /// The receive-path hook.
    pub path: bool,
    /// kfree_skb: for firewall verdicts, or for resets with no socket.
    pub kfree_skb: bool,
}

pub fn decide(hooks: &Hooks, want: &Want) -> Decisions {
    let exact = kprobes_supported().is_ok();
    let firewall_tp =
        want.firewall && want.kernel_btf && hooks.firewall_tracepoints && (!exact || want.failures);
    let path = want.path && want.kernel_btf && hooks.receive_path;
    Decisions {
        firewall_tp,
        path,
        kfree_skb: firewall_tp || (path && hooks.no_socket_drops),
    }
}

/// Everything attached, and what was left out.
pub struct Plan {
    pub sent: SentPath,
    /// Firewall tracepoint links (paused during storms); None when not
    /// loaded.
    pub firewall_links: Option<Vec<(&'static str, BtfTracePointLinkId)>>,
    /// Netfilter reset functions waiting for their module.
    pub waiting: Vec<&'static str>,
    /// Plain-words notes on what this kernel does not let rsttrace see.
    pub notes: Vec<String>,
}

pub fn attach(
    a: &mut Attacher,
    hooks: &Hooks,
    want: &Want,
    d: Decisions,
) -> Result<Plan, CaptureError> {
    let mut plan = Plan {
        sent: sent(a, hooks, want)?,
        firewall_links: None,
        waiting: vec![],
        notes: vec![],
    };
    tracepoint(a, want, "tcp_receive_reset", "tcp_receive_reset_raw")?;
    tracepoint(a, want, "inet_sock_set_state", "inet_sock_set_state_raw")?;
    tracepoint(a, want, "tcp_destroy_sock", "tcp_destroy_sock_raw")?;
    if hooks.error_report {
        tracepoint(a, want, "inet_sk_error_report", "inet_sk_error_report_raw")?;
    }
    if hooks.accept {
        a.tracepoint("sys_exit_accept4", "syscalls")?;
        a.tracepoint("sys_exit_accept", "syscalls")?;
    }
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
    if want.firewall {
        firewall(a, hooks, want, d, &mut plan)?;
    }
    receive_path(a, hooks, want, d, &mut plan)?;
    Ok(plan)
}

fn receive_path(
    a: &mut Attacher,
    hooks: &Hooks,
    want: &Want,
    d: Decisions,
    plan: &mut Plan,
) -> Result<(), CaptureError> {
    if d.path {
        // Optional: without it only origins and ICMP details are missing.
        if let Err(e) = a.btf_tp("netif_receive_skb", "netif_receive_skb", true) {
            plan.notes.push(format!(
                "the origin of received resets (rst_ttl, peer_ttl) and ICMP details are not \
                 reported: {e}"
            ));
        }
    } else if want.path {
        plan.notes.push(
            "the origin of received resets (rst_ttl, peer_ttl) and ICMP details are not \
             reported: the receive-path hook needs net:netif_receive_skb and the kernel's BTF"
                .into(),
        );
    }
    if d.kfree_skb && !d.firewall_tp {
        // Only for resets with no socket: not paused in storms.
        if let Err(e) = a.btf_tp("kfree_skb", "kfree_skb", true) {
            plan.notes
                .push(format!("resets for no socket are not counted: {e}"));
        }
    }
    if want.stray && !(d.path && hooks.no_socket_drops) {
        plan.notes.push(
            "--stray-resets: resets for no socket cannot be seen here (they need the \
             receive-path hook and kfree_skb drop reasons, Linux 5.17+)"
                .into(),
        );
    }
    Ok(())
}

/// A tracepoint program: BTF-typed where the kernel has BTF, raw otherwise.
fn tracepoint(
    a: &mut Attacher,
    want: &Want,
    prog: &'static str,
    raw: &'static str,
) -> Result<(), CaptureError> {
    if want.kernel_btf {
        a.btf_tp(prog, prog, true).map(drop)
    } else {
        a.raw_tp(raw, prog)
    }
}

const BUILDERS: [(&str, &str, &str); 3] = [
    (
        "tcp_v4_send_reset_fentry",
        "send_reset_kprobe",
        "tcp_v4_send_reset",
    ),
    (
        "tcp_v6_send_reset_fentry",
        "send_reset_kprobe",
        "tcp_v6_send_reset",
    ),
    (
        "tcp_send_active_reset_fentry",
        "active_reset_kprobe",
        "tcp_send_active_reset",
    ),
];

/// Notes the reset-building functions as hooked (by fentry or kprobes),
/// and the tracepoint as left alone.
fn builders_hooked(a: &mut Attacher, kind: Kind) {
    for (_, _, f) in BUILDERS {
        a.note(f, kind, HookState::Attached);
    }
    let how = match kind {
        Kind::Fentry => "fentry",
        _ => "kprobes",
    };
    a.note(
        "tcp_send_reset",
        Kind::BtfTracepoint,
        HookState::Off(format!("the functions are hooked instead ({how})")),
    );
}

fn sent(a: &mut Attacher, hooks: &Hooks, want: &Want) -> Result<SentPath, CaptureError> {
    if hooks.reset_reason {
        tracepoint(a, want, "tcp_send_reset", "tcp_send_reset_raw")?;
        return Ok(SentPath::Tracepoint);
    }
    let fentry = if want.kernel_btf {
        BUILDERS
            .iter()
            .try_for_each(|&(prog, _, f)| a.fentry(prog, f))
            .map_err(|e| e.to_string())
    } else {
        Err("no kernel BTF".into())
    };
    if fentry.is_ok() {
        builders_hooked(a, Kind::Fentry);
        return Ok(SentPath::Fentry);
    }
    let kprobe = kprobes_supported().and_then(|()| {
        BUILDERS
            .iter()
            .try_for_each(|&(_, prog, f)| a.kprobe(prog, f))
            .map_err(|e| e.to_string())
    });
    if kprobe.is_ok() {
        builders_hooked(a, Kind::Kprobe);
        return Ok(SentPath::Kprobe);
    }
    let why = format!(
        "fentry: {}; kprobes: {}",
        fentry.err().unwrap_or_default(),
        kprobe.err().unwrap_or_default()
    );
    for (_, _, f) in BUILDERS {
        a.note(f, Kind::Kprobe, HookState::Off(why.clone()));
    }
    a.why_no_functions = Some(why);
    tracepoint(a, want, "tcp_send_reset", "tcp_send_reset_raw")?;
    Ok(SentPath::PartialTracepoint)
}

/// The firewall hooks whose links storm mode pauses.
pub const FIREWALL_TRACEPOINTS: [&str; 4] = [
    "kfree_skb",
    "fib_table_lookup",
    "fib6_table_lookup",
    "net_dev_queue",
];

/// Netfilter's reset functions, with their modules.
const NF_RESET: [(&str, &str); 2] = [
    ("nf_send_reset", "nf_reject_ipv4"),
    ("nf_send_reset6", "nf_reject_ipv6"),
];

fn firewall(
    a: &mut Attacher,
    hooks: &Hooks,
    want: &Want,
    d: Decisions,
    plan: &mut Plan,
) -> Result<(), CaptureError> {
    let exact = kprobes_supported();
    if exact.is_ok() {
        for (f, module) in NF_RESET {
            if function_present(f) {
                let r = a.kprobe("nf_send_reset_kprobe", f);
                let state =
                    r.map_or_else(|e| HookState::Off(e.to_string()), |()| HookState::Attached);
                a.note(f, Kind::Kprobe, state);
            } else {
                a.note(
                    f,
                    Kind::Kprobe,
                    HookState::Waiting(format!("module {module} not loaded yet")),
                );
                plan.waiting.push(f);
            }
        }
    } else if let Err(why) = &exact {
        let instead = if hooks.firewall_off.is_none() && want.kernel_btf {
            "; tracepoints match firewall resets instead"
        } else {
            ""
        };
        for (f, _) in NF_RESET {
            a.note(f, Kind::Kprobe, HookState::Off(format!("{why}{instead}")));
        }
    }
    match (&hooks.firewall_off, want.kernel_btf) {
        (Some(why), _) => {
            if let Err(no_kprobes) = &exact {
                plan.notes.push(format!(
                    "firewall resets are not reported: {why}, and {no_kprobes}"
                ));
            } else if want.failures {
                plan.notes.push(format!(
                    "firewall ICMP rejects and drops are not reported: {why}"
                ));
            }
        }
        (None, false) => plan
            .notes
            .push("firewall verdicts from tracepoints need the kernel's BTF".into()),
        (None, true) if d.firewall_tp => {
            let loaded = FIREWALL_TRACEPOINTS
                .iter()
                .try_for_each(|name| a.btf_tp(name, name, false).map(drop));
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
        (None, true) => {}
    }
    Ok(())
}

/// Attaches netfilter reset functions whose module has loaded since;
/// returns the ones attached.
pub fn retry_waiting(a: &mut Attacher, waiting: &mut Vec<&'static str>) -> Vec<&'static str> {
    let mut done = vec![];
    waiting.retain(|&f| {
        if !function_present(f) {
            return true;
        }
        match a.kprobe("nf_send_reset_kprobe", f) {
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
