//! What the benchmark compares: one table row per load and tracer
//! variant.  Adding a variant is adding a row; the no-tracer baseline is
//! not a row, it runs before every variant of its load (see
//! `schedule.rs`).

use super::load::Load::{self, KeepAlive, RetryStorm, ShortConns, SynStorm, Throughput};
use Pin::{Cpu1, Free};
use Tracer::{Bpftrace, Rsttrace, Tcpdump};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tracer {
    /// rsttrace with these arguments; the bench adds `--netns` (and
    /// `--transport` when given).
    Rsttrace(&'static [&'static str]),
    /// A bpftrace one-liner printing each `tcp_send_reset` (host-wide).
    Bpftrace,
    /// tcpdump printing RSTs, inside the bench namespace.
    Tcpdump,
}

/// Where the tracer runs.  The storm itself always runs on CPU 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pin {
    /// Pinned to CPU 1, beside the storm's CPU.
    Cpu1,
    /// Not pinned: it competes with the load for every CPU.
    Free,
}

pub(super) struct Row {
    pub name: &'static str,
    pub load: Load,
    pub tracer: Tracer,
    pub pin: Pin,
    /// Only run when `rsttrace --help` lists this option.
    pub needs: Option<&'static str>,
    /// Said after the command in the tables.
    pub note: &'static str,
}

const JSON: &[&str] = &["--format", "json"];

/// Every row, by load.  The storms pin the tracer beside the load's CPU;
/// the nginx loads use both CPUs, and the tracer runs where it may.
#[rustfmt::skip]
pub(super) const ROWS: &[Row] = &[
    Row { name: "short-rsttrace",     load: ShortConns, tracer: Rsttrace(JSON), pin: Free, needs: None, note: "no resets" },
    Row { name: "keepalive-rsttrace", load: KeepAlive,  tracer: Rsttrace(JSON), pin: Free, needs: None, note: "no resets" },
    Row { name: "retry-rsttrace",       load: RetryStorm, tracer: Rsttrace(JSON), pin: Cpu1, needs: None, note: "per event" },
    Row { name: "retry-rsttrace-storm", load: RetryStorm, tracer: Rsttrace(&["--format", "json", "--storm", "auto"]), pin: Cpu1, needs: None, note: "counted in the kernel during storms" },
    Row { name: "rsttrace",          load: SynStorm, tracer: Rsttrace(JSON),                                    pin: Cpu1, needs: None,              note: "per event, stdout through a pipe" },
    Row { name: "rsttrace-unpinned", load: SynStorm, tracer: Rsttrace(JSON),                                    pin: Free, needs: None,              note: "per event, as on a busy host" },
    Row { name: "rsttrace-storm",    load: SynStorm, tracer: Rsttrace(&["--format", "json", "--storm", "auto"]),     pin: Cpu1, needs: None,              note: "counted in the kernel during storms" },
    Row { name: "rsttrace-perf",     load: SynStorm, tracer: Rsttrace(&["--format", "json", "--transport", "perf"]), pin: Cpu1, needs: None,              note: "per event over perf buffers" },
    Row { name: "rsttrace-lean",     load: SynStorm, tracer: Rsttrace(&["--format", "json", "--no-firewall", "--no-path-check"]), pin: Cpu1, needs: None, note: "per event, without the firewall and receive-path hooks" },
    Row { name: "rsttrace-metrics",  load: SynStorm, tracer: Rsttrace(&["--format", "json", "--metrics", "127.0.0.1:0"]), pin: Cpu1, needs: Some("--metrics"), note: "per event, with the metrics endpoint" },
    Row { name: "bpftrace",          load: SynStorm, tracer: Bpftrace,                                          pin: Cpu1, needs: None,              note: "reported count is host-wide" },
    Row { name: "tcpdump",           load: SynStorm, tracer: Tcpdump,                                           pin: Cpu1, needs: None,              note: "" },
    Row { name: "throughput-rsttrace",         load: Throughput, tracer: Rsttrace(JSON), pin: Free, needs: None, note: "" },
    Row { name: "throughput-rsttrace-no-path", load: Throughput, tracer: Rsttrace(&["--format", "json", "--no-path-check"]), pin: Free, needs: None, note: "without the receive-path hook" },
];

/// A row chosen for this run, with its final rsttrace arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Variant {
    pub name: &'static str,
    pub load: Load,
    pub tracer: Tracer,
    /// rsttrace's arguments without `--netns` (empty for other tracers).
    pub args: Vec<String>,
    pub pin: Pin,
    /// What the tables call it.
    pub what: String,
}

