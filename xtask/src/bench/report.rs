//! The tables: printed after a run, and written to docs/benchmark.md with
//! `--record`.

use std::fmt::Write;

use super::{
    load::Load,
    measure::Sample,
    summary::{baseline_drift, Runs, Summary, Table},
};

/// Everything one run measured.
pub(super) struct Report {
    /// The bench's own arguments.
    pub command: String,
    pub kernel: String,
    pub cpus: usize,
    pub rounds: usize,
    pub seconds: u64,
    /// One table per load, in the order run.
    pub tables: Vec<(Load, Table)>,
    /// rsttrace's share of a CPU with no resets, and over how many seconds.
    pub idle: Option<(f64, u64)>,
}

const METHOD: &str = "\
## Method

- **Load.** The reset storm (`cargo xtask storm`) sends raw-socket SYNs to a closed \
loopback port as fast as one CPU can, in a network namespace of its own, pinned to CPU 0; \
the kernel answers each with a reset. The rate is the namespace's own count of resets \
sent (`TcpOutRsts`) over the storm's duration. The throughput test (`cargo xtask \
throughput`) is one TCP bulk transfer over loopback in the same namespace (a server and a \
client thread, 1 MiB writes, unpinned), in Gbit/s: ordinary traffic, no resets.
- **Interleaving.** Every round runs the no-tracer baseline before each tracer variant, \
and the run ends with one more baseline, so each tracer run sits between two baselines; \
its ratio (\"vs no tracer\") is its rate over the mean of those two, which cancels slow \
drift of the machine. The order of the variants rotates by one each round, so none \
always runs first. Rates and ratios are shown as median (min–max) over the rounds; the \
spread is the noise to read them with.
- **Noise.** The no-tracer runs' spread, and the largest change between consecutive ones, \
are printed with each table: a ratio is only as good as the baselines around it.
- **Pinning.** \"on CPU 1\": the tracer is pinned beside the storm's CPU, so the storm keeps \
a CPU of its own and the rate shows the in-kernel cost plus the contention of the \
tracer's output. \"unpinned\": the tracer may run on any CPU, the storm's included, as on \
a busy host.
- **Reported.** What the tracer's output accounts for, summed over the rounds, against the \
kernel count of the same runs. rsttrace runs with `--netns /run/netns/<bench namespace>`, \
so both count the same namespace (for rsttrace: reset records plus the counts in storm \
summaries). tcpdump runs inside the namespace. The bpftrace one-liner cannot filter by \
namespace, so its reported count is host-wide and may exceed the kernel count.
- **Lost.** Events the tracer said it dropped (rsttrace's `lost` records, bpftrace's \
`Lost N events`, tcpdump's packets dropped by kernel). On loopback the kernel hands \
tcpdump each packet twice (sent and received), so its drop count can reach twice the \
resets it missed.
- **Tracer CPU per record.** The tracer process's own user + system time (all its threads, \
from /proc/PID/stat) from just before the load until it has caught up, over the records it \
wrote (for the loads without resets, per unit of work): start-up and shutdown are left out.
included) over the events it reported.
- **In-kernel per reset.** From one more run of each variant after the rounds, with \
`kernel.bpf_stats_enabled=1` (restored afterwards; off during the rounds, since the \
statistics add two clock reads to every program run and would lower every ratio), the \
run time of all the tracer's BPF programs (`bpftool prog show`, the \
programs the tracer's process holds), read just before it stops, over the namespace's \
resets. This includes the programs that run on other events (state changes, packet drops, \
route lookups), and runs for events outside the namespace (rsttrace's programs drop those \
early; bpftrace's print them). The reset tracepoint programs alone are also given per run. \
tcpdump's classic BPF filter has no such statistics. In the \
throughput table, the same run time as a share of one CPU during the transfer.
- **Memory.** Peak RSS of the tracer process, and beside it the BPF maps it holds \
(`bytes_memlock` from `bpftool map show`), kernel memory that RSS does not show, except \
that the ring buffer's pages, mapped into rsttrace, count in both. Per-CPU perf buffers \
are not BPF maps and are not in the maps column.
";

pub(super) fn render(r: &Report) -> String {
    let mut s = format!(
        "`{}`: kernel {}, {} CPUs; {} rounds of {} s. Loads on CPU 0.\n",
        r.command, r.kernel, r.cpus, r.rounds, r.seconds
    );
    for (load, t) in &r.tables {
        let _ = write!(s, "\n### {}\n\n", load.title());
        s += &if *load == Load::Throughput {
            throughput_table(t)
        } else {
            load_table(*load, t)
        };
        s += &drift_line(t, *load);
        s += &program_tables(*load, t);
    }
    if let Some((share, seconds)) = r.idle {
        let _ = writeln!(
            s,
            "\nrsttrace idle (no resets, {seconds} s): {:.3}% of one CPU.",
            share * 100.0
        );
    }
    s
}

