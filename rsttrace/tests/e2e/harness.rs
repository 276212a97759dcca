//! Test harness: network namespaces and veth pairs the test creates and
//! always removes, the real rsttrace binary filtered to one namespace, and
//! peer processes for attribution tests.

use std::{
    io::{BufRead, BufReader, Write},
    os::fd::AsRawFd,
    os::unix::fs::MetadataExt,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub(crate) use crate::kernel::kernel;
use crate::peer::{round_trip, Cmd};

pub(crate) const PREFIX: &str = "rsttrace-t-";
const TRACER: &str = env!("CARGO_BIN_EXE_rsttrace");

/// The `nobody` user's uid and gid.
pub(crate) const NOBODY: &str = "65534";

/// `setpriv` running rsttrace as nobody with just `caps` (setpriv's
/// names: `bpf`, `perfmon`...; none for an empty list).
pub(crate) fn as_nobody(caps: &[String], args: &[&str]) -> Command {
    let set = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{}", setpriv_cap(c))))
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
        &format!("--inh-caps={set}"),
        &format!("--ambient-caps={set}"),
        &format!("--bounding-set={set}"),
        "--",
        TRACER,
    ]);
    cmd.args(args);
    // As the unit's LimitMEMLOCK=infinity: before Linux 5.11 BPF maps are
    // charged to RLIMIT_MEMLOCK, and the unit lifts it instead of granting
    // CAP_SYS_RESOURCE.  Where this test process may not lift it (no
    // CAP_SYS_RESOURCE in a container), the limit stays: kernels that
    // charge maps to memcg do not look at it.
    // SAFETY: setrlimit is async-signal-safe and the closure allocates
    // nothing; it runs in the child between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let unlimited = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited);
            Ok(())
        });
    }
    cmd
}

/// How to name a capability to any setpriv: the ones Linux 5.8 added as
/// `cap_N`, which Debian 11's (libcap-ng 0.7) knows no names for.
fn setpriv_cap(name: &str) -> String {
    match name {
        "perfmon" => "cap_38".into(),
        "bpf" => "cap_39".into(),
        other => other.into(),
    }
}

/// Whether this machine is emulated in software (the VMs of `cargo
/// xtask vm` run under qemu's TCG, some ten times slower than the host).
pub(crate) fn emulated() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| c.contains("QEMU"))
}

/// Whether the one socket in `state` in the namespace has a timer named
/// `timer` (`ss -o`: `timewait` for a time-wait socket, `keepalive`
/// for a full socket's FIN_WAIT2 timer).
pub(crate) fn socket_timer_is(ns: &Netns, state: &str, timer: &str) -> bool {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "ss", "-Htano", "state", state])
        .output()
        .expect("ss");
    String::from_utf8_lossy(&out.stdout).contains(&format!("timer:({timer}"))
}

pub(crate) fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the integration tests load eBPF programs and create network namespaces: run them as root"
    );
}

fn run(cmd: &[&str]) {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes namespaces left by test runs whose process is gone.
fn sweep_stale() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir("/run/netns") else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            let pid: u32 = rest
                .split('-')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = Command::new("ip").args(["netns", "del", &name]).status();
            }
        }
    });
}

/// Tests share the host; a test that changes a *global* setting takes
/// this lock exclusively ([`exclusive`]) while every namespace holds it
/// shared, so nothing else runs meanwhile.
static HOST: std::sync::RwLock<()> = std::sync::RwLock::new(());