/// What the command line asked for.
pub(super) struct Choice<'a> {
    /// Only these names (all when empty).
    pub only: &'a [String],
    /// `--transport` for the rsttrace rows that do not set their own.
    pub transport: Option<&'a str>,
}

/// The rows of `load` to run: filtered by `--only`, rows whose option
/// rsttrace lacks left out, and rows that became the same command (e.g.
/// `rsttrace` with `--transport perf` and `rsttrace-perf`) run once.
pub(super) fn select(
    load: Load,
    choice: &Choice,
    has_option: impl Fn(&str) -> bool,
) -> Vec<Variant> {
    let mut chosen: Vec<Variant> = Vec::new();
    for row in ROWS.iter().filter(|r| r.load == load) {
        let wanted = choice.only.is_empty() || choice.only.iter().any(|o| o == row.name);
        if !wanted || row.needs.is_some_and(|o| !has_option(o)) {
            continue;
        }
        let v = variant(row, choice.transport);
        if !chosen
            .iter()
            .any(|c| c.tracer_kind_eq(&v) && c.args == v.args && c.pin == v.pin)
        {
            chosen.push(v);
        }
    }
    chosen
}

/// Names `--only` may use.
pub(super) fn names() -> impl Iterator<Item = &'static str> {
    ROWS.iter().map(|r| r.name)
}

fn variant(row: &Row, transport: Option<&str>) -> Variant {
    let mut args: Vec<String> = match row.tracer {
        Rsttrace(a) => a.iter().map(|s| s.to_string()).collect(),
        Bpftrace | Tcpdump => Vec::new(),
    };
    if let (Rsttrace(_), Some(t)) = (row.tracer, transport) {
        if !args.iter().any(|a| a == "--transport") {
            args.extend(["--transport".to_string(), t.to_string()]);
        }
    }
    let command = match row.tracer {
        Rsttrace(_) => format!("rsttrace {}", args.join(" ")),
        Bpftrace => "bpftrace one-liner printing each tcp_send_reset".into(),
        Tcpdump => "tcpdump -i lo -n -l 'tcp[tcpflags] & tcp-rst != 0'".into(),
    };
    let pin = match row.pin {
        Cpu1 => "on CPU 1",
        Free => "unpinned",
    };
    let mut what = format!("{command}, {pin}");
    if !row.note.is_empty() {
        what = format!("{what}; {}", row.note);
    }
    Variant {
        name: row.name,
        load: row.load,
        tracer: row.tracer,
        args,
        pin: row.pin,
        what,
    }
}

impl Variant {
    fn tracer_kind_eq(&self, other: &Variant) -> bool {
        std::mem::discriminant(&self.tracer) == std::mem::discriminant(&other.tracer)
    }

    pub(super) fn is_rsttrace(&self) -> bool {
        matches!(self.tracer, Rsttrace(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_of(vs: &[Variant]) -> Vec<&str> {
        vs.iter().map(|v| v.name).collect()
    }

    #[test]
    fn metrics_only_when_rsttrace_has_it() {
        let all = Choice {
            only: &[],
            transport: None,
        };
        let without = select(SynStorm, &all, |_| false);
        assert!(!names_of(&without).contains(&"rsttrace-metrics"));
        let with = select(SynStorm, &all, |o| o == "--metrics");
        assert!(names_of(&with).contains(&"rsttrace-metrics"));
    }

    #[test]
    fn transport_switches_rsttrace_rows_and_drops_duplicates() {
        let perf = Choice {
            only: &[],
            transport: Some("perf"),
        };
        let vs = select(SynStorm, &perf, |_| false);
        let rst = vs.iter().find(|v| v.name == "rsttrace").unwrap();
        assert_eq!(rst.args, ["--format", "json", "--transport", "perf"]);
        assert!(rst
            .what
            .starts_with("rsttrace --format json --transport perf, on CPU 1"));
        // Same command and pinning as `rsttrace` now: runs once.
        assert!(!names_of(&vs).contains(&"rsttrace-perf"));
        assert!(names_of(&vs).contains(&"rsttrace-unpinned"));
        assert!(vs
            .iter()
            .find(|v| v.name == "bpftrace")
            .unwrap()
            .args
            .is_empty());
    }

    #[test]
    fn only_filters_by_name() {
        let only = ["tcpdump".to_string(), "rsttrace-storm".to_string()];
        let choice = Choice {
            only: &only,
            transport: None,
        };
        assert_eq!(
            names_of(&select(SynStorm, &choice, |_| true)),
            ["rsttrace-storm", "tcpdump"]
        );
        assert!(select(Throughput, &choice, |_| true).is_empty());
        assert!(select(RetryStorm, &choice, |_| true).is_empty());
    }
}
