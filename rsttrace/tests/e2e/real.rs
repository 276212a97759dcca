//! Real programs in tests (Prometheus, rsyslog, logrotate, podman): a
//! private directory, a daemon stopped on drop, loopback HTTP, and waits
//! that fail loudly when the awaited thing never comes.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// A directory of the test's own, removed on drop.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("rsttrace-t-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub(crate) fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }

    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A program the test started; killed and reaped on drop.
pub(crate) struct Daemon {
    pub name: &'static str,
    pub child: Child,
}

impl Daemon {
    /// Starts `program` (which must be installed: the project's setup
    /// installs it; a missing one fails the test).
    pub(crate) fn start(name: &'static str, cmd: &mut Command) -> Daemon {
        let child = cmd.stdin(Stdio::null()).spawn().unwrap_or_else(|e| {
            panic!("cannot start {name} ({e}): run `cargo xtask bootstrap --with-tests`")
        });
        Daemon { name, child }
    }

    /// Fails the test if the program already exited.
    pub(crate) fn assert_running(&mut self) {
        if let Some(s) = self.child.try_wait().unwrap() {
            panic!("{} exited: {s}", self.name);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` from 127.0.0.1:port: (status, body).
pub(crate) fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// Polls `f` until it gives a value; panics naming `what` (and the last
/// state `f` reported) after `limit`.
pub(crate) fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: not within {limit:?}; last: {last}")
            }
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Runs a command to completion; panics with its output on failure.
pub(crate) fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The repository's root (for packaging/).
pub(crate) fn repo() -> &'static Path {
    // The parent by name, not `rsttrace/..`: the VM guests hold the
    // files the tests read under this path, without the crate's directory.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
}
