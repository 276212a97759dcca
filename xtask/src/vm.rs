//! `cargo xtask vm`: the privileged end-to-end suite (the `e2e` test
//! binary of rsttrace) on Debian's 5.10, 6.1 and 6.12 cloud kernels, booted
//! under qemu with software emulation.  Opt-in: the first run installs
//! qemu and debootstrap, downloads kernel packages and builds a Debian
//! root; later runs reuse all of it from target/vm/.
//!
//! - apt.rs: host packages; the kernel packages through a private apt
//!   configuration (target/vm/apt)
//! - kernel.rs: vmlinuz and a modules archive per kernel
//! - root.rs: the debootstrapped guest roots (Debian 11 for 5.10, the
//!   release that ships it; Debian 12 for the others) and their archives
//! - layer.rs: this run's binaries (what `cargo xtask dist` ships, and the
//!   e2e tests built for the same glibc) and the guest's /init
//! - boot.rs: qemu, its console
//! - report.rs: parsing the console, the results table, docs/kernels.md

mod apt;
mod boot;
mod kernel;
mod layer;
mod report;
pub(crate) mod root;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::status;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Kernel series to boot: 5.10, 6.1, 6.12 or all (repeatable or
    /// comma-separated; default: all).
    #[arg(long, value_delimiter = ',')]
    kernel: Vec<String>,
    /// Write the results to docs/kernels.md (the sections of the kernels run).
    #[arg(long)]
    record: bool,
    /// Fail unless docs/kernels.md already records these results, test by
    /// test (CI: the page says what the code does).
    #[arg(long, conflicts_with = "record")]
    check: bool,
    /// Print the whole guest console, not only the test results.
    #[arg(long, short)]
    verbose: bool,
    /// Instead of the tests, run the benchmark's loads once with rsttrace
    /// and print its programs' run counts per unit of work (with
    /// --record, into docs/benchmark.md): under emulation times mean
    /// nothing, counts do.
    #[arg(long)]
    bench: bool,
    /// Extra arguments for the test binary (after `--`), e.g. a test-name filter.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// A kernel series and how to find its newest Debian package.
pub(crate) struct Series {
    pub name: &'static str,
    /// Package names are `<prefix>*<suffix>`.
    pub prefix: &'static str,
    pub suffix: &'static str,
    /// The suites it may come from.
    pub suites: &'static [&'static str],
    /// The guest's userspace.
    pub userspace: &'static root::Suite,
}

pub(crate) const SERIES: [Series; 3] = [
    Series {
        name: "5.10",
        prefix: "linux-image-5.10.",
        suffix: "-cloud-amd64",
        suites: &["bullseye", "bullseye-security"],
        // Debian 11 is the release that ships 5.10: its glibc (2.31) is
        // older than the machine's, which is what the portable binary is for.
        userspace: &root::BULLSEYE,
    },
    Series {
        name: "6.1",
        prefix: "linux-image-6.1.",
        suffix: "-cloud-amd64",
        suites: &["bookworm"],
        userspace: &root::BOOKWORM,
    },
    Series {
        name: "6.12",
        prefix: "linux-image-6.12.",
        suffix: "+deb12-cloud-amd64",
        suites: &["bookworm-backports"],
        userspace: &root::BOOKWORM,
    },
];

/// What the host needs to build and boot the guests (see
/// `Archive::install` for the suite).
const HOST_PACKAGES: [&str; 4] = [
    "qemu-system-x86/bookworm-backports",
    "debootstrap",
    "cpio",
    "kmod",
];

/// Longest a guest may run.
const TIMEOUT: Duration = Duration::from_secs(45 * 60);

fn selected(names: &[String]) -> Result<Vec<&'static Series>> {
    if names.is_empty() || names.iter().any(|n| n == "all") {
        return Ok(SERIES.iter().collect());
    }
    let mut out: Vec<&Series> = vec![];
    for n in names {
        let s = SERIES
            .iter()
            .find(|s| s.name == n)
            .with_context(|| format!("unknown kernel `{n}`: expected 5.10, 6.1, 6.12 or all"))?;
        if !out.iter().any(|o| o.name == s.name) {
            out.push(s);
        }
    }
    Ok(out)
}

