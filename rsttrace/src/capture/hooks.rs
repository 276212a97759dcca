//! The hooks of a running capture: what each came to, the ones attached
//! later (netfilter modules), and the firewall hooks storm mode takes off
//! and puts back.

use aya::{programs::BtfTracePoint, Btf};

use super::{
    attach::{self, program, Attacher, HookStatus},
    plan::{self, pausable},
    program_error, Capture, CaptureError,
};

impl Capture {
    /// What each hook came to, and the plain-words notes for this kernel.
    pub(crate) fn statuses(&self) -> &[HookStatus] {
        &self.statuses
    }

    pub(crate) fn notes(&self) -> &[String] {
        &self.plan.notes
    }

    pub(crate) fn sent_path(&self) -> plan::SentPath {
        self.plan.sent
    }

    /// Whether the errno a socket gets is reported (by the tracepoint, or
    /// the function before Linux 5.14).
    pub(crate) fn error_reports(&self) -> bool {
        self.plan.error_reports
    }

    /// Whether fentry programs load here (BPF trampolines), trying one
    /// that is not in use (for `rsttrace doctor`).
    pub(crate) fn probe_fentry(&mut self, btf: &Btf) -> Result<(), String> {
        let prog: &mut aya::programs::FEntry =
            program(&mut self.ebpf, "tcp_send_active_reset_fentry").map_err(|e| e.to_string())?;
        if prog.fd().is_ok() {
            return Ok(());
        }
        prog.load("tcp_send_active_reset", btf)
            .map_err(|e| program_error("load", "tcp_send_active_reset_fentry", e).to_string())
    }

    /// Attaches netfilter reset hooks whose module has loaded since
    /// start-up (called once a second).
    pub(crate) fn retry_waiting(&mut self, btf: &Btf) {
        if self.plan.waiting.is_empty() {
            return;
        }
        let mut a = Attacher {
            ebpf: &mut self.ebpf,
            btf,
            statuses: vec![],
            why_no_functions: None,
        };
        for f in plan::retry_waiting(&mut a, &mut self.plan.waiting) {
            log::info!("{f} hooked: firewall resets are exact now");
            if let Some(s) = self.statuses.iter_mut().find(|s| s.target == f) {
                s.state = attach::HookState::Attached;
            }
        }
    }

    /// Each hook's state in one word, for the metrics: `attached`,
    /// `paused` (a firewall hook storm mode took off), `waiting` (for its
    /// module) or `off`.
    pub(crate) fn hook_states(&self) -> Vec<(String, &'static str, &'static str)> {
        let paused = self.plan.firewall_links.as_ref().is_some_and(Vec::is_empty);
        self.statuses
            .iter()
            .map(|s| {
                let state = match &s.state {
                    attach::HookState::Attached
                        if paused && pausable().any(|h| h.event() == s.target) =>
                    {
                        "paused"
                    }
                    attach::HookState::Attached => "attached",
                    attach::HookState::Waiting(_) => "waiting",
                    attach::HookState::Off(_) => "off",
                };
                (s.target.clone(), s.kind.as_str(), state)
            })
            .collect()
    }

    /// Whether programs may be attached after start-up (and so the
    /// capabilities for it kept): netfilter hooks waiting for their
    /// module, or firewall hooks that storm modes take off and put back.
    pub(crate) fn attaches_later(&self, storm_modes: bool) -> bool {
        !self.plan.waiting.is_empty() || (storm_modes && self.has_firewall())
    }

    /// Whether the firewall tracepoints are loaded (so that they can be
    /// attached).
    pub(crate) fn has_firewall(&self) -> bool {
        self.plan.firewall_links.is_some()
    }

    /// Attaches or detaches the firewall tracepoints.  They run on every
    /// dropped packet, route lookup and packet sent, so storm mode takes
    /// them off while a storm lasts.
    pub(crate) fn set_firewall(&mut self, on: bool) -> Result<(), CaptureError> {
        let Some(links) = self.plan.firewall_links.as_mut() else {
            return Ok(());
        };
        if on != links.is_empty() {
            return Ok(());
        }
        if on {
            for h in pausable() {
                let prog: &mut BtfTracePoint = program(&mut self.ebpf, h.program)?;
                let link = prog
                    .attach()
                    .map_err(|e| program_error("attach", h.program, e))?;
                links.push((h.program, link));
            }
        } else {
            for (name, link) in links.drain(..) {
                let prog: &mut BtfTracePoint = program(&mut self.ebpf, name)?;
                prog.detach(link)
                    .map_err(|e| program_error("detach", name, e))?;
            }
        }
        Ok(())
    }
}
