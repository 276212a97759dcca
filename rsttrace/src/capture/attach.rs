//! Which programs to attach on this kernel, and attaching them.  Each hook
//! ends in a [`HookStatus`]: what `rsttrace doctor`, the start-up notes
//! and the metrics say about it.

use aya::{
    programs::{
        tp_btf::BtfTracePointLinkId, BtfTracePoint, FEntry, FExit, KProbe, ProgramError,
        RawTracePoint, TracePoint,
    },
    Btf, Ebpf,
};

use super::{program_error, CaptureError};

/// How a hook is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    BtfTracepoint,
    RawTracepoint,
    Tracepoint,
    Fentry,
    Fexit,
    Kprobe,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::BtfTracepoint => "tp_btf",
            Kind::RawTracepoint => "raw_tp",
            Kind::Tracepoint => "tracepoint",
            Kind::Fentry => "fentry",
            Kind::Fexit => "fexit",
            Kind::Kprobe => "kprobe",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HookState {
    Attached,
    /// Not attached, with why (plain words).
    Off(String),
    /// Waits for a kernel module to load; rsttrace retries.
    Waiting(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HookStatus {
    /// The kernel tracepoint or function.
    pub target: String,
    pub kind: Kind,
    pub state: HookState,
}

/// Loads and attaches programs, recording each outcome.
pub(crate) struct Attacher<'a> {
    pub ebpf: &'a mut Ebpf,
    pub btf: &'a Btf,
    pub statuses: Vec<HookStatus>,
    /// Why the reset-building functions could not be hooked, if so.
    pub why_no_functions: Option<String>,
}

/// The reason an attach failed, in one line.
fn why(e: &CaptureError) -> String {
    match e {
        CaptureError::Program { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}

impl Attacher<'_> {
    fn record<T>(&mut self, target: &str, kind: Kind, r: &Result<T, CaptureError>) {
        let state = match r {
            Ok(_) => HookState::Attached,
            Err(e) => HookState::Off(why(e)),
        };
        self.statuses.push(HookStatus {
            target: target.to_string(),
            kind,
            state,
        });
    }

    pub(crate) fn note(&mut self, target: &str, kind: Kind, state: HookState) {
        self.statuses.push(HookStatus {
            target: target.to_string(),
            kind,
            state,
        });
    }

    /// A BTF tracepoint program `prog` on tracepoint `target`.
    pub(crate) fn btf_tp(
        &mut self,
        prog: &'static str,
        target: &str,
        attach: bool,
    ) -> Result<Option<BtfTracePointLinkId>, CaptureError> {
        let r = (|| {
            let p: &mut BtfTracePoint = program(self.ebpf, prog)?;
            p.load(target, self.btf)
                .map_err(|e| program_error("load", prog, e))?;
            if !attach {
                return Ok(None);
            }
            p.attach()
                .map(Some)
                .map_err(|e| program_error("attach", prog, e))
        })();
        self.record(target, Kind::BtfTracepoint, &r);
        r
    }

    pub(crate) fn raw_tp(&mut self, prog: &'static str, target: &str) -> Result<(), CaptureError> {
        let r = (|| {
            let p: &mut RawTracePoint = program(self.ebpf, prog)?;
            p.load().map_err(|e| program_error("load", prog, e))?;
            p.attach(target)
                .map(drop)
                .map_err(|e| program_error("attach", prog, e))
        })();
        self.record(target, Kind::RawTracepoint, &r);
        r
    }

    pub(crate) fn tracepoint(
        &mut self,
        prog: &'static str,
        category: &str,
    ) -> Result<(), CaptureError> {
        let r = (|| {
            let p: &mut TracePoint = program(self.ebpf, prog)?;
            p.load().map_err(|e| program_error("load", prog, e))?;
            p.attach(category, prog)
                .map(drop)
                .map_err(|e| program_error("attach", prog, e))
        })();
        self.record(&format!("{category}:{prog}"), Kind::Tracepoint, &r);
        r
    }

    /// fentry program `prog` on function `target` (not recorded: the
    /// caller decides whether a failure matters).
    pub(crate) fn fentry(&mut self, prog: &'static str, target: &str) -> Result<(), CaptureError> {
        let p: &mut FEntry = program(self.ebpf, prog)?;
        p.load(target, self.btf)
            .map_err(|e| program_error("load", prog, e))?;
        p.attach()
            .map(drop)
            .map_err(|e| program_error("attach", prog, e))
    }

    /// fexit program `prog` on function `target` (not recorded, as fentry).
    pub(crate) fn fexit(&mut self, prog: &'static str, target: &str) -> Result<(), CaptureError> {
        let p: &mut FExit = program(self.ebpf, prog)?;
        p.load(target, self.btf)
            .map_err(|e| program_error("load", prog, e))?;
        p.attach()
            .map(drop)
            .map_err(|e| program_error("attach", prog, e))
    }

    /// Kprobe program `prog` on function `target` (loaded once, attached
    /// to as many functions as asked).
    pub(crate) fn kprobe(&mut self, prog: &'static str, target: &str) -> Result<(), CaptureError> {
        let p: &mut KProbe = program(self.ebpf, prog)?;
        if p.fd().is_err() {
            p.load().map_err(|e| program_error("load", prog, e))?;
        }
        p.attach(target, 0)
            .map(drop)
            .map_err(|e| program_error("attach", prog, e))
    }
}

/// Program `name` of the object, as type `T`.
pub(crate) fn program<'e, T>(
    ebpf: &'e mut Ebpf,
    name: &'static str,
) -> Result<&'e mut T, CaptureError>
where
    &'e mut T: TryFrom<&'e mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(CaptureError::MissingMap(name))?
        .try_into()
        .map_err(|e| program_error("load", name, e))
}

/// Whether this kernel can attach kprobes (CONFIG_KPROBES and the perf
/// kprobe PMU, Linux >= 4.17).
pub(crate) fn kprobes_supported() -> Result<(), String> {
    if std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists() {
        Ok(())
    } else {
        Err("this kernel has no kprobes (CONFIG_KPROBES is off)".into())
    }
}

/// Whether a function can be probed: it is in /proc/kallsyms (a module's
/// functions appear once the module is loaded).
pub(crate) fn function_present(name: &str) -> bool {
    std::fs::read_to_string("/proc/kallsyms").is_ok_and(|text| {
        text.lines().any(|l| {
            let mut parts = l.split_whitespace();
            parts.nth(2) == Some(name)
        })
    })
}
