//! `cargo xtask vm`: rsttrace on an older real kernel.  Boots Debian's
//! Linux 6.1 (no reset reasons, no event for resets sent without a socket,
//! other tracepoint signatures) under qemu with software emulation, runs a
//! few resets inside, and checks what rsttrace reported.  Opt-in: it
//! downloads a kernel package and takes a few minutes.

use std::{
    io::Write,
    net::{TcpListener, TcpStream},
    os::{fd::AsRawFd, unix::fs::PermissionsExt},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{cmd, root, status};

#[derive(clap::Args)]
pub struct Args {
    /// Debian kernel package to boot.
    #[arg(long, default_value = "linux-image-6.1.0-56-cloud-amd64")]
    kernel: String,
}

const PACKAGES: [&str; 3] = ["qemu-system-x86", "busybox-static", "cpio"];
const BUSYBOX_APPLETS: [&str; 12] = [
    "sh", "mount", "ip", "sleep", "cat", "poweroff", "mkdir", "grep", "kill", "echo", "uname", "ls",
];

fn apt_install(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    status(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing),
    )
}

/// Shared libraries a dynamically linked binary needs (from ldd).
fn libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(binary).output()?;
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect())
}

fn copy_into(dir: &Path, file: &Path, at: &str) -> Result<()> {
    let dst = dir.join(at.trim_start_matches('/'));
    std::fs::create_dir_all(dst.parent().expect("parent"))?;
    std::fs::copy(file, &dst).with_context(|| format!("copy {}", file.display()))?;
    Ok(())
}

const INIT: &str = r#"#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tracefs nodev /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
ip link set lo up
echo "VM: kernel $(uname -r)"
/rsttrace -f json > /tmp/out 2> /tmp/err &
T=$!
i=0
while ! grep -q "tracing TCP resets" /tmp/err; do
  i=$((i+1)); if [ $i -gt 240 ] || ! kill -0 $T 2>/dev/null; then break; fi; sleep 1
done
/xtask vm-scenarios
sleep 3
kill -INT $T
sleep 5
echo "===OUT==="; cat /tmp/out; echo "===ERR==="; cat /tmp/err; echo "===END==="
poweroff -f
"#;

pub fn run(args: &Args) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("cargo xtask vm installs packages: run it as root");
    }
    crate::bootstrap(false)?;
    apt_install(&PACKAGES)?;
    let work = root().join("target/vm");
    std::fs::create_dir_all(&work)?;
    let deb = std::fs::read_dir(&work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&args.kernel))
        });
    let deb = match deb {
        Some(d) => d,
        None => {
            status(
                Command::new("apt-get")
                    .current_dir(&work)
                    .args(["download", &args.kernel]),
            )?;
            std::fs::read_dir(&work)?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "deb"))
                .context("downloaded package not found")?
        }
    };
    let kernel_dir = work.join("kernel");
    status(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&kernel_dir),
    )?;
    let vmlinuz = std::fs::read_dir(kernel_dir.join("boot"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz"))
        })
        .context("no vmlinuz in the package")?;

    status(cmd("cargo").args(["build", "--release", "--package", "rsttrace"]))?;
    let rsttrace = root().join("target/release/rsttrace");
    let xtask = std::env::current_exe()?;
    let rootfs = work.join("rootfs");
    let _ = std::fs::remove_dir_all(&rootfs);
    for d in ["proc", "sys", "dev", "tmp", "bin"] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    copy_into(&rootfs, Path::new("/bin/busybox"), "/bin/busybox")?;
    for applet in BUSYBOX_APPLETS {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
    }
    for (binary, at) in [(&rsttrace, "/rsttrace"), (&xtask, "/xtask")] {
        copy_into(&rootfs, binary, at)?;
        for lib in libraries(binary)? {
            copy_into(&rootfs, &lib, &lib.to_string_lossy())?;
        }
    }
    let init = rootfs.join("init");
    std::fs::write(&init, INIT)?;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))?;
    let initrd = work.join("initrd.cpio.gz");
    status(
        Command::new("sh")
            .current_dir(&rootfs)
            .arg("-c")
            .arg(format!(
                "find . | cpio -o -H newc --quiet | gzip -1 > {}",
                initrd.display()
            )),
    )?;

    eprintln!(
        "vm: booting {} under qemu (software emulation, a few minutes)",
        vmlinuz.display()
    );
    let out = Command::new("timeout")
        .args([
            "600",
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-m",
            "1024",
            "-smp",
            "2",
            "-nographic",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(&vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .output()
        .context("running qemu")?;
    let console = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    std::fs::write(work.join("console.log"), &console)?;
    check(&console)
}

fn section<'a>(console: &'a str, from: &str, to: &str) -> &'a str {
    console
        .split(from)
        .nth(1)
        .and_then(|rest| rest.split(to).next())
        .unwrap_or("")
}

