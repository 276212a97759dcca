//! The slow lookups — every process's fd table, the cgroup tree, a
//! process's cgroup file — on a thread of their own, so that a long scan
//! never delays reading the kernel's buffers.  Requests go in over a
//! channel; replies come back to the event loop.

use std::{
    collections::HashMap,
    fs,
    path::PathBuf,
    sync::{mpsc, Arc},
    thread,
};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::container::{cgroup2_root, walk_cgroups, Container};
use crate::model::conn::Comm;

/// A process holding a socket, as /proc shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcOwner {
    pub pid: u32,
    /// Start time (clock ticks after boot, `/proc/<pid>/stat` field 22):
    /// with the pid, names one process even after the pid is reused.
    pub start: u64,
    pub comm: Comm,
}

/// Which container to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ContainerKey {
    /// A socket owner recorded by the programs: its cgroup id, and its
    /// pid for the v1 hierarchies of hybrid hosts.
    Cgroup { id: u64, pid: u32 },
    /// A process found in /proc.
    Process { pid: u32, start: u64 },
}

/// A process by pid and start time (`start_boottime` in ns; 0 unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ProcessKey {
    pub pid: u32,
    pub start_ns: u64,
}

#[derive(Debug)]
pub(crate) enum Request {
    Sockets,
    Container(ContainerKey),
    /// Whether a process still runs.
    Alive(ProcessKey),
}

#[derive(Debug)]
pub(crate) enum Reply {
    Sockets(HashMap<u64, ProcOwner>),
    Container(ContainerKey, Option<Arc<Container>>),
    Alive(ProcessKey, bool),
}

pub(crate) struct Scanner {
    tx: mpsc::Sender<Request>,
    pub replies: UnboundedReceiver<Reply>,
}

impl Scanner {
    pub(crate) fn start() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Request>();
        let (reply_tx, replies) = unbounded_channel();
        thread::Builder::new()
            .name("rsttrace-scan".into())
            .spawn(move || serve(&rx, &reply_tx))?;
        Ok(Scanner { tx, replies })
    }

    /// Queues a request; false when the scanner thread is gone.
    pub(crate) fn ask(&self, r: Request) -> bool {
        self.tx.send(r).is_ok()
    }
}

fn serve(rx: &mpsc::Receiver<Request>, tx: &UnboundedSender<Reply>) {
    let root = cgroup2_root();
    let mut cgroups: Option<HashMap<u64, String>> = None;
    while let Ok(req) = rx.recv() {
        let reply = match req {
            Request::Sockets => Reply::Sockets(scan_sockets()),
            Request::Container(key) => {
                let c = container(key, root.as_ref(), &mut cgroups).map(|mut c| {
                    super::runtime::annotate(&mut c);
                    c
                });
                Reply::Container(key, c.map(Arc::new))
            }
            Request::Alive(p) => Reply::Alive(p, alive(p)),
        };
        if tx.send(reply).is_err() {
            return;
        }
    }
}

fn container(
    key: ContainerKey,
    root: Option<&PathBuf>,
    cgroups: &mut Option<HashMap<u64, String>>,
) -> Option<Container> {
    match key {
        ContainerKey::Process { pid, start } => {
            let c = super::container::proc_container(pid)?;
            // The pid may have been reused since the scan.
            (process_start(pid) == Some(start)).then_some(c)
        }
        ContainerKey::Cgroup { id, pid } => {
            // The live process knows its v1 hierarchies too; the cgroup id
            // outlives it.
            if let Some(c) =
                super::container::proc_container(pid).filter(|c| c.id.is_some() || c.cgroup != "/")
            {
                return Some(c);
            }
            let root = root?;
            if cgroups.as_ref().is_none_or(|m| !m.contains_key(&id)) {
                *cgroups = Some(walk_cgroups(root));
            }
            cgroups
                .as_ref()?
                .get(&id)
                .map(|p| Container::from_cgroup(p))
        }
    }
}

/// Whether the process still runs: its pid exists with the same start
/// time (field 22 of `/proc/<pid>/stat` counts clock ticks of boot time).
pub(crate) fn alive(p: ProcessKey) -> bool {
    let Some(start) = process_start(p.pid) else {
        return false;
    };
    if p.start_ns == 0 {
        return true;
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    start == p.start_ns / (1_000_000_000 / hz)
}

/// A process's start time: field 22 of `/proc/<pid>/stat`, after the
/// parenthesised comm (which may hold spaces and parentheses).
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(super::procfs::path(format_args!("{pid}/stat"))).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Socket inode -> owning process, from every process's fd table.
pub(crate) fn scan_sockets() -> HashMap<u64, ProcOwner> {
    let mut by_inode = HashMap::new();
    let Ok(procs) = fs::read_dir(super::procfs::root()) else {
        return by_inode;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let mut owner: Option<ProcOwner> = None;
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = socket_inode(target.as_os_str().as_encoded_bytes()) else {
                continue;
            };
            let o = *owner.get_or_insert_with(|| ProcOwner {
                pid,
                start: process_start(pid).unwrap_or(0),
                comm: Comm::from_str_lossy(
                    fs::read_to_string(entry.path().join("comm"))
                        .unwrap_or_default()
                        .trim_end(),
                ),
            });
            // Sockets shared across fork(): keep the first (lowest) pid,
            // usually the parent that created them.
            by_inode.entry(inode).or_insert(o);
        }
    }
    by_inode
}

/// `socket:[12345]` -> 12345.
fn socket_inode(link: &[u8]) -> Option<u64> {
    let rest = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    fn inode_of(fd: &impl AsRawFd) -> u64 {
        // SAFETY: a zeroed stat buffer and a valid fd.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid fd and a stat buffer.
        assert_eq!(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }, 0);
        st.st_ino
    }

    #[test]
    fn parses_links() {
        assert_eq!(socket_inode(b"socket:[4026531840]"), Some(4026531840));
        assert_eq!(socket_inode(b"pipe:[12]"), None);
        assert_eq!(socket_inode(b"socket:[x]"), None);
    }

    #[test]
    fn finds_our_own_socket_and_start_time() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let index = scan_sockets();
        let owner = index[&inode_of(&listener)];
        assert_eq!(owner.pid, std::process::id());
        assert!(!owner.comm.as_str().is_empty());
        assert!(owner.start > 0);
        assert_eq!(process_start(std::process::id()), Some(owner.start));
    }

    #[test]
    fn tells_a_live_process_from_a_reused_pid() {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let me = std::process::id();
        let start = process_start(me).unwrap();
        let start_ns = start * (1_000_000_000 / hz) + 1234;
        assert!(alive(ProcessKey { pid: me, start_ns }));
        assert!(!alive(ProcessKey {
            pid: me,
            start_ns: start_ns + 1_000_000_000
        }));
        assert!(!alive(ProcessKey {
            pid: u32::MAX - 1,
            start_ns: 0
        }));
    }

    #[tokio::test]
    async fn answers_over_its_channel() {
        let mut s = Scanner::start().unwrap();
        assert!(s.ask(Request::Container(ContainerKey::Process {
            pid: std::process::id(),
            start: process_start(std::process::id()).unwrap(),
        })));
        match s.replies.recv().await.unwrap() {
            Reply::Container(_, c) => assert!(c.is_some()),
            other => panic!("{other:?}"),
        }
        // A reused pid (wrong start time) names nobody.
        assert!(s.ask(Request::Container(ContainerKey::Process {
            pid: std::process::id(),
            start: 1,
        })));
        match s.replies.recv().await.unwrap() {
            Reply::Container(_, c) => assert!(c.is_none()),
            other => panic!("{other:?}"),
        }
    }
}