/// The file `--record` writes; `existing` is the file as it was, whose
/// VM section (another command's) is kept.
pub(super) fn document(r: &Report, existing: &str) -> String {
    let vm = vm_section(existing).unwrap_or("Not recorded yet.");
    format!(
        "# Benchmark\n\n<!-- Written by `cargo xtask bench --record`; rerun it to refresh. -->\n\n\
         Reproduce (as root): `cargo xtask bench` (add `--record` to rewrite this file; \
         `--only NAME,...` runs some variants; `--transport perf` runs the rsttrace variants \
         over perf buffers). Every figure below comes from one run.\n\n{}\n{VM_HEADING}\n\n\
         {VM_BEGIN}\n{vm}\n{VM_END}\n\n{METHOD}",
        render(r)
    )
}

const VM_HEADING: &str = "## Where BPF trampolines work: program runs per unit of work\n\n\
This machine's kernel refuses BPF trampolines, so rsttrace watches packets here. On \
kernels that allow them (Debian's 5.10, 6.1 and 6.12 and most production kernels) \
rsttrace takes the same facts from the functions that handle each event. These counts \
come from Debian's 6.12 kernel under qemu (`cargo xtask vm --kernel 6.12 --bench \
--record`); emulation distorts times, not counts.";
const VM_BEGIN: &str =
    "<!-- VM counts: written by `cargo xtask vm --kernel 6.12 --bench --record` -->";
const VM_END: &str = "<!-- end of VM counts -->";

/// The VM counts section of `doc`, if it has one.
fn vm_section(doc: &str) -> Option<&str> {
    let (_, rest) = doc.split_once(VM_BEGIN)?;
    let (section, _) = rest.split_once(VM_END)?;
    Some(section.trim())
}

/// `doc` with its VM counts section replaced by `counts` (appended when it
/// has none).
pub(crate) fn with_vm_counts(doc: &str, counts: &str) -> String {
    match (doc.split_once(VM_BEGIN), doc.split_once(VM_END)) {
        (Some((before, _)), Some((_, after))) => {
            format!("{before}{VM_BEGIN}\n{counts}\n{VM_END}{after}")
        }
        _ => format!("{doc}\n{VM_HEADING}\n\n{VM_BEGIN}\n{counts}\n{VM_END}\n"),
    }
}

fn load_table(load: Load, t: &Table) -> String {
    let per = if load.resets() { "record" } else { load.unit() };
    let mut s = format!(
        "| tracer | {} | vs no tracer | {} | lost | tracer CPU per {per} | BPF per {} | peak RSS | BPF maps |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        load.rate_unit(),
        if load == Load::RetryStorm { "reported / kernel resets (sent + received)" } else { "reported / kernel resets (sent)" },
        load.unit()
    );
    let base = Summary::of(t.baseline.iter().map(|b| b.rate));
    let kernel_base: u64 = t.baseline.iter().map(|b| b.work.kernel_resets).sum();
    let _ = writeln!(
        s,
        "| no tracer | {} | - | - / {kernel_base} | - | - | - | - | - |",
        range(base, 0)
    );
    for r in &t.runs {
        let reported = r.total(|m| load.reported(usage(m).reported, usage(m).sent));
        let kernel = r.total(|m| m.work.kernel_resets);
        let cpu: f64 = r.samples.iter().map(|m| usage(m).cpu_s).sum();
        let units = if load.resets() {
            reported
        } else {
            r.total(|m| m.work.units)
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {reported} / {kernel} | {} | {:.2} µs | {} | {} | {} |",
            r.variant.what,
            range(r.rate(), 0),
            range(r.ratio(), 2),
            r.total(|m| usage(m).lost),
            cpu * 1e6 / units.max(1) as f64,
            bpf_per_unit(r),
            mib(r.peak(|m| usage(m).max_rss_kib) * 1024),
            maps(r),
        );
    }
    s
}

fn throughput_table(t: &Table) -> String {
    let mut s = String::from(
        "| tracer | Gbit/s | vs no tracer | in-kernel BPF time | peak RSS | BPF maps |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    let base = Summary::of(t.baseline.iter().map(|b| b.rate));
    let _ = writeln!(s, "| no tracer | {} | - | - | - | - |", range(base, 2));
    for r in &t.runs {
        let share = r.per_costed(|m| {
            let ns = usage(m).bpf.run_time_ns;
            (ns > 0).then(|| ns as f64 / (m.work.seconds * 1e9) * 100.0)
        });
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            r.variant.what,
            range(r.rate(), 2),
            range(r.ratio(), 2),
            share.map_or("-".into(), |p| format!("{:.2}% of a CPU", p.median)),
            mib(r.peak(|m| usage(m).max_rss_kib) * 1024),
            maps(r),
        );
    }
    s
}

