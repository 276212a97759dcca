//! This run's top layer of the initramfs: the tracer `cargo xtask dist`
//! ships and the e2e test binary built for the same glibc (2.17, with
//! cargo-zigbuild: the guests' Debian 11 has glibc 2.31, older than the
//! machine's), at the absolute paths the test binary expects (it runs the
//! tracer at `env!("CARGO_BIN_EXE_rsttrace")`), and the guest's /init.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use super::pack_cpio;
use crate::{cargo_json, dist};

pub(super) struct Binaries {
    /// The `e2e` integration test executable.
    pub tests: PathBuf,
    /// Where the test binary runs the tracer (its CARGO_BIN_EXE_rsttrace).
    pub tracer: PathBuf,
    /// What is put there: target/dist/rsttrace.
    pub tracer_source: PathBuf,
    /// Its SHA-256, as SHA256SUMS records it.
    pub tracer_sha256: String,
}

/// The e2e tests, release profile (whose dependencies the dist build has
/// just compiled), for the dist binary's target.
pub(super) fn build(dist: &dist::Artifacts) -> Result<Binaries> {
    let built = cargo_json::artifacts(dist::zigbuild(&[
        "--release",
        "--package",
        "rsttrace",
        "--test",
        "e2e",
    ])?)
    .context("building the e2e tests with cargo-zigbuild")?;
    Ok(Binaries {
        tests: cargo_json::find(&built, "test", "e2e")?,
        tracer: cargo_json::find(&built, "bin", "rsttrace")?,
        tracer_source: dist.binary.clone(),
        tracer_sha256: dist::recorded_sum(&dist.sums, "rsttrace")?,
    })
}

/// The tests the binary would run with these arguments (`--list` on the
/// host), so that tests a crashed guest never reported count too.
pub(super) fn list_tests(tests: &Path, extra: &[String]) -> Option<Vec<String>> {
    let out = Command::new(tests)
        .arg("--list")
        .args(extra)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_suffix(": test"))
            .map(str::to_string)
            .collect(),
    )
}

/// Modules the tests need; `modprobe` succeeds for built-in ones.
const MODULES: [&str; 19] = [
    "veth",
    "nf_tables",
    "nft_reject",
    "nft_reject_inet",
    "nf_reject_ipv4",
    "nf_reject_ipv6",
    "nft_chain_nat",
    "nft_ct",
    "nf_conntrack",
    "x_tables",
    "ip_tables",
    "ip6_tables",
    "iptable_filter",
    "ip6table_filter",
    "ipt_REJECT",
    "ip6t_REJECT",
    "inet_diag",
    "tcp_diag",
    "mptcp_diag",
];

/// Commands the tests run; missing ones are reported, not fatal.
const COMMANDS: [&str; 10] = [
    "ip", "ss", "nft", "iptables", "sysctl", "setpriv", "unshare", "umount", "sh", "bpftool",
];

pub(super) const TESTS_BEGIN: &str = "===rsttrace-vm: tests begin===";
pub(super) const BENCH_BEGIN: &str = "===rsttrace-vm: bench begin===";
pub(super) const BENCH_END: &str = "===rsttrace-vm: bench end===";
pub(super) const TESTS_END: &str = "===rsttrace-vm: tests end, exit ";
pub(super) const WARNINGS: &str = "===rsttrace-vm: kernel warnings===";
pub(super) const DONE: &str = "===rsttrace-vm: done===";
/// Prefix of the lines /init prints about the guest.
pub(super) const NOTE: &str = "rsttrace-vm: ";

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What the guest runs: the e2e suite, or the benchmark's program counts.
pub(super) enum Run<'a> {
    Tests,
    /// The suite, then the schema contract on the records it collected.
    TestsAndContract,
    /// The xtask binary at this path in the guest.
    Bench(&'a Path),
}

fn run_command(tests: &Path, tracer: &Path, args: &[String], run: &Run) -> String {
    match run {
        Run::Tests => format!(
            "{} --test-threads=2 --show-output {} 2>&1",
            shell_quote(&tests.to_string_lossy()),
            args.join(" ")
        ),
        Run::TestsAndContract => {
            let tests = shell_quote(&tests.to_string_lossy());
            format!(
                "export {records}=/tmp/e2e-records.jsonl\n\
                 {tests} --test-threads=2 --show-output {} 2>&1\n\
                 suite=$?\n\
                 {tests} --ignored --exact {contract} --show-output 2>&1\n\
                 contract=$?\n\
                 [ \"$suite\" -eq 0 ] && [ \"$contract\" -eq 0 ]",
                args.join(" "),
                records = crate::E2E_RECORDS,
                contract = crate::E2E_CONTRACT,
            )
        }
        // No ratios under emulation: the programs' run counts per unit.
        Run::Bench(xtask) => format!(
            "echo \"{BENCH_BEGIN}\"\n{} bench --rsttrace {} --counts --seconds 3 --idle-seconds 0 --only {} 2>/tmp/bench.err\necho \"{BENCH_END}\"\ntail -n 20 /tmp/bench.err",
            shell_quote(&xtask.to_string_lossy()),
            shell_quote(&tracer.to_string_lossy()),
            crate::bench::COUNTED.join(","),
        ),
    }
}

