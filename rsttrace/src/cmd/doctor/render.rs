//! The report as text for a person, or as one JSON document.

use serde_json::json;

use super::Report;
use crate::capture::plan::SentPath;

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

pub(super) fn render_text(r: &Report) -> String {
    let mut out = format!("rsttrace doctor: Linux {}\n", release());
    // Each area once, in the order it first appears, whichever step
    // added its checks.
    let mut areas: Vec<&str> = vec![];
    for c in &r.checks {
        if !areas.contains(&c.area) {
            areas.push(c.area);
        }
    }
    for area in areas {
        out += &format!("\n{area}:\n");
        for c in r.checks.iter().filter(|c| c.area == area) {
            out += &format!("  {:<8} {:<32} {}\n", c.status.as_str(), c.item, c.detail);
            if let Some(fix) = &c.fix {
                out += &format!("  {:<8} {:<32} fix: {fix}\n", "", "");
            }
        }
    }
    if let Some(i) = r.range {
        let (range, how) = crate::vocab::causes::KERNEL_RANGES[i];
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

pub(super) fn render_json(r: &Report) -> String {
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
    let range = r.range.map(|i| crate::vocab::causes::KERNEL_RANGES[i].0);
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
