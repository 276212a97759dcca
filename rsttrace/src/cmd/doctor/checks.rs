//! The checks that need no programs loaded: capabilities, the kernel's
//! files (BTF, tracefs, bpffs, kallsyms), the layout rsttrace reads, its
//! tracepoints, reset and drop reasons, and the functions it hooks.

use std::path::Path;

use super::{Report, Status};
use crate::{
    capture::attach::kprobes_supported,
    cmd::trace::setup,
    kernel::{
        btf::Btf,
        caps::{self, Sets},
        hooks::{self, Hook, HOOKS},
        kallsyms::CallSites,
        layout::{self, KernelFacts},
        tracefs::Tracefs,
    },
};

pub(super) fn capabilities(r: &mut Report, sets: &Sets) {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let old_memlock = aya::util::KernelVersion::current()
        .is_ok_and(|v| v < aya::util::KernelVersion::new(5, 11, 0));
    for cap in caps::ALL {
        let (status, fix) = if sets.has(cap) {
            (Status::Ok, None)
        } else if cap == caps::CAP_SYS_RESOURCE && !old_memlock {
            (Status::Info, None)
        } else if cap.required && !sets.can_trace() {
            r.runnable = false;
            (
                Status::Missing,
                Some("run as root, or grant it (see packaging/rsttrace.service)"),
            )
        } else if cap.required || cap == caps::CAP_SYS_ADMIN {
            (Status::Info, None)
        } else {
            (
                Status::Missing,
                Some("grant it to rsttrace (AmbientCapabilities= in the unit)"),
            )
        };
        let user = if root { "root" } else { "this user" };
        r.add(
            "capabilities",
            cap.name,
            status,
            format!("{} ({user})", cap.why),
            fix,
        );
    }
}

/// BTF, tracefs, bpffs, kallsyms; the kernel facts when BTF is there.
pub(super) fn kernel_files(
    r: &mut Report,
    btf_path: Option<&Path>,
) -> Option<(KernelFacts, Vec<u8>, bool)> {
    let kernel_btf = Path::new(setup::VMLINUX).exists();
    let btf = setup::read_btf(btf_path);
    match (&btf, kernel_btf) {
        (Ok(_), true) => r.add("kernel", "BTF", Status::Ok, setup::VMLINUX, None),
        (Ok(_), false) => r.add(
            "kernel",
            "BTF",
            Status::Ok,
            format!(
                "no {} (raw tracepoints and kprobes only); BTF from --btf",
                setup::VMLINUX
            ),
            None,
        ),
        (Err(e), _) => {
            r.runnable = false;
            r.add("kernel", "BTF", Status::Missing, e.to_string(), Some("pass --btf PATH with this kernel's BTF (BTFHub), or use a kernel with CONFIG_DEBUG_INFO_BTF=y"));
        }
    }
    mounts(r);
    kallsyms(r);
    let bytes = btf.ok()?.0;
    let facts = kernel_facts(r, &bytes)?;
    Some((facts, bytes, kernel_btf))
}

/// tracefs and bpffs.
fn mounts(r: &mut Report) {
    match Tracefs::locate() {
        Some(t) => r.add(
            "kernel",
            "tracefs",
            Status::Ok,
            t.root().display().to_string(),
            None,
        ),
        None => r.add(
            "kernel",
            "tracefs",
            Status::Info,
            "not mounted: rsttrace mounts it on /sys/kernel/tracing (needs CAP_SYS_ADMIN)",
            Some("mount -t tracefs nodev /sys/kernel/tracing"),
        ),
    }
    let bpffs = std::fs::read_to_string("/proc/self/mounts").is_ok_and(|m| {
        m.lines()
            .any(|l| l.split_whitespace().nth(2) == Some("bpf"))
    });
    r.add(
        "kernel",
        "bpffs",
        Status::Info,
        if bpffs {
            "mounted (rsttrace pins nothing, it does not need it)"
        } else {
            "not mounted (rsttrace pins nothing, it does not need it)"
        },
        None,
    );
}

/// Whether kernel addresses (call paths) can be read.
fn kallsyms(r: &mut Report) {
    match CallSites::load() {
        Some(_) => r.add(
            "kernel",
            "kallsyms",
            Status::Ok,
            "addresses readable: call paths can be read where the kernel gives no reset reason",
            None,
        ),
        None => r.add(
            "kernel",
            "kallsyms",
            Status::Missing,
            "addresses hidden: causes the kernel does not name are inferred without the call path",
            Some("grant CAP_SYSLOG, or set kernel.kptr_restrict=0"),
        ),
    }
}

