//! Project tasks: `cargo xtask <task>`.
//!
//! - `bootstrap`: install the eBPF toolchain (idempotent; scripts/bootstrap.sh)
//! - `run -- [ARGS]`: bootstrap, build, and run the tracer as root
//! - `test`: bootstrap, lint, unit and privileged integration tests
//! - `lint`: rustfmt, clippy on the userspace crates, clippy on the eBPF
//!   crate for the bpf target (both transports)
//! - `docs`: regenerate docs/causes.md and docs/json.md from the binary
//! - `bench`: the benchmark (docs/benchmark.md); `storm` and `throughput`
//!   are its loads
//! - `vm`: the end-to-end tests on Debian's 5.10, 6.1 and 6.12 kernels
//!   under qemu (opt-in)
//! - `dist`: the portable binary, the Debian package and the OCI image in
//!   target/dist/

mod bench;
mod cargo_json;
mod dist;
mod retry;
mod storm;
mod vm;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "rsttrace project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building the eBPF programs needs (idempotent).
    Bootstrap {
        /// Also install the tools the benchmark compares against.
        #[arg(long)]
        with_bench: bool,
        /// Also install the real programs the tests start (Prometheus,
        /// rsyslog, logrotate, podman, ...).
        #[arg(long)]
        with_tests: bool,
    },
    /// Bootstrap, build (release) and run the tracer as root.
    Run {
        /// Arguments for rsttrace (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Bootstrap, lint, then run the unit and integration tests (as root).
    Test {
        /// Skip rustfmt and clippy.
        #[arg(long)]
        no_lint: bool,
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// rustfmt and clippy, userspace and eBPF.
    Lint,
    /// Regenerate docs/causes.md and docs/json.md (`--check`: fail if stale).
    Docs {
        #[arg(long)]
        check: bool,
    },
    /// Benchmark: a reset storm and a loopback transfer with no tracer,
    /// rsttrace variants, bpftrace and tcpdump.
    Bench(bench::Args),
    /// Run the end-to-end tests on Debian's 5.10, 6.1 and 6.12 kernels under qemu (as root).
    Vm(vm::Args),
    /// Build target/dist/: a portable binary (glibc 2.17+), the .deb, the
    /// OCI image archive and SHA256SUMS.
    Dist,
    /// The benchmark's load: SYNs to a closed loopback port (run in a namespace).
    #[command(hide = true)]
    Storm {
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long)]
        cpu: Option<usize>,
    },
    /// The benchmark's retry storm: real sockets connecting to a closed
    /// loopback port (run in a namespace); prints the attempts.
    #[command(hide = true)]
    Retry {
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long)]
        cpu: Option<usize>,
    },
    /// The benchmark's ordinary traffic: a TCP bulk transfer over loopback
    /// (run in a namespace); prints Gbit/s.
    #[command(hide = true)]
    Throughput {
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub fn cmd(program: &str) -> Command {
    let mut c = Command::new(program);
    c.current_dir(root());
    c
}

pub fn status(c: &mut Command) -> Result<()> {
    let s = c.status().with_context(|| format!("cannot run {c:?}"))?;
    if !s.success() {
        bail!("{c:?} failed ({s})");
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn bootstrap(with_bench: bool) -> Result<()> {
    bootstrap_with(&[if with_bench { "--with-bench" } else { "" }])
}

/// `scripts/bootstrap.sh` with these options (empty ones left out).
pub fn bootstrap_with(options: &[&str]) -> Result<()> {
    let mut c = cmd("bash");
    c.arg("scripts/bootstrap.sh");
    c.args(options.iter().filter(|o| !o.is_empty()));
    status(&mut c).context("bootstrap failed")
}

fn ebpf_toolchain() -> String {
    std::env::var("RSTTRACE_EBPF_TOOLCHAIN").unwrap_or_else(|_| "debian".into())
}

fn lint() -> Result<()> {
    status(cmd("cargo").args(["fmt", "--all", "--", "--check"]))?;
    status(cmd("cargo").args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    // The eBPF crate only builds for the bpf target, with its toolchain.
    for feature in ["ringbuf", "perf"] {
        status(
            cmd("rustup")
                .args([
                    "run",
                    &ebpf_toolchain(),
                    "cargo",
                    "clippy",
                    "--package",
                    "rsttrace-ebpf",
                ])
                .args([
                    "--target",
                    "bpfel-unknown-none",
                    "--release",
                    "--no-default-features",
                ])
                .args([
                    "--features",
                    feature,
                    "--target-dir",
                    "target/ebpf-lint",
                    "--",
                    "-D",
                    "warnings",
                ])
                .env("RUSTC_BOOTSTRAP", "aya_ebpf")
                .env(
                    "CARGO_ENCODED_RUSTFLAGS",
                    "--cfg=bpf_target_arch=\"x86_64\"",
                )
                .env_remove("RUSTC")
                .env_remove("RUSTC_WORKSPACE_WRAPPER"),
        )?;
    }
    Ok(())
}

fn rsttrace_output(args: &[&str]) -> Result<String> {
    let out = cmd("cargo")
        .args(["run", "--quiet", "--package", "rsttrace", "--"])
        .args(args)
        .output()
        .context("running rsttrace")?;
    if !out.status.success() {
        bail!(
            "rsttrace {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn docs(check: bool) -> Result<()> {
    let causes = format!(
        "# Causes\n\n<!-- Generated by `cargo xtask docs` from `rsttrace causes --format markdown`; do not edit. -->\n\n\
         Every reset rsttrace reports carries one of these cause ids (JSON `cause`). `app_errno` is the \
         error the affected application gets: the peer's for sent resets, the local one's for received \
         resets. \"kernels\" says which Linux versions report the cause (older kernels give no reason, \
         or no event at all for some resets; see the README).\n\n{}",
        rsttrace_output(&["causes", "--format", "markdown"])?
    );
    let json = format!(
        "# JSON output\n\n<!-- Generated by `cargo xtask docs` from `rsttrace schema --format markdown`; do not edit. -->\n\n\
         `rsttrace --format json` writes exactly one JSON object per line on stdout and nothing else \
         (diagnostics go to stderr). Keys are flat snake_case and always present; a value is `null` \
         when unknown. The `event` key says which kind of record a line is.\n{}",
        rsttrace_output(&["schema", "--format", "markdown"])?
    );
    for (path, text) in [("docs/causes.md", causes), ("docs/json.md", json)] {
        let path = root().join(path);
        if check {
            let current = std::fs::read_to_string(&path).unwrap_or_default();
            if current != text {
                bail!("{} is stale: run `cargo xtask docs`", path.display());
            }
        } else {
            std::fs::create_dir_all(path.parent().expect("docs dir"))?;
            std::fs::write(&path, text)?;
        }
    }
    Ok(())
}

fn run(args: &[String]) -> Result<ExitCode> {
    bootstrap(false)?;
    status(cmd("cargo").args(["build", "--release", "--package", "rsttrace"]))?;
    let binary = root().join("target/release/rsttrace");
    let mut c = if is_root() {
        Command::new(&binary)
    } else {
        let mut c = Command::new("sudo");
        c.arg(&binary);
        c
    };
    c.args(args);
    // Ctrl-C reaches rsttrace too; let it print its totals and exit.
    // SAFETY: ignoring SIGINT in this process only; the child resets it.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let s = c
        .status()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    Ok(ExitCode::from(s.code().unwrap_or(1) as u8))
}

fn test(no_lint: bool, args: &[String]) -> Result<()> {
    if !is_root() {
        bail!("the integration tests load eBPF programs and create network namespaces: run `cargo xtask test` as root");
    }
    bootstrap_with(&["--with-tests", "--with-dist"])?;
    if !no_lint {
        lint()?;
        docs(true)?;
    }
    // The package and image tests (rsttrace/tests/dist.rs, the e2e
    // service_image test) install and run what `dist` made, in Debian 11
    // and 12 roots (cached in target/vm/roots, as the VMs' roots).
    dist::run()?;
    for suite in vm::root::SUITES {
        vm::root::prepare(&suite)?;
    }
    // The schema contract judges what the whole suite saw of rsttrace's
    // output: it runs after it, on the records the harness collected.
    let records = root().join("target/e2e-records.jsonl");
    let _ = std::fs::remove_file(&records);
    status(
        cmd("cargo")
            .arg("test")
            .args(args)
            .env(E2E_RECORDS, &records),
    )?;
    if !args.is_empty() {
        println!("xtask: the schema contract judges the whole suite: not run with test arguments");
        return Ok(());
    }
    status(
        cmd("cargo")
            .args(["test", "--package", "rsttrace", "--test", "e2e", "--"])
            .args(["--ignored", "--exact", E2E_CONTRACT])
            .env(E2E_RECORDS, &records),
    )
}

/// The file the e2e harness appends the shapes of rsttrace's records to
/// (rsttrace/tests/e2e/harness.rs `RECORDS_ENV`), and the test that
/// judges them against `rsttrace schema`.
pub const E2E_RECORDS: &str = "RSTTRACE_E2E_RECORDS";
pub const E2E_CONTRACT: &str = "contract::every_documented_key_is_seen";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Bootstrap {
            with_bench,
            with_tests,
        } => bootstrap_with(&[
            if with_bench { "--with-bench" } else { "" },
            if with_tests { "--with-tests" } else { "" },
        ])
        .map(|()| ExitCode::SUCCESS),
        Task::Run { args } => run(&args),
        Task::Test { no_lint, args } => test(no_lint, &args).map(|()| ExitCode::SUCCESS),
        Task::Lint => lint().map(|()| ExitCode::SUCCESS),
        Task::Docs { check } => docs(check).map(|()| ExitCode::SUCCESS),
        Task::Bench(args) => bench::run(&args).map(|()| ExitCode::SUCCESS),
        Task::Dist => bootstrap_with(&["--with-dist"])
            .and_then(|()| dist::run())
            .map(|_| ExitCode::SUCCESS),
        Task::Vm(args) => vm::run(&args).map(|ok| {
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
        Task::Storm { seconds, cpu } => storm::run(std::time::Duration::from_secs(seconds), cpu)
            .map(|sent| {
                println!("{sent}");
                ExitCode::SUCCESS
            }),
        Task::Retry { seconds, cpu } => retry::run(std::time::Duration::from_secs(seconds), cpu)
            .map(|attempts| {
                println!("{attempts}");
                ExitCode::SUCCESS
            }),
        Task::Throughput { seconds } => {
            bench::throughput::load(std::time::Duration::from_secs(seconds)).map(|(bytes, secs)| {
                println!("{}", bench::throughput::line(bytes, secs));
                ExitCode::SUCCESS
            })
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