fn init_script(tests: &Path, tracer: &Path, extra: &[String], run: &Run) -> String {
    let args: Vec<String> = extra.iter().map(|a| shell_quote(a)).collect();
    format!(
        r#"#!/bin/sh
# The guest's init (generated by `cargo xtask vm`).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# What systemd or udev links on every host; Debian 11's nft opens
# /dev/stdin for `nft -f -`.
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
# No tmpfs over /tmp: the initramfs is in memory already, and a checkout
# under /tmp has its binaries there.
mount -t tmpfs tmpfs /run
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo "{NOTE}kernel $(uname -r)"
echo "{NOTE}version $(cat /proc/version)"
for m in {modules}; do
  err=$(modprobe "$m" 2>&1) || echo "{NOTE}modprobe $m failed: $err"
done
for c in {commands}; do
  command -v "$c" >/dev/null || echo "{NOTE}missing command $c"
done
ip link set lo up
cd /tmp
. /etc/os-release
echo "{NOTE}userspace $PRETTY_NAME, $(ldd --version | head -n 1)"
echo "{NOTE}tracer sha256 $(sha256sum {tracer} | cut -d' ' -f1)"
{checks}
echo "{NOTE}tests start at uptime $(cut -d' ' -f1 /proc/uptime)"
echo "{TESTS_BEGIN}"
{command}
rc=$?
echo "{TESTS_END}$rc==="
echo "{NOTE}tests end at uptime $(cut -d' ' -f1 /proc/uptime)"
echo "{WARNINGS}"
dmesg --level=emerg,alert,crit,err,warn
echo "{DONE}"
echo o > /proc/sysrq-trigger
sleep 10
# Still up: exiting init panics, and panic=-1 ends qemu (-no-reboot).
exit 1
"#,
        modules = MODULES.join(" "),
        commands = COMMANDS.join(" "),
        command = run_command(tests, tracer, &args, run),
        tracer = shell_quote(&tracer.to_string_lossy()),
        checks = CHECKS.replace("TRACER", &shell_quote(&tracer.to_string_lossy())),
    )
}

/// The shipped binary by itself, before the suite: `--version`,
/// `causes`, and a short trace of a refused connect that must name the
/// client's pid.  Each prints `{NOTE}check NAME ok: DETAIL` or `failed:`
/// with the last line the check printed (report.rs reads them).  TRACER is replaced by the tracer's path.
const CHECKS: &str = r#"check() {
  name=$1; shift
  if out=$("$@" 2>&1); then
    echo "rsttrace-vm: check $name ok: $(printf '%s\n' "$out" | tail -n 1)"
  else
    echo "rsttrace-vm: check $name failed: $(printf '%s\n' "$out" | tail -n 1)"
  fi
}
causes() {
  TRACER causes --format json >/tmp/dist-causes.json || return 1
  n=$(grep -o '"cause":' /tmp/dist-causes.json | wc -l)
  [ "$n" -gt 0 ] || { echo "no causes listed"; return 1; }
  echo "$n causes"
}
refused_connect() {
  rm -f /tmp/dist-trace.json /tmp/dist-trace.err
  TRACER --format json >/tmp/dist-trace.json 2>/tmp/dist-trace.err &
  tp=$!
  i=0
  until grep -qs 'tracing TCP resets' /tmp/dist-trace.err; do
    kill -0 "$tp" 2>/dev/null || { cat /tmp/dist-trace.err; return 1; }
    i=$((i + 1)); [ "$i" -le 600 ] || { kill "$tp"; echo "not tracing after 300 s"; return 1; }
    sleep 0.5
  done
  # bash connects itself (a redirection, no child): the record's pid is its own.
  bash -c 'exec 3<>/dev/tcp/127.0.0.1/9' 2>/dev/null &
  cp=$!
  wait "$cp" && { kill "$tp"; echo "the connect to port 9 succeeded"; return 1; }
  i=0
  until grep -qs "\"cause\":\"connection_refused\".*\"pid\":$cp," /tmp/dist-trace.json; do
    i=$((i + 1))
    [ "$i" -le 120 ] || { kill "$tp"; cat /tmp/dist-trace.json; echo "no connection_refused record with pid $cp in 60 s"; return 1; }
    sleep 0.5
  done
  kill -INT "$tp"
  wait "$tp" || { rc=$?; cat /tmp/dist-trace.err; echo "exit status $rc after SIGINT"; return 1; }
  echo "connection_refused with the client's pid $cp"
}
check version TRACER --version
check causes causes
check refused_connect refused_connect"#;

