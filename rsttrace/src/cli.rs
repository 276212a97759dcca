//! Command line.  `rsttrace [OPTIONS]` traces; the subcommands document.

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::{
    capture::TransportChoice,
    classify::{causes_text, Direction},
    output::schema::SchemaFormat,
};

#[derive(Debug, Parser)]
#[command(
    name = "rsttrace",
    version,
    about = "Explain every TCP reset on this host: which connection, which direction, why, and which process owns the socket.",
    long_about = "Explain every TCP reset on this host: which connection, which direction, why, and which \
process owns the socket.\n\nrsttrace attaches eBPF programs to the kernel's tcp_send_reset and \
tcp_receive_reset tracepoints (and, where the kernel misses resets, the functions that build \
them) and writes one line, JSON object or logfmt line per reset. It needs root (or CAP_BPF, \
CAP_PERFMON, CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH; `rsttrace doctor` says what is missing) and \
a kernel with BTF (Linux >= 5.5, or --btf; reasons from 6.10, every cause from 6.12).",
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
/// The whole command line: a subcommand, or the tracer's options.
///
/// (clap shows the `about` and `long_about` above, not this comment.)
pub struct Cli {
    /// The subcommand given, or `None` to trace with [`Cli::trace`].
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The tracer's options (only when no subcommand is given: they
    /// conflict with subcommands).
    #[command(flatten)]
    pub trace: TraceArgs,
}

/// The subcommands.  Each variant's doc comment is its `--help` text;
/// `cmd` has the code that runs it.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every cause id with its explanation and the kernels that report it.
    Causes {
        // How to print the catalogue.  No doc comment: clap would show it
        // in `rsttrace causes --help`, whose text stays as it is.
        #[allow(missing_docs)]
        #[arg(long, value_enum, default_value_t = DocFormat::Text)]
        format: DocFormat,
    },
    /// Describe the keys of every record kind (JSON, text and logfmt
    /// output share them).
    Schema {
        // How to print the schema (no doc comment: see `Causes`).
        #[allow(missing_docs)]
        #[arg(long, value_enum, default_value_t = SchemaFormat::Text)]
        format: SchemaFormat,
    },
    /// Say what this kernel and this process let rsttrace see, and how to
    /// fix what is missing.
    Doctor {
        // How to print the report (no doc comment: see `Causes`).
        #[allow(missing_docs)]
        #[arg(long, value_enum, default_value_t = DoctorFormat::Text)]
        format: DoctorFormat,
        /// BTF of the running kernel (see the tracer's --btf).
        #[arg(long, value_name = "PATH")]
        btf: Option<std::path::PathBuf>,
    },
    /// Print shell completions.
    Completions {
        // The shell to write completions for (a positional argument; a doc
        // comment would become its help in `rsttrace completions --help`).
        #[allow(missing_docs)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

/// `rsttrace doctor --format`: a report for people, or JSON for scripts.
// The variants have no doc comments: clap would list them in `--help`
// as described possible values, and the help stays as it is.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DoctorFormat {
    Text,
    Json,
}

/// `rsttrace causes --format`: the aligned text `--help` also shows, the
/// Markdown table of docs/causes.md, or JSON with every kernel range.
// No doc comments on the variants: see `DoctorFormat`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DocFormat {
    Text,
    Markdown,
    Json,
}

/// `--storm`: what the kernel side does when resets come faster than
/// they can be reported one by one.  The variants' doc comments are the
/// possible values' help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StormMode {
    /// Report every reset.
    Off,
    /// Report every reset until a CPU sees more than --storm-threshold per
    /// second; count the rest per (cause, port, owner) and report the counts
    /// every --summary-interval.
    Auto,
    /// Only report counts.
    Always,
}

/// `--direction`: only resets this host sent, or only those it received.
/// The command line's copy of `classify::Direction`, which has no clap
/// derive.
// No doc comments on the variants: see `DoctorFormat`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    Sent,
    Received,
}

impl From<DirectionArg> for Direction {
    fn from(d: DirectionArg) -> Self {
        match d {
            DirectionArg::Sent => Direction::Sent,
            DirectionArg::Received => Direction::Received,
        }
    }
}

