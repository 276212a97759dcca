//! Loading and attaching what the tracer would, for a moment: the
//! transport, fentry, and the state of every hook.

use super::{Report, Status};
use crate::{
    capture::{
        attach::HookState,
        plan::{SentPath, Want},
        Capture, Options, TransportChoice,
    },
    cmd::trace::setup,
    kernel::layout::KernelFacts,
};

/// Loads and attaches what the tracer would, then detaches.
pub(super) fn attach(r: &mut Report, facts: KernelFacts, bytes: &[u8], kernel_btf: bool) {
    setup::raise_memlock();
    let Ok(btf) = aya::Btf::parse(bytes, aya::Endianness::default()) else {
        return;
    };
    let opts = Options {
        transport: TransportChoice::Auto,
        buffer_bytes: 1 << 20,
        storm_keys: 16,
        diagnostics: false,
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
    transport(r);
    match Capture::start(facts.config, &facts.hooks, facts.prog_info, &opts, &btf) {
        Ok(mut c) => hooks(r, &mut c, &btf, kernel_btf),
        Err(e) => {
            r.runnable = false;
            r.add("hooks", "programs", Status::Missing, format!("{e:#}"), None);
        }
    }
}

/// The ring buffer, or perf buffers.
fn transport(r: &mut Report) {
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
}

/// fentry, the way resets sent are seen, and every hook's state.
fn hooks(r: &mut Report, c: &mut Capture, btf: &aya::Btf, kernel_btf: bool) {
    let fentry = if kernel_btf {
        c.probe_fentry(btf)
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
            HookState::Off(why) if why.contains("instead") => (Status::Unused, why.clone(), None),
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
