//! Hostile conditions: one clear line and a non-zero exit, never a panic.

use std::{
    io::{BufRead, BufReader},
    net::TcpStream,
    os::fd::AsRawFd,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::harness::{as_nobody, port, require_root, wait_timeout, Netns};

const TRACER: &str = env!("CARGO_BIN_EXE_rsttrace");

/// Runs rsttrace, returns (exit code, stderr lines).
fn run(cmd: &mut Command) -> (Option<i32>, Vec<String>) {
    let out = cmd.output().expect("spawn");
    let stderr = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_string)
        .collect();
    (out.status.code(), stderr)
}

fn assert_one_error_line(stderr: &[String], contains: &str) {
    assert_eq!(stderr.len(), 1, "expected one line, got {stderr:#?}");
    assert!(stderr[0].starts_with("rsttrace: error: "), "{stderr:?}");
    assert!(
        stderr[0].contains(contains),
        "{stderr:?} lacks {contains:?}"
    );
    assert!(!stderr[0].contains("panicked"));
}

#[test]
fn unknown_flag() {
    let (code, stderr) = run(Command::new(TRACER).arg("--no-such-flag"));
    assert_eq!(code, Some(2));
    assert_one_error_line(&stderr, "--no-such-flag");
}

#[test]
fn bad_values() {
    let (code, stderr) = run(Command::new(TRACER).args(["--format", "xml"]));
    assert_eq!(code, Some(2));
    assert_one_error_line(&stderr, "xml");
    let (code, stderr) = run(Command::new(TRACER).args(["--cause", "nonsense"]));
    assert_eq!(code, Some(1));
    assert_one_error_line(&stderr, "nonsense");
    let (code, stderr) = run(Command::new(TRACER).args(["--netns", "/no/such/netns"]));
    assert_eq!(code, Some(1));
    assert_one_error_line(&stderr, "--netns");
    // A file that exists but is no namespace would match nothing, silently.
    let (code, stderr) = run(Command::new(TRACER).args(["--netns", "/etc/hostname"]));
    assert_eq!(code, Some(1));
    assert_one_error_line(&stderr, "not a namespace file");
}

#[test]
fn not_root() {
    require_root();
    // An unprivileged user with no capabilities at all.
    let (code, stderr) = run(&mut as_nobody(&[], &[]));
    assert_eq!(code, Some(1));
    assert_one_error_line(&stderr, "needs root");
}

/// `rsttrace --format json --netns <ns>` with stdout as given, once it is
/// tracing; its stderr past the start-up line.
fn spawn_json(
    ns: &Netns,
    stdout: Stdio,
) -> (std::process::Child, BufReader<std::process::ChildStderr>) {
    spawn_json_with(ns, stdout, &[])
}

/// [`spawn_json`] with more options.
fn spawn_json_with(
    ns: &Netns,
    stdout: Stdio,
    extra: &[&str],
) -> (std::process::Child, BufReader<std::process::ChildStderr>) {
    let inode = ns.inode().to_string();
    let mut child = Command::new(TRACER)
        .args(["--format", "json", "--netns", &inode])
        .args(extra)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    // Notes about what this kernel lacks may come first.
    let mut line = String::new();
    while !line.contains("tracing TCP resets") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "rsttrace did not start"
        );
        assert!(!line.starts_with("rsttrace: error"), "{line}");
    }
    (child, stderr)
}

#[test]
fn closed_stdout_ends_quietly() {
    let ns = Netns::new();
    let (mut child, mut stderr) = spawn_json(&ns, Stdio::piped());
    // Like `rsttrace | head -n 1`: read one record, then go away.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let p = port(10);
    ns.run(move || TcpStream::connect(("127.0.0.1", p)).unwrap_err());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with('{'), "{first}");
    drop(stdout);
    // Resets until a write finds the pipe closed and rsttrace ends.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "rsttrace still runs with its reader gone"
        );
        ns.run(move || TcpStream::connect(("127.0.0.1", p + 1)).unwrap_err());
    };
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(rest.is_empty(), "nothing more on stderr, got {rest:?}");
}