/// What this kernel's BTF says: the layout rsttrace reads, its
/// tracepoints and reasons, its kernel range.
fn kernel_facts(r: &mut Report, bytes: &[u8]) -> Option<KernelFacts> {
    let parsed = Btf::parse(bytes).ok()?;
    let tracefs = Tracefs::locate();
    let accept = tracefs
        .as_ref()
        .and_then(|t| t.format("syscalls", "sys_exit_accept4").ok());
    let send = tracefs
        .as_ref()
        .and_then(|t| t.format("tcp", "tcp_send_reset").ok());
    let facts = match layout::resolve(&parsed, accept.as_ref(), send.as_ref()) {
        Ok(f) => f,
        Err(e) => {
            r.runnable = false;
            r.add("kernel", "layout", Status::Missing, e.to_string(), None);
            return None;
        }
    };
    tracepoints(r, &facts, tracefs.as_ref());
    reasons(r, &facts);
    r.range = Some(crate::vocab::causes::kernel_range(&facts.names));
    r.notes.extend(facts.degraded.iter().cloned());
    Some(facts)
}

/// The table's BTF tracepoints: in this kernel's BTF with the expected
/// signature, and in tracefs.
fn tracepoints(r: &mut Report, facts: &KernelFacts, tracefs: Option<&Tracefs>) {
    for tp in hooks::tracepoints() {
        let in_btf = facts
            .hooks
            .tracepoints
            .iter()
            .find(|(n, _)| *n == tp.event())
            .map(|(_, res)| res.clone());
        let in_tracefs = tracefs.is_some_and(|t| t.has_event(tp.system(), tp.event()));
        let (status, detail) = match (in_btf, in_tracefs) {
            (Some(Ok(())), true) => (Status::Ok, tp.purpose.to_string()),
            (Some(Err(e)), _) => (Status::Missing, format!("{}: {e}", tp.purpose)),
            (_, false) => (Status::Missing, format!("{}: not in tracefs", tp.purpose)),
            (None, true) => (Status::Missing, tp.purpose.to_string()),
        };
        if status == Status::Missing && tp.required {
            r.runnable = false;
        }
        r.add("tracepoints", tp.target, status, detail, None);
    }
}

fn reasons(r: &mut Report, facts: &KernelFacts) {
    let (status, detail) = if facts.hooks.reset_reason {
        (
            Status::Ok,
            "tcp_send_reset carries enum sk_rst_reason and fires for every reset (Linux 6.10+)",
        )
    } else {
        (Status::Missing, "tcp_send_reset carries no reason (Linux < 6.10): causes are inferred (cause_source \"inferred\")")
    };
    r.add(
        "reasons",
        "reset reason",
        status,
        detail,
        (status == Status::Missing).then_some("Linux 6.12 or newer names every reset's reason"),
    );
    let (status, detail) = match &facts.hooks.firewall_off {
        None => (
            Status::Ok,
            "kfree_skb carries drop reasons, NETFILTER_DROP among them".to_string(),
        ),
        Some(why) => (Status::Missing, why.clone()),
    };
    r.add("reasons", "drop reason", status, detail, None);
}

/// The table's kernel functions: where they are (kallsyms, BTF, a module
/// not loaded yet).
pub(super) fn functions(r: &mut Report, facts: &KernelFacts) {
    let kprobes = kprobes_supported();
    r.add(
        "program types",
        "kprobe",
        if kprobes.is_ok() {
            Status::Ok
        } else {
            Status::Missing
        },
        kprobes
            .clone()
            .err()
            .unwrap_or_else(|| "the kprobe PMU is there".into()),
        kprobes.is_err().then_some("a kernel with CONFIG_KPROBES=y"),
    );
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
    let mut seen: Vec<&str> = vec![];
    for f in HOOKS.iter().filter(|h| h.variant.is_function()) {
        if seen.contains(&f.target) {
            continue;
        }
        seen.push(f.target);
        let present = kallsyms
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some(f.target));
        let (status, detail) = function_status(f, present, facts);
        r.add("functions", f.target, status, detail, None);
    }
}

fn function_status(f: &Hook, present: bool, facts: &KernelFacts) -> (Status, String) {
    let args = facts.hooks.function_args(f.target);
    match (present || args.is_some(), f.module) {
        (true, _) => (
            Status::Ok,
            match args {
                Some(n) => format!("{} ({n} arguments in BTF)", f.purpose),
                None => format!("{} (not in BTF: kprobes only)", f.purpose),
            },
        ),
        (false, Some(m)) => (
            Status::Info,
            format!(
                "{}: module {m} not loaded (hooked when it loads)",
                f.purpose
            ),
        ),
        (false, None) => (
            Status::Missing,
            format!(
                "{}: not in /proc/kallsyms or BTF (inlined or absent here)",
                f.purpose
            ),
        ),
    }
}
