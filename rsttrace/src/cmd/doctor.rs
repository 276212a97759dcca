//! `rsttrace doctor`: what this kernel and this process let rsttrace see,
//! and the fix for each missing piece.  It loads and attaches the same
//! programs the tracer would (for a moment, when privileged), so its
//! answers are the tracer's own.

use std::path::Path;

use anyhow::Result;
use serde_json::json;

use super::trace::setup;
use crate::{
    capture::{
        attach::{kprobes_supported, HookState},
        plan::{SentPath, Want},
        Capture, Options, TransportChoice,
    },
    kernel::{
        btf::Btf,
        caps::{self, Sets},
        hooks::{FUNCTIONS, TRACEPOINTS},
        kallsyms::CallSites,
        layout::{self, KernelFacts},
        tracefs::Tracefs,
    },
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Missing: something is not reported (or rsttrace cannot run).
    Missing,
    /// Present but not used here (another hook covers it).
    Unused,
    Info,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Missing => "missing",
            Status::Unused => "unused",
            Status::Info => "info",
        }
    }
}

pub struct Check {
    pub area: &'static str,
    pub item: String,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
}

#[derive(Default)]
struct Report {
    /// Index into `KERNEL_RANGES`.
    range: Option<usize>,
    checks: Vec<Check>,
    notes: Vec<String>,
    sent_path: Option<SentPath>,
    /// rsttrace can trace on this host as it is.
    runnable: bool,
}

impl Report {
    fn add(
        &mut self,
        area: &'static str,
        item: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        fix: Option<&str>,
    ) {
        self.checks.push(Check {
            area,
            item: item.into(),
            status,
            detail: detail.into(),
            fix: fix.map(str::to_string),
        });
    }
}

pub fn execute(btf_path: Option<&Path>, json_out: bool) -> Result<(String, bool)> {
    let mut r = Report {
        runnable: true,
        ..Report::default()
    };
    let sets = Sets::current();
    capabilities(&mut r, &sets);
    let facts = kernel_files(&mut r, btf_path);
    if let Some((facts, bytes, kernel_btf)) = facts {
        functions(&mut r, &facts);
        if sets.can_trace() {
            attach(&mut r, facts, &bytes, kernel_btf);
        } else {
            r.add(
                "hooks",
                "programs",
                Status::Missing,
                "not probed: loading programs needs CAP_BPF and CAP_PERFMON",
                Some("run rsttrace doctor as root"),
            );
        }
    }
    let text = if json_out {
        render_json(&r)
    } else {
        render_text(&r)
    };
    Ok((text, r.runnable))
}

