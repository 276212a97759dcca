//! The Prometheus text exposition format (version 0.0.4).  Every series
//! rsttrace can have is written from the first scrape on (zero until
//! counted), so that `rate()` and `increase()` see the first event.

use std::fmt::Write as _;

use super::{ResetKey, Tally};
use crate::model::{failure::FailureKind, lost::LostWhy};

/// What a scrape shows besides the tally.
pub(crate) struct Snapshot<'a> {
    pub tally: &'a Tally,
    pub rule_names: Vec<&'a str>,
    pub kernel: &'a str,
    pub transport: &'a str,
    /// (hook, how attached, state).
    pub hooks: Vec<(String, &'static str, &'static str)>,
    pub filtered: u64,
    pub kernel_seen: u64,
    /// Resets for no socket in the traced namespaces (kernel count).
    pub strays: u64,
    /// Records the output could not write (its reader stalled).
    pub unwritten: u64,
}

/// A label value, escaped as the format asks.
fn label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn head(out: &mut String, name: &str, ty: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {ty}");
}

/// `name{k="v",...} value`.
fn series(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            label(out, v);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A metric with one series and no labels.
fn single(o: &mut String, name: &str, ty: &str, help: &str, value: u64) {
    head(o, name, ty, help);
    series(o, name, &[], value);
}

pub(crate) fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(8192);
    let o = &mut out;
    head(
        o,
        "rsttrace_build_info",
        "gauge",
        "rsttrace's version, the kernel it runs on, and how events reach it.",
    );
    let info = [
        ("version", env!("CARGO_PKG_VERSION")),
        ("kernel", s.kernel),
        ("transport", s.transport),
    ];
    series(o, "rsttrace_build_info", &info, 1);
    resets(o, s.tally);
    silenced(o, s);
    losses(o, s);
    single(
        o,
        "rsttrace_stray_resets_total",
        "counter",
        "Resets that arrived for no socket (the kernel drops them; reported with --stray-resets).",
        s.strays,
    );
    head(
        o,
        "rsttrace_connection_failures_total",
        "counter",
        "Connection failures that involve no reset (with --failures).",
    );
    for &kind in FailureKind::ALL {
        let n = s.tally.failures.get(&kind).copied().unwrap_or(0);
        series(
            o,
            "rsttrace_connection_failures_total",
            &[("kind", kind.id())],
            n,
        );
    }
    single(
        o,
        "rsttrace_kernel_resets_seen_total",
        "counter",
        "Resets the eBPF programs saw, before --netns (kernel count).",
        s.kernel_seen,
    );
    head(o, "rsttrace_hook_state", "gauge", "Each kernel hook, how it is attached and its state (attached, paused, waiting, off): 1 per hook.");
    for (hook, kind, state) in &s.hooks {
        series(
            o,
            "rsttrace_hook_state",
            &[("hook", hook), ("kind", kind), ("state", state)],
            1,
        );
    }
    out
}

/// Resets counted but not written one by one, or left out.
fn silenced(o: &mut String, s: &Snapshot) {
    head(
        o,
        "rsttrace_suppressed_total",
        "counter",
        "Resets silenced by a suppression rule (still in rsttrace_resets_total).",
    );
    for (name, n) in s.rule_names.iter().zip(&s.tally.by_rule) {
        series(o, "rsttrace_suppressed_total", &[("rule", name)], *n);
    }
    single(o, "rsttrace_storm_aggregated_total", "counter", "Resets counted in storm summaries instead of reported one by one (still in rsttrace_resets_total).", s.tally.storm_aggregated);
    single(
        o,
        "rsttrace_filtered_total",
        "counter",
        "Resets left out by --cause, --direction, --port or --pid (not in rsttrace_resets_total).",
        s.filtered,
    );
}

fn losses(o: &mut String, s: &Snapshot) {
    head(o, "rsttrace_lost_total", "counter", "Resets the kernel could not hand over (buffer_full, nested), and records rsttrace could not write (output_stalled).");
    for why in LostWhy::ALL {
        let n = match why {
            LostWhy::OutputStalled => s.unwritten,
            other => s.tally.lost.get(&other).copied().unwrap_or(0),
        };
        series(o, "rsttrace_lost_total", &[("why", why.as_str())], n);
    }
}

fn resets(o: &mut String, t: &Tally) {
    head(o, "rsttrace_resets_total", "counter", "Resets by direction, cause, owner process (comm) and container: reported, silenced by a rule, or counted in a storm summary.");
    let mut rows: Vec<(&ResetKey, &u64)> = t.resets.iter().collect();
    rows.sort_by_key(|(k, _)| (k.direction.as_str(), k.cause.id(), k.comm, k.container));
    for (k, n) in rows {
        let labels = [
            ("direction", k.direction.as_str()),
            ("cause", k.cause.id()),
            ("comm", t.comms.value(k.comm)),
            ("container", t.containers.value(k.container)),
        ];
        series(o, "rsttrace_resets_total", &labels, *n);
    }
}