/// The tracer's options (`rsttrace [OPTIONS]`).  Each field's doc comment
/// is its `--help` text.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Output format: one readable line, one JSON object, or one logfmt line
    /// per record.
    #[arg(short, long, default_value = "text", value_parser = format_names())]
    pub format: String,

    /// Append records to FILE instead of standard output.  SIGHUP reopens
    /// it, for logrotate; no record is split or lost across a rotation.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,

    /// Only resets in these network namespaces (up to four,
    /// comma-separated): inode numbers, or paths such as
    /// /proc/<pid>/ns/net or /run/netns/<name>.
    #[arg(long, value_name = "INODE|PATH", value_delimiter = ',')]
    pub netns: Vec<String>,

    /// Only these causes (comma-separated ids; see `rsttrace causes`).
    #[arg(long = "cause", value_name = "ID", value_delimiter = ',')]
    pub causes: Vec<String>,

    /// Only resets sent or only resets received.
    #[arg(long, value_enum)]
    pub direction: Option<DirectionArg>,

    /// Only connections with this local or remote port.
    #[arg(long)]
    pub port: Option<u16>,

    /// Only sockets owned by this process.
    #[arg(long)]
    pub pid: Option<u32>,

    /// Also report connection failures that involve no reset (ICMP
    /// unreachable, SYN or retransmission timeout) as "connection_failure".
    #[arg(long)]
    pub failures: bool,

    /// Do not attach the hooks that recognise resets made by the firewall
    /// (netfilter REJECT); they run on every dropped packet and route lookup.
    #[arg(long)]
    pub no_firewall: bool,

    /// Do not attach the receive-path hook (it runs for every packet
    /// received): received resets then carry no rst_ttl, peer_ttl or
    /// origin, failures no ICMP details.
    #[arg(long)]
    pub no_path_check: bool,

    /// Also report resets that arrive for no socket at all (the kernel
    /// drops them silently; they are counted either way).
    #[arg(long)]
    pub stray_resets: bool,

    /// Storm handling: `auto` counts resets in the kernel once a CPU sees
    /// more than --storm-threshold a second, and reports the counts.
    #[arg(long, value_enum, default_value_t = StormMode::Off)]
    pub storm: StormMode,

    /// Resets per second and CPU above which `--storm auto` counts instead
    /// of reporting each one.
    #[arg(long, default_value_t = 5000, value_name = "PER_SEC")]
    pub storm_threshold: u32,

    /// Distinct (cause, port, owner) keys the kernel counts per CPU in a
    /// storm; resets past them are counted without a key.
    #[arg(long, default_value_t = 16384, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub storm_keys: u32,

    /// Seconds between storm summaries.
    #[arg(long, default_value_t = 1, value_name = "SECS")]
    pub summary_interval: u64,

    /// How events reach rsttrace: BPF ring buffer (Linux >= 5.8) or per-CPU
    /// perf buffers.
    #[arg(long, value_enum, default_value_t = TransportChoice::Auto)]
    pub transport: TransportChoice,

    /// Event buffer size in MiB (the ring buffer, or each CPU's perf buffer).
    #[arg(long, default_value_t = 8, value_name = "MIB", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub buffer_size: u32,

    /// Longest a reset may wait in the kernel before rsttrace is woken, in
    /// milliseconds (batching wake-ups is what keeps storms cheap).
    #[arg(long, default_value_t = 5, value_name = "MS")]
    pub wakeup_ms: u64,

    /// Exit after reporting this many resets.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,

    /// Exit after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u64>,

    /// BTF of the running kernel, for kernels that do not expose
    /// /sys/kernel/btf/vmlinux (BTFHub ships such files for distribution
    /// kernels).  Programs then attach through raw tracepoints and kprobes.
    #[arg(long, value_name = "PATH")]
    pub btf: Option<std::path::PathBuf>,

    /// More diagnostics on stderr (-vv for debug).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Serve Prometheus metrics on ADDR:PORT (a bare PORT means
    /// 127.0.0.1), at /metrics.
    #[arg(long, value_name = "ADDR:PORT", help_heading = "Service")]
    pub metrics: Option<String>,

    /// Suppression rules from a TOML file (see packaging/rsttrace.toml):
    /// matching resets are counted, not written.
    #[arg(long, value_name = "FILE", help_heading = "Service")]
    pub config: Option<std::path::PathBuf>,

    /// One more suppression rule, e.g.
    /// 'cause=abort_unread_data|abort_linger,local_port=8080,remote_cidr=10.0.0.0/8'
    /// (conditions: cause, direction, local_port, remote_port, local_cidr,
    /// remote_cidr, comm, container; ports as N or LO-HI).
    #[arg(long = "suppress", value_name = "RULE", help_heading = "Service")]
    pub suppress: Vec<String>,

    /// Every SECS seconds, write the commonest (cause, process, port)
    /// combinations as `summary` records, silenced resets included.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Service")]
    pub summary: Option<u64>,

    /// Check the options and the --config file, say what is wrong, and
    /// exit (needs no privileges: for ExecStartPre and CI).
    #[arg(long, help_heading = "Service")]
    pub check: bool,

    /// Where the host's /proc is mounted (in a container: /host/proc).
    #[arg(
        long = "proc",
        value_name = "PATH",
        default_value = "/proc",
        help_heading = "Service"
    )]
    pub proc_root: std::path::PathBuf,
}

/// `--format` values, from the output formats rsttrace has.
fn format_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(
        crate::output::FORMATS
            .iter()
            .map(|f| clap::builder::PossibleValue::new(f.name).help(f.about)),
    )
}

/// The clap command with the cause catalogue after `--help`: what main()
/// parses with, and what the man page and completions are made from.
pub fn command() -> clap::Command {
    Cli::command().after_long_help(causes_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn help_lists_every_cause() {
        let help = command().render_long_help().to_string();
        for c in crate::classify::Cause::ALL {
            assert!(help.contains(c.id()), "{} missing from --help", c.id());
        }
        assert!(help.contains("6.12+"));
    }
}