fn capabilities(r: &mut Report, sets: &Sets) {
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
fn kernel_files(r: &mut Report, btf_path: Option<&Path>) -> Option<(KernelFacts, Vec<u8>, bool)> {
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
    let bytes = btf.ok()?.0;
    let parsed = Btf::parse(&bytes).ok()?;
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
    r.range = Some(crate::classify::causes::kernel_range(&facts.names));
    r.notes.extend(facts.degraded.iter().cloned());
    Some((facts, bytes, kernel_btf))
}

fn tracepoints(r: &mut Report, facts: &KernelFacts, tracefs: Option<&Tracefs>) {
    for tp in TRACEPOINTS {
        let in_btf = facts
            .hooks
            .tracepoints
            .iter()
            .find(|(n, _)| *n == tp.name)
            .map(|(_, res)| res.clone());
        let in_tracefs = tracefs.is_some_and(|t| t.has_event(tp.system, tp.name));
        let (status, detail) = match (in_btf, in_tracefs) {
            (Some(Ok(())), true) => (Status::Ok, tp.purpose.to_string()),
            (Some(Err(e)), _) => (Status::Missing, format!("{}: {e}", tp.purpose)),
            (_, false) => (Status::Missing, format!("{}: not in tracefs", tp.purpose)),
            (None, true) => (Status::Missing, tp.purpose.to_string()),
        };
        if status == Status::Missing && tp.required {
            r.runnable = false;
        }
        r.add(
            "tracepoints",
            format!("{}:{}", tp.system, tp.name),
            status,
            detail,
            None,
        );
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

fn functions(r: &mut Report, facts: &KernelFacts) {
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
    let _ = facts;
    for f in FUNCTIONS {
        let present = kallsyms
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some(f.name));
        let (status, detail) = match (present, f.module) {
            (true, _) => (Status::Ok, f.purpose.to_string()),
            (false, Some(m)) => (
                Status::Info,
                format!(
                    "{}: module {m} not loaded (hooked when it loads)",
                    f.purpose
                ),
            ),
            (false, None) => (
                Status::Missing,
                format!("{}: not in /proc/kallsyms", f.purpose),
            ),
        };
        r.add("functions", f.name, status, detail, None);
    }
}

/// Loads and attaches what the tracer would, then detaches.
fn attach(r: &mut Report, facts: KernelFacts, bytes: &[u8], kernel_btf: bool) {
    setup::raise_memlock();
    let Ok(btf) = aya::Btf::parse(bytes, aya::Endianness::default()) else {
        return;
    };
    let opts = Options {
        transport: TransportChoice::Auto,
        buffer_bytes: 1 << 20,
        want: Want {
            kernel_btf,
            firewall: true,
            failures: true,
            path: true,
            stray: true,
        },
    };
    // The event buffers register with an event loop.
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let _loop = rt.enter();
    let ringbuf = aya::sys::is_map_supported(aya::maps::MapType::RingBuf).unwrap_or(false);
    r.add(
        "transport",
        "ring buffer",
        if ringbuf { Status::Ok } else { Status::Info },
        if ringbuf {
            "BPF ring buffer (Linux 5.8+), batched wake-ups"
        } else {
            "no BPF ring buffer: per-CPU perf buffers are used"
        },
        None,
    );
    match Capture::start(facts.config, &facts.hooks, facts.prog_info, &opts, &btf) {
        Ok(mut c) => {
            let fentry = if kernel_btf {
                c.probe_fentry(&btf)
            } else {
                Err("needs the kernel's BTF".into())
            };
            let used = matches!(c.sent_path(), SentPath::Fentry);
            let status = match (&fentry, used) {
                (Ok(()), _) => Status::Ok,
                (Err(_), false) if c.sent_path() == SentPath::Tracepoint => Status::Info,
                (Err(_), _) => Status::Missing,
            };
            r.add(
                "program types",
                "fentry",
                status,
                fentry
                    .err()
                    .unwrap_or_else(|| "BPF trampolines load".into()),
                None,
            );
            r.sent_path = Some(c.sent_path());
            for s in c.statuses() {
                let (status, detail, fix) = match &s.state {
                    HookState::Attached => (Status::Ok, "attached".to_string(), None),
                    HookState::Off(why) if why.contains("instead") => {
                        (Status::Unused, why.clone(), None)
                    }
                    HookState::Off(why) => (Status::Missing, why.clone(), None),
                    HookState::Waiting(why) => (
                        Status::Info,
                        why.clone(),
                        Some("hooked as soon as the module loads"),
                    ),
                };
                r.add(
                    "hooks",
                    format!("{} {}", s.kind.as_str(), s.target),
                    status,
                    detail,
                    fix,
                );
            }
            r.notes.extend(c.notes().iter().cloned());
        }
        Err(e) => {
            r.runnable = false;
            r.add("hooks", "programs", Status::Missing, format!("{e:#}"), None);
        }
    }
}

fn sent_path_text(p: Option<SentPath>) -> &'static str {
    match p {
        Some(SentPath::Tracepoint) => "tracepoint tcp_send_reset (every reset, with reasons)",
        Some(SentPath::Fentry) => "fentry on the functions that build resets (causes inferred)",
        Some(SentPath::Kprobe) => "kprobes on the functions that build resets (causes inferred)",
        Some(SentPath::PartialTracepoint) => {
            "tracepoint tcp_send_reset, partial: misses resets without a socket"
        }
        None => "not probed",
    }
}

fn render_text(r: &Report) -> String {
    let mut out = format!("rsttrace doctor: Linux {}\n", release());
    let mut area = "";
    for c in &r.checks {
        if c.area != area {
            area = c.area;
            out += &format!("\n{area}:\n");
        }
        out += &format!("  {:<8} {:<32} {}\n", c.status.as_str(), c.item, c.detail);
        if let Some(fix) = &c.fix {
            out += &format!("  {:<8} {:<32} fix: {fix}\n", "", "");
        }
    }
    if let Some(i) = r.range {
        let (range, how) = crate::classify::causes::KERNEL_RANGES[i];
        out += &format!("\nkernel range: {range} ({how}; see `rsttrace causes`)\n");
    }
    out += &format!("resets sent: {}\n", sent_path_text(r.sent_path));
    for n in &r.notes {
        out += &format!("note: {n}\n");
    }
    out += if r.runnable {
        "\nrsttrace can trace on this host.\n"
    } else {
        "\nrsttrace cannot trace on this host as it is: see the missing items above.\n"
    };
    out
}

fn render_json(r: &Report) -> String {
    let checks: Vec<_> = r
        .checks
        .iter()
        .map(|c| json!({"area": c.area, "item": c.item, "status": c.status.as_str(), "detail": c.detail, "fix": c.fix}))
        .collect();
    let sent = r.sent_path.map(|p| match p {
        SentPath::Tracepoint => "tracepoint",
        SentPath::Fentry => "fentry",
        SentPath::Kprobe => "kprobe",
        SentPath::PartialTracepoint => "partial_tracepoint",
    });
    let range = r.range.map(|i| crate::classify::causes::KERNEL_RANGES[i].0);
    let v = json!({
        "kernel": release(),
        "kernel_range": range,
        "runnable": r.runnable,
        "sent_resets": sent,
        "checks": checks,
        "notes": r.notes,
    });
    serde_json::to_string_pretty(&v).expect("plain JSON") + "\n"
}

fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}