thread_local! {
    static EXCLUSIVE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The shared hold of this test thread and how many namespaces use it:
    /// a second read of the lock while a writer waits would deadlock, so a
    /// thread takes it once.
    static SHARED: std::cell::RefCell<(u32, Option<std::sync::RwLockReadGuard<'static, ()>>)> =
        const { std::cell::RefCell::new((0, None)) };
}

/// One namespace's use of its thread's shared hold on the host.
struct Shared;

impl Shared {
    fn take() -> Option<Shared> {
        if EXCLUSIVE.with(|e| e.get()) {
            return None;
        }
        SHARED.with(|s| {
            let mut s = s.borrow_mut();
            if s.0 == 0 {
                s.1 = Some(HOST.read().unwrap_or_else(|e| e.into_inner()));
            }
            s.0 += 1;
        });
        Some(Shared)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        SHARED.with(|s| {
            let mut s = s.borrow_mut();
            s.0 -= 1;
            if s.0 == 0 {
                s.1 = None;
            }
        });
    }
}

/// Holds the host for a test that changes global state.
pub(crate) struct Exclusive(#[allow(dead_code)] std::sync::RwLockWriteGuard<'static, ()>);

pub(crate) fn exclusive() -> Exclusive {
    let guard = HOST.write().unwrap_or_else(|e| e.into_inner());
    EXCLUSIVE.with(|e| e.set(true));
    Exclusive(guard)
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        EXCLUSIVE.with(|e| e.set(false));
    }
}

/// Sets a global sysctl and restores it on drop.
pub(crate) struct GlobalSysctl {
    path: String,
    old: String,
}

impl GlobalSysctl {
    pub(crate) fn set(_host: &Exclusive, key: &str, value: &str) -> Self {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let old = std::fs::read_to_string(&path).expect("read sysctl");
        std::fs::write(&path, value).expect("write sysctl");
        GlobalSysctl { path, old }
    }
}

impl Drop for GlobalSysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.path, self.old.trim());
    }
}

/// A network namespace with `lo` up, deleted on drop.
pub(crate) struct Netns {
    pub name: String,
    _shared: Option<Shared>,
}

impl Netns {
    pub(crate) fn new() -> Self {
        require_root();
        sweep_stale();
        static N: AtomicU32 = AtomicU32::new(0);
        let shared = Shared::take();
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        run(&["ip", "netns", "add", &name]);
        let ns = Netns {
            name,
            _shared: shared,
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub(crate) fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// The namespace inode, as rsttrace reports it in `netns`.
    pub(crate) fn inode(&self) -> u64 {
        std::fs::metadata(self.path()).expect("netns file").ino()
    }

    /// `ip -n <ns> ...`
    pub(crate) fn ip(&self, args: &[&str]) {
        let mut cmd = vec!["ip", "-n", &self.name];
        cmd.extend_from_slice(args);
        run(&cmd);
    }

    /// Runs `f` on a thread that entered this namespace: sockets it creates
    /// live here.  The owner of those sockets is this test process.
    pub(crate) fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .expect("namespace thread panicked")
    }

    /// Runs `f` in the namespace on a thread of its own, without waiting.
    pub(crate) fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        let path = self.path();
        thread::spawn(move || {
            enter(&path);
            f()
        })
    }

    /// Starts a peer process (this test binary in its peer role) inside
    /// the namespace.
    pub(crate) fn peer(&self) -> Peer {
        Peer::spawn(&self.name)
    }