pub(crate) fn run(args: &Args) -> Result<bool> {
    let series = selected(&args.kernel)?;
    if !crate::is_root() {
        bail!("cargo xtask vm installs packages, runs debootstrap and depmod: run it as root");
    }
    let setup_start = Instant::now();
    crate::bootstrap_with(&["--with-dist"])?;
    let work = crate::root().join("target/vm");
    std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    let archive = apt::Archive::open(&work.join("apt"))?;
    archive.install(&HOST_PACKAGES)?;
    let mut kernels = vec![];
    for s in &series {
        let package = archive.newest(s)?;
        let deb = archive.download(&package, &work.join("debs"))?;
        let k = kernel::prepare(&work.join(s.name), &deb)
            .with_context(|| format!("preparing the {} kernel from {}", s.name, deb.display()))?;
        kernels.push((*s, package, k));
    }
    let mut roots = vec![];
    for s in &series {
        if !roots.iter().any(|(name, _)| *name == s.userspace.name) {
            roots.push((s.userspace.name, root::prepare(s.userspace)?));
        }
    }
    let root_of = |s: &Series| {
        &roots
            .iter()
            .find(|(n, _)| *n == s.userspace.name)
            .expect("prepared")
            .1
    };
    // The guests run what an operator installs: target/dist/rsttrace.
    let dist = crate::dist::run()?;
    let binaries = layer::build(&dist)?;
    for (_, r) in &roots {
        layer::check_libraries(&binaries, &r.dir)?;
    }
    // The service tests drive Prometheus, rsyslog, logrotate and podman,
    // which the guest does not have; what they test (metrics, rules,
    // output files, packaging) is the same on every kernel, and the host
    // suite runs them.
    // The harness's own unit tests and the peers' entry point are not
    // kernel results: left out too.
    let mut test_args = args.args.clone();
    for skip in [
        "service_",
        "peer_entry",
        "raw::tests::",
        "kernel::versions_parse",
    ] {
        test_args.extend(["--skip".to_string(), skip.to_string()]);
    }
    let expected = layer::list_tests(&binaries.tests, &test_args).map(|mut e| {
        e.extend(report::CHECKS.iter().map(|c| c.to_string()));
        e
    });
    // The schema contract judges the whole suite: not with a filter.
    let contract = args.args.is_empty();
    let layer = layer::pack(&work, &binaries, &test_args, args.bench, contract)?;
    let setup = setup_start.elapsed();
    println!("vm: setup took {}", report::duration(setup));

    let mut runs = vec![];
    for (s, package, k) in &kernels {
        let dir = work.join(s.name);
        let initrd = dir.join("initrd.cpio");
        concat(&[&root_of(s).archive, &k.modules, &layer], &initrd)?;
        println!(
            "vm: booting {} ({} {}) under qemu, software emulation",
            s.name, package.name, package.version
        );
        let boot = boot::run(&boot::Vm {
            kernel: &k.vmlinuz,
            initrd: &initrd,
            log: &dir.join("console.log"),
            timeout: TIMEOUT,
            verbose: args.verbose,
        })?;
        if args.bench {
            bench_counts(s, package, &boot, args.record)?;
            continue;
        }
        let mut run = report::parse(s.name, package, &boot, expected.as_deref());
        report::check_tracer(&mut run, &binaries.tracer_sha256);
        println!("{}", run.summary_line());
        runs.push(run);
    }
    report::print(&runs, setup);
    let path = crate::root().join("docs/kernels.md");
    if args.record && !args.bench {
        report::record(&path, &runs, &test_args)?;
        println!("vm: wrote {}", path.display());
    }
    if args.check && runs.iter().all(|r| r.ok()) {
        report::check(&path, &runs)?;
        println!("vm: {} records these results", path.display());
    }
    Ok(runs.iter().all(|r| r.ok()))
}

/// The program counts a `--bench` guest printed; with `record`, written
/// into docs/benchmark.md between its VM markers.
fn bench_counts(s: &Series, package: &apt::Package, boot: &boot::Boot, record: bool) -> Result<()> {
    let console = boot::strip_escapes(&boot.console);
    let section = console
        .split_once(layer::BENCH_BEGIN)
        .and_then(|(_, rest)| rest.split_once(layer::BENCH_END))
        .map(|(counts, _)| counts.trim().to_string())
        .filter(|c| c.contains("runs per"))
        .with_context(|| format!("the {} guest printed no program counts", s.name))?;
    println!("{section}");
    if record {
        let path = crate::root().join("docs/benchmark.md");
        let doc = std::fs::read_to_string(&path).unwrap_or_default();
        let text = format!(
            "Linux {} ({} {}), under qemu software emulation, one run of each load:\n\n{section}",
            s.name, package.name, package.version
        );
        std::fs::write(&path, crate::bench::with_vm_counts(&doc, &text))?;
        println!("vm: wrote {}", path.display());
    }
    Ok(())
}

/// Writes `parts` one after the other into `out` (initramfs archives
/// unpack in order).
fn concat(parts: &[&Path], out: &Path) -> Result<()> {
    let mut w = std::fs::File::create(out).with_context(|| format!("create {}", out.display()))?;
    for p in parts {
        let mut r = std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?;
        std::io::copy(&mut r, &mut w).with_context(|| format!("write {}", out.display()))?;
    }
    Ok(())
}

/// Packs everything in `dir` into a cpio newc archive `out` (names
/// relative to `dir`), through a temporary file so an interrupted run
/// leaves no half archive.
pub(crate) fn pack_cpio(dir: &Path, out: &Path) -> Result<()> {
    let tmp = out.with_extension("cpio.tmp");
    let mut top: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    status(
        Command::new("sh")
            .current_dir(dir)
            .arg("-c")
            .arg(r#"out=$1; shift; find "$@" -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet > "$out""#)
            .arg("sh")
            .arg(&tmp)
            .args(&top),
    )
    .with_context(|| format!("packing {} into {}", dir.display(), out.display()))?;
    std::fs::rename(&tmp, out)?;
    Ok(())
}

/// A file that records what a cached product was made from: the product
/// is reused only when the recipe is the same.
pub(crate) struct Stamp(PathBuf);

impl Stamp {
    pub(crate) fn new(path: PathBuf) -> Self {
        Stamp(path)
    }
    pub(crate) fn matches(&self, recipe: &str) -> bool {
        std::fs::read_to_string(&self.0).is_ok_and(|s| s == recipe)
    }
    pub(crate) fn write(&self, recipe: &str) -> Result<()> {
        std::fs::write(&self.0, recipe).with_context(|| format!("write {}", self.0.display()))
    }
    pub(crate) fn clear(&self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
