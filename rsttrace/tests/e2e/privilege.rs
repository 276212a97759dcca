//! Least privilege, proven: rsttrace as an unprivileged user holding
//! exactly the systemd unit's capabilities (setpriv) finds owners, keeps
//! in every thread exactly what it still needs on this kernel once
//! attached, and names a missing capability in one line.  Not a
//! `service_` test: it needs only setpriv, and the rule differs by kernel,
//! so the VM guests run it too.

use std::{collections::BTreeSet, process::Stdio};

use crate::{
    harness::{as_nobody, kernel, port, Netns, Tracer, NOBODY},
    real::repo,
    resets::connection,
    sockets::set_linger,
};

/// The unit's AmbientCapabilities, as setpriv names them (`bpf`, ...).
fn unit_caps() -> Vec<String> {
    let unit = std::fs::read_to_string(repo().join("packaging/rsttrace.service")).unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("AmbientCapabilities="))
        .expect("AmbientCapabilities= in the unit");
    let caps: Vec<String> = line
        .split_whitespace()
        .map(|c| {
            c.strip_prefix("CAP_")
                .expect("CAP_ name")
                .to_ascii_lowercase()
        })
        .collect();
    assert!(caps.len() >= 2, "{line}");
    caps
}

fn cap_bit(name: &str) -> u32 {
    match name {
        "dac_read_search" => 2,
        "sys_ptrace" => 19,
        "syslog" => 34,
        "perfmon" => 38,
        "bpf" => 39,
        other => panic!("unexpected capability {other} in the unit"),
    }
}

fn cap_set(status: &str, field: &str) -> u64 {
    let v = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("{field} in {status}"));
    u64::from_str_radix(v.trim(), 16).unwrap()
}

/// A kernel function is there (built in, or its module loaded), as
/// /proc/kallsyms lists it.
fn function_present(name: &str) -> bool {
    std::fs::read_to_string("/proc/kallsyms")
        .expect("/proc/kallsyms")
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some(name))
}

/// Whether this kernel refuses every bpf(2) call without CAP_BPF, even
/// one on a map already open: Linux before 6.5 with unprivileged BPF
/// disabled checked that on entry (6.5 moved it to creating maps and
/// loading programs; some stable kernels, Debian's 6.1 among them, have
/// that change too, so the version does not tell).  Asked of the kernel
/// itself, on a thread that lowers its effective set to nothing: a
/// lookup in no map is EPERM where the entry check is, EBADF where not.
fn every_bpf_call_needs_cap_bpf() -> bool {
    std::thread::spawn(|| {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const V3: u32 = 0x2008_0522;
        let mut header = Header {
            version: V3,
            pid: 0,
        };
        let mut data = [Data::default(); 2];
        // SAFETY: capget and capset with a version-3 header and two data
        // structs, as capget(2) documents; they act on this thread only.
        unsafe {
            assert_eq!(
                libc::syscall(
                    libc::SYS_capget,
                    &mut header as *mut Header,
                    data.as_mut_ptr()
                ),
                0
            );
            for d in &mut data {
                d.effective = 0;
            }
            assert_eq!(
                libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()),
                0,
                "capset: {}",
                std::io::Error::last_os_error()
            );
        }
        // union bpf_attr for BPF_MAP_LOOKUP_ELEM: map_fd, key, value, flags.
        let mut attr = [0u64; 4];
        attr[0] = u64::from(u32::MAX);
        const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
        // SAFETY: bpf(2) with a zeroed attribute of the size passed; the
        // kernel fails it before using the (absent) map's pointers.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_ELEM,
                attr.as_mut_ptr(),
                std::mem::size_of_val(&attr),
            )
        };
        let e = std::io::Error::last_os_error();
        assert_eq!(rc, -1, "a lookup in no map succeeded");
        match e.raw_os_error() {
            Some(libc::EPERM) => true,
            Some(libc::EBADF) => false,
            _ => panic!("bpf(BPF_MAP_LOOKUP_ELEM) on no map: {e}"),
        }
    })
    .join()
    .expect("the probing thread")
}

/// The capabilities rsttrace keeps once attached, on this kernel, as
/// setpriv names them; from the kernel's facts (kernel.rs, /proc, and the
/// kernel asked directly), by the rule rsttrace follows
/// (cmd/trace/service.rs `drop_capabilities`): reading /proc always;
/// attaching (CAP_BPF, CAP_PERFMON) when a hook may be attached later:
/// netfilter's reset functions hooked by kprobe once their module loads,
/// or, in storm modes, the firewall tracepoints it pauses and resumes;
/// and CAP_BPF alone to read its maps where every bpf(2) call needs it.
fn kept_after_attaching(storm_modes: bool) -> BTreeSet<&'static str> {
    let k = kernel();
    let waiting = k.kprobes()
        && !["nf_send_reset", "nf_send_reset6"]
            .iter()
            .all(|f| function_present(f));
    let paused_later = storm_modes && !k.kprobes() && k.drop_reasons();
    let maps_need_bpf = every_bpf_call_needs_cap_bpf();
    let mut kept: BTreeSet<&str> = ["sys_ptrace", "dac_read_search"].into();
    if waiting || paused_later {
        kept.extend(["bpf", "perfmon"]);
    }
    if maps_need_bpf {
        kept.insert("bpf");
    }
    kept
}