#[test]
fn mounts_tracefs_when_it_is_missing() {
    require_root();
    // A private mount namespace where tracefs is not mounted anywhere.
    let script = format!(
        "umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing 2>/dev/null; \
         umount /sys/kernel/debug 2>/dev/null; exec {TRACER} -v --duration 1"
    );
    let (code, stderr) = run(Command::new("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]));
    assert_eq!(code, Some(0), "{stderr:#?}");
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("mounted tracefs on /sys/kernel/tracing")),
        "{stderr:#?}"
    );
    assert!(
        stderr.iter().any(|l| l.contains("resets reported")),
        "{stderr:#?}"
    );
}

#[test]
fn documentation_commands() {
    let out = Command::new(TRACER).args(["causes"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("no_listener") && text.contains("5.8-6.9 inferred"));
    let out = Command::new(TRACER).args(["schema"]).output().unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains("app_errno"));
    let out = Command::new(TRACER).args(["--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("abort_linger") && help.contains("CAUSES"));
    // `rsttrace causes | head -n 1`.
    let mut child = Command::new(TRACER)
        .arg("causes")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = wait_timeout(&mut child, Duration::from_secs(5));
    assert!(status.success());
}

#[test]
fn sigterm_detaches_and_prints_totals() {
    let ns = Netns::new();
    let (mut child, mut stderr) = spawn_json(&ns, Stdio::piped());
    let loaded = programs_of(child.id());
    assert!(!loaded.is_empty(), "bpftool shows no program of rsttrace");
    let p = port(11);
    ns.run(move || TcpStream::connect(("127.0.0.1", p)).unwrap_err());
    // Both records out before the signal (the totals count them either
    // way; this is the state the test means).
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    for _ in 0..2 {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "no record");
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_timeout(&mut child, Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(
        rest.contains("2 resets reported (1 sent, 1 received), 0 lost"),
        "{rest}"
    );
    // Detached: none of its programs is left in the kernel (nothing pins
    // them).  Program ids are never reused while the kernel runs.  The
    // kernel frees a program after an RCU grace period (and perf events
    // after their own), so the ids may outlive the process briefly: poll,
    // but a program that stays loaded fails the test.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let left = loop {
        let left: Vec<u64> = bpftool_progs()
            .iter()
            .filter_map(|p| p["id"].as_u64())
            .filter(|id| loaded.contains(id))
            .collect();
        if left.is_empty() || std::time::Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(left.is_empty(), "programs left behind: {left:?}");
}

/// `bpftool prog show --json` (bpftool is installed by the project's
/// setup; a missing one fails the test).
fn bpftool_progs() -> Vec<serde_json::Value> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
        .expect("bpftool (installed by `cargo xtask bootstrap --with-tests`)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("bpftool's JSON")
}

/// Ids of the programs process `pid` holds, from its fds' fdinfo.
fn programs_of(pid: u32) -> Vec<u64> {
    let mut ids = vec![];
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        if target.to_string_lossy() != "anon_inode:bpf-prog" {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap();
        let id = info.lines().find_map(|l| l.strip_prefix("prog_id:"));
        ids.push(id.expect("prog_id in fdinfo").trim().parse().unwrap());
    }
    ids
}

/// Sends `signal` to `child` and waits for it to exit; returns the exit
/// status and the time from the signal to the exit.
fn time_to_exit(
    child: &mut std::process::Child,
    signal: libc::c_int,
) -> (std::process::ExitStatus, Duration) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    let sent = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, sent.elapsed());
        }
        assert!(
            sent.elapsed() < Duration::from_secs(60),
            "rsttrace did not exit within a minute of signal {signal}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until rsttrace's metrics (on port `metrics`) count `n` resets.
fn wait_counted(metrics: u16, n: u64) {
    crate::real::wait_for("every reset counted", Duration::from_secs(60), || {
        let (_, body) = crate::real::http_get(metrics, "/metrics").map_err(|e| e.to_string())?;
        let counted: f64 = body
            .lines()
            .filter(|l| l.starts_with("rsttrace_resets_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if counted == n as f64 {
            Ok(())
        } else {
            Err(format!("{counted} of {n} counted"))
        }
    });
}

/// 1500 refused connections in `ns`: 3000 records.
fn refuse_many(ns: &Netns, p: u16) {
    ns.run(move || {
        for _ in 0..1500 {
            TcpStream::connect(("127.0.0.1", p)).unwrap_err();
        }
    });
}

/// A reader that stops reading (a stuck log shipper) holds neither the
/// event loop nor shutdown: SIGTERM still ends rsttrace within a second
/// (README), and every record is either in the pipe, whole, or counted
/// as not written.
///
/// The second is timed from the signal to the exit, and bounded by what
/// the stall may add: the same shutdown with a reader that keeps up is
/// timed first, on the same machine and load, and the stalled one may
/// take at most a second more.  On this project's machines a shutdown
/// takes a few tens of milliseconds, so the bound is the README's second;
/// under the VMs' emulation detaching alone can take longer, and that is
/// not the stall's doing (nor flaky: rsttrace gives a stalled writer half
/// a second, so the stall costs about that, well inside the second).
#[test]
fn a_stalled_stdout_does_not_hold_shutdown() {
    let ns = Netns::new();
    let p = port(13);
    let metrics = crate::real::free_port();
    let (mut child, _stderr) =
        spawn_json_with(&ns, Stdio::null(), &["--metrics", &metrics.to_string()]);
    refuse_many(&ns, p);
    wait_counted(metrics, 3000);
    let (status, unstalled) = time_to_exit(&mut child, libc::SIGTERM);
    assert!(status.success(), "{status:?}");

    let metrics = crate::real::free_port();
    let (mut child, stderr) =
        spawn_json_with(&ns, Stdio::piped(), &["--metrics", &metrics.to_string()]);
    let stdout = child.stdout.take().unwrap();
    // The smallest pipe the kernel allows, so that it fills fast.
    // SAFETY: F_SETPIPE_SZ on a pipe descriptor we own.
    let size = unsafe { libc::fcntl(stdout.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(
        size >= 4096,
        "F_SETPIPE_SZ: {}",
        std::io::Error::last_os_error()
    );
    // Each refused connect is two records (the reset sent and the one
    // received); far more than the pipe holds.
    refuse_many(&ns, p);
    // rsttrace has taken every reset in (its event loop is not held by
    // the stalled writer).
    wait_counted(metrics, 3000);
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let (status, stalled) = time_to_exit(&mut child, libc::SIGTERM);
    assert!(status.success(), "{status:?}");
    println!("SIGTERM to exit: {stalled:?} with the reader stalled, {unstalled:?} without");
    // Under software emulation everything, writing what is pending
    // included, takes some ten times longer.
    let allowed = if crate::harness::emulated() { 3 } else { 1 };
    assert!(
        stalled <= unstalled + Duration::from_secs(allowed),
        "{stalled:?} from SIGTERM to exit with a stalled reader, {unstalled:?} without"
    );
    let said: Vec<String> = lines.iter().collect();
    let totals = said
        .iter()
        .find(|l| l.contains("resets reported"))
        .unwrap_or_else(|| panic!("no totals: {said:#?}"));
    let number_before = |what: &str| -> u64 {
        let head = &totals[..totals
            .find(what)
            .unwrap_or_else(|| panic!("{what:?} not in {totals}"))];
        head.split_whitespace()
            .last()
            .unwrap()
            .trim_start_matches('(')
            .parse()
            .unwrap()
    };
    let reported = number_before(" resets reported");
    let unwritten = number_before(" records not written (standard output stalled)");
    assert_eq!(reported, 3000, "{totals}");
    // What did reach the pipe: whole lines are records written (a line
    // cut by the exit is counted as not written).
    let mut piped = String::new();
    std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut piped).unwrap();
    let whole =
        piped.lines().count() as u64 - u64::from(!piped.is_empty() && !piped.ends_with('\n'));
    assert!(whole > 0 && unwritten > 0, "{whole} lines, {totals}");
    assert_eq!(
        whole + unwritten,
        reported,
        "{whole} whole lines in the pipe, {totals}"
    );
}

#[test]
fn a_failing_stdout_is_an_error() {
    let ns = Netns::new();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let (mut child, mut stderr) = spawn_json(&ns, Stdio::from(full));
    let p = port(12);
    ns.run(move || TcpStream::connect(("127.0.0.1", p)).unwrap_err());
    let status = wait_timeout(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(1));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let lines: Vec<String> = rest.lines().map(str::to_string).collect();
    assert_one_error_line(&lines, "cannot write to standard output");
}

/// A kernel without /sys/kernel/btf/vmlinux (hidden here in a private
/// mount namespace): rsttrace asks for --btf, and with a BTF file for
/// the kernel it runs on raw tracepoints.
#[test]
fn external_btf_when_the_kernel_exposes_none() {
    require_root();
    let hide = "mount -t tmpfs none /sys/kernel/btf && exec \"$@\"";
    let unshare = |args: &[&str]| {
        let mut c = Command::new("unshare");
        c.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            hide,
            "sh",
            TRACER,
        ]);
        c.args(args);
        c
    };
    let (code, stderr) = run(&mut unshare(&["--duration", "1"]));
    assert_eq!(code, Some(1), "{stderr:#?}");
    assert_one_error_line(&stderr, "--btf PATH");

    let file = std::env::temp_dir().join(format!("rsttrace-test-{}.btf", std::process::id()));
    std::fs::copy("/sys/kernel/btf/vmlinux", &file).unwrap();
    let ns = Netns::new();
    let inode = ns.inode().to_string();
    let path = file.to_str().unwrap().to_string();
    let mut t = crate::harness::Tracer::start_cmd(unshare(&[
        "--format", "json", "--netns", &inode, "--btf", &path, "-v",
    ]));
    let p = port(13);
    ns.run(move || TcpStream::connect(("127.0.0.1", p)).unwrap_err());
    let sent = t.expect("the closed port's reset", |v| v["cause"] == "no_listener");
    assert_eq!(sent["local_port"], p);
    let recv = t.expect("the refused client", |v| v["cause"] == "connection_refused");
    assert_eq!(recv["pid"], u64::from(std::process::id()));
    let (status, stderr) = t.stop();
    std::fs::remove_file(&file).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("the kernel's BTF"),
        "raw tracepoints, said once: {stderr}"
    );
}

/// `--check` looks at everything a start would refuse before loading:
/// `--proc` must be a procfs, and `--output` must be appendable (or
/// creatable) by the user who runs it, without being created.
#[test]
fn check_looks_at_proc_and_output() {
    require_root();
    let dir = std::env::temp_dir().join(format!("rsttrace-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let check = |args: &[&str]| run(Command::new(TRACER).arg("--check").args(args));
    let valid = |(code, stderr): (Option<i32>, Vec<String>)| {
        assert_eq!(code, Some(0), "{stderr:#?}");
        assert!(
            stderr.len() == 1 && stderr[0].contains("the options are valid"),
            "{stderr:#?}"
        );
    };

    let (code, stderr) = check(&["--proc", "/etc"]);
    assert_eq!(code, Some(1), "{stderr:#?}");
    assert_one_error_line(&stderr, "--proc /etc: not a proc filesystem");
    valid(check(&["--proc", "/proc"]));

    let (code, stderr) = check(&["--output", "/no/such/dir/rsttrace.json"]);
    assert_eq!(code, Some(1), "{stderr:#?}");
    assert_one_error_line(&stderr, "cannot open --output /no/such/dir/rsttrace.json");
    // A file that does not exist yet, in a directory root may write: valid,
    // and not created by the check.
    let new = dir.join("new.json");
    valid(check(&["--output", new.to_str().unwrap()]));
    assert!(!new.exists(), "--check created {}", new.display());

    // The user who runs the check: nobody may neither create a file in
    // root's directory nor append to root's file.
    let owned = dir.join("owned.json");
    std::fs::write(&owned, "").unwrap();
    for path in [&new, &owned] {
        let (code, stderr) = run(&mut as_nobody(
            &[],
            &["--check", "--output", path.to_str().unwrap()],
        ));
        assert_eq!(code, Some(1), "{}: {stderr:#?}", path.display());
        assert_one_error_line(&stderr, &format!("cannot open --output {}", path.display()));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A reader that falls behind loses events in the kernel, and says so: a
/// `"event": "lost"` record with the count, the same count in the
/// totals, and every reset either reported or counted lost.  rsttrace is
/// stopped (SIGSTOP) while a smallest buffer overflows with resets that
/// involve no socket (hand-made SYNs to a closed port: one event each,
/// no owner events), with nothing else running.  Its records go to a file,
/// which never stalls, so that only the kernel's buffer loses any.
#[test]
fn a_full_buffer_is_a_lost_record() {
    let _host = crate::harness::exclusive();
    let ns = Netns::new();
    let out = std::env::temp_dir().join(format!("rsttrace-lost-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let t = crate::harness::Tracer::start(
        &ns,
        &[
            "--buffer-size",
            "1",
            "--no-firewall",
            "--no-path-check",
            "--output",
            out.to_str().unwrap(),
        ],
    );
    let (p, syns) = (port(14), 20_000u32);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(t.pid() as i32, libc::SIGSTOP) };
    ns.run(move || {
        let raw = crate::raw::Raw::new();
        let lo = std::net::Ipv4Addr::LOCALHOST;
        for i in 0..syns {
            raw.send(&crate::raw::Segment {
                src: lo,
                sport: 40000 + (i % 1000) as u16,
                dst: lo,
                dport: p,
                flags: crate::raw::flags("S"),
                seq: i,
                ack: 0,
                payload: 0,
                fastopen: false,
                timestamps: None,
            });
        }
    });
    // SAFETY: signalling our own child.
    unsafe { libc::kill(t.pid() as i32, libc::SIGCONT) };
    let records = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    };
    crate::real::wait_for("a lost record", Duration::from_secs(60), || {
        let r = records();
        match r.iter().find(|v| v["event"] == "lost") {
            Some(_) => Ok(()),
            None => Err(format!("{} records", r.len())),
        }
    });
    let (status, stderr) = t.stop();
    assert!(status.success(), "{stderr}");
    let records = records();
    std::fs::remove_file(&out).unwrap();
    let test = crate::harness::this_test();
    for v in &records {
        crate::harness::collect(&test, v);
    }
    let lost_records: Vec<&serde_json::Value> =
        records.iter().filter(|v| v["event"] == "lost").collect();
    assert!(
        lost_records.iter().all(|v| v["why"] == "buffer_full"),
        "{lost_records:?}"
    );
    let lost: u64 = lost_records
        .iter()
        .map(|v| v["count"].as_u64().unwrap())
        .sum();
    let reported = records
        .iter()
        .filter(|v| v["event"] == "reset" && v["cause"] == "no_listener" && v["local_port"] == p)
        .count() as u64;
    assert!(
        lost > 0 && reported > 0,
        "{reported} reported, {lost} lost: {stderr}"
    );
    assert_eq!(
        reported + lost,
        u64::from(syns),
        "{reported} reported, {lost} lost: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{reported} resets reported ({reported} sent, 0 received), {lost} lost;"
        )),
        "the totals say {reported} reported and {lost} lost: {stderr}"
    );
}