/// Per program of each rsttrace variant, from its run with statistics on:
/// how often it ran per unit of work, and what a run cost.
fn program_tables(load: Load, t: &Table) -> String {
    let mut s = String::new();
    for r in t.runs.iter().filter(|r| r.variant.is_rsttrace()) {
        let Some(m) = r.costed.first() else { continue };
        let b = usage(m).bpf;
        let units = m.work.units.max(1) as f64;
        if b.programs.is_empty() || load == Load::Throughput {
            continue;
        }
        let _ = write!(
            s,
            "\n`{}`, BPF programs per {} ({} {}s in the run with statistics on; {:.0} ns per {} in all):\n\n\
             | program | runs | runs per {} | ns per run | ns per {} |\n|---|---:|---:|---:|---:|\n",
            r.variant.name,
            load.unit(),
            m.work.units,
            load.unit(),
            b.run_time_ns as f64 / units,
            load.unit(),
            load.unit(),
            load.unit(),
        );
        for p in &b.programs {
            let _ = writeln!(
                s,
                "| {} | {} | {:.2} | {:.0} | {:.0} |",
                p.name,
                p.run_cnt,
                p.run_cnt as f64 / units,
                p.run_time_ns as f64 / p.run_cnt.max(1) as f64,
                p.run_time_ns as f64 / units,
            );
        }
    }
    s
}

fn drift_line(t: &Table, load: Load) -> String {
    baseline_drift(&t.baseline).map_or(String::new(), |d| {
        format!(
            "\nNo-tracer runs ({}): consecutive ones differ by up to {:.1}%.\n",
            load.rate_unit(),
            d * 100.0
        )
    })
}

fn usage(m: &Sample) -> super::measure::TracerUsage {
    m.tracer.clone().unwrap_or_default()
}

/// All of the tracer's BPF run time per unit of work (statistics run).
fn bpf_per_unit(r: &Runs) -> String {
    let ns = r.per_costed(|m| {
        let ns = usage(m).bpf.run_time_ns;
        (m.work.units > 0).then(|| ns as f64 / m.work.units as f64)
    });
    ns.map_or("-".into(), |n| format!("{:.0} ns", n.median))
}

fn maps(r: &Runs) -> String {
    match r.peak(|m| usage(m).bpf.map_bytes) {
        0 => "-".into(),
        bytes => mib(bytes),
    }
}

fn mib(bytes: u64) -> String {
    match bytes {
        0..=1023 => format!("{bytes} B"),
        1024..=1048575 => format!("{:.0} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0)),
    }
}

/// `median (min–max)`.
fn range(s: Option<Summary>, decimals: usize) -> String {
    s.map_or("-".into(), |s| {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            s.median,
            s.min,
            s.max,
            d = decimals
        )
    })
}

/// The programs' run counts per unit of work, load by load (the VM
/// section of docs/benchmark.md: under emulation times mean nothing,
/// counts do).
pub(super) fn counts(r: &Report) -> String {
    let mut s = format!("`{}` on Linux {}:\n", r.command, r.kernel);
    for (load, t) in &r.tables {
        for run in t.runs.iter().filter(|r| r.variant.is_rsttrace()) {
            let Some(m) = run.costed.first() else {
                continue;
            };
            let b = usage(m).bpf;
            let units = m.work.units.max(1) as f64;
            let _ = write!(
                s,
                "\n**{}** (`{}`, {} {}s): {:.2} program runs per {}\n\n| program | runs | runs per {} |\n|---|---:|---:|\n",
                load.title(),
                run.variant.name,
                m.work.units,
                load.unit(),
                b.run_cnt as f64 / units,
                load.unit(),
                load.unit(),
            );
            if b.programs.is_empty() {
                s += "| (none) | 0 | 0 |\n";
            }
            for p in &b.programs {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.2} |",
                    p.name,
                    p.run_cnt,
                    p.run_cnt as f64 / units
                );
            }
        }
    }
    s
}

/// One line per measurement, on stderr while the run goes.
pub(super) fn progress(round: usize, name: &str, load: Load, m: &Sample) -> String {
    let mut s = format!(
        "  round {} {:<22} {:>10.2} {}",
        round + 1,
        name,
        m.rate,
        load.rate_unit()
    );
    let Some(u) = &m.tracer else {
        return s;
    };
    let _ = write!(
        s,
        "  reported {}/{}  lost {} ({} output stalled)  cpu {:.2}s  rss {}  bpf {} ns / {} runs, maps {}",
        load.reported(u.reported, u.sent),
        m.work.kernel_resets,
        u.lost,
        u.lost_output,
        u.cpu_s,
        mib(u.max_rss_kib * 1024),
        u.bpf.run_time_ns,
        u.bpf.run_cnt,
        mib(u.bpf.map_bytes)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_counts_replace_their_section_only() {
        let doc = with_vm_counts("# Benchmark\n\nhost tables\n", "old counts");
        assert!(
            doc.contains("host tables") && doc.contains("old counts"),
            "{doc}"
        );
        let doc = with_vm_counts(&doc, "new counts");
        assert!(
            doc.contains("new counts") && !doc.contains("old counts"),
            "{doc}"
        );
        assert_eq!(vm_section(&doc), Some("new counts"));
        assert_eq!(doc.matches(VM_BEGIN).count(), 1);
    }

    #[test]
    fn ranges() {
        let s = Summary::of([0.8, 0.9, 0.85]);
        assert_eq!(range(s, 2), "0.85 (0.80–0.90)");
        assert_eq!(range(None, 2), "-");
        assert_eq!(mib(47 * 1024 * 1024), "47.0 MiB");
        assert_eq!(mib(20 * 1024), "20 KiB");
        assert_eq!(mib(320), "320 B");
    }
}