/// What rsttrace must report on 6.1 for the scenarios below.
fn check(console: &str) -> Result<()> {
    // The console may put terminal escapes before a line.
    let kernel = console
        .lines()
        .find_map(|l| l.split_once("VM: kernel ").map(|(_, k)| k.trim()))
        .unwrap_or("?");
    let stderr = section(console, "===ERR===", "===END===");
    let records: Vec<Value> = section(console, "===OUT===", "===ERR===")
        .lines()
        .filter_map(|l| serde_json::from_str(l.trim()).ok())
        .collect();
    println!("vm: kernel {kernel}; rsttrace stderr:\n{}", stderr.trim());
    for r in &records {
        println!(
            "vm: {} {} kernel_reason={} state={} {}:{} pid={}",
            r["direction"],
            r["cause"],
            r["kernel_reason"],
            r["state"],
            r["local_addr"],
            r["local_port"],
            r["pid"]
        );
    }
    let pid_of = |cause: &str| {
        records
            .iter()
            .find(|r| r["cause"] == cause)
            .map(|r| r["pid"].clone())
    };
    let mut failures = vec![];
    let mut expect = |ok: bool, what: &str| {
        println!("vm: {} {what}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            failures.push(what.to_string());
        }
    };
    expect(
        stderr.contains("tracing TCP resets"),
        "rsttrace loads and attaches on this kernel",
    );
    expect(
        stderr.contains("Linux < 6.10"),
        "it says what this kernel does not report",
    );
    expect(
        pid_of("connection_refused").is_some_and(|p| p.is_u64()),
        "closed port: the refused client, with its owner",
    );
    expect(
        pid_of("stale_connection").is_some_and(|p| p.is_u64()),
        "vanished socket, listener open: stale_connection (inferred), the listener's owner",
    );
    expect(
        pid_of("abort_unread_data").is_some_and(|p| p.is_u64()),
        "close with unread data: abort_unread_data (inferred)",
    );
    expect(
        pid_of("abort_linger").is_some_and(|p| p.is_u64()),
        "SO_LINGER {1,0} close: abort_linger (inferred)",
    );
    expect(
        records.iter().all(|r| r["kernel_reason"].is_null()),
        "no kernel_reason on a kernel without reasons",
    );
    expect(stderr.contains("0 lost"), "nothing lost");
    if failures.is_empty() {
        Ok(())
    } else {
        bail!(
            "{} expectation(s) failed on {kernel}; console in target/vm/console.log",
            failures.len()
        )
    }
}

fn setsockopt(fd: i32, level: i32, name: i32, value: &[u8]) {
    // SAFETY: value points at value.len() bytes.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
}

/// Inside the VM: the resets the check above expects.
pub fn scenarios() -> Result<()> {
    let pause = || std::thread::sleep(Duration::from_millis(300));
    // A closed port.
    let _ = TcpStream::connect("127.0.0.1:9");
    pause();
    // A server socket that vanishes (TCP_REPAIR close) while the listener
    // stays: the client's next segment hits the listener.
    let l = TcpListener::bind("127.0.0.1:8001")?;
    let mut c = TcpStream::connect("127.0.0.1:8001")?;
    let (s, _) = l.accept()?;
    setsockopt(
        s.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_REPAIR,
        &1i32.to_ne_bytes(),
    );
    drop(s);
    let _ = c.write_all(b"x");
    pause();
    // Close with unread data.
    let mut c2 = TcpStream::connect("127.0.0.1:8001")?;
    let (s2, _) = l.accept()?;
    c2.write_all(b"unread")?;
    pause();
    drop(s2);
    pause();
    // SO_LINGER {1, 0}.
    let _c3 = TcpStream::connect("127.0.0.1:8001")?;
    let (s3, _) = l.accept()?;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: reading the bytes of a plain C struct.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&linger as *const libc::linger).cast::<u8>(),
            std::mem::size_of::<libc::linger>(),
        )
    };
    setsockopt(s3.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, bytes);
    drop(s3);
    pause();
    println!("VM: scenarios done");
    Ok(())
}
