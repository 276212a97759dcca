//! `rsttrace doctor`: what this kernel and this process let rsttrace see,
//! and the fix for each missing piece.  It loads and attaches the same
//! programs the tracer would (for a moment, when privileged), so its
//! answers are the tracer's own.
//!
//! This file has the report and `execute`; `checks` looks at the process
//! and the kernel's files, `probe` loads and attaches the programs, and
//! `render` writes the report as text or JSON.

use std::path::Path;

use anyhow::Result;

use crate::{capture::plan::SentPath, kernel::caps::Sets};

mod checks;
mod probe;
mod render;

use self::{
    checks::{capabilities, functions, kernel_files},
    probe::attach,
    render::{render_json, render_text},
};

/// How one check came out (the report's second column, JSON `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Present and used: what depends on it is reported.
    Ok,
    /// Missing: something is not reported (or rsttrace cannot run).
    Missing,
    /// Present but not used here (another hook covers it).
    Unused,
    /// A fact about the host, neither good nor bad (for example which
    /// BTF file was read).
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

/// One line of the doctor's report.
pub struct Check {
    /// The group it is listed under ("kernel", "hooks", ...); the text
    /// report prints each area once, in the order it first appears.
    pub area: &'static str,
    /// What was checked (a capability, a file, a hook).
    pub item: String,
    /// How it came out.
    pub status: Status,
    /// What was found, in a few words.
    pub detail: String,
    /// What to do about it, when there is something to do (`None` for
    /// checks that passed or have no fix).
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

/// `rsttrace doctor`: runs every check (and, when privileged, loads and
/// attaches the programs for a moment) with the BTF at `btf_path` or the
/// kernel's own.  Returns the report, as JSON when `json_out`, and whether
/// rsttrace can trace on this host as it is (the exit status).
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