/// Every thread's (task id, CapEff, CapPrm) of process `pid`.
fn thread_caps(pid: u32) -> Vec<(String, u64, u64)> {
    let mut out = vec![];
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap();
        out.push((
            task.file_name().to_string_lossy().into_owned(),
            cap_set(&status, "CapEff:"),
            cap_set(&status, "CapPrm:"),
        ));
    }
    out
}

fn mask(caps: &BTreeSet<&str>) -> u64 {
    caps.iter().fold(0, |m, c| m | (1u64 << cap_bit(c)))
}

fn names(set: u64) -> Vec<String> {
    (0..64)
        .filter(|b| set & (1 << b) != 0)
        .map(|b| match b {
            2 => "dac_read_search".into(),
            19 => "sys_ptrace".into(),
            34 => "syslog".into(),
            38 => "perfmon".into(),
            39 => "bpf".into(),
            b => format!("cap{b}"),
        })
        .collect()
}

/// rsttrace as nobody with the unit's capabilities, started with
/// `extra`: once tracing, every one of its threads holds exactly what
/// this kernel calls for.
fn assert_kept(caps: &[String], ns: &Netns, extra: &[&str], storm_modes: bool) -> Tracer {
    let inode = ns.inode().to_string();
    let mut args = vec!["--format", "json", "--netns", &inode];
    args.extend_from_slice(extra);
    let t = Tracer::start_cmd(as_nobody(caps, &args));
    let status = std::fs::read_to_string(format!("/proc/{}/status", t.pid())).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains(NOBODY)),
        "{status}"
    );
    let expected = mask(&kept_after_attaching(storm_modes));
    let threads = thread_caps(t.pid());
    // The main thread, the output writer and the socket scanner at least.
    assert!(threads.len() >= 3, "{threads:?}");
    // (The bounding set stays as setpriv left it: shrinking it needs
    // CAP_SETPCAP, and the permitted set already bounds what can return.)
    for (tid, eff, prm) in &threads {
        for (field, set) in [("CapEff", eff), ("CapPrm", prm)] {
            assert_eq!(
                *set,
                expected,
                "{extra:?}, thread {tid} {field}: {:?}, expected {:?} on Linux {}",
                names(*set),
                names(expected),
                kernel().release
            );
        }
    }
    t
}

#[test]
fn the_units_capabilities_are_enough_and_the_rest_is_dropped() {
    let caps = unit_caps();
    let ns = Netns::new();
    let p = port(70);
    // A connection older than rsttrace, owned by this (root) process: its
    // owner can only be found in /proc/<pid>/fd.
    let (_l, _c, s) = connection(&ns, "127.0.0.1", p);
    let mut t = assert_kept(&caps, &ns, &[], false);
    set_linger(&s, true, 0);
    drop(s);
    let sent = t.expect("the abort", |v| {
        v["direction"] == "sent" && v["cause"] == "abort_linger"
    });
    assert_eq!(sent["pid"], u64::from(std::process::id()));
    assert_eq!(sent["owner_source"], "procfs");
    let (exit, stderr) = t.stop();
    assert!(exit.success(), "{stderr}");
    assert!(!stderr.contains("warning: without"), "{stderr}");
    // Storm mode may attach the firewall hooks again later.
    let t = assert_kept(&caps, &ns, &["--storm", "auto"], true);
    let (exit, stderr) = t.stop();
    assert!(exit.success(), "{stderr}");
}

/// Runs rsttrace as nobody with the unit's capabilities but `missing`.
fn without(missing: &str) -> (Option<i32>, Vec<String>) {
    let caps: Vec<String> = unit_caps().into_iter().filter(|c| c != missing).collect();
    assert_eq!(
        caps.len() + 1,
        unit_caps().len(),
        "{missing} is in the unit"
    );
    let out = as_nobody(&caps, &["--duration", "1"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code(),
        stderr.lines().map(str::to_string).collect(),
    )
}

#[test]
fn a_missing_capability_is_named_in_one_line() {
    for cap in ["bpf", "perfmon", "dac_read_search"] {
        let (code, stderr) = without(cap);
        assert_eq!(code, Some(1), "{cap}: {stderr:#?}");
        assert_eq!(stderr.len(), 1, "{cap}: {stderr:#?}");
        let name = format!("CAP_{}", cap.to_ascii_uppercase());
        assert!(
            stderr[0].starts_with("rsttrace: error: missing capability ")
                && stderr[0].contains(&name),
            "{stderr:?}"
        );
    }
    // Not needed to start, only to find owners of older sockets: said once.
    let (code, stderr) = without("sys_ptrace");
    assert_eq!(code, Some(0), "{stderr:#?}");
    let said: Vec<&String> = stderr
        .iter()
        .filter(|l| l.contains("CAP_SYS_PTRACE"))
        .collect();
    assert_eq!(said.len(), 1, "{stderr:#?}");
    assert!(
        said[0].starts_with("rsttrace: warning: without CAP_SYS_PTRACE"),
        "{said:?}"
    );
}