    /// Waits until a TCP socket in the namespace is in `state` (as `ss`
    /// names it, e.g. `fin-wait-2`).
    pub(crate) fn wait_for_state(&self, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.name, "ss", "-Htan", "state", state])
                .output()
                .expect("ss");
            if !out.stdout.is_empty() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("no socket reached {state} in {}", self.name);
    }

    /// Waits until no TCP socket in the namespace is in `state` on local
    /// or remote port `port` (one that is gone, or moved on).
    pub(crate) fn wait_for_no_socket(&self, state: &str, port: u16) {
        let filter = format!("( sport = :{port} or dport = :{port} )");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let out = Command::new("ip")
                .args([
                    "netns", "exec", &self.name, "ss", "-Htan", "state", state, &filter,
                ])
                .output()
                .expect("ss");
            assert!(
                out.status.success(),
                "ss: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            if out.stdout.is_empty() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!("a socket on port {port} stays {state} in {}", self.name);
    }

    /// Loads an nftables ruleset into the namespace.
    pub(crate) fn nft(&self, ruleset: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ruleset.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft -f failed");
    }

    /// `nft list <what>` in the namespace (counters included).
    pub(crate) fn nft_list(&self, what: &str) -> String {
        let mut args = vec!["netns", "exec", &self.name, "nft", "list"];
        args.extend(what.split_whitespace());
        let out = Command::new("ip").args(&args).output().expect("nft");
        assert!(out.status.success(), "nft list {what} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Drops the resets this namespace's kernel would send: a raw-socket
    /// peer here is not a socket the kernel knows, so the kernel would
    /// reset every connection it takes part in.
    pub(crate) fn drop_outgoing_resets(&self) {
        self.nft(
            "table inet rsttrace_test_raw {
               chain output {
                 type filter hook output priority 0;
                 tcp flags rst drop
               }
             }",
        );
    }

    /// `sysctl -w` inside the namespace (per-namespace settings only).
    pub(crate) fn sysctl(&self, key: &str, value: &str) {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.name,
            "sysctl",
            "-q",
            "-w",
            &format!("{key}={value}"),
        ]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// setns(2) for the calling thread.
pub(crate) fn enter(path: &str) {
    let f = std::fs::File::open(path).expect("open netns");
    // SAFETY: valid fd; CLONE_NEWNET affects only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// Two namespaces joined by a veth pair: `a` has 10.<n>.0.1 and fd<n>::1,
/// `b` has 10.<n>.0.2 and fd<n>::2.
pub(crate) struct Link {
    pub a: Netns,
    pub b: Netns,
    pub addr_a: String,
    pub addr_b: String,
    pub dev_a: String,
    pub dev_b: String,
}

impl Link {
    pub(crate) fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(1);
        let n = (std::process::id() % 200) + N.fetch_add(1, Ordering::Relaxed);
        let (a, b) = (Netns::new(), Netns::new());
        let (va, vb) = (
            format!("rtv{n}a{}", std::process::id() % 1000),
            format!("rtv{n}b{}", std::process::id() % 1000),
        );
        run(&[
            "ip", "link", "add", &va, "netns", &a.name, "type", "veth", "peer", "name", &vb,
            "netns", &b.name,
        ]);
        let (addr_a, addr_b) = (format!("10.{}.0.1", n % 250), format!("10.{}.0.2", n % 250));
        a.ip(&["addr", "add", &format!("{addr_a}/24"), "dev", &va]);
        b.ip(&["addr", "add", &format!("{addr_b}/24"), "dev", &vb]);
        a.ip(&["link", "set", &va, "up"]);
        b.ip(&["link", "set", &vb, "up"]);
        // The veth pair goes with its namespaces.
        Link {
            a,
            b,
            addr_a,
            addr_b,
            dev_a: va,
            dev_b: vb,
        }
    }
}

/// A running rsttrace, its JSON records collected as they come.
pub(crate) struct Tracer {
    child: Child,
    records: mpsc::Receiver<Value>,
    stderr: std::sync::Arc<Mutex<String>>,
    /// Says `false` once rsttrace's stderr is closed (read to its end).
    stderr_end: mpsc::Receiver<bool>,
    pub seen: Vec<Value>,
}

impl Tracer {
    /// `rsttrace --format json --netns <ns>` plus `extra`; returns once the
    /// programs are attached.
    pub(crate) fn start(ns: &Netns, extra: &[&str]) -> Self {
        let inode = ns.inode().to_string();
        let mut args = vec!["--format", "json", "--netns", &inode];
        args.extend_from_slice(extra);
        Self::start_args(&args)
    }

    pub(crate) fn start_args(args: &[&str]) -> Self {
        let mut cmd = Command::new(TRACER);
        cmd.args(args);
        Self::start_cmd(cmd)
    }

    /// Starts `cmd`, which runs rsttrace (perhaps through a wrapper).
    pub(crate) fn start_cmd(mut cmd: Command) -> Self {
        require_root();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rsttrace");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let test = this_test();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("rsttrace printed a non-JSON line on stdout: {line:?}: {e}")
                });
                collect(&test, &v);
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr_text = std::sync::Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        let sink = stderr_text.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("tracing TCP resets") {
                    let _ = ready_tx.send(true);
                }
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
            let _ = ready_tx.send(false);
        });
        // Loading takes well under a second here, but up to a minute in
        // the emulated VM kernels (cargo xtask vm) while other tests run.
        let ready = ready_rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or(false);
        let mut t = Tracer {
            child,
            records: rx,
            stderr: stderr_text,
            stderr_end: ready_rx,
            seen: vec![],
        };
        if !ready {
            let _ = t.child.kill();
            let _ = t.child.wait();
            thread::sleep(Duration::from_millis(100));
            panic!("rsttrace did not start: {}", t.stderr());
        }
        t
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a record matching `pred`; panics with everything seen.
    pub(crate) fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.records.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no record for {what}; seen:\n{}\nstderr:\n{}",
            self.seen
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            self.stderr()
        );
    }

    /// Collects records for `d` more.
    pub(crate) fn settle(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.records.recv_timeout(left) {
                Ok(v) => self.seen.push(v),
                Err(_) => break,
            }
        }
    }

    /// SIGINT, wait for the exit, and keep every record printed before it
    /// (the final summaries come out at exit).
    pub(crate) fn stop_collecting(&mut self) -> (std::process::ExitStatus, String) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = wait_timeout(&mut self.child, Duration::from_secs(10));
        self.read_to_end();
        (status, self.stderr())
    }

    /// After the exit: every record up to the end of stdout, and stderr
    /// to its end (each pipe closes when rsttrace is gone; one that stays
    /// open fails the test rather than cutting the collection short).
    fn read_to_end(&mut self) {
        let limit = Duration::from_secs(30);
        loop {
            match self.records.recv_timeout(limit) {
                Ok(v) => self.seen.push(v),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("rsttrace exited, but its stdout stayed open for {limit:?}")
                }
            }
        }
        self.wait_stderr_end(limit);
    }

    fn wait_stderr_end(&self, limit: Duration) {
        loop {
            match self.stderr_end.recv_timeout(limit) {
                Ok(true) => continue,
                Ok(false) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("rsttrace exited, but its stderr stayed open for {limit:?}")
                }
            }
        }
    }

    /// Waits for rsttrace to exit by itself (--count, --duration), keeping
    /// every record it printed.
    pub(crate) fn stop_collecting_exited(
        &mut self,
        limit: Duration,
    ) -> (std::process::ExitStatus, String) {
        let status = wait_timeout(&mut self.child, limit);
        self.read_to_end();
        (status, self.stderr())
    }

    /// SIGINT, then the exit status and stderr.
    pub(crate) fn stop(mut self) -> (std::process::ExitStatus, String) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = wait_timeout(&mut self.child, Duration::from_secs(10));
        // Everything it said, up to the totals printed at exit.
        self.wait_stderr_end(Duration::from_secs(30));
        (status, self.stderr())
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn wait_timeout(child: &mut Child, d: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + d;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit in {d:?}", child.id());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A peer process: this test binary re-executed in a role (see
/// `peer::main`), talking one line at a time over stdin/stdout: a
/// `peer::Cmd` written, its answer read.
pub(crate) struct Peer {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    fn spawn(netns: &str) -> Peer {
        let exe = std::env::current_exe().expect("test binary");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns])
            .arg(&exe)
            .args(["peer_entry", "--exact", "--nocapture", "--test-threads=1"])
            .env("RSTTRACE_PEER", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn peer");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may print `test peer_entry ... ` on the same line.
                if let Some((_, msg)) = line.split_once("PEER ") {
                    if tx.send(msg.to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        let peer = Peer {
            child,
            stdin,
            lines: rx,
        };
        assert_eq!(peer.recv(), "ready");
        peer
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Next line from the peer.
    pub(crate) fn recv(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(15))
            .expect("peer answered")
    }

    /// Sends a command and returns the peer's answer.
    pub(crate) fn ask(&mut self, cmd: Cmd) -> String {
        self.start(&cmd);
        self.recv()
    }

    /// Sends a command without waiting for its answer (for one that blocks
    /// while another peer acts); read the answer later with `recv`.
    pub(crate) fn start(&mut self, cmd: &Cmd) {
        // The peer must read what was meant, not another command.
        if let Err(e) = round_trip(cmd) {
            panic!("peer protocol: {e}");
        }
        writeln!(self.stdin, "{cmd}").expect("peer stdin");
        self.stdin.flush().expect("flush");
    }

    /// Sends a command that must answer `ok ...`; returns what follows.
    pub(crate) fn ok(&mut self, cmd: Cmd) -> String {
        let line = cmd.to_string();
        let answer = self.ask(cmd);
        match answer.strip_prefix("ok") {
            Some(rest) => rest.trim().to_string(),
            None => panic!("peer: `{line}` answered `{answer}`"),
        }
    }
}

impl Peer {
    /// SIGKILL: the process dies, the kernel closes its sockets.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", Cmd::Exit);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port no one uses in a fresh namespace.
pub(crate) fn port(n: u16) -> u16 {
    20000 + n
}

pub(crate) fn pid() -> u64 {
    u64::from(std::process::id())
}

/// `rsttrace doctor --format json` on this kernel, run once.
pub(crate) fn doctor() -> &'static Value {
    static DOCTOR: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    DOCTOR.get_or_init(|| {
        require_root();
        let out = Command::new(TRACER)
            .args(["doctor", "--format", "json"])
            .output()
            .expect("run rsttrace doctor");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "doctor printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    })
}

/// `rsttrace causes --format json`, once.
pub(crate) fn catalogue() -> &'static Value {
    static CAUSES: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    CAUSES.get_or_init(|| {
        let out = Command::new(TRACER)
            .args(["causes", "--format", "json"])
            .output()
            .expect("run rsttrace causes");
        serde_json::from_slice(&out.stdout).expect("causes JSON")
    })
}

/// How this kernel tells `cause`: "exact", "inferred" or "unavailable"
/// (rsttrace's catalogue, for the range the harness says this kernel is
/// in).
pub(crate) fn availability(cause: &str) -> String {
    let range = kernel().range();
    catalogue()["causes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cause"] == cause)
        .unwrap_or_else(|| panic!("no cause {cause}"))["kernels"][range]
        .as_str()
        .unwrap()
        .to_string()
}

/// Says on stdout that a test does not apply to this kernel, and why
/// (the VM runner lists these lines as skips).  Linux 6.12 and later
/// offer everything the tests check: a skip there is a failure.
pub(crate) fn skip(test: &str, why: &str) {
    assert!(
        kernel().version < (6, 12),
        "{test} skipped on Linux {} ({why}), which offers everything it needs",
        kernel().release
    );
    println!("SKIP {test}: {why}");
}

/// Skips (returning true) when this kernel cannot tell `cause` apart.
pub(crate) fn skip_unless_told(test: &str, cause: &str) -> bool {
    if availability(cause) == "unavailable" {
        let range = kernel().range();
        skip(
            test,
            &format!("Linux {range} cannot tell {cause} apart (see docs/kernels.md)"),
        );
        return true;
    }
    false
}

/// The record states its cause as this kernel can: the kernel's reason
/// `reason` where the kernel names it, inferred (no reason) otherwise.
pub(crate) fn assert_reason(ev: &Value, reason: &str) {
    let cause = ev["cause"].as_str().unwrap();
    if availability(cause) == "exact" && kernel().reset_reasons() {
        assert_eq!(ev["kernel_reason"], reason, "{ev}");
        assert_eq!(ev["cause_source"], "kernel_reason", "{ev}");
    } else {
        assert_eq!(ev["kernel_reason"], Value::Null, "{ev}");
        assert_eq!(ev["cause_source"], "inferred", "{ev}");
    }
}

/// Whether the kernel reports delivered errnos (see `kernel.rs`).
pub(crate) fn error_reports() -> bool {
    kernel().error_reports()
}

/// The errno delivered to the local socket, as this kernel can tell it.
pub(crate) fn assert_delivered(ev: &Value, errno: &str) {
    if error_reports() {
        assert_eq!(ev["delivered_errno"], errno, "{ev}");
    } else {
        assert_eq!(ev["delivered_errno"], Value::Null, "{ev}");
    }
}

/// The running test's name (libtest names each test's thread after it).
pub(crate) fn this_test() -> String {
    thread::current().name().unwrap_or("unnamed").to_string()
}

/// Where the suite writes what it saw of rsttrace's output, for the
/// schema contract (contract.rs): the file `RSTTRACE_E2E_RECORDS` names
/// (`cargo xtask test` and the VM guests set it); unset, nothing is kept.
pub(crate) const RECORDS_ENV: &str = "RSTTRACE_E2E_RECORDS";

/// Keeps the shape of one record rsttrace printed in test `test`: its
/// event, every key it has and the keys that were not null, one JSON
/// line per distinct shape, appended to the file [`RECORDS_ENV`] names.
/// Tests that read rsttrace's output without a [`Tracer`] call this for
/// each record too.
pub(crate) fn collect(test: &str, record: &Value) {
    static SEEN: Mutex<Option<std::collections::HashSet<String>>> = Mutex::new(None);
    let Some(path) = std::env::var_os(RECORDS_ENV) else {
        return;
    };
    let Some(obj) = record.as_object() else {
        return;
    };
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let non_null: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !obj[*k].is_null())
        .collect();
    let line = serde_json::json!({
        "test": test,
        "event": record["event"],
        "keys": keys,
        "non_null": non_null,
    })
    .to_string();
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if !seen
        .get_or_insert_with(Default::default)
        .insert(line.clone())
    {
        return;
    }
    // One write of a whole line to a file opened for appending: lines of
    // concurrent tests (and test binaries) do not interleave.
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{RECORDS_ENV}={}: {e}", path.to_string_lossy()));
    file.write_all(format!("{line}\n").as_bytes())
        .unwrap_or_else(|e| panic!("{RECORDS_ENV}={}: {e}", path.to_string_lossy()));
}