/// Every library the binary loads (ldd on this machine) is in the root.
pub(super) fn check_libraries(bins: &Binaries, root: &Path) -> Result<()> {
    for bin in [&bins.tests, &bins.tracer_source] {
        let out = Command::new("ldd")
            .arg(bin)
            .output()
            .with_context(|| format!("ldd {}", bin.display()))?;
        let libs = String::from_utf8_lossy(&out.stdout);
        for lib in libs
            .lines()
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
        {
            if !exists_in(root, Path::new(lib)) {
                bail!(
                    "{} needs {lib}, which the guest root {} lacks",
                    bin.display(),
                    root.display()
                );
            }
        }
    }
    Ok(())
}

/// Does the absolute `path` name a file inside the tree `root`, with its
/// symlinks resolved as the guest would (an absolute target is in the
/// tree, not on this machine)?
fn exists_in(root: &Path, path: &Path) -> bool {
    let mut todo: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .collect();
    let mut at = root.to_path_buf();
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            if at != root {
                at.pop();
            }
            continue;
        }
        let next = at.join(&name);
        match std::fs::read_link(&next) {
            Ok(target) => {
                links += 1;
                if links > 40 {
                    return false;
                }
                if target.is_absolute() {
                    at = root.to_path_buf();
                }
                todo.extend(target.components().rev().filter_map(|c| match c {
                    std::path::Component::Normal(n) => Some(n.to_os_string()),
                    std::path::Component::ParentDir => Some("..".into()),
                    _ => None,
                }));
            }
            Err(_) => at = next,
        }
    }
    at.exists()
}

/// Copies a host file to the absolute path `at` under `dir`.
fn copy_to(dir: &Path, file: &Path, at: &Path) -> Result<()> {
    let dst = dir.join(at.strip_prefix("/").unwrap_or(at));
    std::fs::create_dir_all(dst.parent().expect("a parent"))?;
    std::fs::copy(file, &dst)
        .with_context(|| format!("copy {} to {}", file.display(), dst.display()))?;
    Ok(())
}

/// Where the guest finds the xtask binary with `--bench`.
pub(super) const GUEST_XTASK: &str = "/usr/local/bin/rsttrace-xtask";

/// Packs the layer into target/vm/layer.cpio.
pub(super) fn pack(
    work: &Path,
    bins: &Binaries,
    extra: &[String],
    bench: bool,
    contract: bool,
) -> Result<PathBuf> {
    let dir = work.join("layer");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let init = dir.join("init");
    let guest_xtask = Path::new(GUEST_XTASK);
    let run = if bench {
        copy_to(&dir, &std::env::current_exe()?, guest_xtask)?;
        Run::Bench(guest_xtask)
    } else if contract {
        Run::TestsAndContract
    } else {
        Run::Tests
    };
    std::fs::write(&init, init_script(&bins.tests, &bins.tracer, extra, &run))?;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))?;
    copy_to(&dir, &bins.tests, &bins.tests)?;
    // The privilege tests read the unit's capabilities where the tests
    // were built.
    let unit = crate::root().join("packaging/rsttrace.service");
    copy_to(&dir, &unit, &unit)?;
    copy_to(&dir, &bins.tracer_source, &bins.tracer)?;
    let archive = work.join("layer.cpio");
    pack_cpio(&dir, &archive)?;
    Ok(archive)
}

#[cfg(test)]
mod tests {
    use super::exists_in;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let root = std::env::temp_dir().join(format!("xtask-exists-in-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::fs::create_dir_all(root.join("usr/lib64")).unwrap();
        std::fs::write(root.join("usr/lib/x86_64-linux-gnu/ld-2.31.so"), "").unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib64", root.join("lib64")).unwrap();
        // An absolute target, as Debian 11 has it: not this machine's /lib.
        std::os::unix::fs::symlink(
            "/lib/x86_64-linux-gnu/ld-2.31.so",
            root.join("usr/lib64/ld-linux-x86-64.so.2"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "../x86_64-linux-gnu/ld-2.31.so",
            root.join("usr/lib64/rel.so"),
        )
        .unwrap();
        assert!(exists_in(&root, "/lib64/ld-linux-x86-64.so.2".as_ref()));
        assert!(exists_in(
            &root,
            "/lib/x86_64-linux-gnu/ld-2.31.so".as_ref()
        ));
        assert!(!exists_in(
            &root,
            "/lib/x86_64-linux-gnu/ld-2.36.so".as_ref()
        ));
        assert!(!exists_in(&root, "/usr/lib64/rel.so".as_ref()));
        std::os::unix::fs::symlink(
            "../lib/x86_64-linux-gnu/ld-2.31.so",
            root.join("usr/lib64/rel2.so"),
        )
        .unwrap();
        assert!(exists_in(&root, "/usr/lib64/rel2.so".as_ref()));
        let _ = std::fs::remove_dir_all(&root);
    }
}
